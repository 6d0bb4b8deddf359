//! A small client of Prometheus' HTTP API (`GET /api/v1/query`) for the query and waitFor
//! steps: fenced like the http step ([`crate::fence`]: refused destinations, the answer read
//! up to [`crate::fence::BODY_LIMIT`], no redirects), and the answer turned into the value CEL
//! sees as `result`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::fence;

/// Why a query gave no usable value (an Error measurement).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The address is not a URL.
    #[error("address {address:?} is not a URL: {message}")]
    Address {
        /// The address as given.
        address: String,
        /// What the URL parser said.
        message: String,
    },
    /// The fence refused the destination.
    #[error("refused to connect to {url}: {message}")]
    Refused {
        /// The URL without query.
        url: String,
        /// Which rule refused it, and what to do.
        message: String,
    },
    /// The request failed (connection, timeout).
    #[error("querying {url}: {message}")]
    Request {
        /// The URL without query.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// Prometheus answered with an error or an answer that is not a query result.
    #[error("Prometheus at {url} answered {message}")]
    Answer {
        /// The URL without query.
        url: String,
        /// What it answered.
        message: String,
    },
    /// The result cannot be compared: a matrix or string, NaN or infinite.
    #[error("{0}")]
    Value(String),
}

impl crate::errors::MetricLabel for QueryError {
    fn metric_label(&self) -> &'static str {
        match self {
            QueryError::Address { .. } => "address",
            QueryError::Refused { .. } => "egress_refused",
            QueryError::Request { .. } => "request",
            QueryError::Answer { .. } => "answer",
            QueryError::Value(_) => "value",
        }
    }
}

/// One query to send.
pub struct Query {
    /// The fenced client.
    pub client: reqwest::Client,
    /// The egress policy, checked before connecting.
    pub policy: Arc<fence::EgressPolicy>,
    /// `<address>/api/v1/query?query=<promql>`, qualified for the run's namespace.
    pub url: reqwest::Url,
    /// Headers to send (from the step, Secret values included).
    pub headers: reqwest::header::HeaderMap,
    /// Longest the whole exchange may take.
    pub timeout: Duration,
}

/// The query URL for `address` and `promql`, a host without a dot read as a Service in
/// `namespace`.
pub fn query_url(address: &str, promql: &str, namespace: &str) -> Result<reqwest::Url, QueryError> {
    let base = format!("{}/api/v1/query", address.trim_end_matches('/'));
    let mut url = reqwest::Url::parse(&base).map_err(|err| QueryError::Address {
        address: address.to_owned(),
        message: err.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(QueryError::Address {
            address: address.to_owned(),
            message: "the scheme must be http or https".into(),
        });
    }
    url.query_pairs_mut().append_pair("query", promql);
    fence::qualify(&mut url, namespace);
    Ok(url)
}

/// A URL without its query, fragment and password, for messages.
fn shown(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_password(None);
    url.to_string()
}

impl Query {
    /// Sends the query and returns the value for CEL.
    pub async fn run(self) -> Result<Value, QueryError> {
        let url = shown(&self.url);
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.exchange()).await {
            Ok(result) => result,
            Err(_) => Err(QueryError::Request {
                url,
                message: format!("no complete answer within {}s", timeout.as_secs()),
            }),
        }
    }

    async fn exchange(self) -> Result<Value, QueryError> {
        let url = shown(&self.url);
        if let Err(refused) = fence::check_url(&self.url, &self.policy).await {
            return Err(QueryError::Refused {
                url,
                message: refused.to_string(),
            });
        }
        let response = self
            .client
            .get(self.url.clone())
            .headers(self.headers)
            .send()
            .await
            .map_err(|err| match fence::refused_in(&err) {
                Some(refused) => QueryError::Refused {
                    url: url.clone(),
                    message: refused.to_string(),
                },
                None => QueryError::Request {
                    url: url.clone(),
                    message: crate::outbound::describe(err),
                },
            })?;
        let status = response.status().as_u16();
        let (body, truncated) = crate::outbound::read_capped(response, fence::BODY_LIMIT).await;
        if truncated {
            return Err(QueryError::Answer {
                url,
                message: format!(
                    "more than {} KiB: aggregate the query to fewer series (e.g. sum or max)",
                    fence::BODY_LIMIT / 1024
                ),
            });
        }
        parse(status, &body).map_err(|message| match message {
            Parsed::Answer(message) => QueryError::Answer { url, message },
            Parsed::Value(message) => QueryError::Value(message),
        })
    }
}

/// Why an answer could not be read.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// The answer is an error or not a query result.
    Answer(String),
    /// The result has no comparable value.
    Value(String),
}

