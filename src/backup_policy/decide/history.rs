//! Rules 1 and 2 of [`decide`](super::decide): Jobs created but never recorded are adopted,
//! and each record advances from its Jobs, backup -> verify -> prune -> done, asking for the
//! next Job when it is missing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;

use super::{
    JobOutcome, NewJob, ObservedJob, REJECTED_PREFIX, Stage, Work, new_record, prune_job_name,
    rfc3339, verify_job_name,
};
use crate::backup_policy::types::{BackupRecord, BackupResult, BackupStage, BackupTrigger};

/// Where a verify or prune Job stands.
enum FollowUp {
    /// Not created yet (the decision creates it) or still running.
    Waiting,
    /// It completed.
    Succeeded,
    /// It failed, or the API server refused it (already reported as JobRejected).
    Failed {
        /// The record's message.
        message: String,
        /// Whether the API server refused it.
        rejected: bool,
    },
}

impl<'a> Work<'a> {
    // --- rule 2 ------------------------------------------------------------------------------

    pub(super) fn adopt(&mut self) {
        let last_scheduled = self.status.last_schedule_time.as_ref().map(|time| time.0);
        let token = self.token_unhandled();
        let mut found: Vec<&ObservedJob> = self
            .inputs
            .jobs
            .iter()
            .filter(|job| job.stage == Stage::Backup)
            .filter(|job| !self.status.history.iter().any(|r| r.job == job.name))
            .filter(|job| {
                job.outcome == JobOutcome::Running
                    || job
                        .scheduled_time
                        .is_some_and(|at| last_scheduled.is_none_or(|last| at > last))
                    || (job.request.is_some() && job.request.as_deref() == token)
            })
            .collect();
        // Oldest first, each inserted at the front: the newest ends up first.
        found.sort_by_key(|job| (job.created, job.start_time, job.scheduled_time));
        for job in found {
            let trigger = if job.scheduled_time.is_none() && job.request.is_some() {
                BackupTrigger::BackupNow
            } else {
                BackupTrigger::Schedule
            };
            if let Some(at) = job.scheduled_time {
                let last = self.status.last_schedule_time.as_ref().map(|time| time.0);
                if last.is_none_or(|last| at > last) {
                    self.status.last_schedule_time = Some(Time(at));
                }
            }
            // Only the current token is marked handled: marking an older one would make the
            // current token look new again.
            if job.request.is_some() && job.request.as_deref() == self.backup_token() {
                self.status.last_handled_backup_now = job.request.clone();
            }
            let record = new_record(
                job.name.clone(),
                trigger,
                job.scheduled_time,
                job.request.clone(),
                BackupResult::Running,
            );
            self.status.history.insert(0, record);
        }
    }

    // --- rule 2 ------------------------------------------------------------------------------

    pub(super) fn advance_records(&mut self) {
        let mut history = std::mem::take(&mut self.status.history);
        for record in history.iter_mut() {
            // A record can pass several stages at once (backup done, verify not needed, ...);
            // each step returns whether it moved, and there are at most three to pass.
            for _ in 0..4 {
                let moved = match (record.result, record.stage) {
                    (BackupResult::Pending, _) => self.pending_was_created(record),
                    (BackupResult::Running, _) => self.advance_backup(record),
                    (BackupResult::Succeeded, BackupStage::Verify) => self.advance_verify(record),
                    (BackupResult::Succeeded, BackupStage::Prune) => self.advance_prune(record),
                    _ => false,
                };
                if !moved {
                    break;
                }
            }
        }
        self.status.history = history;
    }

    /// A Pending record whose Job exists was started by a call whose status write was lost.
    fn pending_was_created(&self, record: &mut BackupRecord) -> bool {
        if self.job(&record.job).is_none() {
            return false;
        }
        record.result = BackupResult::Running;
        record.message = None;
        true
    }

    /// The stage after a successful backup Job.
    fn after_backup(&self) -> BackupStage {
        if self.inputs.spec.verify.is_some() {
            BackupStage::Verify
        } else {
            self.after_verify()
        }
    }

    /// The stage after a passed (or skipped) verification.
    fn after_verify(&self) -> BackupStage {
        if self.inputs.spec.prune.is_some() {
            BackupStage::Prune
        } else {
            BackupStage::Done
        }
    }

    fn advance_backup(&mut self, record: &mut BackupRecord) -> bool {
        let Some(job) = self.job(&record.job) else {
            record.result = BackupResult::Failed;
            record.stage = BackupStage::Done;
            if let Some(message) = self.rejection(&record.job) {
                record.completion_time = Some(Time(self.inputs.now));
                record.message = Some(format!(
                    "{REJECTED_PREFIX}{} made from {}: {message}",
                    record.job,
                    Stage::Backup.template_field()
                ));
                self.note_rejected(Stage::Backup, &record.job, message);
            } else {
                let message = format!("Job {} was deleted before it finished", record.job);
                record.message = Some(message.clone());
                self.note(EventType::Warning, "BackupFailed", message);
            }
            return false;
        };
        if let Some(start) = job.start_time {
            record.start_time = Some(Time(start));
        }
        match &job.outcome {
            JobOutcome::Running => false,
            JobOutcome::Succeeded { at } => {
                record.result = BackupResult::Succeeded;
                record.completion_time = Some(Time(*at));
                record.stage = self.after_backup();
                self.note(
                    EventType::Normal,
                    "BackupSucceeded",
                    format!("backup Job {} succeeded at {}", record.job, rfc3339(*at)),
                );
                true
            }
            JobOutcome::Failed { at, message } => {
                record.result = BackupResult::Failed;
                record.completion_time = Some(Time(*at));
                record.stage = BackupStage::Done;
                record.message = Some(message.clone());
                self.note(
                    EventType::Warning,
                    "BackupFailed",
                    format!("backup Job {} failed: {message}", record.job),
                );
                false
            }
        }
    }

