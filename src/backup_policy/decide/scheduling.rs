//! Rules 3 and 4 of [`decide`](super::decide): scheduled times that came due (never two backups
//! at once; after downtime only the latest, within `startingDeadline`; none of those that came
//! due while suspended), and backup-now tokens.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;

use super::{
    MISSED_CAP, NewJob, Stage, Work, active_job, count_text, new_record, on_demand_job_name,
    or_next, rfc3339, scheduled_job_name,
};
use crate::backup_policy::types::{
    BackupPolicyPhase, BackupPolicyStatus, BackupResult, BackupTrigger,
};
use crate::schedule::{self, Schedule};

impl<'a> Work<'a> {
    // --- rule 3 ------------------------------------------------------------------------------

    /// Handles scheduled times; returns the next one.
    pub(super) fn schedule_backups(&mut self, schedule: &Schedule) -> Option<Timestamp> {
        let spec = &self.inputs.spec.schedule;
        let now = self.inputs.now;
        let created = self.inputs.created;
        if spec.suspend == Some(true) {
            self.drop_pending(EventType::Normal, "the policy was suspended");
            return None;
        }
        let deadline = spec
            .starting_deadline
            .as_ref()
            .and_then(|deadline| deadline.parse().ok());
        let lower = |status: &BackupPolicyStatus| {
            status
                .last_schedule_time
                .as_ref()
                .map_or(created, |last| last.0.max(created))
        };

        if self.was_suspended() {
            let since = lower(&self.status);
            if let Some(latest) = schedule.latest_due(Some(since), now) {
                let missed = schedule.missed_count(Some(since), now, MISSED_CAP);
                self.status.last_schedule_time = Some(Time(latest));
                self.note(
                    EventType::Normal,
                    "BackupSkipped",
                    format!(
                        "{} scheduled backup(s) came due while the policy was suspended; none is run; {}",
                        count_text(missed),
                        or_next(schedule.next_after(now))
                    ),
                );
            }
        }

        let since = lower(&self.status);
        let last = self.status.last_schedule_time.as_ref().map(|time| time.0);
        let due = schedule::due_decision(schedule, last, created, now, deadline, false);
        if let Some(skipped) = due.skipped_past_deadline {
            let missed = schedule.missed_count(Some(since), now, MISSED_CAP);
            self.status.last_schedule_time = Some(Time(skipped));
            let all = if missed > 1 {
                format!(
                    " ({} scheduled times were missed in all while the operator was not running)",
                    count_text(missed)
                )
            } else {
                String::new()
            };
            let deadline = spec
                .starting_deadline
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            self.note(
                EventType::Warning,
                "BackupSkipped",
                format!(
                    "the backup scheduled for {} could not start within startingDeadline {deadline}{all}; {}",
                    rfc3339(skipped),
                    or_next(due.next)
                ),
            );
        }
        if let Some(at) = due.run {
            let missed = schedule.missed_count(Some(since), now, MISSED_CAP);
            self.status.last_schedule_time = Some(Time(at));
            let blocker = active_job(&self.status.history)
                .or_else(|| self.create.as_ref().map(|create| create.name.clone()));
            match blocker {
                Some(blocker) => self.queue(at, &blocker),
                None => {
                    self.drop_pending(
                        EventType::Normal,
                        &format!("replaced by the newer scheduled time {}", rfc3339(at)),
                    );
                    let catch_up = if missed > 1 {
                        format!(
                            " (catch-up: {} scheduled times were missed while the operator was not running; only the latest runs)",
                            count_text(missed)
                        )
                    } else {
                        String::new()
                    };
                    self.start_scheduled(at, catch_up);
                }
            }
        }
        if active_job(&self.status.history).is_none() && self.can_create() {
            self.start_pending(deadline);
        }
        due.next
    }

    /// Whether the stored status was written while the policy was suspended. A backup that ran
    /// during the suspension shows phase Running, but then nextScheduleTime is absent, which a
    /// valid, unsuspended schedule only has when it never fires again.
    fn was_suspended(&self) -> bool {
        match self.inputs.status.phase {
            Some(BackupPolicyPhase::Suspended) => true,
            Some(BackupPolicyPhase::Running) => self.inputs.status.next_schedule_time.is_none(),
            _ => false,
        }
    }

    fn drop_pending(&mut self, type_: EventType, why: &str) {
        let (pending, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.status.history)
            .into_iter()
            .partition(|record| record.result == BackupResult::Pending);
        self.status.history = kept;
        for record in pending {
            let at = record
                .scheduled_time
                .as_ref()
                .map_or_else(|| record.job.clone(), |time| rfc3339(time.0));
            self.note(
                type_,
                "BackupSkipped",
                format!("the backup scheduled for {at} is skipped: {why}"),
            );
        }
    }

