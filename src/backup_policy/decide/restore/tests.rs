//! Which backup a restore takes, and `status.lastRestore` from the restore Jobs.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::backup_policy::types::{BackupStage, BackupTrigger};

fn at(minute: i64) -> Time {
    Time(Timestamp::from_second(1_800_000_000 + minute * 60).expect("in range"))
}

fn record(job: &str, minute: i64, result: BackupResult, verified: Option<bool>) -> BackupRecord {
    BackupRecord {
        job: job.into(),
        trigger: BackupTrigger::Schedule,
        request: None,
        scheduled_time: Some(at(minute - 1)),
        start_time: Some(at(minute - 1)),
        completion_time: (result != BackupResult::Running).then(|| at(minute)),
        result,
        stage: BackupStage::Done,
        verified,
        pruned: None,
        message: None,
    }
}

/// Newest first, as status.history keeps it: the newest succeeded but failed verification,
/// the one before it failed, two verified ones before that.
fn history() -> Vec<BackupRecord> {
    vec![
        record("db-5", 50, BackupResult::Succeeded, Some(false)),
        record("db-4", 40, BackupResult::Failed, None),
        record("db-3", 30, BackupResult::Succeeded, Some(true)),
        record("db-2", 20, BackupResult::Succeeded, Some(true)),
        record("db-1", 10, BackupResult::Succeeded, None),
    ]
}

fn chosen(history: &[BackupRecord], which: Option<&str>) -> Result<String, String> {
    choose(history, which).map(|r| r.job.clone())
}

#[test]
fn latest_verified_is_the_default_and_skips_unverified_and_failed_backups() {
    let h = history();
    assert_eq!(chosen(&h, None), Ok("db-3".into()));
    assert_eq!(chosen(&h, Some("latestVerified")), Ok("db-3".into()));
}

#[test]
fn latest_takes_the_newest_success_verified_or_not() {
    assert_eq!(chosen(&history(), Some("latest")), Ok("db-5".into()));
}

#[test]
fn newest_is_by_completion_not_by_place_in_the_history() {
    // A pending record is first in history; an adopted record can sit after a newer one.
    let mut h = history();
    h.insert(0, record("db-6", 60, BackupResult::Running, None));
    h.swap(3, 4); // db-2 before db-3
    assert_eq!(chosen(&h, None), Ok("db-3".into()));
    assert_eq!(chosen(&h, Some("latest")), Ok("db-5".into()));
}

#[test]
fn a_named_backup_must_be_in_the_history_and_have_succeeded() {
    let h = history();
    // Named explicitly, an unverified backup is taken: the person chose it.
    assert_eq!(chosen(&h, Some("db-5")), Ok("db-5".into()));
    assert_eq!(chosen(&h, Some("db-1")), Ok("db-1".into()));
    let failed = chosen(&h, Some("db-4")).expect_err("failed backup");
    assert!(failed.contains("db-4 did not succeed"), "{failed}");
    let running = chosen(
        &[record("db-6", 60, BackupResult::Running, None)],
        Some("db-6"),
    )
    .expect_err("running backup");
    assert!(running.contains("Running"), "{running}");
    let missing = chosen(&h, Some("db-9")).expect_err("unknown backup");
    assert!(missing.contains("no backup Job named db-9"), "{missing}");
    assert!(
        missing.contains("db-5 (Succeeded, verification failed)")
            && missing.contains("db-3 (Succeeded, verified)")
            && missing.contains("db-4 (Failed)"),
        "the message lists what exists: {missing}"
    );
}

#[test]
fn nothing_to_restore_says_what_the_history_holds() {
    let unverified = vec![
        record("db-2", 20, BackupResult::Succeeded, Some(false)),
        record("db-1", 10, BackupResult::Failed, None),
    ];
    let err = chosen(&unverified, None).expect_err("no verified backup");
    assert!(
        err.contains("no successful backup whose verification passed"),
        "{err}"
    );
    assert!(
        err.contains("db-2 (Succeeded, verification failed)"),
        "{err}"
    );
    let err = chosen(&[], Some("latest")).expect_err("empty history");
    assert!(err.contains("no backup yet: take one first"), "{err}");
}

