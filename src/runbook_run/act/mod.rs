//! Executing one step: the side effects, each made safe to repeat after a crash.
//!
//! The rule is *record, then act*: every intent (the replica count to set, the Job name, the
//! restartedAt value, the pods to delete) is written to the run's journal before the
//! request that acts on it, and every such request is idempotent for the recorded intent.
//! Guarantees per step type (documented in the README too):
//!
//! | step | guarantee |
//! |---|---|
//! | scale, setEnv, restart, rollback, deletePods, rotateSecret, patch (merge, apply) | effect exactly once (idempotent write of a recorded intent) |
//! | patch (json) | at most once: a lost outcome is reported, never re-sent |
//! | job | exactly one Job per step and attempt (deterministic name) |
//! | http | at most once per attempt; a retry is a new attempt |
//! | notify | at most once: an unknown delivery is reported, never resent |
//! | approval, sleep, waitForRollout | no side effect |

use std::time::Duration;

use jiff::Timestamp;
use kube::Client;

use super::types::StepStatus;
use crate::step::{Step, WorkloadRef};
use crate::write::{WriteError, Writer};

mod approval;
mod backup;
mod http;
mod job;
pub mod lock;
mod metric;
mod patch;
mod pods;
mod restore;
mod secret;
#[cfg(test)]
mod tests;
mod workload;

pub use approval::{Notice, RunMeta, answer};
pub use http::{EXCERPT_LIMIT, excerpt, json_path_value};
pub use job::{job_name, job_progress, stop};

/// What executing a step needs to know about its run.
pub struct Exec<'a> {
    /// Sends the step's reads and writes, acting as the run's identity
    /// (`status.serviceAccountName`): as server-side dry runs in Plan mode.
    pub writer: Writer<'a>,
    /// HTTP client for http and notify steps.
    pub http: &'a reqwest::Client,
    /// The run's namespace; every target lives here.
    pub namespace: &'a str,
    /// The run's name.
    pub run_name: &'a str,
    /// The run's uid, for owner references.
    pub run_uid: &'a str,
    /// The current time.
    pub now: Timestamp,
}

impl Exec<'_> {
    /// The Kubernetes client for reads of targets: the one the writer acts as, so a step reads
    /// (a Secret for a header, a Deployment's rollout) only what the run's identity may read.
    pub fn client(&self) -> &Client {
        self.writer.client()
    }

    /// Plan mode: Kubernetes writes are dry-run; http, notify and job steps are skipped.
    pub fn plan(&self) -> bool {
        self.writer.is_dry_run()
    }
}

/// Where a step stands after one call of [`act`].
#[derive(Debug, PartialEq)]
pub enum Act {
    /// The journal entry holds a new intent that must be recorded before going on.
    Record,
    /// The step is done.
    Succeeded(String),
    /// The step failed; `reason` is PascalCase (TargetNotFound, JobFailed, ...).
    Failed {
        /// Why, as a reason.
        reason: &'static str,
        /// What happened.
        message: String,
        /// Whether another attempt may help (false for an unknown notify delivery).
        retryable: bool,
    },
    /// Not run, e.g. in Plan mode.
    Skipped(String),
    /// Waiting for the cluster, a person or the clock.
    Wait {
        /// What it waits for.
        message: String,
        /// Look again after at most this long (events usually come sooner).
        recheck: Option<Duration>,
        /// True while waiting for an approval.
        approval: bool,
    },
}

/// Errors that stop a reconcile (retried), as opposed to a step failing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading an object a step acts on or waits for failed in a way a retry may fix.
    #[error("reading {what} in namespace {namespace:?}: {source}")]
    Read {
        /// What was read, e.g. `Job/db-fix-7-kill-idle-1` or `pods app=web`.
        what: String,
        /// The run's namespace.
        namespace: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A step's write failed in a way a retry may fix.
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl Error {
    fn read(what: impl Into<String>, namespace: &str, source: kube::Error) -> Self {
        Error::Read {
            what: what.into(),
            namespace: namespace.to_owned(),
            source,
        }
    }
}

impl crate::errors::MetricLabel for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::Read { source, .. } => crate::write::status_label(source),
            Error::Write(err) => err.metric_label(),
        }
    }
}

