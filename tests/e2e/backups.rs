//! BackupPolicies end to end, checked the way a user would: the backup, verify and prune Jobs
//! in the cluster (names, labels, env, when they were created and finished), the policy's
//! status (history, times, conditions), its Events, `kubectl get bp`, the operator's metrics,
//! and the Runbook backup step and MaintenanceWindow gate built on them.
//!
//! Scheduled tests use `* * * * *` and derive the Job names they expect from the scheduled
//! minute (`<policy>-<unix minutes>`), which they compute from the policy's creationTimestamp:
//! the first backup is the first scheduled time after creation. On-demand tests use a cron that
//! never comes due during a test (`0 0 1 1 *`) and the `ops.runbook.dev/backup-now` annotation.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::api::ListParams;
use runbook_operator::backup_policy::{
    BackupPolicy, BackupPolicyPhase, BackupPolicyStatus, BackupRecord, BackupResult, BackupStage,
    BackupTrigger,
};
use runbook_operator::maintenance_window::{MaintenanceWindow, MaintenanceWindowStatus};
use runbook_operator::runbook::Runbook;
use runbook_operator::runbook_run::{RunbookRun, StepPhase, StepStatus};

use crate::support::{
    PATIENCE, TestNamespace, condition, counter_sum, from_now, http_get, ready, stalled,
};

/// A cron that comes due once a year (1 January, 00:00 UTC): never during a test.
const NEVER: &str = "0 0 1 1 *";
const EVERY_MINUTE: &str = "* * * * *";
const POLICY_LABEL: &str = "ops.runbook.dev/backup-policy";
const STAGE_LABEL: &str = "ops.runbook.dev/backup-stage";
const BACKUP_LABEL: &str = "ops.runbook.dev/backup";
const SCHEDULED_TIME: &str = "ops.runbook.dev/scheduled-time";
const BACKUP_NOW: &str = "ops.runbook.dev/backup-now";

// ---------------------------------------------------------------------------------------------
// manifests
// ---------------------------------------------------------------------------------------------

/// A JobTemplateSpec (flow YAML) with the given pod labels and annotations (flow YAML maps).
fn template(labels: &str, annotations: &str) -> String {
    format!(
        "{{spec: {{backoffLimit: 0, template: {{metadata: {{labels: {labels}, annotations: {annotations}}}, spec: {{restartPolicy: Never, containers: [{{name: dump, image: \"registry.example.com/pg-dump:1\"}}]}}}}}}}}"
    )
}

/// A Job whose pod succeeds at once.
fn succeeds() -> String {
    template("{}", "{}")
}

/// A Job whose pod fails at once.
fn fails() -> String {
    template("{sim.runbook.dev/outcome: fail}", "{}")
}

/// A Job whose pod succeeds after `duration` (e.g. "40s").
fn succeeds_after(duration: &str) -> String {
    template(
        "{}",
        &format!("{{sim.runbook.dev/run-for: \"{duration}\"}}"),
    )
}

/// A Job whose pod fails after `duration`.
fn fails_after(duration: &str) -> String {
    template(
        "{sim.runbook.dev/outcome: fail}",
        &format!("{{sim.runbook.dev/run-for: \"{duration}\"}}"),
    )
}

/// A BackupPolicy; `schedule` is the flow YAML of spec.schedule without braces (e.g.
/// `cron: "* * * * *", startingDeadline: 5m`), `rest` further spec lines indented by two.
fn policy(name: &str, schedule: &str, job_template: &str, rest: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {{name: {name}}}\nspec:\n  schedule: {{{schedule}}}\n  jobTemplate: {job_template}\n{rest}\n"
    )
}

/// `schedule` flow YAML for a cron.
fn cron(expression: &str) -> String {
    format!("cron: \"{expression}\"")
}

/// spec lines for a verify Job.
fn verify(job_template: &str) -> String {
    format!("  verify: {{jobTemplate: {job_template}}}\n")
}

/// spec lines for a prune Job.
fn prune(job_template: &str) -> String {
    format!("  prune: {{jobTemplate: {job_template}}}\n")
}

fn runbook(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {{name: {name}}}\nspec:\n{spec}\n"
    )
}

fn run(name: &str, runbook: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: RunbookRun\nmetadata: {{name: {name}}}\nspec:\n  runbookRef: {{name: {runbook}}}\n"
    )
}

fn deployment(name: &str, replicas: i32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers: [{{name: app, image: \"registry.example.com/{name}:1\"}}]\n"
    )
}

/// A one-off window from `start` to `end` scaling Deployment `target` to 0, prepared by a
/// required beforeStart run of `runbook` `lead` before its start.
fn gated_window(
    name: &str,
    start: Timestamp,
    end: Timestamp,
    runbook: &str,
    lead: &str,
    target: &str,
) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: MaintenanceWindow\nmetadata: {{name: {name}}}\nspec:\n  start: \"{start}\"\n  end: \"{end}\"\n  beforeStart: {{runbook: {runbook}, leadTime: {lead}, required: true}}\n  targets: [{{kind: Deployment, name: {target}, scaleTo: 0}}]\n"
    )
}

// ---------------------------------------------------------------------------------------------
// reading results
// ---------------------------------------------------------------------------------------------

fn status(bp: &BackupPolicy) -> BackupPolicyStatus {
    bp.status.clone().unwrap_or_default()
}

fn bp_condition(bp: &BackupPolicy, type_: &str) -> Option<Condition> {
    condition(&status(bp).conditions, type_).cloned()
}

/// (status, reason) of a condition, or ("", "") when absent.
fn cond_state(bp: &BackupPolicy, type_: &str) -> (String, String) {
    bp_condition(bp, type_)
        .map(|c| (c.status, c.reason))
        .unwrap_or_default()
}

fn phase(bp: &BackupPolicy) -> Option<BackupPolicyPhase> {
    status(bp).phase
}

