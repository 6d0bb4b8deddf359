//! Measurement accounting of the query and waitFor steps. Pure: the journal entry's outputs
//! are the state (what was measured, when, and the counters), the clock is an argument.
//!
//! A measurement is recorded in the journal before the next one is decided, so a restarted
//! operator continues from the recorded counters: a measurement whose answer was not recorded
//! is taken again (a query is a read), one that was recorded is never counted twice.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::step::{QueryAction, WaitForAction};

#[cfg(test)]
mod tests;

/// Measurements kept in `outputs.measurements` (the newest).
pub const KEPT: usize = 10;
/// Default time between measurements.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// Shortest time between measurements.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Default longest wait of a waitFor step.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Default `consecutiveErrorLimit` (as Argo Rollouts).
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: u32 = 4;

/// How one measurement was judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// The success condition held (or the failure condition did not).
    Successful,
    /// The failure condition held (or the success condition did not).
    Failed,
    /// Both conditions are given and neither held.
    Inconclusive,
    /// The query or the evaluation failed.
    Error,
}

impl Phase {
    /// The phase as written in the journal and as the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Successful => "Successful",
            Phase::Failed => "Failed",
            Phase::Inconclusive => "Inconclusive",
            Phase::Error => "Error",
        }
    }
}

/// One measurement as recorded in `outputs.measurements`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// When the answer was recorded.
    pub time: Timestamp,
    /// The result as text (a number, a JSON list of numbers), absent for an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// How it was judged.
    pub phase: Phase,
    /// What went wrong, for an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The measurements of the current attempt, read from and written to the journal entry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    /// Successful measurements.
    pub successful: u32,
    /// Failed measurements.
    pub failed: u32,
    /// Inconclusive measurements.
    pub inconclusive: u32,
    /// Error measurements.
    pub errors: u32,
    /// Errors since the last measurement that was not one.
    pub consecutive_errors: u32,
    /// The newest [`KEPT`] measurements, oldest first.
    pub measurements: Vec<Measurement>,
}

const KEY_ATTEMPT: &str = "measuredAttempt";
const KEY_MEASUREMENTS: &str = "measurements";
const KEY_RESULT: &str = "result";
const COUNTERS: [&str; 5] = [
    "successful",
    "failed",
    "inconclusive",
    "errors",
    "consecutiveErrors",
];

impl Tally {
    /// The tally recorded in `outputs` for `attempt`; an empty one when the outputs hold an
    /// earlier attempt's measurements (a retry measures afresh) or none.
    pub fn read(outputs: &BTreeMap<String, String>, attempt: i32) -> Tally {
        if outputs.get(KEY_ATTEMPT) != Some(&attempt.to_string()) {
            return Tally::default();
        }
        let count = |key: &str| {
            outputs
                .get(key)
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        };
        Tally {
            successful: count(COUNTERS[0]),
            failed: count(COUNTERS[1]),
            inconclusive: count(COUNTERS[2]),
            errors: count(COUNTERS[3]),
            consecutive_errors: count(COUNTERS[4]),
            measurements: outputs
                .get(KEY_MEASUREMENTS)
                .and_then(|m| serde_json::from_str(m).ok())
                .unwrap_or_default(),
        }
    }

    /// Writes the tally into `outputs` (for `attempt`).
    pub fn write(&self, outputs: &mut BTreeMap<String, String>, attempt: i32) {
        outputs.insert(KEY_ATTEMPT.into(), attempt.to_string());
        let values = [
            self.successful,
            self.failed,
            self.inconclusive,
            self.errors,
            self.consecutive_errors,
        ];
        for (key, value) in COUNTERS.iter().zip(values) {
            outputs.insert((*key).into(), value.to_string());
        }
        outputs.insert(
            KEY_MEASUREMENTS.into(),
            serde_json::to_string(&self.measurements).unwrap_or_default(),
        );
        match self.last().and_then(|m| m.value.clone()) {
            Some(value) => outputs.insert(KEY_RESULT.into(), value),
            None => outputs.remove(KEY_RESULT),
        };
    }

