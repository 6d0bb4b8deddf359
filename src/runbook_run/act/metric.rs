//! query and waitFor steps: measuring PromQL expressions against Prometheus.
//!
//! Each call records at most one measurement in the journal entry ([`Tally`]) and returns a
//! timed wait for the next one: no loop waits inside a reconcile. The request itself runs in
//! the outbound pool ([`crate::outbound`]) like an http step's, keyed by the measurement's
//! number, so a slow Prometheus holds no reconcile. A measurement whose answer was not
//! recorded (the operator restarted) is simply taken again: a query is a read.

use std::time::Duration;

use serde_json::{Value, json};

use super::secret::secret_value;
use super::{Act, Error, Exec, failed};
use crate::expr::Expression;
use crate::outbound::{self, Key, Owner, Progress, Reply, Verdict};
use crate::prometheus;
use crate::runbook_run::decide::metric::{self as decide, Measurement, Next, Phase, Tally};
use crate::runbook_run::types::StepStatus;
use crate::secret_ref::HttpHeader;
use crate::step::{QueryAction, Step, WaitForAction};

/// Longest one query may take unless the step's `timeout` is shorter.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a step whose query is pending is looked at without a wake-up from the pool.
const PENDING_RECHECK: Duration = Duration::from_secs(30);

/// What a query or waitFor step measures.
struct Source<'a> {
    address: &'a str,
    headers: &'a [HttpHeader],
    promql: &'a str,
}

fn invalid(message: impl Into<String>) -> Act {
    Act::Failed {
        reason: "InvalidSpec",
        message: message.into(),
        retryable: false,
    }
}

/// Compiles a step's CEL field; the error names the field.
fn compile(text: &str, field: &str) -> Result<Expression, Act> {
    Expression::compile(text).map_err(|err| invalid(format!("{field}: {err}")))
}

/// One call of a query step: take the measurement that is due, judge it, record it.
pub async fn query(
    exec: &Exec<'_>,
    step: &Step,
    query: &QueryAction,
    entry: &mut StepStatus,
    index: usize,
) -> Result<Act, Error> {
    entry.target = Some(format!("Prometheus {}", query.address));
    let limits = match decide::Limits::of(query) {
        Ok(limits) => limits,
        Err(message) => return Ok(invalid(message)),
    };
    let condition = |text: &Option<String>, field| text.as_deref().map(|t| compile(t, field));
    let success = match condition(&query.success_condition, "query.successCondition").transpose() {
        Ok(e) => e,
        Err(act) => return Ok(act),
    };
    let failure = match condition(&query.failure_condition, "query.failureCondition").transpose() {
        Ok(e) => e,
        Err(act) => return Ok(act),
    };
    let mut tally = Tally::read(&entry.outputs, entry.attempts);
    if !exec.plan() || tally.last().is_some() {
        match decide::query_next(&tally, &limits, exec.now) {
            Next::Measure if !exec.plan() => {}
            Next::WaitUntil(at) if !exec.plan() => return Ok(wait(exec, &tally, at, "")),
            next => return Ok(query_end(exec, next, &tally, &limits, &success, &failure)),
        }
    }
    let source = Source {
        address: &query.address,
        headers: &query.headers,
        promql: &query.promql,
    };
    let value = match measure(exec, step, &source, entry, index, &tally).await? {
        Measured::Stop(act) => return Ok(act),
        Measured::Value(value) => value,
    };
    let evaluate = |expression: &Option<Expression>, value: &Value| {
        expression
            .as_ref()
            .map(|e| e.evaluate_bool(&json!({ "result": value })))
            .transpose()
    };
    let measurement = match value {
        Ok(value) => match (evaluate(&success, &value), evaluate(&failure, &value)) {
            (Ok(s), Ok(f)) => measured(exec, Some(&value), decide::judge(s, f), None),
            (Err(err), _) | (_, Err(err)) => {
                measured(exec, Some(&value), Phase::Error, Some(err.to_string()))
            }
        },
        Err(message) => measured(exec, None, Phase::Error, Some(message)),
    };
    record(exec, entry, &mut tally, measurement);
    let next = decide::query_next(&tally, &limits, exec.now);
    Ok(query_end(exec, next, &tally, &limits, &success, &failure))
}

