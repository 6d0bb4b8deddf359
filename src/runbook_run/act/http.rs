//! The http and notify steps: requests outside the cluster, at most once per attempt, sent in
//! the outbound pool ([`crate::outbound`]) so that no reconcile waits on a remote endpoint.

use std::time::Duration;

use super::secret::secret_value;
use super::{Act, Error, Exec, failed, sent_marker};
use crate::fence;
use crate::outbound::{self, Key, Owner, Progress, Reply, Verdict};
use crate::runbook_run::decide::outputs;
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

/// What an http or notify step does next with its request, from whether the attempt is
/// recorded as sent (`recorded`), what the pool knows of it (`known`) and whether this
/// reconcile recorded it (`fresh`). Pure, so the crash rule is tested on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Move {
    /// Record the attempt as sent first.
    Record,
    /// Start the request in the pool.
    Send,
    /// The request is queued or in flight: wait (the pool wakes the run).
    Wait(Progress),
    /// The request settled: record its reply.
    Collect(Reply),
    /// Recorded as sent by an earlier process (or one that lost the request): whether it
    /// reached the endpoint is unknown.
    Interrupted,
}

/// See [`Move`].
pub(super) fn next_move(recorded: bool, known: Option<Progress>, fresh: bool) -> Move {
    if !recorded {
        return Move::Record;
    }
    match known {
        Some(Progress::Done(reply)) => Move::Collect(reply),
        Some(progress) => Move::Wait(progress),
        // Only the reconcile that recorded the attempt may send it: a request recorded
        // earlier and unknown to the pool was started by a process that is gone.
        None if fresh => Move::Send,
        None => Move::Interrupted,
    }
}

/// How often a step whose request is pending is looked at even without a wake-up from the
/// pool (a wake-up can be lost when the controller falls far behind).
const PENDING_RECHECK: Duration = Duration::from_secs(30);

/// The pool's key of the current attempt of journal entry `index`.
fn key(exec: &Exec<'_>, index: usize, entry: &StepStatus) -> Key {
    Key {
        run: exec.run_uid.to_owned(),
        step: index,
        attempt: entry.attempts,
    }
}

fn owner(exec: &Exec<'_>) -> Owner {
    Owner {
        namespace: exec.namespace.to_owned(),
        name: exec.run_name.to_owned(),
    }
}

/// The step's wait while its request is pending, or its result once settled.
fn pending(exec: &Exec<'_>, entry: &mut StepStatus, progress: Progress, what: &str) -> Act {
    if let Progress::Done(reply) = progress {
        return collect(entry, reply);
    }
    Act::Wait {
        message: progress
            .waiting_message(exec.namespace, what)
            .unwrap_or_default(),
        recheck: Some(PENDING_RECHECK),
        approval: false,
    }
}

/// The step's result from a settled request, its outputs copied to the journal entry.
fn collect(entry: &mut StepStatus, reply: Reply) -> Act {
    for (name, value) in reply.outputs {
        entry.outputs.insert(name, value);
    }
    match reply.verdict {
        Verdict::Succeeded(message) => Act::Succeeded(message),
        Verdict::Failed {
            reason,
            message,
            retryable,
        } => Act::Failed {
            reason,
            message,
            retryable,
        },
    }
}

fn fail(reason: &'static str, message: impl Into<String>, retryable: bool) -> Reply {
    Reply {
        outputs: Vec::new(),
        verdict: Verdict::Failed {
            reason,
            message: message.into(),
            retryable,
        },
    }
}

