//! The http and notify steps: requests outside the cluster, at most once per attempt.

use std::time::Duration;

use serde_json::json;

use super::secret::secret_value;
use super::{Act, Error, Exec, failed, sent_marker};
use crate::fence;
use crate::runbook_run::types::StepStatus;
use crate::step::{HttpMethod, Step};

/// Longest response excerpt kept in a step's outputs.
pub const EXCERPT_LIMIT: usize = 1024;

/// Truncates a response body for the journal.
pub fn excerpt(body: &str) -> String {
    if body.len() <= EXCERPT_LIMIT {
        return body.to_owned();
    }
    let mut end = EXCERPT_LIMIT;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &body[..end])
}

/// Sends the step's request (once per attempt: the attempt is recorded as sent first).
pub(super) async fn send(
    exec: &Exec<'_>,
    step: &Step,
    http: &crate::step::HttpAction,
    entry: &mut StepStatus,
    fresh_intent: bool,
) -> Result<Act, Error> {
    let method = http.method.unwrap_or_default();
    entry.target = Some(format!("{method:?} {}", http.url));
    if exec.plan() {
        return Ok(Act::Skipped(format!(
            "Plan: would send {method:?} {}",
            http.url
        )));
    }
    if entry.outputs.get("sent") != Some(&sent_marker(entry)) {
        entry.outputs.insert("sent".into(), sent_marker(entry));
        return Ok(Act::Record);
    }
    if !fresh_intent {
        return Ok(failed(
            "Unknown",
            "the operator restarted after sending the request and before recording the answer",
        ));
    }
    let policy = &exec.writer.ctx().config.fence.egress;
    let mut url = match reqwest::Url::parse(&http.url) {
        Ok(url) => url,
        Err(err) => {
            return Ok(Act::Failed {
                reason: "InvalidSpec",
                message: format!("http.url {:?} is not a URL: {err}", http.url),
                retryable: false,
            });
        }
    };
    fence::qualify(&mut url, exec.namespace);
    // Headers from Secrets go with the first request only, to the host the step names.
    let mut plain = reqwest::header::HeaderMap::new();
    let mut secret = reqwest::header::HeaderMap::new();
    for header in &http.headers {
        let (value, into) = match (&header.value, &header.value_from) {
            (Some(v), _) => (v.clone(), &mut plain),
            (None, Some(from)) => match secret_value(exec, &from.secret_key_ref).await? {
                Ok(v) => (v, &mut secret),
                Err(act) => return Ok(act),
            },
            (None, None) => (String::new(), &mut plain),
        };
        let name = reqwest::header::HeaderName::from_bytes(header.name.as_bytes());
        let value = reqwest::header::HeaderValue::from_str(&value);
        match (name, value) {
            (Ok(name), Ok(value)) => {
                into.append(name, value);
            }
            _ => {
                return Ok(Act::Failed {
                    reason: "InvalidSpec",
                    message: format!(
                        "header {:?} has a name or value that cannot be sent in HTTP",
                        header.name
                    ),
                    retryable: false,
                });
            }
        }
    }
    let timeout = step
        .timeout
        .as_ref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(Duration::from_secs(30));
    let first = url.clone();
    let mut method = reqwest_method(method);
    let mut body = http.body.clone();
    let mut hop = 0;
    let response = loop {
        if let Err(refused) = fence::check_url(&url, policy).await {
            return Ok(egress_refused(&url, &refused));
        }
        let mut request = exec
            .http
            .request(method.clone(), url.clone())
            .headers(plain.clone());
        if hop == 0 {
            for (name, value) in &secret {
                request = request.header(name, value);
            }
        }
        if let Some(body) = &body {
            request = request.body(body.clone());
        }
        let response = match request.timeout(timeout).send().await {
            Ok(r) => r,
            Err(err) => {
                if let Some(refused) = fence::refused_in(&err) {
                    return Ok(egress_refused(&url, refused));
                }
                return Ok(failed(
                    "RequestFailed",
                    format!("{method} {}: {}", http.url, describe(err)),
                ));
            }
        };
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| url.join(l).ok());
        let follow = http.follow_redirects == Some(true);
        let (true, true, Some(next)) = (follow, response.status().is_redirection(), location)
        else {
            break response;
        };
        if !fence::same_host(&first, &next) {
            return Ok(Act::Failed {
                reason: "RedirectRefused",
                message: format!(
                    "{} redirected to {}, another host (or from https to http): http steps follow redirects to the same host only; call {} directly",
                    first.host_str().unwrap_or_default(),
                    without_query(&next),
                    without_query(&next),
                ),
                retryable: false,
            });
        }
        hop += 1;
        if hop > fence::MAX_REDIRECTS {
            return Ok(Act::Failed {
                reason: "TooManyRedirects",
                message: format!(
                    "{} redirected more than {} times",
                    http.url,
                    fence::MAX_REDIRECTS
                ),
                retryable: false,
            });
        }
        // 303, and 301/302 after a POST, turn into a GET without body (as browsers do).
        let status = response.status().as_u16();
        if status == 303 || (matches!(status, 301 | 302) && method == reqwest::Method::POST) {
            method = reqwest::Method::GET;
            body = None;
        }
        url = next;
    };
    let status = response.status().as_u16();
    let redirect = response.status().is_redirection();
    let (body, truncated) = read_capped(response, fence::BODY_LIMIT).await;
    entry
        .outputs
        .insert("httpStatus".into(), status.to_string());
    entry.outputs.insert("body".into(), excerpt(&body));
    if truncated {
        entry.outputs.insert(
            "bodyTruncated".into(),
            format!("read the first {} bytes only", fence::BODY_LIMIT),
        );
    }
    let expect = http.expect.clone().unwrap_or_default();
    let accepted = if expect.status.is_empty() {
        vec![200]
    } else {
        expect.status.clone()
    };
    if !accepted.contains(&i32::from(status)) {
        let hint = if redirect && http.follow_redirects != Some(true) {
            " (a redirect: not followed unless the step sets http.followRedirects: true)"
        } else {
            ""
        };
        return Ok(failed(
            "UnexpectedStatus",
            format!(
                "{method} {} answered {status}, expected {accepted:?}{hint}",
                http.url
            ),
        ));
    }
    if let (Some(path), Some(expected)) = (&expect.json_path, &expect.equals) {
        let actual = json_path_value(&body, path);
        if actual.as_deref() != Some(expected.as_str()) {
            return Ok(failed(
                "UnexpectedBody",
                format!("{path} is {actual:?}, expected {expected:?}"),
            ));
        }
    }
    Ok(Act::Succeeded(format!(
        "{method} {} answered {status}",
        http.url
    )))
}