/// The step's answer after a measurement was recorded (or found recorded).
fn query_end(
    exec: &Exec<'_>,
    next: Next,
    tally: &Tally,
    limits: &decide::Limits,
    success: &Option<Expression>,
    failure: &Option<Expression>,
) -> Act {
    if exec.plan() {
        let run = format!(
            "a run takes {} measurements, {}s apart",
            limits.count,
            limits.interval.as_secs()
        );
        let Some(Measurement {
            value: Some(value), ..
        }) = tally.last()
        else {
            let error = tally
                .last()
                .and_then(|m| m.message.clone())
                .unwrap_or_default();
            return Act::Skipped(format!("Plan: the query failed: {error} ({run})"));
        };
        let value_json: Value = serde_json::from_str(value).unwrap_or(Value::Null);
        let would = |name: &str, e: &Option<Expression>| {
            e.as_ref().map(
                |e| match e.evaluate_bool(&json!({ "result": value_json })) {
                    Ok(b) => format!(", {name} would be {b}"),
                    Err(err) => format!(", {name} cannot be evaluated: {err}"),
                },
            )
        };
        let conditions = [
            would("successCondition", success),
            would("failureCondition", failure),
        ]
        .into_iter()
        .flatten()
        .collect::<String>();
        return Act::Skipped(format!("Plan: result={value}{conditions} ({run})"));
    }
    match next {
        Next::Succeed(message) => Act::Succeeded(message),
        Next::Fail { reason, message } => failed(reason, message),
        Next::WaitUntil(at) => wait(exec, tally, at, ""),
        // The interval is at least a second, so a measurement just taken is never due again
        // at once; look again shortly if the clock says otherwise.
        Next::Measure => Act::Wait {
            message: tally.summary(),
            recheck: Some(decide::MIN_INTERVAL),
            approval: false,
        },
    }
}

/// One call of a waitFor step: poll, and succeed once `until` holds.
pub async fn wait_for(
    exec: &Exec<'_>,
    step: &Step,
    wait_for: &WaitForAction,
    entry: &mut StepStatus,
    index: usize,
) -> Result<Act, Error> {
    entry.target = Some(format!("Prometheus {}", wait_for.address));
    let limits = match decide::wait_limits(wait_for) {
        Ok(limits) => limits,
        Err(message) => return Ok(invalid(message)),
    };
    let until = match compile(&wait_for.until, "waitFor.until") {
        Ok(e) => e,
        Err(act) => return Ok(act),
    };
    let started = entry.attempt_start().unwrap_or(exec.now);
    let mut tally = Tally::read(&entry.outputs, entry.attempts);
    let waiting = format!("waiting until {}", wait_for.until);
    if !exec.plan() || tally.last().is_some() {
        match decide::wait_next(&tally, limits, started, exec.now) {
            Next::Measure if !exec.plan() => {}
            Next::WaitUntil(at) if !exec.plan() => return Ok(wait(exec, &tally, at, &waiting)),
            next => return Ok(wait_end(exec, next, &tally, wait_for, limits, &waiting)),
        }
    }
    let source = Source {
        address: &wait_for.address,
        headers: &wait_for.headers,
        promql: &wait_for.promql,
    };
    let value = match measure(exec, step, &source, entry, index, &tally).await? {
        Measured::Stop(act) => return Ok(act),
        Measured::Value(value) => value,
    };
    let measurement = match value {
        Ok(value) => match until.evaluate_bool(&json!({ "result": value })) {
            Ok(true) => measured(exec, Some(&value), Phase::Successful, None),
            Ok(false) => measured(exec, Some(&value), Phase::Failed, None),
            Err(err) => measured(exec, Some(&value), Phase::Error, Some(err.to_string())),
        },
        Err(message) => measured(exec, None, Phase::Error, Some(message)),
    };
    record(exec, entry, &mut tally, measurement);
    let next = decide::wait_next(&tally, limits, started, exec.now);
    Ok(wait_end(exec, next, &tally, wait_for, limits, &waiting))
}