/// Sends the step's request (once per attempt: the attempt is recorded as sent first), in the
/// outbound pool: the reconcile returns while the request is pending.
pub(super) async fn send(
    exec: &Exec<'_>,
    step: &Step,
    http: &crate::step::HttpAction,
    entry: &mut StepStatus,
    (index, fresh_intent): (usize, bool),
) -> Result<Act, Error> {
    let method = http.method.unwrap_or_default();
    entry.target = Some(format!("{method:?} {}", http.url));
    if exec.plan() {
        return Ok(Act::Skipped(format!(
            "Plan: would send {method:?} {}",
            http.url
        )));
    }
    let pool = &exec.writer.ctx().outbound;
    let key = key(exec, index, entry);
    let recorded = entry.outputs.get("sent") == Some(&sent_marker(entry));
    let what = format!("{method:?} {}", http.url);
    match next_move(recorded, pool.progress(&key), fresh_intent) {
        Move::Record => {
            entry.outputs.insert("sent".into(), sent_marker(entry));
            return Ok(Act::Record);
        }
        Move::Interrupted => {
            return Ok(failed(
                "Unknown",
                "the operator restarted after sending the request and before recording the answer",
            ));
        }
        Move::Collect(reply) => return Ok(collect(entry, reply)),
        Move::Wait(progress) => return Ok(pending(exec, entry, progress, &what)),
        Move::Send => {}
    }
    let policy = exec.writer.ctx().config.fence.egress.clone();
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
    let timeout = outbound::capped_timeout(
        step.timeout
            .as_ref()
            .and_then(|t| t.parse().ok())
            .unwrap_or(Duration::from_secs(30)),
    );
    let request = Request {
        client: exec.http.clone(),
        policy,
        url,
        method: reqwest_method(method),
        plain,
        secret,
        body: http.body.clone(),
        http: http.clone(),
    };
    let shown = what.clone();
    let exchange = async move {
        match tokio::time::timeout(timeout, request.exchange()).await {
            Ok(reply) => reply,
            Err(_) => fail(
                "RequestFailed",
                format!(
                    "{shown}: no complete answer within {}s (the step's timeout, at most {}s)",
                    timeout.as_secs(),
                    outbound::MAX_TIMEOUT.as_secs()
                ),
                true,
            ),
        }
    };
    let progress = pool.start(key, owner(exec), exchange);
    Ok(pending(exec, entry, progress, &what))
}

/// One http step's request, owned by its task in the pool.
struct Request {
    client: reqwest::Client,
    policy: std::sync::Arc<fence::EgressPolicy>,
    url: reqwest::Url,
    method: reqwest::Method,
    plain: reqwest::header::HeaderMap,
    secret: reqwest::header::HeaderMap,
    body: Option<String>,
    http: crate::step::HttpAction,
}