    fn note_rejected(&mut self, stage: Stage, name: &str, message: &str) {
        let field = stage.template_field();
        let next = if stage == Stage::Backup {
            "; the next scheduled time still runs"
        } else {
            ""
        };
        self.note(
            EventType::Warning,
            "JobRejected",
            format!("{REJECTED_PREFIX}{name} made from {field}: {message}; fix {field}{next}"),
        );
    }

    /// When a verify or prune Job is absent: create it (the name is deterministic, so a
    /// repeated create is harmless), unless the API server refused it in this reconcile.
    /// Returns the refusal.
    fn create_follow_up(
        &mut self,
        record: &BackupRecord,
        stage: Stage,
        name: &str,
    ) -> Option<&'a str> {
        if let Some(message) = self.rejection(name) {
            return Some(message);
        }
        if self.can_create() {
            let requested_at = self
                .job(&record.job)
                .and_then(|job| job.created)
                .or(record.start_time.as_ref().map(|time| time.0))
                .unwrap_or(self.inputs.now);
            self.create = Some(NewJob {
                name: name.to_owned(),
                stage,
                backup_job: record.job.clone(),
                scheduled_time: record.scheduled_time.as_ref().map(|time| time.0),
                request: record.request.clone(),
                requested_at,
            });
        }
        None
    }

    /// Where the verify or prune Job of `record` stands: absent ones are created (or found
    /// refused), a running one is waited for; a refusal counts as a failure.
    fn follow_up(&mut self, record: &BackupRecord, stage: Stage, name: &str) -> FollowUp {
        match self.job(name) {
            None => match self.create_follow_up(record, stage, name) {
                None => FollowUp::Waiting,
                Some(message) => {
                    self.note_rejected(stage, name, message);
                    FollowUp::Failed {
                        message: format!(
                            "{REJECTED_PREFIX}{name} made from {}: {message}",
                            stage.template_field()
                        ),
                        rejected: true,
                    }
                }
            },
            Some(job) => match &job.outcome {
                JobOutcome::Running => FollowUp::Waiting,
                JobOutcome::Succeeded { .. } => FollowUp::Succeeded,
                JobOutcome::Failed { message, .. } => {
                    let what = if stage == Stage::Verify {
                        "verification"
                    } else {
                        "prune"
                    };
                    FollowUp::Failed {
                        message: format!("{what} Job {name} failed: {message}"),
                        rejected: false,
                    }
                }
            },
        }
    }

    fn advance_verify(&mut self, record: &mut BackupRecord) -> bool {
        if self.inputs.spec.verify.is_none() {
            // Verification was removed from the spec after this backup finished.
            record.stage = self.after_verify();
            return true;
        }
        let name = verify_job_name(&record.job);
        match self.follow_up(record, Stage::Verify, &name) {
            FollowUp::Waiting => false,
            FollowUp::Succeeded => {
                record.verified = Some(true);
                if let Some(done) = &record.completion_time {
                    let newer = self
                        .status
                        .last_verified_time
                        .as_ref()
                        .is_none_or(|last| done.0 > last.0);
                    if newer {
                        self.status.last_verified_time = Some(done.clone());
                    }
                }
                record.stage = self.after_verify();
                self.note(
                    EventType::Normal,
                    "BackupVerified",
                    format!("backup Job {} passed verification Job {name}", record.job),
                );
                true
            }
            FollowUp::Failed {
                message: failure,
                rejected,
            } => {
                if !rejected {
                    let prune = if self.inputs.spec.prune.is_some() {
                        "; the prune Job does not run, since pruning could delete the last good backup"
                    } else {
                        ""
                    };
                    self.note(
                        EventType::Warning,
                        "VerificationFailed",
                        format!("backup Job {}: {failure}{prune}", record.job),
                    );
                }
                record.verified = Some(false);
                record.message = Some(failure);
                record.stage = BackupStage::Done;
                false
            }
        }
    }

    fn advance_prune(&mut self, record: &mut BackupRecord) -> bool {
        if self.inputs.spec.prune.is_none() {
            record.stage = BackupStage::Done;
            return true;
        }
        let name = prune_job_name(&record.job);
        match self.follow_up(record, Stage::Prune, &name) {
            FollowUp::Waiting => false,
            FollowUp::Succeeded => {
                record.pruned = Some(true);
                record.stage = BackupStage::Done;
                true
            }
            FollowUp::Failed {
                message: failure,
                rejected,
            } => {
                if !rejected {
                    self.note(
                        EventType::Warning,
                        "PruneFailed",
                        format!(
                            "backup Job {}: {failure}; the backup itself is good",
                            record.job
                        ),
                    );
                }
                record.pruned = Some(false);
                record.message = Some(failure);
                record.stage = BackupStage::Done;
                false
            }
        }
    }
}