    /// Every measurement taken in this attempt, errors included.
    pub fn taken(&self) -> u32 {
        self.successful
            .saturating_add(self.failed)
            .saturating_add(self.inconclusive)
            .saturating_add(self.errors)
    }

    /// Measurements that count toward `count`: errors do not.
    pub fn judged(&self) -> u32 {
        self.successful
            .saturating_add(self.failed)
            .saturating_add(self.inconclusive)
    }

    /// The newest measurement.
    pub fn last(&self) -> Option<&Measurement> {
        self.measurements.last()
    }

    /// Counts `measurement` and keeps it among the newest.
    pub fn add(&mut self, measurement: Measurement) {
        let counter = match measurement.phase {
            Phase::Successful => &mut self.successful,
            Phase::Failed => &mut self.failed,
            Phase::Inconclusive => &mut self.inconclusive,
            Phase::Error => &mut self.errors,
        };
        *counter = counter.saturating_add(1);
        self.consecutive_errors = match measurement.phase {
            Phase::Error => self.consecutive_errors.saturating_add(1),
            _ => 0,
        };
        self.measurements.push(measurement);
        let extra = self.measurements.len().saturating_sub(KEPT);
        self.measurements.drain(..extra);
    }

    /// The counts and the last value, for messages: `3 measurements (2 successful, 1 failed,
    /// 0 inconclusive, 0 errors); last value 0.2`.
    pub fn summary(&self) -> String {
        let last = match self.last() {
            Some(Measurement {
                value: Some(value), ..
            }) => format!("; last value {value}"),
            Some(Measurement {
                message: Some(message),
                ..
            }) => format!("; last error: {message}"),
            _ => String::new(),
        };
        format!(
            "{} measurements ({} successful, {} failed, {} inconclusive, {} errors){last}",
            self.taken(),
            self.successful,
            self.failed,
            self.inconclusive,
            self.errors
        )
    }
}

/// A query step's limits, defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Measurements to take (errors do not count).
    pub count: u32,
    /// Failed measurements tolerated.
    pub failure_limit: u32,
    /// Inconclusive measurements tolerated.
    pub inconclusive_limit: u32,
    /// Errors in a row tolerated.
    pub consecutive_error_limit: u32,
    /// Time between measurements.
    pub interval: Duration,
}

fn non_negative(value: Option<i32>, default: u32) -> u32 {
    value.map_or(default, |v| u32::try_from(v).unwrap_or(0))
}

/// `interval` parsed, at least [`MIN_INTERVAL`]; an error names the field.
pub fn interval(text: Option<&crate::duration::Duration>, field: &str) -> Result<Duration, String> {
    match text {
        None => Ok(DEFAULT_INTERVAL),
        Some(text) => text
            .parse()
            .map(|d: Duration| d.max(MIN_INTERVAL))
            .map_err(|err| format!("{field} {text:?} is not a duration: {err}")),
    }
}

impl Limits {
    /// The limits of `query`; an error names the field that cannot be read.
    pub fn of(query: &QueryAction) -> Result<Limits, String> {
        Ok(Limits {
            count: non_negative(query.count, 1).max(1),
            failure_limit: non_negative(query.failure_limit, 0),
            inconclusive_limit: non_negative(query.inconclusive_limit, 0),
            consecutive_error_limit: non_negative(
                query.consecutive_error_limit,
                DEFAULT_CONSECUTIVE_ERROR_LIMIT,
            ),
            interval: interval(query.interval.as_ref(), "query.interval")?,
        })
    }
}

/// What a metric step does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Take the next measurement now.
    Measure,
    /// The next measurement is due at this time.
    WaitUntil(Timestamp),
    /// The step succeeded, with this message.
    Succeed(String),
    /// The step failed.
    Fail {
        /// `MetricFailed`, `MetricInconclusive`, `MetricError` or `TimedOut`.
        reason: &'static str,
        /// The counts and the last value.
        message: String,
    },
}

/// When the measurement after the newest one is due (now, for the first).
fn due(tally: &Tally, interval: Duration) -> Option<Timestamp> {
    tally.last().map(|m| crate::time::add_std(m.time, interval))
}

