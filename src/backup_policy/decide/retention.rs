//! Rule 5 of [`decide`](super::decide): retention of finished backup Jobs, and the length of
//! `status.history`.

use super::{
    DEFAULT_FAILED_JOBS, DEFAULT_SUCCESSFUL_JOBS, HISTORY_LIMIT, JobOutcome, ObservedJob, Stage,
    Work, prune_job_name, verify_job_name,
};
use crate::backup_policy::types::{BackupResult, BackupStage};

impl Work<'_> {
    /// The Jobs of finished backups beyond what retention keeps, oldest backup first.
    ///
    /// Backups are counted newest first: the finished records in history, then backup Jobs that
    /// have no record any more (history holds ten records, retention may keep up to a thousand
    /// Jobs), newest first by creation.
    pub(super) fn retention(&self) -> Vec<String> {
        let retention = self.inputs.spec.retention.as_ref();
        let limit = |value: Option<i32>, default: usize| {
            value.map_or(default, |value| usize::try_from(value).unwrap_or(0))
        };
        let keep_good = limit(
            retention.and_then(|r| r.successful_jobs),
            DEFAULT_SUCCESSFUL_JOBS,
        );
        let keep_bad = limit(retention.and_then(|r| r.failed_jobs), DEFAULT_FAILED_JOBS);

        let recorded = self
            .status
            .history
            .iter()
            .filter(|record| record.stage == BackupStage::Done)
            .map(|record| {
                let good =
                    record.result == BackupResult::Succeeded && record.verified != Some(false);
                (record.job.as_str(), good)
            });
        let mut leftovers: Vec<&ObservedJob> = self
            .inputs
            .jobs
            .iter()
            .filter(|job| job.stage == Stage::Backup && job.outcome != JobOutcome::Running)
            .filter(|job| !self.status.history.iter().any(|r| r.job == job.name))
            .collect();
        leftovers.sort_by_key(|job| {
            std::cmp::Reverse(job.created.or(job.start_time).or(job.scheduled_time))
        });
        let leftovers = leftovers.into_iter().map(|job| {
            let verification_failed = self
                .job(&verify_job_name(&job.name))
                .is_some_and(|verify| matches!(verify.outcome, JobOutcome::Failed { .. }));
            let good = matches!(job.outcome, JobOutcome::Succeeded { .. }) && !verification_failed;
            (job.name.as_str(), good)
        });

        let (mut good_seen, mut bad_seen) = (0, 0);
        let mut doomed = Vec::new();
        for (job, good) in recorded.chain(leftovers) {
            let seen = if good { &mut good_seen } else { &mut bad_seen };
            *seen += 1;
            if *seen > if good { keep_good } else { keep_bad } {
                doomed.push(job);
            }
        }
        doomed
            .into_iter()
            .rev()
            .flat_map(|job| [job.to_owned(), verify_job_name(job), prune_job_name(job)])
            .filter(|name| self.job(name).is_some())
            .collect()
    }

    pub(super) fn trim_history(&mut self) {
        let mut position = 0;
        self.status.history.retain(|record| {
            position += 1;
            position <= HISTORY_LIMIT || record.stage != BackupStage::Done
        });
    }
}