#[test]
fn an_on_demand_backup_restores_with_its_start_time() {
    let mut r = record("db-now-1", 10, BackupResult::Succeeded, Some(true));
    assert_eq!(backup_time(&r).as_deref(), Some("2027-01-15T08:09:00Z"));
    r.scheduled_time = None;
    r.start_time = Some(at(5));
    assert_eq!(backup_time(&r).as_deref(), Some("2027-01-15T08:05:00Z"));
}

fn restore(job: &str, start: i64, result: &str) -> RestoreRecord {
    let end = (result != RESTORE_RUNNING).then(|| at(start + 2));
    RestoreRecord {
        job: job.into(),
        backup_job: "db-3".into(),
        backup_scheduled_time: Some(at(29)),
        run: Some("recover".into()),
        start_time: Some(at(start)),
        duration: end.as_ref().map(|e| duration_text(at(start).0, e.0)),
        completion_time: end,
        result: result.into(),
    }
}

#[test]
fn the_newest_restore_job_becomes_last_restore_with_its_duration() {
    let running = restore("recover-restore-1", 100, RESTORE_RUNNING);
    let (last, note) = last_restore(None, std::slice::from_ref(&running));
    assert_eq!(last.as_ref(), Some(&running));
    assert_eq!(note, None, "no Event while it runs");

    let done = restore("recover-restore-1", 100, RESTORE_SUCCEEDED);
    assert_eq!(done.duration.as_deref(), Some("2m"));
    let (last, note) = last_restore(Some(&running), std::slice::from_ref(&done));
    assert_eq!(last.as_ref(), Some(&done));
    let note = note.expect("an Event when it finishes");
    assert_eq!(note.reason, REASON_RESTORE_SUCCEEDED);
    assert!(
        note.message.contains("recover-restore-1") && note.message.contains("db-3"),
        "{}",
        note.message
    );

    // Settled: the same Job again changes nothing and sends nothing.
    assert_eq!(
        last_restore(Some(&done), std::slice::from_ref(&done)),
        (Some(done.clone()), None)
    );
}

#[test]
fn a_failed_restore_warns() {
    let failed = restore("recover-restore-1", 100, RESTORE_FAILED);
    let (_, note) = last_restore(None, &[failed]);
    let note = note.expect("an Event");
    assert_eq!(
        (note.reason, note.type_),
        (REASON_RESTORE_FAILED, EventType::Warning)
    );
}

#[test]
fn a_deleted_or_older_restore_job_never_replaces_a_newer_record() {
    let newer = restore("b-restore-1", 200, RESTORE_SUCCEEDED);
    let older = restore("a-restore-1", 100, RESTORE_SUCCEEDED);
    assert_eq!(last_restore(Some(&newer), &[]), (Some(newer.clone()), None));
    assert_eq!(
        last_restore(Some(&newer), std::slice::from_ref(&older)),
        (Some(newer.clone()), None)
    );
    let (last, _) = last_restore(Some(&older), &[older.clone(), newer.clone()]);
    assert_eq!(last, Some(newer));
}

#[test]
fn a_clock_step_back_gives_no_negative_duration() {
    assert_eq!(duration_text(at(5).0, at(4).0), "0s");
    assert_eq!(duration_text(at(0).0, at(151).0), "2h31m");
}

#[test]
fn a_restore_template_that_cannot_be_decoded_is_a_spec_problem() {
    let spec = |restore: serde_json::Value| -> crate::backup_policy::BackupPolicySpec {
        serde_json::from_value(serde_json::json!({
            "schedule": {"cron": "0 1 * * *"},
            "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}},
            "restore": restore,
        }))
        .expect("spec")
    };
    let bad = spec(serde_json::json!({"jobTemplate": {"spec": {"backoffLimit": "many"}}}));
    let problems = super::super::spec::problems(&bad);
    assert!(
        problems
            .iter()
            .any(|p| p.field == "spec.restore.jobTemplate" && p.message.contains("backoffLimit")),
        "{problems:?}"
    );
    let good = spec(
        serde_json::json!({"jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}),
    );
    assert_eq!(super::super::spec::problems(&good), vec![]);
}