fn failed(reason: &'static str, message: impl Into<String>) -> Act {
    Act::Failed {
        reason,
        message: message.into(),
        retryable: true,
    }
}

/// The value of an integer field that a template may have filled, at least `min`. The run
/// checked it when the step's templates were substituted; a value that still does not read
/// as an integer fails the step with reason InvalidSpec naming `field`.
fn number(
    value: Option<&crate::step::IntOrTemplate>,
    min: i32,
    field: &str,
) -> Result<Option<i32>, Act> {
    value
        .map(|v| v.value(min))
        .transpose()
        .map_err(|message| Act::Failed {
            reason: "InvalidSpec",
            message: format!("{field}: {message}"),
            retryable: false,
        })
}

/// `kind/name` as the journal's target.
pub fn target_label(target: &WorkloadRef) -> String {
    format!("{:?}/{}", target.kind, target.name)
}

/// The step failure for an API error on a target that another attempt cannot fix as such
/// (404 -> TargetNotFound, 403 -> Forbidden, 400/422 -> Invalid); `None` for anything a retry
/// of the reconcile may fix.
fn refusal(err: &kube::Error, what: &str, namespace: &str) -> Option<Act> {
    let kube::Error::Api(status) = err else {
        return None;
    };
    match status.code {
        404 => Some(failed(
            "TargetNotFound",
            format!("{what} not found in namespace {namespace:?}"),
        )),
        // The run's identity lacks the right. The step's own retry policy (bounded, with its
        // backoff) still applies: a Role granted meanwhile lets a later attempt succeed.
        403 => Some(failed(
            "Forbidden",
            format!("{what}: {}", crate::identity::refused(&status.message)),
        )),
        400 | 422 => Some(failed(
            "Invalid",
            format!(
                "the API server refused the change to {what}: {}",
                status.message
            ),
        )),
        code if permanent(code) => Some(failed(
            "Refused",
            format!(
                "the API server answered {code} for {what}: {}",
                status.message
            ),
        )),
        _ => None,
    }
}

/// Whether an API answer with this status code cannot change by asking again: every 4xx but
/// 409 (a conflict, resolved by reading again) and 429 (throttled). Such an answer fails the
/// attempt (the step's own `retries` still apply); anything else is retried with backoff.
pub fn permanent(code: u16) -> bool {
    (400..500).contains(&code) && code != 409 && code != 429
}

/// Maps a failed read of a target into a step failure ([`refusal`]) or a reconcile error.
fn target_error(err: kube::Error, what: &str, namespace: &str) -> Result<Act, Error> {
    match refusal(&err, what, namespace) {
        Some(act) => Ok(act),
        None => Err(Error::read(what, namespace, err)),
    }
}

/// Maps a failed write to a target into a step failure ([`refusal`]) or a reconcile error.
fn write_error(err: WriteError, what: &str, namespace: &str) -> Result<Act, Error> {
    match refusal(&err.source, what, namespace) {
        Some(act) => Ok(act),
        None => Err(err.into()),
    }
}

/// Runs one step of `entry`'s current attempt. An API answer that asking again cannot change
/// ([`permanent`]: a 4xx other than 409 and 429, e.g. 403 for the run's identity, 422, 404)
/// fails the attempt with a reason naming it, instead of a reconcile error retried in a loop.
/// `index` is the entry's place in the journal; `fresh_intent` says whether this reconcile
/// recorded the attempt's intent (only then may an at-most-once request be sent).
pub async fn act(
    exec: &Exec<'_>,
    step: &Step,
    entry: &mut StepStatus,
    index: usize,
    fresh_intent: bool,
) -> Result<Act, Error> {
    match act_step(exec, step, entry, (index, fresh_intent)).await {
        Err(Error::Read {
            what,
            namespace,
            source,
        }) if crate::write::code(&source).is_some_and(permanent) => {
            target_error(source, &what, &namespace)
        }
        Err(Error::Write(err)) if err.code().is_some_and(permanent) => {
            let what = format!("{} {}", err.kind, err.target);
            write_error(err, &what, exec.namespace)
        }
        other => other,
    }
}