fn wait_end(
    exec: &Exec<'_>,
    next: Next,
    tally: &Tally,
    wait_for: &WaitForAction,
    (interval, timeout): (Duration, Duration),
    waiting: &str,
) -> Act {
    if exec.plan() {
        let run = format!(
            "a run polls every {}s for at most {}s",
            interval.as_secs(),
            timeout.as_secs()
        );
        return Act::Skipped(match tally.last() {
            Some(Measurement {
                value: Some(value),
                phase,
                ..
            }) if *phase != Phase::Error => format!(
                "Plan: result={value}, until ({}) would be {} ({run})",
                wait_for.until,
                *phase == Phase::Successful
            ),
            last => format!(
                "Plan: the poll failed: {} ({run})",
                last.and_then(|m| m.message.clone()).unwrap_or_default()
            ),
        });
    }
    match next {
        Next::Succeed(message) => Act::Succeeded(message),
        Next::Fail { reason, message } => failed(reason, message),
        Next::WaitUntil(at) => wait(exec, tally, at, waiting),
        Next::Measure => Act::Wait {
            message: waiting.to_owned(),
            recheck: Some(decide::MIN_INTERVAL),
            approval: false,
        },
    }
}

/// A timed wait for the next measurement, its message showing the last one.
fn wait(exec: &Exec<'_>, tally: &Tally, at: jiff::Timestamp, waiting: &str) -> Act {
    let last = match tally.last() {
        Some(Measurement {
            value: Some(value),
            phase,
            message,
            ..
        }) => match (phase, message) {
            (Phase::Error, Some(message)) => format!("result={value}, not judged: {message}"),
            _ => format!("result={value}"),
        },
        Some(Measurement {
            message: Some(message),
            ..
        }) => format!("the last query failed: {message}"),
        _ => String::new(),
    };
    let message = if waiting.is_empty() {
        format!("{}; next measurement at {at}", tally.summary())
    } else {
        format!(
            "{waiting}: {last} (poll {}); next poll at {at}",
            tally.taken()
        )
    };
    Act::Wait {
        message,
        recheck: Some(crate::time::until(exec.now, at)),
        approval: false,
    }
}

fn measured(
    exec: &Exec<'_>,
    value: Option<&Value>,
    phase: Phase,
    message: Option<String>,
) -> Measurement {
    Measurement {
        time: exec.now,
        value: value.map(prometheus::text),
        phase,
        message: message.map(|m| crate::names::truncate(&m, 512).into_owned()),
    }
}

/// Records `measurement` in the journal entry (written before the next one is decided) and
/// counts it.
fn record(exec: &Exec<'_>, entry: &mut StepStatus, tally: &mut Tally, measurement: Measurement) {
    exec.writer
        .ctx()
        .metrics
        .count_metric_measurement(measurement.phase.as_str());
    tally.add(measurement);
    tally.write(&mut entry.outputs, entry.attempts);
}

/// The outcome of asking the pool for the measurement that is due.
enum Measured {
    /// Not measured now: a wait for the answer, or a failure of the step.
    Stop(Act),
    /// The value, or why there is none (an Error measurement).
    Value(Result<Value, String>),
}

/// The pool's key of measurement `number` of the entry's current attempt. Negative, so it
/// never meets the key of an http step's attempt.
fn key(exec: &Exec<'_>, index: usize, attempts: i32, number: u32) -> Key {
    let code = i64::from(attempts.max(0)) * 1_000_000 + i64::from(number % 1_000_000);
    Key {
        run: exec.run_uid.to_owned(),
        step: index,
        attempt: -i32::try_from(code % i64::from(i32::MAX)).unwrap_or(1),
    }
}