fn time(t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

/// The record of backup Job `job`.
fn record(bp: &BackupPolicy, job: &str) -> Option<BackupRecord> {
    status(bp).history.into_iter().find(|r| r.job == job)
}

/// The record answering backup-now `token`.
fn record_for_token(bp: &BackupPolicy, token: &str) -> Option<BackupRecord> {
    status(bp)
        .history
        .into_iter()
        .find(|r| r.request.as_deref() == Some(token))
}

/// The records standing for scheduled time `at`.
fn records_at(bp: &BackupPolicy, at: Timestamp) -> Vec<BackupRecord> {
    status(bp)
        .history
        .into_iter()
        .filter(|r| time(&r.scheduled_time) == Some(at))
        .collect()
}

fn is_done(r: &BackupRecord) -> bool {
    r.stage == BackupStage::Done
}

/// True when the policy's status describes its current spec.
fn observed(bp: &BackupPolicy) -> bool {
    bp.status.as_ref().and_then(|s| s.observed_generation) == bp.metadata.generation
}

async fn get_policy(ns: &TestNamespace, name: &str) -> BackupPolicy {
    ns.api::<BackupPolicy>()
        .get(name)
        .await
        .expect("get backup policy")
}

/// Waits until the policy is Scheduled with a next time, for its current spec.
async fn wait_scheduled(ns: &TestNamespace, name: &str) -> BackupPolicy {
    ns.wait_for::<BackupPolicy>(name, "Scheduled with a next time", |bp| {
        observed(bp)
            && phase(bp) == Some(BackupPolicyPhase::Scheduled)
            && status(bp).next_schedule_time.is_some()
    })
    .await
}

/// Waits until the backup of Job `job` is over (stage Done) and returns its record.
async fn wait_done(ns: &TestNamespace, policy: &str, job: &str) -> (BackupPolicy, BackupRecord) {
    let bp = ns
        .wait_for::<BackupPolicy>(policy, &format!("done with {job}"), |bp| {
            record(bp, job).is_some_and(|r| is_done(&r))
        })
        .await;
    let r = record(&bp, job).expect("record");
    (bp, r)
}

/// Waits until the backup answering `token` is over (stage Done) and returns its record.
async fn wait_token_done(
    ns: &TestNamespace,
    policy: &str,
    token: &str,
) -> (BackupPolicy, BackupRecord) {
    let bp = ns
        .wait_for::<BackupPolicy>(policy, &format!("done with token {token}"), |bp| {
            record_for_token(bp, token).is_some_and(|r| is_done(&r))
        })
        .await;
    let r = record_for_token(&bp, token).expect("record");
    (bp, r)
}

/// Sets the backup-now annotation.
fn backup_now(ns: &TestNamespace, policy: &str, token: &str) {
    ns.kubectl_ok(&[
        "annotate",
        "bp",
        policy,
        &format!("{BACKUP_NOW}={token}"),
        "--overwrite",
    ]);
}

/// Every Job of `policy` (backup, verify and prune), sorted by name.
async fn policy_jobs(ns: &TestNamespace, policy: &str) -> Vec<Job> {
    let mut jobs = ns
        .api::<Job>()
        .list(&ListParams::default().labels(&format!("{POLICY_LABEL}={policy}")))
        .await
        .expect("list jobs")
        .items;
    jobs.sort_by_key(|j| j.name_any());
    jobs
}

fn names(jobs: &[Job]) -> Vec<String> {
    jobs.iter().map(ResourceExt::name_any).collect()
}

/// Names of `policy`'s Jobs, sorted.
async fn job_names(ns: &TestNamespace, policy: &str) -> Vec<String> {
    names(&policy_jobs(ns, policy).await)
}

/// Polls the Job names of `policy` until they equal `want` (sorted); returns them.
async fn wait_job_names(ns: &TestNamespace, policy: &str, mut want: Vec<String>) {
    want.sort();
    let started = Instant::now();
    loop {
        let have = job_names(ns, policy).await;
        if have == want {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "Jobs of {policy} never became {want:?}; last seen {have:?}; status: {:#?}",
            get_policy(ns, policy).await.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn job_condition_true(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

fn job_succeeded(job: &Job) -> bool {
    job_condition_true(job, "Complete")
}

fn job_failed(job: &Job) -> bool {
    job_condition_true(job, "Failed")
}

/// Finished as the operator may see it: Complete or Failed, or about to be (the Job
/// controller adds SuccessCriteriaMet / FailureTarget first).
fn job_finished(job: &Job) -> bool {
    ["Complete", "Failed", "SuccessCriteriaMet", "FailureTarget"]
        .iter()
        .any(|t| job_condition_true(job, t))
}

/// When the Job completed or failed (second precision).
fn job_end(job: &Job) -> Option<Timestamp> {
    let status = job.status.as_ref()?;
    if let Some(t) = &status.completion_time {
        return Some(t.0);
    }
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

fn created(job: &Job) -> Timestamp {
    job.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .expect("creationTimestamp")
}

fn label<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

fn annotation<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The env of the Job's first container, as name -> value.
fn job_env(job: &Job) -> BTreeMap<String, String> {
    job.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect()
}

/// Waits until Job `name` exists and has finished.
async fn wait_job_finished(ns: &TestNamespace, name: &str) -> Job {
    ns.wait_for::<Job>(name, "finished", job_finished).await
}

async fn wait_job_exists(ns: &TestNamespace, name: &str) -> Job {
    ns.wait_for::<Job>(name, "created", |_| true).await
}

/// `<policy>-<unix minutes of at>`.
fn scheduled_job(policy: &str, at: Timestamp) -> String {
    format!("{policy}-{}", at.as_second().div_euclid(60))
}

/// The scheduled minute a scheduled backup Job's name stands for.
fn minute_of(policy: &str, job: &str) -> Option<i64> {
    job.strip_prefix(&format!("{policy}-"))?.parse().ok()
}

/// The first `* * * * *` time strictly after the policy's creation.
fn first_due(bp: &BackupPolicy) -> Timestamp {
    let created = bp
        .metadata
        .creation_timestamp
        .as_ref()
        .expect("creationTimestamp")
        .0
        .as_second();
    Timestamp::from_second((created.div_euclid(60) + 1) * 60).expect("a timestamp")
}

fn secs(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

async fn sleep_until(at: Timestamp) {
    let left = at.duration_since(Timestamp::now());
    if left.is_positive() {
        tokio::time::sleep(left.unsigned_abs()).await;
    }
}

/// Returns at once when the current minute has at least `room` seconds left; otherwise
/// sleeps until one second into the next minute.
async fn with_room_in_this_minute(room: i64) {
    let now = Timestamp::now().as_second();
    if 60 - now.rem_euclid(60) < room {
        sleep_until(Timestamp::from_second((now.div_euclid(60) + 1) * 60 + 1).expect("ts")).await;
    }
}

/// Messages of the policy's Events with `reason`, once there is one.
async fn wait_for_any_event(ns: &TestNamespace, name: &str, reason: &str) -> String {
    let started = Instant::now();
    loop {
        let messages = ns.event_messages(name, reason);
        if !messages.is_empty() {
            return messages;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "no {reason} Event about {name}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The count of BackupPolicy reconciles the operator has started.
fn reconciles(ns: &TestNamespace) -> f64 {
    let metrics = http_get(&ns.operator().probe, "/metrics").expect("metrics");
    counter_sum(
        &metrics,
        "runbook_operator_reconciles_total",
        "controller=\"backuppolicy\"",
    )
}

/// Asserts that at most one Job of the policy is unfinished (never two at once).
fn assert_at_most_one_running(policy: &str, jobs: &[Job]) {
    let running: Vec<String> = jobs
        .iter()
        .filter(|j| !job_finished(j))
        .map(ResourceExt::name_any)
        .collect();
    assert!(
        running.len() <= 1,
        "two Jobs of {policy} at once: {running:?}"
    );
}

fn run_phase(r: &RunbookRun) -> &str {
    r.status
        .as_ref()
        .and_then(|s| s.phase.map(|p| p.as_str()))
        .unwrap_or_default()
}

async fn run_finished(ns: &TestNamespace, name: &str) -> RunbookRun {
    ns.wait_for::<RunbookRun>(name, "finished", |r| {
        matches!(run_phase(r), "Succeeded" | "Failed" | "Cancelled")
    })
    .await
}

fn step<'a>(r: &'a RunbookRun, name: &str) -> &'a StepStatus {
    r.status
        .as_ref()
        .and_then(|s| s.steps.iter().find(|e| e.name == name))
        .unwrap_or_else(|| panic!("no journal entry for step {name:?}: {:#?}", r.status))
}

async fn wait_runbook_ready(ns: &TestNamespace, name: &str) {
    ns.wait_for::<Runbook>(name, "Ready", |o| {
        o.status
            .as_ref()
            .is_some_and(|s| ready(&s.conditions, s.observed_generation, o.metadata.generation))
    })
    .await;
}

fn window_status(mw: &MaintenanceWindow) -> MaintenanceWindowStatus {
    mw.status.clone().unwrap_or_default()
}

async fn replicas_and_generation(ns: &TestNamespace, name: &str) -> (Option<i32>, Option<i64>) {
    let d = ns
        .api::<Deployment>()
        .get(name)
        .await
        .expect("get deployment");
    (d.spec.and_then(|s| s.replicas), d.metadata.generation)
}

// ---------------------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------------------

/// Nothing runs at creation; at the first scheduled minute a Job named `<policy>-<unix
/// minutes>` is created with the policy's labels, the scheduled-time annotation, an owner
/// reference to the policy and the BACKUP_* env. Its success is recorded (history,
/// lastSuccessfulTime, LastBackupSucceeded True Succeeded, Events); a policy whose pod fails
/// records Failed and LastBackupSucceeded False BackupFailed.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn scheduled_backups_run_at_the_next_minute_and_record_success_and_failure() {
    let mut ns = TestNamespace::new("bp-sched").await;
    ns.start_operator();
    ns.apply(&policy("nightly", &cron(EVERY_MINUTE), &succeeds(), ""));
    ns.apply(&policy("broken", &cron(EVERY_MINUTE), &fails(), ""));

    let bp = wait_scheduled(&ns, "nightly").await;
    let due = first_due(&bp);
    // Seen after the first due minute only if the policy was created in the last moments of
    // a minute.
    let next = time(&status(&bp).next_schedule_time).expect("nextScheduleTime");
    assert!(
        next >= due,
        "nextScheduleTime {next}, created {:?}",
        bp.metadata.creation_timestamp
    );
    assert_eq!(next.as_second() % 60, 0, "a minute boundary: {next}");
    let job_name = scheduled_job("nightly", due);

    let job = ns
        .wait_for::<Job>(&job_name, "complete", job_succeeded)
        .await;
    assert_eq!(
        label(&job, POLICY_LABEL),
        Some("nightly"),
        "{:?}",
        job.metadata.labels
    );
    assert_eq!(
        label(&job, STAGE_LABEL),
        Some("backup"),
        "{:?}",
        job.metadata.labels
    );
    assert_eq!(
        label(&job, BACKUP_LABEL),
        None,
        "only verify/prune Jobs name their backup"
    );
    let annotated: Timestamp = annotation(&job, SCHEDULED_TIME)
        .unwrap_or_else(|| panic!("no {SCHEDULED_TIME}: {:?}", job.metadata.annotations))
        .parse()
        .expect("RFC 3339 scheduled time");
    assert_eq!(annotated, due);
    let owners = job.metadata.owner_references.clone().unwrap_or_default();
    assert!(
        owners.iter().any(|o| o.kind == "BackupPolicy"
            && o.name == "nightly"
            && Some(&o.uid) == bp.metadata.uid.as_ref()
            && o.controller == Some(true)),
        "not owned by the policy: {owners:#?}"
    );
    let env = job_env(&job);
    assert_eq!(
        env.get("BACKUP_POLICY").map(String::as_str),
        Some("nightly"),
        "{env:?}"
    );
    assert_eq!(env.get("BACKUP_JOB_NAME"), Some(&job_name), "{env:?}");
    let env_time: Timestamp = env
        .get("BACKUP_SCHEDULED_TIME")
        .unwrap_or_else(|| panic!("no BACKUP_SCHEDULED_TIME: {env:?}"))
        .parse()
        .expect("RFC 3339");
    assert_eq!(env_time, due);

    let (bp, r) = wait_done(&ns, "nightly", &job_name).await;
    assert_eq!(r.trigger, BackupTrigger::Schedule, "{r:#?}");
    assert_eq!(time(&r.scheduled_time), Some(due), "{r:#?}");
    assert_eq!(r.result, BackupResult::Succeeded, "{r:#?}");
    assert_eq!(r.verified, None, "no verify set: {r:#?}");
    assert!(r.start_time.is_some(), "{r:#?}");
    assert_eq!(time(&r.completion_time), job_end(&job), "{r:#?}");
    let s = status(&bp);
    let newest_success = s
        .history
        .iter()
        .filter(|r| r.result == BackupResult::Succeeded)
        .filter_map(|r| time(&r.completion_time))
        .max();
    assert_eq!(time(&s.last_successful_time), newest_success, "{s:#?}");
    assert!(time(&s.last_schedule_time) >= Some(due), "{s:#?}");
    assert_eq!(
        cond_state(&bp, "LastBackupSucceeded"),
        ("True".to_owned(), "Succeeded".to_owned()),
        "{s:#?}"
    );
    ns.wait_for_event("nightly", "BackupStarted", &job_name)
        .await;
    wait_for_any_event(&ns, "nightly", "BackupSucceeded").await;
    // Nothing ran at creation: no Job stands for a minute before the first due one.
    for name in job_names(&ns, "nightly").await {
        let minute =
            minute_of("nightly", &name).unwrap_or_else(|| panic!("a scheduled Job name: {name}"));
        assert!(minute >= due.as_second() / 60, "{name} is older than {due}");
    }

    // The failing policy.
    let broken = get_policy(&ns, "broken").await;
    let failed_name = scheduled_job("broken", first_due(&broken));
    let (bp, r) = wait_done(&ns, "broken", &failed_name).await;
    assert_eq!(r.result, BackupResult::Failed, "{r:#?}");
    assert!(
        r.message.as_deref().is_some_and(|m| !m.is_empty()),
        "{r:#?}"
    );
    assert!(r.completion_time.is_some(), "{r:#?}");
    let s = status(&bp);
    assert_eq!(s.last_successful_time, None, "{s:#?}");
    let c = bp_condition(&bp, "LastBackupSucceeded").expect("LastBackupSucceeded");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "BackupFailed"),
        "{c:?}"
    );
    assert!(c.message.contains(&failed_name), "names the Job: {c:?}");
    let job = wait_job_finished(&ns, &failed_name).await;
    assert!(job_failed(&job), "{:#?}", job.status);
    wait_for_any_event(&ns, "broken", "BackupFailed").await;
}

/// After a good backup the verify Job `<job>-verify` runs (BACKUP_JOB_NAME = the backup Job),
/// its pass is recorded (verified true, lastVerifiedTime) and then `<job>-prune` runs. A failed
/// verification records verified false, leaves lastVerifiedTime unset, sets
/// LastBackupSucceeded False VerificationFailed, and no prune Job ever runs.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn verification_is_recorded_and_prune_runs_only_after_a_verified_backup() {
    let mut ns = TestNamespace::new("bp-verify").await;
    ns.start_operator();
    ns.apply(&policy(
        "checked",
        &cron(NEVER),
        &succeeds(),
        &format!("{}{}", verify(&succeeds()), prune(&succeeds())),
    ));
    ns.apply(&policy(
        "suspect",
        &cron(NEVER),
        &succeeds(),
        &format!("{}{}", verify(&fails()), prune(&succeeds())),
    ));
    wait_scheduled(&ns, "checked").await;
    wait_scheduled(&ns, "suspect").await;
    backup_now(&ns, "checked", "t1");
    backup_now(&ns, "suspect", "t1");

    // Verified and pruned.
    let (bp, r) = wait_token_done(&ns, "checked", "t1").await;
    let job = r.job.clone();
    assert!(job.starts_with("checked-now-"), "{r:#?}");
    assert_eq!(r.trigger, BackupTrigger::BackupNow, "{r:#?}");
    assert_eq!(r.result, BackupResult::Succeeded, "{r:#?}");
    assert_eq!(r.verified, Some(true), "{r:#?}");
    assert_eq!(r.pruned, Some(true), "{r:#?}");
    let s = status(&bp);
    assert_eq!(s.last_verified_time, r.completion_time, "{s:#?}");
    assert_eq!(s.last_successful_time, r.completion_time, "{s:#?}");
    assert_eq!(s.last_handled_backup_now.as_deref(), Some("t1"), "{s:#?}");
    assert_eq!(
        cond_state(&bp, "LastBackupSucceeded"),
        ("True".to_owned(), "Verified".to_owned()),
        "{s:#?}"
    );
    let backup = wait_job_finished(&ns, &job).await;
    assert_eq!(annotation(&backup, BACKUP_NOW), Some("t1"));
    assert_eq!(annotation(&backup, SCHEDULED_TIME), None, "on-demand");
    let checker = wait_job_finished(&ns, &format!("{job}-verify")).await;
    let pruner = wait_job_finished(&ns, &format!("{job}-prune")).await;
    for (j, stage) in [(&checker, "verify"), (&pruner, "prune")] {
        assert!(job_succeeded(j), "{:#?}", j.status);
        assert_eq!(
            label(j, STAGE_LABEL),
            Some(stage),
            "{:?}",
            j.metadata.labels
        );
        assert_eq!(
            label(j, BACKUP_LABEL),
            Some(job.as_str()),
            "{:?}",
            j.metadata.labels
        );
        assert_eq!(
            label(j, POLICY_LABEL),
            Some("checked"),
            "{:?}",
            j.metadata.labels
        );
        let env = job_env(j);
        assert_eq!(env.get("BACKUP_JOB_NAME"), Some(&job), "{stage}: {env:?}");
        assert_eq!(
            env.get("BACKUP_POLICY").map(String::as_str),
            Some("checked")
        );
        assert_eq!(
            env.get("BACKUP_SCHEDULED_TIME"),
            job_env(&backup).get("BACKUP_SCHEDULED_TIME"),
            "{stage} and backup agree: {env:?}"
        );
    }
    // In order: backup, then verify, then prune.
    assert!(created(&checker) >= job_end(&backup).expect("backup end"));
    assert!(created(&pruner) >= job_end(&checker).expect("verify end"));
    wait_for_any_event(&ns, "checked", "BackupVerified").await;

    // Verification failed: not verified, not pruned.
    let (bp, r) = wait_token_done(&ns, "suspect", "t1").await;
    let job = r.job.clone();
    assert_eq!(
        r.result,
        BackupResult::Succeeded,
        "the backup itself worked: {r:#?}"
    );
    assert_eq!(r.verified, Some(false), "{r:#?}");
    assert_ne!(r.pruned, Some(true), "{r:#?}");
    assert!(
        r.message
            .as_deref()
            .is_some_and(|m| m.contains(&format!("{job}-verify"))),
        "the message names the verify Job: {r:#?}"
    );
    let s = status(&bp);
    assert_eq!(s.last_verified_time, None, "{s:#?}");
    assert_eq!(s.last_successful_time, r.completion_time, "{s:#?}");
    let c = bp_condition(&bp, "LastBackupSucceeded").expect("LastBackupSucceeded");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "VerificationFailed"),
        "{c:?}"
    );
    let checker = wait_job_finished(&ns, &format!("{job}-verify")).await;
    assert!(job_failed(&checker), "{:#?}", checker.status);
    assert_eq!(
        job_env(&checker).get("BACKUP_JOB_NAME"),
        Some(&job),
        "{:?}",
        job_env(&checker)
    );
    wait_for_any_event(&ns, "suspect", "VerificationFailed").await;
    // The record is Done: nothing more runs for it, and no prune Job was made.
    assert_eq!(
        job_names(&ns, "suspect").await,
        [job.clone(), format!("{job}-verify")]
    );
    assert_eq!(
        phase(&get_policy(&ns, "suspect").await),
        Some(BackupPolicyPhase::Scheduled)
    );
}

/// Retention keeps the newest successfulJobs good backups' Jobs (with their verify Jobs) and
/// the newest failedJobs failed ones, deleting older Jobs; the history keeps every record.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn retention_keeps_the_newest_jobs_and_deletes_older_ones() {
    let mut ns = TestNamespace::new("bp-retain").await;
    ns.start_operator();
    let retention = "  retention: {successfulJobs: 2, failedJobs: 1}\n";
    ns.apply(&policy(
        "keep",
        &cron(NEVER),
        &succeeds(),
        &format!("{}{retention}", verify(&succeeds())),
    ));
    ns.apply(&policy("flaky", &cron(NEVER), &fails(), retention));
    wait_scheduled(&ns, "keep").await;
    wait_scheduled(&ns, "flaky").await;

    let mut good = Vec::new();
    let mut bad = Vec::new();
    for i in 1..=4 {
        backup_now(&ns, "keep", &format!("k{i}"));
        if i <= 3 {
            backup_now(&ns, "flaky", &format!("f{i}"));
        }
        let (_, r) = wait_token_done(&ns, "keep", &format!("k{i}")).await;
        assert_eq!(
            (r.result, r.verified),
            (BackupResult::Succeeded, Some(true)),
            "{r:#?}"
        );
        good.push(r.job);
        if i <= 3 {
            let (_, r) = wait_token_done(&ns, "flaky", &format!("f{i}")).await;
            assert_eq!(r.result, BackupResult::Failed, "{r:#?}");
            bad.push(r.job);
        }
    }

    let newest: Vec<String> = good[2..]
        .iter()
        .flat_map(|j| [j.clone(), format!("{j}-verify")])
        .collect();
    wait_job_names(&ns, "keep", newest).await;
    wait_job_names(&ns, "flaky", vec![bad[2].clone()]).await;

    // Records are not dropped by retention: newest first.
    let s = status(&get_policy(&ns, "keep").await);
    let recorded: Vec<&str> = s.history.iter().map(|r| r.job.as_str()).collect();
    let expected: Vec<&str> = good.iter().rev().map(String::as_str).collect();
    assert_eq!(recorded, expected, "{s:#?}");
    let s = status(&get_policy(&ns, "flaky").await);
    let recorded: Vec<&str> = s.history.iter().map(|r| r.job.as_str()).collect();
    let expected: Vec<&str> = bad.iter().rev().map(String::as_str).collect();
    assert_eq!(recorded, expected, "{s:#?}");
}

/// With rpo 20s: BackupFresh is Unknown (AwaitingFirstBackup) before the first backup, True
/// (WithinRPO) after it, and turns False (RPOViolated) at lastSuccessfulTime + 20s exactly, as
/// its lastTransitionTime says; an RPOViolated Event is published; the operator's metrics
/// report the backup's age for the policy.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn backup_fresh_turns_false_exactly_when_the_rpo_passes() {
    let mut ns = TestNamespace::new("bp-rpo").await;
    ns.start_operator();
    ns.apply(&policy("fresh", &cron(NEVER), &succeeds(), "  rpo: 20s\n"));

    let bp = ns
        .wait_for::<BackupPolicy>("fresh", "with a BackupFresh condition", |bp| {
            observed(bp) && bp_condition(bp, "BackupFresh").is_some()
        })
        .await;
    let created = bp
        .metadata
        .creation_timestamp
        .as_ref()
        .expect("creationTimestamp")
        .0;
    let c = bp_condition(&bp, "BackupFresh").expect("BackupFresh");
    if Timestamp::now() < created + secs(20) {
        // Only meaningful while created + rpo is ahead of the moment the condition was read.
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("Unknown", "AwaitingFirstBackup"),
            "{c:?}"
        );
    }
    backup_now(&ns, "fresh", "first");

    let bp = ns
        .wait_for::<BackupPolicy>("fresh", "BackupFresh True", |bp| {
            cond_state(bp, "BackupFresh") == ("True".to_owned(), "WithinRPO".to_owned())
        })
        .await;
    let good = time(&status(&bp).last_successful_time).expect("lastSuccessfulTime");
    let (_, r) = wait_token_done(&ns, "fresh", "first").await;
    assert_eq!(time(&r.completion_time), Some(good), "{r:#?}");

    let bp = ns
        .wait_for::<BackupPolicy>("fresh", "BackupFresh False", |bp| {
            cond_state(bp, "BackupFresh").0 == "False"
        })
        .await;
    let c = bp_condition(&bp, "BackupFresh").expect("BackupFresh");
    assert_eq!(c.reason, "RPOViolated", "{c:?}");
    assert_eq!(
        c.last_transition_time.0,
        good + secs(20),
        "flipped at lastSuccessfulTime + rpo: {c:?}"
    );
    assert_eq!(
        time(&status(&bp).last_successful_time),
        Some(good),
        "no other backup ran"
    );
    wait_for_any_event(&ns, "fresh", "RPOViolated").await;

    let metrics = http_get(&ns.operator().probe, "/metrics").expect("metrics");
    let series: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("runbook_operator_backup_age_seconds{")
                && l.contains(&format!("namespace=\"{}\"", ns.name))
                && l.contains("policy=\"fresh\"")
        })
        .collect();
    assert_eq!(series.len(), 1, "one age series for the policy:\n{metrics}");
    let age: f64 = series[0]
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a value: {}", series[0]));
    assert!(
        age >= 20.0,
        "read after the flip at lastSuccessfulTime + 20s, the age is at least 20s: {age}"
    );
}

