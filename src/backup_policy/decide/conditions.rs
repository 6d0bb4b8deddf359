//! Rule 6 of [`decide`](super::decide), the conditions part: `LastBackupSucceeded`,
//! `BackupFresh` (and the instant it turns False) and `ScheduleMeetsRPO`. Their types and
//! reasons are [`crate::backup_policy::status`]'s; [`status`](crate::backup_policy::status::status)
//! merges them into the stored conditions.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;

use super::{REJECTED_PREFIX, Work, rfc3339};
use crate::backup_policy::status::{
    BACKUP_FRESH, LAST_BACKUP_SUCCEEDED, REASON_ACHIEVABLE, REASON_AWAITING_FIRST_BACKUP,
    REASON_BACKUP_FAILED, REASON_JOB_REJECTED, REASON_NO_UPCOMING_BACKUPS,
    REASON_RPO_SHORTER_THAN_SCHEDULE, REASON_RPO_VIOLATED, REASON_SUCCEEDED,
    REASON_VERIFICATION_FAILED, REASON_VERIFIED, REASON_WITHIN_RPO, SCHEDULE_MEETS_RPO,
};
use crate::backup_policy::types::{BackupRecord, BackupResult, BackupStage};
use crate::conditions::{Desired, Status};
use crate::schedule::Schedule;

/// How many scheduled times [`longest_gap`] looks at, at most.
const GAP_OCCURRENCES: usize = 400;
/// How far ahead [`longest_gap`] looks: a year and a day, so every daylight-saving transition
/// of the zone is crossed once.
const GAP_HORIZON: SignedDuration = SignedDuration::from_hours(24 * 366);

/// A duration as specs write them (`26h`, `1h30m`, `45s`, `250ms`), so a message can be copied
/// into `spec.rpo`.
pub(super) fn format_duration(duration: SignedDuration) -> String {
    let duration = duration.abs();
    let seconds = duration.as_secs();
    let parts = [
        (seconds / 3600, "h"),
        (seconds % 3600 / 60, "m"),
        (seconds % 60, "s"),
        (i64::from(duration.subsec_millis()), "ms"),
    ];
    let text: String = parts
        .iter()
        .filter(|(amount, _)| *amount != 0)
        .map(|(amount, unit)| format!("{amount}{unit}"))
        .collect();
    if text.is_empty() { "0s".into() } else { text }
}

impl Work<'_> {
    /// `BackupFresh`, and the future instant it turns False when it is not yet.
    pub(super) fn freshness(&mut self, rpo: SignedDuration) -> (Desired, Option<Timestamp>) {
        let now = self.inputs.now;
        let verify = self.inputs.spec.verify.is_some();
        let kind = if verify { "verified" } else { "successful" };
        let reference = if verify {
            &self.status.last_verified_time
        } else {
            &self.status.last_successful_time
        };
        let rpo_text = self
            .inputs
            .spec
            .rpo
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let (desired, flip) = match reference.as_ref().map(|time| time.0) {
            Some(finished) => match finished.checked_add(rpo) {
                Ok(until) if now < until => (
                    Desired::new(
                        BACKUP_FRESH,
                        Status::True,
                        REASON_WITHIN_RPO,
                        format!(
                            "newest {kind} backup finished at {}; fresh until {} (rpo {rpo_text})",
                            rfc3339(finished),
                            rfc3339(until)
                        ),
                    ),
                    Some(until),
                ),
                Ok(until) => (
                    Desired::new(
                        BACKUP_FRESH,
                        Status::False,
                        REASON_RPO_VIOLATED,
                        format!(
                            "newest {kind} backup finished at {}, more than rpo {rpo_text} ago (since {})",
                            rfc3339(finished),
                            rfc3339(until)
                        ),
                    )
                    .since(Time(until)),
                    None,
                ),
                // An rpo too long to add never runs out.
                Err(_) => (
                    Desired::new(
                        BACKUP_FRESH,
                        Status::True,
                        REASON_WITHIN_RPO,
                        format!(
                            "newest {kind} backup finished at {} (rpo {rpo_text})",
                            rfc3339(finished)
                        ),
                    ),
                    None,
                ),
            },
            None => {
                let created = self.inputs.created;
                match created.checked_add(rpo) {
                    Ok(until) if now >= until => (
                        Desired::new(
                            BACKUP_FRESH,
                            Status::False,
                            REASON_RPO_VIOLATED,
                            format!(
                                "no {kind} backup since the policy was created at {} (rpo {rpo_text})",
                                rfc3339(created)
                            ),
                        )
                        .since(Time(until)),
                        None,
                    ),
                    until => (
                        Desired::new(
                            BACKUP_FRESH,
                            Status::Unknown,
                            REASON_AWAITING_FIRST_BACKUP,
                            format!(
                                "no {kind} backup yet; the policy was created at {} (rpo {rpo_text})",
                                rfc3339(created)
                            ),
                        ),
                        until.ok(),
                    ),
                }
            }
        };
        // Stored conditions do not change between the calls of one reconcile, so only the last
        // call (the one that creates nothing) reports a flip, or every call would.
        if self.create.is_none() {
            let was_false = self.inputs.status.conditions.iter().any(|condition| {
                condition.type_ == BACKUP_FRESH && condition.status == Status::False.as_str()
            });
            match desired.status {
                Status::False if !was_false => {
                    self.note(EventType::Warning, "RPOViolated", desired.message.clone())
                }
                Status::True if was_false => {
                    self.note(EventType::Normal, "BackupFresh", desired.message.clone())
                }
                _ => {}
            }
        }
        (desired, flip)
    }
}