    fn queue(&mut self, at: Timestamp, blocker: &str) {
        self.drop_pending(
            EventType::Normal,
            &format!("replaced by the newer scheduled time {}", rfc3339(at)),
        );
        let job = scheduled_job_name(self.inputs.policy, at);
        let mut record = new_record(
            job,
            BackupTrigger::Schedule,
            Some(at),
            None,
            BackupResult::Pending,
        );
        record.message = Some(format!("waiting for {blocker} to finish"));
        self.status.history.insert(0, record);
        self.note(
            EventType::Normal,
            "BackupDelayed",
            format!(
                "the backup scheduled for {} waits for {blocker} to finish (never two backups at once)",
                rfc3339(at)
            ),
        );
    }

    fn start_scheduled(&mut self, at: Timestamp, why: String) {
        let job = scheduled_job_name(self.inputs.policy, at);
        self.create = Some(NewJob {
            name: job.clone(),
            stage: Stage::Backup,
            backup_job: job.clone(),
            scheduled_time: Some(at),
            request: None,
            requested_at: self.inputs.now,
        });
        let record = new_record(
            job.clone(),
            BackupTrigger::Schedule,
            Some(at),
            None,
            BackupResult::Running,
        );
        self.status.history.insert(0, record);
        self.note(
            EventType::Normal,
            "BackupStarted",
            format!(
                "started backup Job {job} for the scheduled time {}{why}",
                rfc3339(at)
            ),
        );
    }

    /// Starts the waiting record, or drops it when it waited past the starting deadline.
    fn start_pending(&mut self, deadline: Option<std::time::Duration>) {
        let history = &self.status.history;
        let Some(index) = history
            .iter()
            .position(|record| record.result == BackupResult::Pending)
        else {
            return;
        };
        let waited_for = history
            .iter()
            .skip(index + 1)
            .find(|record| record.result != BackupResult::Pending)
            .map_or_else(|| "the previous backup".into(), |record| record.job.clone());
        let record = &history[index];
        let at = record.scheduled_time.as_ref().map(|time| time.0);
        let late = |at: Timestamp| {
            deadline
                .and_then(|deadline| SignedDuration::try_from(deadline).ok())
                .is_some_and(|deadline| self.inputs.now.duration_since(at) > deadline)
        };
        if at.is_some_and(late) {
            self.status.history.remove(index);
            let deadline = self
                .inputs
                .spec
                .schedule
                .starting_deadline
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            self.note(
                EventType::Warning,
                "BackupSkipped",
                format!(
                    "the backup scheduled for {} is skipped: it waited for {waited_for} longer than startingDeadline {deadline}",
                    at.map(rfc3339).unwrap_or_default()
                ),
            );
            return;
        }
        let record = &mut self.status.history[index];
        record.result = BackupResult::Running;
        record.message = None;
        let job = record.job.clone();
        self.create = Some(NewJob {
            name: job.clone(),
            stage: Stage::Backup,
            backup_job: job.clone(),
            scheduled_time: at,
            request: None,
            requested_at: self.inputs.now,
        });
        self.note(
            EventType::Normal,
            "BackupStarted",
            format!(
                "started backup Job {job} for the scheduled time {} (it waited for {waited_for} to finish)",
                at.map(rfc3339).unwrap_or_default()
            ),
        );
    }

    // --- rule 4 ------------------------------------------------------------------------------

    pub(super) fn backup_now(&mut self) {
        let Some(token) = self.token_unhandled() else {
            return;
        };
        let job = on_demand_job_name(self.inputs.policy, token);
        let used =
            self.status.history.iter().any(|record| record.job == job) || self.job(&job).is_some();
        if used {
            self.status.last_handled_backup_now = Some(token.to_owned());
            self.note(
                EventType::Warning,
                "BackupNowIgnored",
                format!(
                    "token {token} was already used by Job {job}; set a new token to start another backup"
                ),
            );
            return;
        }
        let waiting = self
            .status
            .history
            .iter()
            .any(|record| record.result == BackupResult::Pending);
        // The annotation itself is the queue: nothing is recorded until the token can run.
        if active_job(&self.status.history).is_some() || waiting || !self.can_create() {
            return;
        }
        self.status.last_handled_backup_now = Some(token.to_owned());
        self.create = Some(NewJob {
            name: job.clone(),
            stage: Stage::Backup,
            backup_job: job.clone(),
            scheduled_time: None,
            request: Some(token.to_owned()),
            requested_at: self.inputs.now,
        });
        let record = new_record(
            job.clone(),
            BackupTrigger::BackupNow,
            None,
            Some(token.to_owned()),
            BackupResult::Running,
        );
        self.status.history.insert(0, record);
        self.note(
            EventType::Normal,
            "BackupStarted",
            format!("started backup Job {job} for backup-now token {token}"),
        );
    }
}