/// Operator down across two due minutes: with startingDeadline 5m exactly one backup runs
/// when it returns, for the latest due minute, and BackupStarted says it is a catch-up; with
/// startingDeadline 10s (returned 15s after the latest) nothing runs and BackupSkipped says so.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn after_downtime_one_catch_up_runs_within_the_deadline_and_none_past_it() {
    let mut ns = TestNamespace::new("bp-catchup").await;
    // Created early in a minute, so the operator is stopped before the first due time.
    with_room_in_this_minute(30).await;
    ns.start_operator();
    ns.apply(&policy(
        "lenient",
        &format!("{}, startingDeadline: 5m", cron(EVERY_MINUTE)),
        &succeeds(),
        "",
    ));
    ns.apply(&policy(
        "strict",
        &format!("{}, startingDeadline: 10s", cron(EVERY_MINUTE)),
        &succeeds(),
        "",
    ));
    wait_scheduled(&ns, "lenient").await;
    wait_scheduled(&ns, "strict").await;

    ns.stop_operator();
    // The first time not yet handled, as the stopped operator left it.
    let next = |bp: &BackupPolicy| time(&status(bp).next_schedule_time).expect("next");
    let lenient = get_policy(&ns, "lenient").await;
    let strict = get_policy(&ns, "strict").await;
    let first = next(&lenient);
    assert_eq!(first, next(&strict), "created in the same minute");
    let second = first + secs(60);
    let before_lenient = job_names(&ns, "lenient").await;
    let before_strict = job_names(&ns, "strict").await;

    sleep_until(second + secs(15)).await;
    ns.start_operator();

    // Within the deadline: one Job, for the latest due minute.
    let latest = scheduled_job("lenient", second);
    wait_job_exists(&ns, &latest).await;
    let started = ns.wait_for_event("lenient", "BackupStarted", &latest).await;
    assert!(
        started.to_lowercase().contains("catch-up"),
        "BackupStarted mentions the catch-up: {started}"
    );
    let (bp, r) = wait_done(&ns, "lenient", &latest).await;
    assert_eq!(time(&r.scheduled_time), Some(second), "{r:#?}");
    assert!(
        records_at(&bp, first).is_empty(),
        "{:#?}",
        status(&bp).history
    );
    let in_downtime = |policy: &str, names: Vec<String>| -> Vec<String> {
        names
            .into_iter()
            .filter(|n| {
                minute_of(policy, n)
                    .is_some_and(|m| m >= first.as_second() / 60 && m <= second.as_second() / 60)
            })
            .collect()
    };
    assert!(in_downtime("lenient", before_lenient).is_empty());
    assert_eq!(
        in_downtime("lenient", job_names(&ns, "lenient").await),
        std::slice::from_ref(&latest),
        "exactly one backup for the downtime"
    );

    // Past the deadline: nothing for the downtime.
    let skipped = wait_for_any_event(&ns, "strict", "BackupSkipped").await;
    let bp = ns
        .wait_for::<BackupPolicy>("strict", "past the missed times", |bp| {
            time(&status(bp).last_schedule_time) >= Some(second)
        })
        .await;
    assert!(in_downtime("strict", before_strict).is_empty());
    assert_eq!(
        in_downtime("strict", job_names(&ns, "strict").await),
        Vec::<String>::new(),
        "nothing ran past startingDeadline; BackupSkipped: {skipped}; status: {:#?}",
        bp.status
    );
    assert!(
        records_at(&bp, first).is_empty() && records_at(&bp, second).is_empty(),
        "{:#?}",
        bp.status
    );
}