impl Request {
    /// Sends the request, follows redirects the step allows (each through the fence), reads
    /// at most [`fence::BODY_LIMIT`] bytes of the answer and judges it.
    async fn exchange(self) -> Reply {
        let Request {
            client,
            policy,
            mut url,
            mut method,
            plain,
            secret,
            mut body,
            http,
        } = self;
        let first = url.clone();
        let mut hop = 0;
        let response = loop {
            if let Err(refused) = fence::check_url(&url, &policy).await {
                return egress_refused(&url, &refused);
            }
            let mut request = client
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
            let response = match request.send().await {
                Ok(r) => r,
                Err(err) => {
                    if let Some(refused) = fence::refused_in(&err) {
                        return egress_refused(&url, refused);
                    }
                    return fail(
                        "RequestFailed",
                        format!("{method} {}: {}", http.url, describe(err)),
                        true,
                    );
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
                return fail(
                    "RedirectRefused",
                    format!(
                        "{} redirected to {}, another host (or from https to http): http steps follow redirects to the same host only; call {} directly",
                        first.host_str().unwrap_or_default(),
                        without_query(&next),
                        without_query(&next),
                    ),
                    false,
                );
            }
            hop += 1;
            if hop > fence::MAX_REDIRECTS {
                return fail(
                    "TooManyRedirects",
                    format!(
                        "{} redirected more than {} times",
                        http.url,
                        fence::MAX_REDIRECTS
                    ),
                    false,
                );
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
        let mut outputs = vec![
            ("httpStatus".to_owned(), status.to_string()),
            ("body".to_owned(), excerpt(&body)),
        ];
        let mut cut = "";
        if truncated {
            outputs.push((
                "bodyTruncated".into(),
                format!("read the first {} bytes only", fence::BODY_LIMIT),
            ));
            cut = " (body longer than 64 KiB: read the first 64 KiB only)";
        }
        let mut verdict = judge(&http, &method, status, redirect, &body, cut);
        if matches!(verdict, Verdict::Succeeded(_)) && !http.outputs.is_empty() {
            match capture(&http.outputs, &body, &format!("{method} {}", http.url), cut) {
                Ok(captured) => outputs.extend(captured),
                Err(failed) => verdict = failed,
            }
        }
        Reply { outputs, verdict }
    }
}

/// Whether the answer is the one the step expects.
fn judge(
    http: &crate::step::HttpAction,
    method: &reqwest::Method,
    status: u16,
    redirect: bool,
    body: &str,
    cut: &str,
) -> Verdict {
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
        return Verdict::Failed {
            reason: "UnexpectedStatus",
            message: format!(
                "{method} {} answered {status}, expected {accepted:?}{hint}",
                http.url
            ),
            retryable: true,
        };
    }
    if let (Some(path), Some(expected)) = (&expect.json_path, &expect.equals) {
        let actual = json_path_value(body, path);
        if actual.as_deref() != Some(expected.as_str()) {
            return Verdict::Failed {
                reason: "UnexpectedBody",
                message: format!("{path} is {actual:?}, expected {expected:?}{cut}"),
                retryable: true,
            };
        }
    }
    Verdict::Succeeded(format!("{method} {} answered {status}{cut}", http.url))
}

/// The step failure for a refused destination: never retried, since another attempt goes to
/// the same address.
fn egress_refused(url: &reqwest::Url, refused: &fence::Refused) -> Reply {
    fail(
        "EgressRefused",
        format!("refused to connect to {}: {refused}", without_query(url)),
        false,
    )
}

/// A URL without its query and fragment (they may carry a token), for messages.
fn without_query(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_password(None);
    url.to_string()
}

pub(super) use crate::outbound::{describe, read_capped};

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

/// The step's `outputs` captured from a successful answer's JSON `body` (`what` names the
/// request, `cut` says the body was read in part): each name with the value its JSONPath
/// finds (cut at [`outputs::MAX_VALUE`] bytes), or the step's failure: OutputMissing for a
/// body that is not JSON or a path that finds nothing, InvalidSpec for a name the journal
/// keeps for itself ([`outputs::RESERVED`]; a Ready Runbook has none).
pub(super) fn capture(
    wanted: &std::collections::BTreeMap<String, String>,
    body: &str,
    what: &str,
    cut: &str,
) -> Result<Vec<(String, String)>, Verdict> {
    let missing = |message: String| Verdict::Failed {
        reason: "OutputMissing",
        message,
        retryable: true,
    };
    if let Some(name) = wanted.keys().find(|name| outputs::reserved(name)) {
        return Err(Verdict::Failed {
            reason: "InvalidSpec",
            message: format!(
                "http.outputs.{name}: {name} is an output the step records itself; choose another name"
            ),
            retryable: false,
        });
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else {
        let names: Vec<&str> = wanted.keys().map(String::as_str).collect();
        return Err(missing(format!(
            "the answer of {what} is not JSON{cut}, so outputs {names:?} cannot be read from it"
        )));
    };
    let mut captured = Vec::new();
    for (name, path) in wanted {
        let Some(found) = json_path_in(&value, path) else {
            return Err(missing(format!(
                "http.outputs.{name}: {path:?} finds nothing in the answer of {what}{cut}"
            )));
        };
        captured.push((
            name.clone(),
            outputs::cut(&found, outputs::MAX_VALUE).0.to_owned(),
        ));
    }
    Ok(captured)
}

/// A value from a JSON body by a simple path: `{.status}`, `.data.items[0].name`, `status`.
pub fn json_path_value(body: &str, path: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    json_path_in(&value, path)
}

/// [`json_path_value`] on a parsed body.
fn json_path_in(value: &serde_json::Value, path: &str) -> Option<String> {
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    let mut current = value;
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

/// Sends the notification (at most once: an unknown delivery is reported, never resent), in
/// the outbound pool, through [`crate::notify`]. The run's key `<namespace>/<run name>` is the
/// notification's dedup key, so a PagerDuty trigger and a resolve in `finally` match.
pub(super) async fn notify(
    exec: &Exec<'_>,
    notify: &crate::notify::NotifyAction,
    entry: &mut StepStatus,
    (index, fresh_intent): (usize, bool),
) -> Result<Act, Error> {
    entry.target = Some(crate::notify::target(&notify.sink));
    if exec.plan() {
        return Ok(Act::Skipped(format!(
            "Plan: would notify {}",
            crate::notify::target(&notify.sink)
        )));
    }
    let pool = &exec.writer.ctx().outbound;
    let key = key(exec, index, entry);
    let recorded = entry.outputs.get("sent") == Some(&sent_marker(entry));
    let what = "the notification";
    match next_move(recorded, pool.progress(&key), fresh_intent) {
        Move::Record => {
            entry.outputs.insert("sent".into(), sent_marker(entry));
            return Ok(Act::Record);
        }
        // At most once: a message whose delivery is unknown is not sent again.
        Move::Interrupted => {
            return Ok(Act::Failed {
                reason: "DeliveryUnknown",
                message:
                    "the operator restarted while sending; not resent, to avoid a duplicate message"
                        .into(),
                retryable: false,
            });
        }
        Move::Collect(reply) => return Ok(collect(entry, reply)),
        Move::Wait(progress) => return Ok(pending(exec, entry, progress, what)),
        Move::Send => {}
    }
    let courier = crate::notify::Courier::with_http(&exec.writer, exec.http);
    let send = courier.send(
        exec.namespace.to_owned(),
        notify.sink.clone(),
        notify.message.clone(),
        format!("{}/{}", exec.namespace, exec.run_name),
    );
    let progress = pool.start(key, owner(exec), send);
    Ok(pending(exec, entry, progress, what))
}