/// The next move of a query step, with Argo Rollouts' semantics: it fails as soon as more
/// than `failureLimit` measurements failed, more than `inconclusiveLimit` were inconclusive
/// or more than `consecutiveErrorLimit` errors came in a row; it succeeds once `count`
/// measurements were judged; otherwise the next measurement is due `interval` after the last.
pub fn query_next(tally: &Tally, limits: &Limits, now: Timestamp) -> Next {
    let summary = tally.summary();
    if tally.failed > limits.failure_limit {
        return Next::Fail {
            reason: "MetricFailed",
            message: format!(
                "{} failed measurements, more than failureLimit {}: {summary}",
                tally.failed, limits.failure_limit
            ),
        };
    }
    if tally.inconclusive > limits.inconclusive_limit {
        return Next::Fail {
            reason: "MetricInconclusive",
            message: format!(
                "{} inconclusive measurements, more than inconclusiveLimit {}: {summary}",
                tally.inconclusive, limits.inconclusive_limit
            ),
        };
    }
    if tally.consecutive_errors > limits.consecutive_error_limit {
        return Next::Fail {
            reason: "MetricError",
            message: format!(
                "{} errors in a row, more than consecutiveErrorLimit {}: {summary}",
                tally.consecutive_errors, limits.consecutive_error_limit
            ),
        };
    }
    if tally.judged() >= limits.count {
        return Next::Succeed(summary);
    }
    match due(tally, limits.interval) {
        Some(at) if at > now => Next::WaitUntil(at),
        _ => Next::Measure,
    }
}

/// A waitFor step's interval and timeout, defaults applied.
pub fn wait_limits(wait: &WaitForAction) -> Result<(Duration, Duration), String> {
    let interval = interval(wait.interval.as_ref(), "waitFor.interval")?;
    let timeout = match &wait.timeout {
        None => DEFAULT_TIMEOUT,
        Some(text) => text
            .parse()
            .map_err(|err| format!("waitFor.timeout {text:?} is not a duration: {err}"))?,
    };
    Ok((interval, timeout))
}

/// The next move of a waitFor step that started its attempt at `started`: it succeeds once a
/// poll found `until` true (recorded as Successful), fails with reason `TimedOut` once
/// `timeout` passed, and otherwise polls every `interval` (the last poll before the timeout
/// is due at the timeout at the latest). Errors count as not yet.
pub fn wait_next(
    tally: &Tally,
    (interval, timeout): (Duration, Duration),
    started: Timestamp,
    now: Timestamp,
) -> Next {
    if tally.last().is_some_and(|m| m.phase == Phase::Successful) {
        return Next::Succeed(format!("the condition held after {} polls", tally.taken()));
    }
    let deadline = crate::time::add_std(started, timeout);
    if now >= deadline {
        let last = match tally.last() {
            Some(Measurement {
                value: Some(value), ..
            }) => format!("; last value {value}"),
            Some(Measurement {
                message: Some(message),
                ..
            }) => format!("; last error: {message}"),
            _ => String::new(),
        };
        return Next::Fail {
            reason: "TimedOut",
            message: format!(
                "the condition did not hold within {}s ({} polls{last})",
                timeout.as_secs(),
                tally.taken()
            ),
        };
    }
    match due(tally, interval) {
        Some(at) if at > now => Next::WaitUntil(at.min(deadline)),
        _ => Next::Measure,
    }
}

/// How a query measurement is judged from its conditions' values (`None`: not given):
/// with only `successCondition`, false is Failed; with only `failureCondition`, false is
/// Successful; with both, a true `failureCondition` wins and neither true is Inconclusive.
pub fn judge(success: Option<bool>, failure: Option<bool>) -> Phase {
    match (success, failure) {
        (_, Some(true)) => Phase::Failed,
        (Some(true), _) => Phase::Successful,
        (Some(false), None) => Phase::Failed,
        (None, _) => Phase::Successful,
        (Some(false), Some(false)) => Phase::Inconclusive,
    }
}