/// The operator killed while a backup Job runs and restarted: the running Job is adopted, not
/// duplicated: exactly one Job (the same object) and one history record for that time.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn operator_killed_mid_backup_makes_no_second_job() {
    let mut ns = TestNamespace::new("bp-kill").await;
    ns.start_operator();
    // Created early enough in a minute to see the policy Scheduled before its first backup.
    with_room_in_this_minute(15).await;
    ns.apply(&policy(
        "slow",
        &cron(EVERY_MINUTE),
        &succeeds_after("40s"),
        "",
    ));
    let bp = wait_scheduled(&ns, "slow").await;
    let due = first_due(&bp);
    let name = scheduled_job("slow", due);
    let job = wait_job_exists(&ns, &name).await;
    let uid = job.metadata.uid.clone();

    ns.stop_operator();
    tokio::time::sleep(Duration::from_secs(2)).await;
    ns.start_operator();

    let (bp, r) = wait_done(&ns, "slow", &name).await;
    assert_eq!(r.result, BackupResult::Succeeded, "{r:#?}");
    let job = ns.api::<Job>().get(&name).await.expect("get job");
    assert_eq!(job.metadata.uid, uid, "the same Job, not a new one");
    let end = job_end(&job).expect("finished");
    let for_due: Vec<String> = policy_jobs(&ns, "slow")
        .await
        .iter()
        .filter(|j| {
            annotation(j, SCHEDULED_TIME).and_then(|t| t.parse::<Timestamp>().ok()) == Some(due)
        })
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(for_due, std::slice::from_ref(&name));
    assert_eq!(records_at(&bp, due).len(), 1, "{:#?}", status(&bp).history);
    // Nothing else started while it ran.
    for other in policy_jobs(&ns, "slow").await {
        if other.name_any() != name {
            assert!(
                created(&other) >= end,
                "{} started before {name} ended",
                other.name_any()
            );
        }
    }
}