/// The step failure for a refused destination: never retried, since another attempt goes to
/// the same address.
fn egress_refused(url: &reqwest::Url, refused: &fence::Refused) -> Act {
    Act::Failed {
        reason: "EgressRefused",
        message: format!("refused to connect to {}: {refused}", without_query(url)),
        retryable: false,
    }
}

/// A URL without its query and fragment (they may carry a token), for messages.
fn without_query(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_password(None);
    url.to_string()
}

/// Reads at most `limit` bytes of the body, chunk by chunk, and drops the rest unread; true
/// when something was left.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> (String, bool) {
    let mut bytes: Vec<u8> = Vec::new();
    let mut truncated = false;
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        bytes.extend_from_slice(&chunk);
    }
    (String::from_utf8_lossy(&bytes).into_owned(), truncated)
}

/// Error text without the URL's query (it may carry a token).
fn describe(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn reqwest_method(method: HttpMethod) -> reqwest::Method {
    match method {
        HttpMethod::GET => reqwest::Method::GET,
        HttpMethod::HEAD => reqwest::Method::HEAD,
        HttpMethod::POST => reqwest::Method::POST,
        HttpMethod::PUT => reqwest::Method::PUT,
        HttpMethod::PATCH => reqwest::Method::PATCH,
        HttpMethod::DELETE => reqwest::Method::DELETE,
    }
}

/// A value from a JSON body by a simple path: `{.status}`, `.data.items[0].name`, `status`.
pub fn json_path_value(body: &str, path: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    let mut current = &value;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !key.is_empty() {
            current = current.get(key)?;
        }
        if let Some(i) = index {
            current = current.get(i)?;
        }
    }
    Some(match current {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// Posts the notification (at most once: an unknown delivery is reported, never resent).
pub(super) async fn notify(
    exec: &Exec<'_>,
    notify: &crate::step::NotifyAction,
    entry: &mut StepStatus,
    fresh_intent: bool,
) -> Result<Act, Error> {
    entry.target = Some(match (&notify.url, &notify.url_from) {
        (_, Some(from)) => format!("webhook from Secret/{}", from.secret_key_ref.name),
        _ => "webhook".into(),
    });
    if exec.plan() {
        return Ok(Act::Skipped("Plan: would send the notification".into()));
    }
    if entry.outputs.get("sent") != Some(&sent_marker(entry)) {
        entry.outputs.insert("sent".into(), sent_marker(entry));
        return Ok(Act::Record);
    }
    if !fresh_intent {
        // At most once: a message whose delivery is unknown is not sent again.
        return Ok(Act::Failed {
            reason: "DeliveryUnknown",
            message:
                "the operator restarted while sending; not resent, to avoid a duplicate message"
                    .into(),
            retryable: false,
        });
    }
    let url = match (&notify.url, &notify.url_from) {
        (Some(u), _) => u.clone(),
        (None, Some(from)) => match secret_value(exec, &from.secret_key_ref).await? {
            Ok(v) => v.trim().to_owned(),
            Err(act) => return Ok(act),
        },
        (None, None) => {
            return Ok(Act::Failed {
                reason: "InvalidSpec",
                message: "notify needs url or urlFrom".into(),
                retryable: false,
            });
        }
    };
    let policy = &exec.writer.ctx().config.fence.egress;
    let mut url = match reqwest::Url::parse(&url) {
        Ok(url) => url,
        Err(err) => {
            return Ok(Act::Failed {
                reason: "InvalidSpec",
                message: format!("the webhook URL is not a URL: {err}"),
                retryable: false,
            });
        }
    };
    fence::qualify(&mut url, exec.namespace);
    // Named by host only: the rest of a webhook URL is a credential.
    let refused = |refused: &fence::Refused| Act::Failed {
        reason: "EgressRefused",
        message: format!("refused to send the notification: {refused}"),
        retryable: false,
    };
    if let Err(err) = fence::check_url(&url, policy).await {
        return Ok(refused(&err));
    }
    let result = exec
        .http
        .post(url)
        .header("content-type", "application/json")
        .body(json!({ "text": notify.message }).to_string())
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    // Messages name the webhook only generically: its URL is a credential.
    match result {
        Ok(r) if r.status().is_success() => {
            entry
                .outputs
                .insert("httpStatus".into(), r.status().as_u16().to_string());
            Ok(Act::Succeeded("notification sent".into()))
        }
        Ok(r) => Ok(Act::Failed {
            reason: "UnexpectedStatus",
            message: format!("the webhook answered {}", r.status().as_u16()),
            retryable: false,
        }),
        Err(err) => Ok(match fence::refused_in(&err) {
            Some(r) => refused(r),
            None => Act::Failed {
                reason: "RequestFailed",
                message: format!("could not reach the webhook: {}", describe(err)),
                retryable: false,
            },
        }),
    }
}