async fn act_step(
    exec: &Exec<'_>,
    step: &Step,
    entry: &mut StepStatus,
    intent: (usize, bool),
) -> Result<Act, Error> {
    let (_, fresh_intent) = intent;
    if let Some(scale) = &step.scale {
        return workload::scale(exec, scale, entry).await;
    }
    if let Some(restart) = &step.restart {
        return workload::restart(exec, &restart.target, restart.wait.unwrap_or(true), entry).await;
    }
    if let Some(set_env) = &step.set_env {
        return workload::set_env(exec, set_env, entry).await;
    }
    if let Some(wait) = &step.wait_for_rollout {
        entry.target = Some(target_label(&wait.target));
        return workload::rollout_progress(exec, &wait.target).await;
    }
    if let Some(rollback) = &step.rollback {
        return workload::rollback(exec, rollback, entry).await;
    }
    if let Some(job) = &step.job {
        return job::run(exec, step, job, entry).await;
    }
    if let Some(http) = &step.http {
        return http::send(exec, step, http, entry, intent).await;
    }
    if let Some(patch) = &step.patch {
        return patch::send(exec, patch, entry, fresh_intent).await;
    }
    if let Some(delete) = &step.delete_pods {
        return pods::delete(exec, delete, entry).await;
    }
    if let Some(rotate) = &step.rotate_secret {
        return secret::rotate(exec, rotate, entry).await;
    }
    if let Some(approval) = &step.approval {
        if exec.plan() {
            return Ok(Act::Skipped(
                "Plan: approval is not requested in Plan mode".into(),
            ));
        }
        // Answers are judged by [`answer`], which needs the run's metadata; on its own the
        // step only waits.
        return Ok(Act::Wait {
            message: super::decide::approval::waiting_message(
                exec.run_name,
                &step.name,
                approval,
                entry,
            ),
            recheck: None,
            approval: true,
        });
    }
    if let Some(sleep) = &step.sleep {
        if exec.plan() {
            return Ok(Act::Skipped(format!(
                "Plan: would sleep {}",
                sleep.duration
            )));
        }
        let length = sleep.duration.parse().unwrap_or_default();
        let started = entry.attempt_start().unwrap_or(exec.now);
        let end = crate::time::add_std(started, length);
        return Ok(if exec.now >= end {
            Act::Succeeded(format!("slept {}", sleep.duration))
        } else {
            Act::Wait {
                message: format!("sleeping until {end}"),
                recheck: Some(crate::time::until(exec.now, end)),
                approval: false,
            }
        });
    }
    if let Some(notify) = &step.notify {
        return http::notify(exec, notify, entry, intent).await;
    }
    if let Some(backup) = &step.backup {
        return backup::run(exec, step, backup, entry).await;
    }
    if let Some(query) = &step.query {
        return metric::query(exec, step, query, entry).await;
    }
    if let Some(wait) = &step.wait_for {
        return metric::wait_for(exec, step, wait, entry).await;
    }
    if let Some(restore) = &step.restore {
        return restore::run(exec, step, restore, entry).await;
    }
    Ok(Act::Failed {
        reason: "InvalidSpec",
        message: "the step has no action".into(),
        retryable: false,
    })
}

/// The mark an attempt leaves in `outputs.sent` once its request is recorded as sent.
fn sent_marker(entry: &StepStatus) -> String {
    format!("attempt {}", entry.attempts)
}