/// One backup per backup-now token: token a makes one Job; the same token again (and any
/// other change to the policy) makes none; token b makes another; a token already used makes
/// none either.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn backup_now_runs_one_backup_per_token() {
    let mut ns = TestNamespace::new("bp-now").await;
    ns.start_operator();
    ns.apply(&policy("ondemand", &cron(NEVER), &succeeds(), ""));
    wait_scheduled(&ns, "ondemand").await;

    backup_now(&ns, "ondemand", "a");
    let (bp, a) = wait_token_done(&ns, "ondemand", "a").await;
    assert_eq!(
        (a.trigger, a.result),
        (BackupTrigger::BackupNow, BackupResult::Succeeded),
        "{a:#?}"
    );
    assert_eq!(a.scheduled_time, None, "{a:#?}");
    assert_eq!(status(&bp).last_handled_backup_now.as_deref(), Some("a"));
    let job = wait_job_finished(&ns, &a.job).await;
    assert_eq!(annotation(&job, BACKUP_NOW), Some("a"));
    let hex = a.job.strip_prefix("ondemand-now-").unwrap_or_default();
    assert!(
        hex.len() == 8 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "<policy>-now-<8 hex>: {}",
        a.job
    );
    ns.wait_for_event("ondemand", "BackupStarted", &a.job).await;

    // The same token again, with another change so the policy is reconciled: no new Job.
    let before = reconciles(&ns);
    backup_now(&ns, "ondemand", "a");
    ns.kubectl_ok(&["annotate", "bp", "ondemand", "touched=1", "--overwrite"]);
    let started = Instant::now();
    while reconciles(&ns) <= before {
        assert!(
            started.elapsed() < PATIENCE,
            "the change was never reconciled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        job_names(&ns, "ondemand").await,
        std::slice::from_ref(&a.job)
    );

    backup_now(&ns, "ondemand", "b");
    let (_, b) = wait_token_done(&ns, "ondemand", "b").await;
    assert_ne!(b.job, a.job);
    let mut both = vec![a.job.clone(), b.job.clone()];
    both.sort();
    assert_eq!(job_names(&ns, "ondemand").await, both);

    // A used token again: handled (lastHandledBackupNow), but no third Job.
    backup_now(&ns, "ondemand", "a");
    let bp = ns
        .wait_for::<BackupPolicy>("ondemand", "token a handled again", |bp| {
            status(bp).last_handled_backup_now.as_deref() == Some("a")
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(job_names(&ns, "ondemand").await, both);
    assert_eq!(status(&bp).history.len(), 2, "{:#?}", bp.status);
}

/// Never two at once: a token set while a 40s scheduled backup runs starts only after it
/// finished; a scheduled minute that comes due while that one runs is recorded Pending
/// (BackupDelayed) and starts only after it finished. At no moment do two Jobs run.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn backups_never_overlap_tokens_and_due_times_wait_their_turn() {
    let mut ns = TestNamespace::new("bp-busy").await;
    ns.start_operator();
    with_room_in_this_minute(15).await;
    ns.apply(&policy(
        "busy",
        &cron(EVERY_MINUTE),
        &succeeds_after("40s"),
        "",
    ));
    let bp = wait_scheduled(&ns, "busy").await;
    let due = first_due(&bp);
    let first = scheduled_job("busy", due);
    wait_job_exists(&ns, &first).await;
    backup_now(&ns, "busy", "urgent");

    // Sampled until the third backup (the delayed scheduled one) has started.
    let delayed = scheduled_job("busy", due + secs(60));
    let mut seen_pending = false;
    let mut urgent_job: Option<String> = None;
    let started = Instant::now();
    loop {
        let jobs = policy_jobs(&ns, "busy").await;
        assert_at_most_one_running("busy", &jobs);
        let bp = get_policy(&ns, "busy").await;
        if let Some(r) = record(&bp, &delayed)
            && r.result == BackupResult::Pending
        {
            seen_pending = true;
            assert_eq!(r.trigger, BackupTrigger::Schedule, "{r:#?}");
            assert_eq!(time(&r.scheduled_time), Some(due + secs(60)), "{r:#?}");
        }
        if urgent_job.is_none() {
            urgent_job = record_for_token(&bp, "urgent").map(|r| r.job);
        }
        if jobs.iter().any(|j| j.name_any() == delayed) {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE * 2,
            "the delayed backup never started; jobs {:?}; status {:#?}",
            names(&jobs),
            bp.status
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(seen_pending, "{delayed} was never recorded Pending");
    wait_for_any_event(&ns, "busy", "BackupDelayed").await;
    let urgent_job = urgent_job.expect("the token's backup ran");

    let get = |name: String| {
        let api = ns.api::<Job>();
        async move { api.get(&name).await.expect("get job") }
    };
    let first_job = get(first.clone()).await;
    let urgent = get(urgent_job.clone()).await;
    let third = get(delayed.clone()).await;
    assert!(
        created(&urgent) >= job_end(&first_job).expect("first ended"),
        "the token's Job was created at {} before {first} ended at {:?}",
        created(&urgent),
        job_end(&first_job)
    );
    assert!(
        created(&third) >= job_end(&urgent).expect("token's ended"),
        "{delayed} was created at {} before {urgent_job} ended at {:?}",
        created(&third),
        job_end(&urgent)
    );
    assert_eq!(
        annotation(&third, SCHEDULED_TIME).and_then(|t| t.parse::<Timestamp>().ok()),
        Some(due + secs(60))
    );
}

/// A Runbook `backup` step starts one backup of the policy (token `<run>/<step>/<attempt>`)
/// and waits for it and its verification: the run succeeds when both pass; with a failing
/// verification the step fails with reason VerificationFailed and the run fails.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn runbook_backup_step_waits_for_the_backup_and_its_verification() {
    let mut ns = TestNamespace::new("bp-step").await;
    ns.start_operator();
    ns.apply(&policy(
        "db",
        &cron(NEVER),
        &succeeds(),
        &verify(&succeeds_after("3s")),
    ));
    ns.apply(&policy(
        "db-unchecked",
        &cron(NEVER),
        &succeeds(),
        &verify(&fails()),
    ));
    wait_scheduled(&ns, "db").await;
    wait_scheduled(&ns, "db-unchecked").await;
    ns.apply(&runbook(
        "backup-db",
        "  steps:\n  - {name: dump, backup: {policy: db}}",
    ));
    ns.apply(&runbook(
        "backup-unchecked",
        "  steps:\n  - {name: dump, backup: {policy: db-unchecked}}",
    ));
    wait_runbook_ready(&ns, "backup-db").await;
    wait_runbook_ready(&ns, "backup-unchecked").await;
    ns.apply(&run("r1", "backup-db"));
    ns.apply(&run("r2", "backup-unchecked"));

    let r1 = run_finished(&ns, "r1").await;
    assert_eq!(run_phase(&r1), "Succeeded", "{:#?}", r1.status);
    let e = step(&r1, "dump");
    assert_eq!(e.phase, StepPhase::Succeeded, "{e:#?}");
    assert_eq!(e.target.as_deref(), Some("BackupPolicy/db"), "{e:#?}");
    let bp = get_policy(&ns, "db").await;
    let r = record_for_token(&bp, "r1/dump/1")
        .unwrap_or_else(|| panic!("no record for r1/dump/1: {:#?}", bp.status));
    assert_eq!(
        (r.result, r.verified),
        (BackupResult::Succeeded, Some(true)),
        "{r:#?}"
    );
    let checker = wait_job_finished(&ns, &format!("{}-verify", r.job)).await;
    let step_end = time(&e.completion_time).expect("step completionTime");
    assert!(
        step_end >= job_end(&checker).expect("verify ended"),
        "the step finished at {step_end}, before its verification ended: {:#?}",
        checker.status
    );

    let r2 = run_finished(&ns, "r2").await;
    assert_eq!(run_phase(&r2), "Failed", "{:#?}", r2.status);
    let e = step(&r2, "dump");
    assert_eq!(e.phase, StepPhase::Failed, "{e:#?}");
    assert_eq!(
        e.outputs.get("reason").map(String::as_str),
        Some("VerificationFailed"),
        "{e:#?}"
    );
    assert_eq!(
        e.target.as_deref(),
        Some("BackupPolicy/db-unchecked"),
        "{e:#?}"
    );
    let bp = get_policy(&ns, "db-unchecked").await;
    let r = record_for_token(&bp, "r2/dump/1")
        .unwrap_or_else(|| panic!("no record for r2/dump/1: {:#?}", bp.status));
    assert_eq!(
        (r.result, r.verified),
        (BackupResult::Succeeded, Some(false)),
        "{r:#?}"
    );
}

/// A window whose required beforeStart runbook takes a backup opens (Active, Deployment
/// scaled) only once the backup and its verification completed, though they end after the
/// window's start: at no moment is the Deployment scaled while the verify Job is unfinished.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn maintenance_window_opens_only_after_a_verified_backup() {
    let mut ns = TestNamespace::new("bp-gate").await;
    ns.apply(&deployment("web", 3));
    ns.start_operator();
    ns.apply(&policy(
        "db",
        &cron(NEVER),
        &succeeds_after("15s"),
        &verify(&succeeds_after("5s")),
    ));
    wait_scheduled(&ns, "db").await;
    ns.apply(&runbook(
        "pre",
        "  steps:\n  - {name: backup, backup: {policy: db}}",
    ));
    wait_runbook_ready(&ns, "pre").await;
    let start = from_now(20);
    let end = start + secs(60);
    ns.apply(&gated_window("night", start, end, "pre", "10s", "web"));

    let api = ns.api::<MaintenanceWindow>();
    let started = Instant::now();
    let open = loop {
        let mw = api.get("night").await.expect("get window");
        let (replicas, _) = replicas_and_generation(&ns, "web").await;
        let s = window_status(&mw);
        if replicas != Some(3) || s.phase.map(|p| p.as_str()) == Some("Active") {
            // Changed: the backup must be verified by now.
            let bp = get_policy(&ns, "db").await;
            let verified = status(&bp)
                .history
                .iter()
                .any(|r| r.verified == Some(true) && is_done(r));
            assert!(
                verified,
                "the window acted before the backup was verified: replicas {replicas:?}, window {:#?}, policy {:#?}",
                s, bp.status
            );
        }
        if s.phase.map(|p| p.as_str()) == Some("Active")
            && !s.saved.is_empty()
            && s.saved.iter().all(|v| v.applied)
        {
            break mw;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the window never opened: {:#?}; policy {:#?}",
            s,
            get_policy(&ns, "db").await.status
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(replicas_and_generation(&ns, "web").await.0, Some(0));

    let run_name = format!("night-pre-{}", start.as_second() / 60);
    let run = run_finished(&ns, &run_name).await;
    assert_eq!(run_phase(&run), "Succeeded", "{:#?}", run.status);
    let bp = get_policy(&ns, "db").await;
    let r = status(&bp)
        .history
        .into_iter()
        .find(|r| {
            r.request
                .as_deref()
                .is_some_and(|t| t.starts_with(&format!("{run_name}/")))
        })
        .unwrap_or_else(|| panic!("no backup for run {run_name}: {:#?}", bp.status));
    assert_eq!(
        (r.result, r.verified),
        (BackupResult::Succeeded, Some(true)),
        "{r:#?}"
    );
    let checker = wait_job_finished(&ns, &format!("{}-verify", r.job)).await;
    let verified_at = job_end(&checker).expect("verify ended");
    let active = condition(&window_status(&open).conditions, "Active")
        .cloned()
        .expect("Active condition");
    assert_eq!(active.status, "True", "{active:?}");
    assert!(
        active.last_transition_time.0 >= verified_at,
        "Active since {}, verification ended {verified_at}",
        active.last_transition_time.0
    );
    assert!(
        verified_at > start,
        "this test means the verification to end after the start ({start}): {verified_at}"
    );
    ns.delete_windows().await;
}

/// A window whose required beforeStart backup fails verification is skipped
/// (lastWindow.result PreflightFailed) and the Deployment is never touched.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn maintenance_window_is_skipped_when_its_backup_fails_verification() {
    let mut ns = TestNamespace::new("bp-gate-fail").await;
    ns.apply(&deployment("web", 3));
    ns.start_operator();
    ns.apply(&policy(
        "db",
        &cron(NEVER),
        &succeeds(),
        &verify(&fails_after("2s")),
    ));
    wait_scheduled(&ns, "db").await;
    ns.apply(&runbook(
        "pre",
        "  steps:\n  - {name: backup, backup: {policy: db}}",
    ));
    wait_runbook_ready(&ns, "pre").await;
    let before = replicas_and_generation(&ns, "web").await;
    let start = from_now(20);
    let end = start + secs(20);
    ns.apply(&gated_window("night", start, end, "pre", "10s", "web"));

    let api = ns.api::<MaintenanceWindow>();
    let started = Instant::now();
    let over = loop {
        let mw = api.get("night").await.expect("get window");
        let s = window_status(&mw);
        assert_eq!(
            replicas_and_generation(&ns, "web").await,
            before,
            "the Deployment changed although verification failed: {s:#?}"
        );
        assert_ne!(s.phase.map(|p| p.as_str()), Some("Active"), "{s:#?}");
        let recorded = s
            .last_window
            .as_ref()
            .is_some_and(|w| w.start.0 == start && w.result.is_some());
        if recorded && Timestamp::now() > end + secs(2) {
            break mw;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the occurrence was never recorded: {s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let s = window_status(&over);
    assert_eq!(
        s.last_window.and_then(|w| w.result).as_deref(),
        Some("PreflightFailed")
    );
    let run_name = format!("night-pre-{}", start.as_second() / 60);
    let run = run_finished(&ns, &run_name).await;
    assert_eq!(run_phase(&run), "Failed", "{:#?}", run.status);
    let bp = get_policy(&ns, "db").await;
    let r = status(&bp)
        .history
        .into_iter()
        .find(|r| {
            r.request
                .as_deref()
                .is_some_and(|t| t.starts_with(&format!("{run_name}/")))
        })
        .unwrap_or_else(|| panic!("no backup for run {run_name}: {:#?}", bp.status));
    assert_eq!(r.verified, Some(false), "{r:#?}");
    ns.delete_windows().await;
}

/// An unknown time zone or a cron that does not parse: Stalled InvalidSpec naming
/// spec.schedule.timeZone / spec.schedule.cron, phase Invalid, no next time, and no Job even
/// after a minute boundary passed.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn invalid_schedule_or_time_zone_is_stalled_and_runs_nothing() {
    let mut ns = TestNamespace::new("bp-invalid").await;
    ns.start_operator();
    ns.apply(&policy(
        "martian",
        &format!("{}, timeZone: Mars/Olympus_Mons", cron(EVERY_MINUTE)),
        &succeeds(),
        "",
    ));
    ns.apply(&policy("garbled", &cron("every minute"), &succeeds(), ""));
    for (name, field) in [
        ("martian", "spec.schedule.timeZone"),
        ("garbled", "spec.schedule.cron"),
    ] {
        let bp = ns
            .wait_for::<BackupPolicy>(name, "Stalled", |bp| {
                let s = status(bp);
                stalled(&s.conditions, s.observed_generation, bp.metadata.generation)
            })
            .await;
        let c = bp_condition(&bp, "Stalled").expect("Stalled");
        assert!(c.message.contains(field), "{name}: {c:?}");
        let s = status(&bp);
        assert_eq!(s.phase, Some(BackupPolicyPhase::Invalid), "{s:#?}");
        assert_eq!(s.next_schedule_time, None, "{s:#?}");
    }
    // Past the next minute boundary: still nothing.
    let now = Timestamp::now().as_second();
    sleep_until(Timestamp::from_second((now / 60 + 1) * 60 + 5).expect("ts")).await;
    let jobs = ns
        .api::<Job>()
        .list(&ListParams::default())
        .await
        .expect("jobs")
        .items;
    assert!(jobs.is_empty(), "{:?}", names(&jobs));
    let health = http_get(&ns.operator().probe, "/healthz").unwrap_or_default();
    assert!(health.starts_with("ok\n"), "{health}");
}

/// rpo shorter than the longest gap between scheduled times is a warning: ScheduleMeetsRPO
/// False RPOShorterThanSchedule naming spec.rpo, while Ready stays True.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn rpo_shorter_than_the_schedule_is_a_warning() {
    let mut ns = TestNamespace::new("bp-rpo-warn").await;
    ns.start_operator();
    ns.apply(&policy(
        "lax",
        &cron("*/5 * * * *"),
        &succeeds(),
        "  rpo: 30s\n",
    ));
    let bp = ns
        .wait_for::<BackupPolicy>("lax", "ScheduleMeetsRPO False", |bp| {
            observed(bp) && cond_state(bp, "ScheduleMeetsRPO").0 == "False"
        })
        .await;
    let c = bp_condition(&bp, "ScheduleMeetsRPO").expect("ScheduleMeetsRPO");
    assert_eq!(c.reason, "RPOShorterThanSchedule", "{c:?}");
    assert!(c.message.contains("spec.rpo"), "{c:?}");
    let s = status(&bp);
    assert!(
        ready(&s.conditions, s.observed_generation, bp.metadata.generation),
        "only a warning: {s:#?}"
    );
    assert_ne!(phase(&bp), Some(BackupPolicyPhase::Invalid));
}

/// A jobTemplate the API server refuses (restartPolicy Always, which Jobs may not use): the
/// due time's record is Failed with a message naming spec.jobTemplate, a JobRejected Event,
/// LastBackupSucceeded False JobRejected; the next minute still comes due and is recorded
/// (and rejected) again.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn job_template_the_api_server_rejects_is_recorded_and_tried_again_next_time() {
    let mut ns = TestNamespace::new("bp-reject").await;
    ns.start_operator();
    ns.apply(&policy(
        "refused",
        &cron(EVERY_MINUTE),
        "{spec: {template: {spec: {restartPolicy: Always, containers: [{name: dump, image: \"registry.example.com/pg-dump:1\"}]}}}}",
        "",
    ));
    let bp = wait_scheduled(&ns, "refused").await;
    let due = first_due(&bp);
    let first = scheduled_job("refused", due);
    let second = scheduled_job("refused", due + secs(60));

    let (bp, r) = wait_done(&ns, "refused", &first).await;
    assert_eq!(r.result, BackupResult::Failed, "{r:#?}");
    let c = bp_condition(&bp, "LastBackupSucceeded").expect("LastBackupSucceeded");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "JobRejected"),
        "{c:?}"
    );
    ns.wait_for_event("refused", "JobRejected", "spec.jobTemplate")
        .await;

    let (bp, r) = wait_done(&ns, "refused", &second).await;
    assert_eq!(r.result, BackupResult::Failed, "{r:#?}");
    assert!(job_names(&ns, "refused").await.is_empty());
    // Each record says which field to fix.
    for job in [&first, &second] {
        let r = record(&bp, job).unwrap_or_else(|| panic!("no record for {job}: {:#?}", bp.status));
        assert!(
            r.message
                .as_deref()
                .is_some_and(|m| m.contains("spec.jobTemplate")),
            "the record's message should name spec.jobTemplate: {r:#?}"
        );
    }
    assert_eq!(phase(&bp), Some(BackupPolicyPhase::Scheduled));
}

/// `kubectl get bp` shows NAME SCHEDULE LAST SUCCESS FRESH NEXT AGE, and the policy is listed
/// under the `ops` category.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn kubectl_get_shows_schedule_last_success_freshness_and_next() {
    let mut ns = TestNamespace::new("bp-columns").await;
    ns.start_operator();
    ns.apply(&policy(
        "nightly",
        &cron("0 1 * * *"),
        &succeeds(),
        "  rpo: 26h\n",
    ));
    wait_scheduled(&ns, "nightly").await;
    backup_now(&ns, "nightly", "now");
    wait_token_done(&ns, "nightly", "now").await;
    let bp = ns
        .wait_for::<BackupPolicy>("nightly", "fresh", |bp| {
            cond_state(bp, "BackupFresh").0 == "True"
        })
        .await;

    let table = ns.kubectl_ok(&["get", "bp"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        ["NAME", "SCHEDULE", "LAST SUCCESS", "FRESH", "NEXT", "AGE"],
        "{table}"
    );
    let row = lines
        .find(|l| l.starts_with("nightly "))
        .unwrap_or_else(|| panic!("no row for nightly:\n{table}"));
    assert!(row.contains("0 1 * * *"), "{table}");
    let next = time(&status(&bp).next_schedule_time).expect("next");
    assert!(row.contains(&next.to_string()), "NEXT is {next}: {table}");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert!(cells.contains(&"True"), "FRESH True: {table}");
    let ops = ns.kubectl_ok(&["get", "ops"]);
    assert!(
        ops.contains("backuppolicy.ops.runbook.dev/nightly"),
        "{ops}"
    );
}

/// A suspended policy runs no scheduled backup (phase Suspended, no next time) though a minute
/// comes due, while backup-now still works; unsuspending runs none of the missed times
/// (BackupSkipped) and scheduling resumes at the next minute.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn suspended_policy_runs_on_demand_only_and_unsuspending_runs_no_backlog() {
    let mut ns = TestNamespace::new("bp-suspend").await;
    ns.start_operator();
    ns.apply(&policy(
        "paused",
        &format!("{}, suspend: true", cron(EVERY_MINUTE)),
        &succeeds(),
        "",
    ));
    let bp = ns
        .wait_for::<BackupPolicy>("paused", "Suspended", |bp| {
            observed(bp) && phase(bp) == Some(BackupPolicyPhase::Suspended)
        })
        .await;
    assert_eq!(status(&bp).next_schedule_time, None, "{:#?}", bp.status);
    // A minute boundary passes: nothing scheduled runs.
    let boundary = first_due(&bp);
    sleep_until(boundary + secs(3)).await;
    assert!(job_names(&ns, "paused").await.is_empty());

    // On demand still runs.
    backup_now(&ns, "paused", "while-suspended");
    let (_, r) = wait_token_done(&ns, "paused", "while-suspended").await;
    assert_eq!(r.result, BackupResult::Succeeded, "{r:#?}");

    let unsuspended_at = Timestamp::now();
    ns.kubectl_ok(&[
        "patch",
        "bp",
        "paused",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"schedule":{"suspend":false}}}"#,
    ]);
    let bp = wait_scheduled(&ns, "paused").await;
    wait_for_any_event(&ns, "paused", "BackupSkipped").await;
    let next = time(&status(&bp).next_schedule_time).expect("next");
    assert!(next > unsuspended_at, "{next} is after the change");
    // The next minute runs; no missed one did.
    let resumed = scheduled_job("paused", next);
    wait_job_exists(&ns, &resumed).await;
    let bp = get_policy(&ns, "paused").await;
    for name in job_names(&ns, "paused").await {
        if let Some(minute) = minute_of("paused", &name) {
            assert!(
                minute * 60 > unsuspended_at.as_second(),
                "{name} stands for a time missed while suspended (unsuspended at {unsuspended_at}); status {:#?}",
                bp.status
            );
        }
    }
    assert!(
        status(&bp)
            .history
            .iter()
            .all(|r| time(&r.scheduled_time).is_none_or(|t| t > unsuspended_at)),
        "{:#?}",
        bp.status
    );
}