/// `LastBackupSucceeded` from the newest finished record; `None` before any finished.
pub(super) fn last_backup_condition(history: &[BackupRecord]) -> Option<Desired> {
    let record = history
        .iter()
        .find(|record| record.stage == BackupStage::Done)?;
    let job = &record.job;
    let message = record.message.clone().unwrap_or_default();
    let rejected = message.starts_with(REJECTED_PREFIX);
    let finished = record
        .completion_time
        .as_ref()
        .map(|time| format!(" at {}", rfc3339(time.0)))
        .unwrap_or_default();
    let desired = match (record.result, record.verified) {
        (BackupResult::Succeeded, Some(true)) => Desired::new(
            LAST_BACKUP_SUCCEEDED,
            Status::True,
            REASON_VERIFIED,
            format!("backup Job {job} succeeded{finished} and passed verification"),
        ),
        (BackupResult::Succeeded, Some(false)) => Desired::new(
            LAST_BACKUP_SUCCEEDED,
            Status::False,
            if rejected {
                REASON_JOB_REJECTED
            } else {
                REASON_VERIFICATION_FAILED
            },
            format!("backup Job {job} succeeded{finished} but was not verified: {message}"),
        ),
        (BackupResult::Succeeded, None) => Desired::new(
            LAST_BACKUP_SUCCEEDED,
            Status::True,
            REASON_SUCCEEDED,
            format!("backup Job {job} succeeded{finished}"),
        ),
        _ => Desired::new(
            LAST_BACKUP_SUCCEEDED,
            Status::False,
            if rejected {
                REASON_JOB_REJECTED
            } else {
                REASON_BACKUP_FAILED
            },
            format!("backup Job {job} failed: {message}"),
        ),
    };
    Some(desired)
}

/// The longest time between two consecutive scheduled times, over the next
/// [`GAP_OCCURRENCES`] times or [`GAP_HORIZON`], whichever ends first (the gap to the time
/// after the last one inside the horizon counts). `None` when fewer than two times come.
fn longest_gap(schedule: &Schedule, now: Timestamp) -> Option<SignedDuration> {
    let horizon = now.checked_add(GAP_HORIZON).ok();
    let mut previous = schedule.next_after(now)?;
    let mut longest: Option<SignedDuration> = None;
    for _ in 1..GAP_OCCURRENCES {
        if horizon.is_some_and(|horizon| previous > horizon) {
            break;
        }
        let Some(next) = schedule.next_after(previous) else {
            break;
        };
        let gap = next.duration_since(previous);
        longest = Some(longest.map_or(gap, |longest| longest.max(gap)));
        previous = next;
    }
    longest
}

/// `ScheduleMeetsRPO`: False when a gap between scheduled backups is longer than the rpo, so
/// `BackupFresh` would turn False before the next backup even when every backup succeeds.
pub(super) fn schedule_meets_rpo(
    schedule: &Schedule,
    rpo: SignedDuration,
    now: Timestamp,
) -> Desired {
    let rpo_text = format_duration(rpo);
    match longest_gap(schedule, now) {
        None => Desired::new(
            SCHEDULE_MEETS_RPO,
            Status::False,
            REASON_NO_UPCOMING_BACKUPS,
            format!(
                "the schedule has fewer than two upcoming times, so spec.rpo ({rpo_text}) cannot be met for long"
            ),
        ),
        Some(gap) if rpo < gap => Desired::new(
            SCHEDULE_MEETS_RPO,
            Status::False,
            REASON_RPO_SHORTER_THAN_SCHEDULE,
            format!(
                "spec.rpo ({rpo_text}) is shorter than the longest gap between scheduled backups ({}), so BackupFresh will turn False before the next backup; raise spec.rpo or schedule backups more often",
                format_duration(gap)
            ),
        ),
        Some(gap) => Desired::new(
            SCHEDULE_MEETS_RPO,
            Status::True,
            REASON_ACHIEVABLE,
            format!(
                "spec.rpo ({rpo_text}) is at least the longest gap between scheduled backups ({})",
                format_duration(gap)
            ),
        ),
    }
}