/// The value of a `/api/v1/query` answer: a scalar, or a vector of one sample, is a number;
/// a vector of several samples a list of numbers; an empty vector an empty list. A matrix or
/// string result, NaN or an infinity is an error.
pub fn parse(status: u16, body: &str) -> Result<Value, Parsed> {
    let answer: Value = serde_json::from_str(body).map_err(|_| {
        Parsed::Answer(format!(
            "{status} with a body that is not JSON: {}",
            crate::names::truncate(body.trim(), 200)
        ))
    })?;
    if answer.get("status").and_then(Value::as_str) != Some("success") {
        let error = answer
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no error message");
        return Err(Parsed::Answer(format!(
            "{status}: {}",
            crate::names::truncate(error, 512)
        )));
    }
    let data = answer.get("data");
    let kind = data
        .and_then(|d| d.get("resultType"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let result = data.and_then(|d| d.get("result"));
    match (kind, result) {
        ("scalar", Some(sample)) => number(sample).map(Value::from),
        ("vector", Some(Value::Array(samples))) => {
            let mut values = samples
                .iter()
                .map(|s| number(s.get("value").unwrap_or(&Value::Null)))
                .collect::<Result<Vec<f64>, Parsed>>()?;
            if values.len() == 1 {
                return Ok(Value::from(values.remove(0)));
            }
            Ok(Value::from(values))
        }
        ("matrix" | "string", _) => Err(Parsed::Value(format!(
            "the query gives a {kind}, not a number: use an instant vector or scalar (e.g. rate(x[5m]), not x[5m])"
        ))),
        _ => Err(Parsed::Answer(format!(
            "{status} with no query result (resultType {kind:?})"
        ))),
    }
}

/// The number of a sample `[time, "value"]`.
fn number(sample: &Value) -> Result<f64, Parsed> {
    let text = sample
        .get(1)
        .and_then(Value::as_str)
        .ok_or_else(|| Parsed::Answer(format!("a sample that is not [time, value]: {sample}")))?;
    let value: f64 = text
        .parse()
        .map_err(|_| Parsed::Answer(format!("a sample value {text:?} that is not a number")))?;
    if !value.is_finite() {
        return Err(Parsed::Value(format!(
            "the query's value is {text} (e.g. a ratio divided by zero traffic): guard it, e.g. with `or vector(0)` or a `> 0` filter on the divisor"
        )));
    }
    Ok(value)
}

/// A value as text for the journal: `0.05`, `1500`, `[0.1,0.2]`.
pub fn text(value: &Value) -> String {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) => f.to_string(),
            None => n.to_string(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_and_single_sample_vector_are_numbers() {
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"0.25"]}}"#;
        assert_eq!(parse(200, scalar), Ok(Value::from(0.25)));
        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.5,"1500"]}]}}"#;
        assert_eq!(parse(200, vector), Ok(Value::from(1500.0)));
        assert_eq!(text(&parse(200, vector).unwrap()), "1500");
    }

    #[test]
    fn several_samples_are_a_list_and_none_an_empty_list() {
        let two = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2.5"]}]}}"#;
        assert_eq!(parse(200, two), Ok(serde_json::json!([1.0, 2.5])));
        let none = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse(200, none), Ok(serde_json::json!([])));
    }

    #[test]
    fn nan_infinity_matrix_and_errors_are_errors() {
        for value in ["NaN", "+Inf", "-Inf"] {
            let body = format!(
                r#"{{"status":"success","data":{{"resultType":"scalar","result":[1,"{value}"]}}}}"#
            );
            let Err(Parsed::Value(message)) = parse(200, &body) else {
                panic!("{value} must be an error");
            };
            assert!(message.contains(value), "{message}");
        }
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(matches!(parse(200, matrix), Err(Parsed::Value(m)) if m.contains("matrix")));
        let bad = r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        assert_eq!(
            parse(400, bad),
            Err(Parsed::Answer("400: parse error at char 3".into()))
        );
        assert!(matches!(parse(502, "<html>"), Err(Parsed::Answer(m)) if m.contains("502")));
    }

    #[test]
    fn the_url_carries_the_query_and_qualifies_a_service() {
        let url = query_url("http://prometheus:9090/", "sum(x{a=\"b\"})", "shop").unwrap();
        assert_eq!(url.host_str(), Some("prometheus.shop.svc"));
        assert_eq!(url.path(), "/api/v1/query");
        assert_eq!(
            url.query_pairs()
                .next()
                .map(|(k, v)| (k.into_owned(), v.into_owned())),
            Some(("query".into(), "sum(x{a=\"b\"})".into()))
        );
        assert!(query_url("ftp://x", "up", "shop").is_err());
        assert!(query_url("not a url", "up", "shop").is_err());
    }
}