async fn measure(
    exec: &Exec<'_>,
    step: &Step,
    source: &Source<'_>,
    entry: &StepStatus,
    index: usize,
    tally: &Tally,
) -> Result<Measured, Error> {
    let pool = &exec.writer.ctx().outbound;
    let key = key(exec, index, entry.attempts, tally.taken().saturating_add(1));
    let shown = format!("the query to {}", source.address);
    // While the answer is pending the step keeps its message (the last measurement).
    let pending = |progress: Progress| Act::Wait {
        message: entry
            .message
            .clone()
            .or_else(|| progress.waiting_message(exec.namespace, &shown))
            .unwrap_or_default(),
        recheck: Some(PENDING_RECHECK),
        approval: false,
    };
    match pool.progress(&key) {
        Some(Progress::Done(reply)) => {
            // Forgotten now: the measurement is recorded by this reconcile's write, or, if
            // that write fails, taken again (no answer is counted twice).
            pool.forget(&key);
            return Ok(Measured::Value(value_of(reply)));
        }
        Some(progress) => return Ok(Measured::Stop(pending(progress))),
        None => {}
    }
    let url = match prometheus::query_url(source.address, source.promql, exec.namespace) {
        Ok(url) => url,
        Err(err) => return Ok(Measured::Stop(invalid(err.to_string()))),
    };
    let mut headers = reqwest::header::HeaderMap::new();
    for header in source.headers {
        let value = match (&header.value, &header.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => match secret_value(exec, &from.secret_key_ref).await? {
                Ok(v) => v,
                Err(act) => return Ok(Measured::Stop(act)),
            },
            (None, None) => String::new(),
        };
        let name = reqwest::header::HeaderName::from_bytes(header.name.as_bytes());
        let value = reqwest::header::HeaderValue::from_str(&value);
        let (Ok(name), Ok(value)) = (name, value) else {
            return Ok(Measured::Stop(invalid(format!(
                "header {:?} has a name or value that cannot be sent in HTTP",
                header.name
            ))));
        };
        headers.append(name, value);
    }
    let timeout = outbound::capped_timeout(
        step.timeout
            .as_ref()
            .and_then(|t| t.parse().ok())
            .map_or(QUERY_TIMEOUT, |t: Duration| t.min(QUERY_TIMEOUT)),
    );
    let query = prometheus::Query {
        client: exec.http.clone(),
        policy: exec.writer.ctx().config.fence.egress.clone(),
        url,
        headers,
        timeout,
    };
    let owner = Owner {
        namespace: exec.namespace.to_owned(),
        name: exec.run_name.to_owned(),
    };
    let progress = pool.start(key.clone(), owner, async move {
        match query.run().await {
            Ok(value) => Reply {
                outputs: vec![("value".into(), value.to_string())],
                verdict: Verdict::Succeeded(String::new()),
            },
            Err(err) => Reply {
                outputs: Vec::new(),
                verdict: Verdict::Failed {
                    reason: "MetricError",
                    message: err.to_string(),
                    retryable: true,
                },
            },
        }
    });
    Ok(match progress {
        Progress::Done(reply) => {
            pool.forget(&key);
            Measured::Value(value_of(reply))
        }
        progress => Measured::Stop(pending(progress)),
    })
}

/// The measured value a settled request left, or its error.
fn value_of(reply: Reply) -> Result<Value, String> {
    match reply.verdict {
        Verdict::Failed { message, .. } => Err(message),
        Verdict::Succeeded(_) => reply
            .outputs
            .into_iter()
            .find(|(name, _)| name == "value")
            .and_then(|(_, value)| serde_json::from_str(&value).ok())
            .ok_or_else(|| "the query's answer was lost".to_owned()),
    }
}