/// History keeps the last ten records, newest first; retention still keeps only
/// successfulJobs Jobs.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn history_keeps_the_last_ten_backups() {
    let mut ns = TestNamespace::new("bp-history").await;
    ns.start_operator();
    ns.apply(&policy(
        "many",
        &cron(NEVER),
        &succeeds(),
        "  retention: {successfulJobs: 1}\n",
    ));
    wait_scheduled(&ns, "many").await;
    let mut jobs = Vec::new();
    for i in 1..=12 {
        let token = format!("n{i}");
        backup_now(&ns, "many", &token);
        let (_, r) = wait_token_done(&ns, "many", &token).await;
        jobs.push(r.job);
    }
    let bp = get_policy(&ns, "many").await;
    let recorded: Vec<String> = status(&bp).history.iter().map(|r| r.job.clone()).collect();
    let newest_ten: Vec<String> = jobs.iter().rev().take(10).cloned().collect();
    assert_eq!(recorded, newest_ten, "{:#?}", bp.status);
    wait_job_names(&ns, "many", vec![jobs[11].clone()]).await;
}

/// Two runs whose backup steps ask the same policy at once (the annotation holds one token)
/// each get their own backup, one after the other, and both succeed.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn two_runs_backing_up_one_policy_at_once_each_get_their_own_backup() {
    let mut ns = TestNamespace::new("bp-two-runs").await;
    ns.start_operator();
    ns.apply(&policy(
        "db",
        &cron(NEVER),
        &succeeds_after("5s"),
        &verify(&succeeds()),
    ));
    wait_scheduled(&ns, "db").await;
    ns.apply(&runbook(
        "backup-db",
        "  steps:\n  - {name: dump, backup: {policy: db}}",
    ));
    wait_runbook_ready(&ns, "backup-db").await;
    ns.apply(&format!(
        "{}---\n{}",
        run("first", "backup-db"),
        run("second", "backup-db")
    ));

    for name in ["first", "second"] {
        let r = run_finished(&ns, name).await;
        assert_eq!(run_phase(&r), "Succeeded", "{name}: {:#?}", r.status);
    }
    let bp = get_policy(&ns, "db").await;
    let a = record_for_token(&bp, "first/dump/1")
        .unwrap_or_else(|| panic!("no backup for first: {:#?}", bp.status));
    let b = record_for_token(&bp, "second/dump/1")
        .unwrap_or_else(|| panic!("no backup for second: {:#?}", bp.status));
    assert_ne!(a.job, b.job);
    for r in [&a, &b] {
        assert_eq!(
            (r.result, r.verified),
            (BackupResult::Succeeded, Some(true)),
            "{r:#?}"
        );
    }
    // One after the other.
    let (first_job, second_job) = (
        ns.api::<Job>().get(&a.job).await.expect("job"),
        ns.api::<Job>().get(&b.job).await.expect("job"),
    );
    let (earlier, later) = if created(&first_job) <= created(&second_job) {
        (first_job, second_job)
    } else {
        (second_job, first_job)
    };
    let earlier_verify = ns
        .api::<Job>()
        .get(&format!("{}-verify", earlier.name_any()))
        .await
        .expect("verify job");
    assert!(
        created(&later) >= job_end(&earlier_verify).expect("verify ended"),
        "{} started before {} and its verification were done",
        later.name_any(),
        earlier.name_any()
    );
}
