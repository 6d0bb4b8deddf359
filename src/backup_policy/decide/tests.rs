use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::batch::v1::JobTemplateSpec;
use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde_json::json;

use super::conditions::{format_duration, schedule_meets_rpo};
use super::*;
use crate::backup_policy::status::{
    self, BACKUP_FRESH, LAST_BACKUP_SUCCEEDED, SCHEDULE_MEETS_RPO, StatusInputs,
};
use crate::backup_policy::types::{BackupPolicy, BackupSchedule, JobStage, Retention};
use crate::conditions::Status;
use crate::duration::Duration;
use crate::embedded::Embedded;
use crate::names::fnv32 as fnv;
use crate::testing::{Checks, checked, json_round_trip};
use crate::well_known::{
    BACKUP_LABEL, BACKUP_NOW, POLICY_LABEL, SCHEDULED_TIME_ANNOTATION, STAGE_LABEL,
};

const P: &str = "db";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn mins(n: i64) -> SignedDuration {
    SignedDuration::from_mins(n)
}

fn template(image: &str) -> serde_json::Value {
    json!({"spec": {"template": {"spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": image}]
    }}}})
}

fn follow_up() -> Option<JobStage> {
    Some(JobStage {
        job_template: Embedded::new(template("check")),
    })
}

fn spec(cron: &str) -> BackupPolicySpec {
    BackupPolicySpec {
        schedule: BackupSchedule {
            cron: cron.into(),
            time_zone: None,
            suspend: None,
            starting_deadline: None,
        },
        job_template: Embedded::new(template("backup")),
        verify: None,
        retention: None,
        prune: None,
        restore: None,
        rpo: None,
        service_account_name: None,
        notifications: Vec::new(),
    }
}

fn record(job: &str, result: BackupResult, stage: BackupStage) -> BackupRecord {
    BackupRecord {
        stage,
        ..new_record(job.into(), BackupTrigger::Schedule, None, None, result)
    }
}

fn done(job: &str, result: BackupResult, verified: Option<bool>) -> BackupRecord {
    BackupRecord {
        verified,
        ..record(job, result, BackupStage::Done)
    }
}

fn observed(name: &str, stage: Stage, outcome: JobOutcome) -> ObservedJob {
    ObservedJob {
        name: name.into(),
        outcome,
        start_time: None,
        created: None,
        stage,
        scheduled_time: None,
        request: None,
    }
}

fn succeeded(at: &str) -> JobOutcome {
    JobOutcome::Succeeded { at: ts(at) }
}

/// What a decision of the Sim reads besides the policy's name, creation time and token: the
/// spec and status as stored, and what the cluster says.
#[derive(Clone, Debug)]
struct Seen {
    spec: BackupPolicySpec,
    status: BackupPolicyStatus,
    jobs: Vec<ObservedJob>,
    rejected: Vec<(String, String)>,
}

/// The safety invariant of BackupPolicy: never two backup Jobs for one scheduled time or one
/// backup-now token, and never a create of a Job that exists. The Job a decision asks for
/// must not share its name with an existing Job, and a backup Job must not share its
/// scheduled time or its token with an existing backup Job.
fn one_backup_per_time_and_token(seen: &Seen, decision: &Decision) -> Result<(), String> {
    let Some(new) = &decision.create else {
        return Ok(());
    };
    if seen.jobs.iter().any(|job| job.name == new.name) {
        return Err(format!("Job {} exists already", new.name));
    }
    if new.stage != Stage::Backup {
        return Ok(());
    }
    for job in seen.jobs.iter().filter(|job| job.stage == Stage::Backup) {
        if new.scheduled_time.is_some() && job.scheduled_time == new.scheduled_time {
            return Err(format!(
                "Job {} would be a second backup for the scheduled time of Job {}",
                new.name, job.name
            ));
        }
        if new.request.is_some() && job.request == new.request {
            return Err(format!(
                "Job {} would be a second backup for the token of Job {}",
                new.name, job.name
            ));
        }
    }
    Ok(())
}

/// A policy, its Jobs and an API server that creates (or refuses) them, driven the way the
/// controller drives [`decide`]; every decision goes through [`checked`].
struct Sim {
    spec: BackupPolicySpec,
    schedule: Option<Schedule>,
    created: Timestamp,
    status: BackupPolicyStatus,
    jobs: Vec<ObservedJob>,
    backup_now: Option<String>,
    /// Job names the API server refuses.
    refuse: Vec<String>,
    /// Every Job created, in order.
    made: Vec<String>,
    notes: Vec<Note>,
}

impl Sim {
    fn new(spec: BackupPolicySpec, created: &str) -> Self {
        let schedule =
            Schedule::parse(&spec.schedule.cron, spec.schedule.time_zone.as_deref()).ok();
        Self {
            spec,
            schedule,
            created: ts(created),
            status: BackupPolicyStatus::default(),
            jobs: Vec::new(),
            backup_now: None,
            refuse: Vec::new(),
            made: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The decision for `seen` at `now`, through [`checked`]: decide is pure, a restarted
    /// operator (the spec and status read back from JSON, as the API server stores them; the
    /// Jobs and this reconcile's refusals as the cluster still says) decides the same, and
    /// [`one_backup_per_time_and_token`] holds.
    fn decide_seen(&self, seen: &Seen, now: Timestamp) -> Decision {
        let decide = |seen: &Seen, now: Timestamp| {
            decide(&Inputs {
                policy: P,
                created: self.created,
                spec: &seen.spec,
                schedule: self.schedule.as_ref(),
                status: &seen.status,
                jobs: &seen.jobs,
                backup_now: self.backup_now.as_deref(),
                rejected: &seen.rejected,
                restores: &[],
                now,
            })
        };
        let restart = |seen: &Seen| Seen {
            spec: json_round_trip(&seen.spec),
            status: json_round_trip(&seen.status),
            ..seen.clone()
        };
        let checks = Checks {
            decide: &decide,
            restart: &restart,
            invariant: &one_backup_per_time_and_token,
        };
        checked(&checks, seen, now)
    }

    fn decide_with(
        &self,
        status: &BackupPolicyStatus,
        jobs: &[ObservedJob],
        rejected: &[(String, String)],
        now: Timestamp,
    ) -> Decision {
        let seen = Seen {
            spec: self.spec.clone(),
            status: status.clone(),
            jobs: jobs.to_vec(),
            rejected: rejected.to_vec(),
        };
        self.decide_seen(&seen, now)
    }

    fn decide(&self, now: &str) -> Decision {
        self.decide_with(&self.status, &self.jobs, &[], ts(now))
    }

    /// Pretends the API server created `new`.
    fn create(&mut self, new: &NewJob, now: Timestamp) {
        if self.jobs.iter().any(|job| job.name == new.name) {
            return; // AlreadyExists: the controller reads the existing Job instead.
        }
        self.made.push(new.name.clone());
        self.jobs.push(ObservedJob {
            name: new.name.clone(),
            outcome: JobOutcome::Running,
            start_time: Some(now),
            created: Some(now),
            stage: new.stage,
            scheduled_time: new.scheduled_time,
            request: new.request.clone().filter(|_| new.stage == Stage::Backup),
        });
    }

    /// One reconcile, as the controller runs it. Afterwards deciding again must change
    /// nothing, which every test thereby checks at every step.
    fn reconcile(&mut self, now: &str) -> Decision {
        let now = ts(now);
        let mut rejected = Vec::new();
        let mut rounds = 0;
        let decision = loop {
            let decision = self.decide_with(&self.status, &self.jobs, &rejected, now);
            let Some(new) = decision.create.clone() else {
                self.notes.extend(decision.notes.iter().cloned());
                break decision;
            };
            rounds += 1;
            assert!(rounds < 8, "decide keeps asking for Jobs: {new:?}");
            if self.refuse.contains(&new.name) {
                // As the controller does: a refused Job did not start.
                self.notes.extend(
                    decision
                        .notes
                        .iter()
                        .filter(|n| !n.reason.ends_with("Started"))
                        .cloned(),
                );
                rejected.push((new.name.clone(), "spec.template: Required value".into()));
            } else {
                self.notes.extend(decision.notes.iter().cloned());
                self.create(&new, now);
            }
            self.status = decision.status.clone();
        };
        self.jobs.retain(|job| !decision.delete.contains(&job.name));
        // As the controller does: the status is built against the stored one, which the
        // rounds above carried forward with the decided status (conditions copied through).
        let problems = spec::problems(&self.spec);
        self.status = status::status(StatusInputs {
            stored: &self.status,
            decided: decision.status.clone(),
            reported: &decision.conditions,
            running: decision.running.as_deref(),
            problems: &problems,
            generation: None,
            now: &Time(now),
        });

        let again = self.decide_with(&self.status, &self.jobs, &[], now);
        assert_eq!(
            again.status, self.status,
            "deciding again changed the status"
        );
        assert_eq!(again.create, None, "deciding again created a Job");
        assert_eq!(again.delete, Vec::<String>::new());
        assert_eq!(again.notes, Vec::new(), "deciding again repeated notes");
        decision
    }

    fn finish(&mut self, name: &str, ok: bool, at: &str) {
        let job = self
            .jobs
            .iter_mut()
            .find(|job| job.name == name)
            .unwrap_or_else(|| panic!("no Job {name}"));
        job.outcome = if ok {
            succeeded(at)
        } else {
            JobOutcome::Failed {
                at: ts(at),
                message: "BackoffLimitExceeded".into(),
            }
        };
    }

    fn record(&self, job: &str) -> &BackupRecord {
        self.status
            .history
            .iter()
            .find(|record| record.job == job)
            .unwrap_or_else(|| panic!("no record of {job}"))
    }

    /// The reasons of the notes since the last call.
    fn reasons(&mut self) -> Vec<&'static str> {
        self.notes.drain(..).map(|note| note.reason).collect()
    }

    fn condition(&self, type_: &str) -> &Condition {
        self.status
            .conditions
            .iter()
            .find(|condition| condition.type_ == type_)
            .unwrap_or_else(|| panic!("no condition {type_}"))
    }

    fn running(&self) -> usize {
        self.jobs
            .iter()
            .filter(|job| job.outcome == JobOutcome::Running)
            .count()
    }
}

fn job_at(at: &str) -> String {
    scheduled_job_name(P, ts(at))
}

fn hourly() -> Sim {
    Sim::new(spec("0 * * * *"), "2026-03-01T00:00:00Z")
}

fn desired<'d>(decision: &'d Decision, type_: &str) -> Option<&'d Desired> {
    decision
        .conditions
        .iter()
        .find(|desired| desired.type_ == type_)
}

// --- names ---------------------------------------------------------------------------------

#[test]
fn names_are_deterministic_and_short_names_are_kept() {
    let at = ts("2026-03-01T01:00:00Z");
    assert_eq!(scheduled_job_name("db", at), "db-29538780");
    assert_eq!(
        scheduled_job_name("db", ts("2026-03-01T01:01:00Z")),
        "db-29538781"
    );
    assert_eq!(verify_job_name("db-29538780"), "db-29538780-verify");
    assert_eq!(prune_job_name("db-29538780"), "db-29538780-prune");
    let token = on_demand_job_name("db", "before-upgrade");
    assert_eq!(token, on_demand_job_name("db", "before-upgrade"));
    assert_eq!(token, format!("db-now-{:08x}", fnv("before-upgrade")));
    assert_ne!(token, on_demand_job_name("db", "before-upgrade-2"));
    assert_eq!(label_value("db"), "db");
}

#[test]
fn long_names_are_hashed_and_fit() {
    let long = format!("{}-postgres", "a".repeat(60));
    let other = format!("{}-mysql", "a".repeat(60));
    let at = ts("2026-03-01T01:00:00Z");
    for name in [
        scheduled_job_name(&long, at),
        on_demand_job_name(&long, "tok"),
    ] {
        assert!(name.len() <= 52, "{name}");
        assert!(verify_job_name(&name).len() <= 63);
        assert!(name.contains(&format!("-{:08x}-", fnv(&long))), "{name}");
        assert!(!name.contains("--"), "{name}");
    }
    assert!(scheduled_job_name(&long, at).ends_with("-29538780"));
    assert_ne!(
        scheduled_job_name(&long, at),
        scheduled_job_name(&other, at)
    );
    assert_eq!(scheduled_job_name(&long, at), scheduled_job_name(&long, at));
    // A name of exactly 52 characters is kept; one more is hashed.
    let fits = "b".repeat(52 - 9);
    assert_eq!(scheduled_job_name(&fits, at), format!("{fits}-29538780"));
    let over = "b".repeat(52 - 8);
    assert_ne!(scheduled_job_name(&over, at), format!("{over}-29538780"));

    let label63 = "c".repeat(63);
    assert_eq!(label_value(&label63), label63);
    let label = label_value(&long);
    assert_eq!(label.len(), 63);
    assert!(label.ends_with(&format!("-{:08x}", fnv(&long))));
    // Trailing separators are trimmed before the hash.
    let dashed = format!("{}-{}", "d".repeat(53), "e".repeat(20));
    assert_eq!(
        label_value(&dashed),
        format!("{}-{:08x}", "d".repeat(53), fnv(&dashed))
    );
}

#[test]
fn formats_durations_like_specs() {
    assert_eq!(format_duration(SignedDuration::from_hours(26)), "26h");
    assert_eq!(format_duration(mins(90)), "1h30m");
    assert_eq!(format_duration(SignedDuration::from_secs(45)), "45s");
    assert_eq!(
        format_duration(SignedDuration::from_millis(1500)),
        "1s500ms"
    );
    assert_eq!(format_duration(SignedDuration::ZERO), "0s");
}

// --- Jobs ------------------------------------------------------------------------------------

fn policy() -> BackupPolicy {
    let mut policy = BackupPolicy::new(P, spec("0 * * * *"));
    policy.metadata.namespace = Some("data".into());
    policy.metadata.uid = Some("uid-1".into());
    policy
}

fn job_template() -> JobTemplateSpec {
    serde_json::from_value(json!({
        "metadata": {"labels": {"team": "dba"}, "annotations": {"note": "keep"}},
        "spec": {"backoffLimit": 2, "template": {"spec": {
            "restartPolicy": "Never",
            "initContainers": [{"name": "wait", "image": "busybox"}],
            "containers": [
                {"name": "dump", "image": "pg", "env": [
                    {"name": "BACKUP_SCHEDULED_TIME", "value": "mine"}
                ]},
                {"name": "upload", "image": "s3"}
            ]
        }}}
    }))
    .unwrap()
}

fn env_of(container: &Container) -> BTreeMap<String, String> {
    container
        .env
        .iter()
        .flatten()
        .map(|var| (var.name.clone(), var.value.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn build_job_labels_owns_and_injects_env() {
    let new = NewJob {
        name: "db-29538780".into(),
        stage: Stage::Backup,
        backup_job: "db-29538780".into(),
        scheduled_time: Some(ts("2026-03-01T01:00:00Z")),
        request: None,
        requested_at: ts("2026-03-01T01:00:02.5Z"),
    };
    let job = build_job(&policy(), &new, job_template());
    let meta = &job.metadata;
    assert_eq!(meta.name.as_deref(), Some("db-29538780"));
    assert_eq!(meta.namespace.as_deref(), Some("data"));
    let labels = meta.labels.clone().unwrap();
    assert_eq!(labels["team"], "dba");
    assert_eq!(labels[POLICY_LABEL], "db");
    assert_eq!(labels[STAGE_LABEL], "backup");
    assert!(!labels.contains_key(BACKUP_LABEL));
    let annotations = meta.annotations.clone().unwrap();
    assert_eq!(annotations["note"], "keep");
    assert_eq!(
        annotations[SCHEDULED_TIME_ANNOTATION],
        "2026-03-01T01:00:00Z"
    );
    assert!(!annotations.contains_key(BACKUP_NOW));
    let owners = meta.owner_references.clone().unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].api_version, "ops.runbook.dev/v1alpha1");
    assert_eq!(owners[0].kind, "BackupPolicy");
    assert_eq!(owners[0].name, "db");
    assert_eq!(owners[0].uid, "uid-1");
    assert_eq!(owners[0].controller, Some(true));
    assert_eq!(owners[0].block_owner_deletion, Some(true));
    assert!(job.status.is_none());

    let spec = job.spec.unwrap();
    assert_eq!(spec.backoff_limit, Some(2));
    let pod = spec.template.spec.unwrap();
    let dump = env_of(&pod.containers[0]);
    assert_eq!(dump["BACKUP_SCHEDULED_TIME"], "mine", "a user-set var wins");
    assert_eq!(dump["BACKUP_JOB_NAME"], "db-29538780");
    assert_eq!(dump["BACKUP_POLICY"], "db");
    assert_eq!(pod.containers[0].env.as_ref().unwrap().len(), 3);
    let upload = env_of(&pod.containers[1]);
    assert_eq!(upload["BACKUP_SCHEDULED_TIME"], "2026-03-01T01:00:00Z");
    let init = env_of(&pod.init_containers.unwrap()[0]);
    assert_eq!(init["BACKUP_JOB_NAME"], "db-29538780");
}

#[test]
fn build_job_for_verify_and_on_demand() {
    let verify = NewJob {
        name: "db-now-1-verify".into(),
        stage: Stage::Verify,
        backup_job: "db-now-1".into(),
        scheduled_time: None,
        request: Some("tok".into()),
        requested_at: ts("2026-03-01T01:00:02.5Z"),
    };
    let job = build_job(&policy(), &verify, job_template());
    let labels = job.metadata.labels.clone().unwrap();
    assert_eq!(labels[STAGE_LABEL], "verify");
    assert_eq!(labels[BACKUP_LABEL], "db-now-1");
    let annotations = job.metadata.annotations.clone().unwrap();
    assert!(!annotations.contains_key(BACKUP_NOW), "only the backup Job");
    assert!(!annotations.contains_key(SCHEDULED_TIME_ANNOTATION));
    let pod = job.spec.unwrap().template.spec.unwrap();
    let env = env_of(&pod.containers[1]);
    assert_eq!(env["BACKUP_JOB_NAME"], "db-now-1");
    assert_eq!(env["BACKUP_SCHEDULED_TIME"], "2026-03-01T01:00:02Z");

    let backup = NewJob {
        name: "db-now-1".into(),
        stage: Stage::Backup,
        ..verify
    };
    let job = build_job(&policy(), &backup, job_template());
    assert_eq!(job.metadata.annotations.unwrap()[BACKUP_NOW], "tok");
}

// --- scheduling ------------------------------------------------------------------------------

#[test]
fn nothing_fires_at_creation() {
    let mut sim = hourly();
    let decision = sim.reconcile("2026-03-01T00:00:01Z");
    assert_eq!(decision.create, None);
    assert!(sim.made.is_empty());
    assert_eq!(sim.status.last_schedule_time, None);
    assert_eq!(
        sim.status.next_schedule_time,
        Some(Time(ts("2026-03-01T01:00:00Z")))
    );
    assert_eq!(sim.status.phase, Some(BackupPolicyPhase::Scheduled));
    assert_eq!(decision.wake_at, Some(ts("2026-03-01T01:00:00Z")));
    assert!(
        decision.conditions.is_empty(),
        "no rpo, nothing finished yet"
    );
}

#[test]
fn due_time_creates_and_records_first() {
    let sim = hourly();
    let now = ts("2026-03-01T01:00:02Z");
    let decision = sim.decide("2026-03-01T01:00:02Z");
    let name = job_at("2026-03-01T01:00:00Z");
    let new = decision.create.clone().unwrap();
    assert_eq!(
        new,
        NewJob {
            name: name.clone(),
            stage: Stage::Backup,
            backup_job: name.clone(),
            scheduled_time: Some(ts("2026-03-01T01:00:00Z")),
            request: None,
            requested_at: now,
        }
    );
    // Recorded before it is created.
    let recorded = &decision.status.history[0];
    assert_eq!(recorded.job, name);
    assert_eq!(recorded.result, BackupResult::Running);
    assert_eq!(recorded.trigger, BackupTrigger::Schedule);
    assert_eq!(
        decision.status.last_schedule_time,
        Some(Time(ts("2026-03-01T01:00:00Z")))
    );
    assert_eq!(decision.status.phase, Some(BackupPolicyPhase::Running));
    assert_eq!(decision.notes[0].reason, "BackupStarted");
    assert!(decision.notes[0].message.contains(&name));

    // With the Job there, the next call is a no-op.
    let jobs = vec![ObservedJob {
        scheduled_time: new.scheduled_time,
        ..observed(&name, Stage::Backup, JobOutcome::Running)
    }];
    let again = sim.decide_with(&decision.status, &jobs, &[], now);
    assert_eq!(again.create, None);
    assert_eq!(again.status, decision.status);
    assert!(again.notes.is_empty());
}

#[test]
fn the_invariant_refuses_a_second_backup_for_a_time_or_a_token() {
    let decision = hourly().decide("2026-03-01T01:00:02Z");
    let new = decision.create.clone().unwrap();
    let seen = |job: ObservedJob| Seen {
        spec: spec("0 * * * *"),
        status: BackupPolicyStatus::default(),
        jobs: vec![job],
        rejected: Vec::new(),
    };
    let same_time = ObservedJob {
        scheduled_time: new.scheduled_time,
        ..observed("other", Stage::Backup, JobOutcome::Running)
    };
    assert!(one_backup_per_time_and_token(&seen(same_time), &decision).is_err());
    let same_name = observed(&new.name, Stage::Backup, JobOutcome::Running);
    assert!(one_backup_per_time_and_token(&seen(same_name), &decision).is_err());
    let mut on_demand = hourly();
    on_demand.backup_now = Some("t".into());
    let decision = on_demand.decide("2026-03-01T00:10:00Z");
    let same_token = ObservedJob {
        request: Some("t".into()),
        ..observed("other", Stage::Backup, JobOutcome::Running)
    };
    assert!(one_backup_per_time_and_token(&seen(same_token), &decision).is_err());
    let unrelated = observed("other", Stage::Backup, JobOutcome::Running);
    assert!(one_backup_per_time_and_token(&seen(unrelated), &decision).is_ok());
}

/// A tiny deterministic generator, so the property test needs no dependency.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

#[test]
fn property_one_job_per_time_and_never_two_at_once() {
    for seed in 1..=6u64 {
        let mut spec = spec("*/10 * * * *");
        spec.verify = follow_up();
        if seed.is_multiple_of(2) {
            spec.prune = follow_up();
            spec.schedule.starting_deadline = Some(Duration::from("15m"));
        }
        let mut sim = Sim::new(spec, "2026-03-01T00:00:00Z");
        let schedule = sim.schedule.clone().unwrap();
        let mut rng = Lcg(seed);
        let mut now = sim.created;
        let mut last_scheduled = None;
        for step in 0..250 {
            now += SignedDuration::from_secs(30 + rng.below(13 * 60) as i64);
            // Jobs take 1 to 25 minutes; one in five fails.
            let finished: Vec<(String, bool, Timestamp)> = sim
                .jobs
                .iter()
                .filter(|job| job.outcome == JobOutcome::Running)
                .filter_map(|job| {
                    let hash = fnv(&job.name);
                    let end = job.created? + mins(1 + i64::from(hash % 25));
                    (end <= now).then(|| (job.name.clone(), !hash.is_multiple_of(5), end))
                })
                .collect();
            for (name, ok, end) in finished {
                sim.finish(&name, ok, &end.to_string());
            }
            if step % 37 == 5 {
                sim.backup_now = Some(format!("token-{step}"));
            }
            sim.reconcile(&now.to_string());

            assert!(sim.running() <= 1, "seed {seed} at {now}: {:?}", sim.jobs);
            let last = sim.status.last_schedule_time.clone().map(|t| t.0);
            assert!(last >= last_scheduled, "lastScheduleTime went back");
            last_scheduled = last;
        }
        let unique: BTreeSet<&String> = sim.made.iter().collect();
        assert_eq!(unique.len(), sim.made.len(), "a Job was created twice");
        let backups: Vec<&ObservedJob> = sim
            .jobs
            .iter()
            .filter(|job| job.stage == Stage::Backup)
            .collect();
        for job in &backups {
            if let Some(at) = job.scheduled_time {
                assert!(at > sim.created);
                assert_eq!(
                    schedule.latest_due(None, at),
                    Some(at),
                    "not a scheduled time"
                );
                assert_eq!(job.name, scheduled_job_name(P, at));
            }
        }
        let made_backups = sim
            .made
            .iter()
            .filter(|name| !name.ends_with("-verify") && !name.ends_with("-prune"))
            .count();
        assert!(
            made_backups > 25,
            "seed {seed}: only {made_backups} backups"
        );
        // The run met the cases it is meant to check.
        let reasons: BTreeSet<&str> = sim.notes.iter().map(|note| note.reason).collect();
        for reason in [
            "BackupDelayed",
            "BackupFailed",
            "BackupVerified",
            "BackupStarted",
        ] {
            assert!(reasons.contains(reason), "seed {seed}: no {reason}");
        }
    }
}

#[test]
fn success_runs_verify_then_prune_and_a_failed_prune_keeps_the_backup_good() {
    let mut spec = spec("0 * * * *");
    spec.verify = follow_up();
    spec.prune = follow_up();
    let mut sim = Sim::new(spec, "2026-03-01T00:00:00Z");
    let job = job_at("2026-03-01T01:00:00Z");
    sim.reconcile("2026-03-01T01:00:02Z");
    sim.finish(&job, true, "2026-03-01T01:20:00Z");
    sim.reconcile("2026-03-01T01:20:01Z");
    assert_eq!(sim.made, vec![job.clone(), verify_job_name(&job)]);
    assert_eq!(sim.record(&job).stage, BackupStage::Verify);
    assert_eq!(sim.record(&job).result, BackupResult::Succeeded);
    assert_eq!(
        sim.record(&job).start_time,
        Some(Time(ts("2026-03-01T01:00:02Z")))
    );
    assert_eq!(
        sim.status.last_successful_time,
        Some(Time(ts("2026-03-01T01:20:00Z")))
    );
    assert_eq!(sim.status.phase, Some(BackupPolicyPhase::Running));
    assert_eq!(sim.reasons(), vec!["BackupStarted", "BackupSucceeded"]);

    sim.finish(&verify_job_name(&job), true, "2026-03-01T01:25:00Z");
    sim.reconcile("2026-03-01T01:25:01Z");
    assert_eq!(sim.made.last(), Some(&prune_job_name(&job)));
    assert_eq!(sim.record(&job).verified, Some(true));
    assert_eq!(sim.record(&job).stage, BackupStage::Prune);
    // The backup's finish time, not the verification's.
    assert_eq!(
        sim.status.last_verified_time,
        Some(Time(ts("2026-03-01T01:20:00Z")))
    );
    assert_eq!(sim.reasons(), vec!["BackupVerified"]);

    sim.finish(&prune_job_name(&job), false, "2026-03-01T01:26:00Z");
    let decision = sim.reconcile("2026-03-01T01:26:01Z");
    let record = sim.record(&job);
    assert_eq!(record.pruned, Some(false));
    assert_eq!(record.stage, BackupStage::Done);
    assert!(record.message.as_deref().unwrap().contains("prune Job"));
    assert_eq!(sim.reasons(), vec!["PruneFailed"]);
    let last = desired(&decision, LAST_BACKUP_SUCCEEDED).unwrap();
    assert_eq!(
        (last.status, last.reason.as_str()),
        (Status::True, "Verified")
    );
    assert_eq!(sim.status.phase, Some(BackupPolicyPhase::Scheduled));
    assert_eq!(sim.made.len(), 3);
}

#[test]
fn failed_verification_stops_before_prune() {
    let mut spec = spec("0 * * * *");
    spec.verify = follow_up();
    spec.prune = follow_up();
    let mut sim = Sim::new(spec, "2026-03-01T00:00:00Z");
    let job = job_at("2026-03-01T01:00:00Z");
    sim.reconcile("2026-03-01T01:00:02Z");
    sim.finish(&job, true, "2026-03-01T01:20:00Z");
    sim.reconcile("2026-03-01T01:20:01Z");
    sim.finish(&verify_job_name(&job), false, "2026-03-01T01:25:00Z");
    sim.notes.clear();
    let decision = sim.reconcile("2026-03-01T01:25:01Z");
    assert_eq!(decision.create, None);
    assert_eq!(sim.made, vec![job.clone(), verify_job_name(&job)]);
    let record = sim.record(&job);
    assert_eq!(record.verified, Some(false));
    assert_eq!(record.pruned, None);
    assert_eq!(record.stage, BackupStage::Done);
    assert!(
        record
            .message
            .as_deref()
            .unwrap()
            .contains("verification Job")
    );
    assert_eq!(sim.status.last_verified_time, None);
    let note = &sim.notes[0];
    assert_eq!(note.reason, "VerificationFailed");
    assert!(
        note.message
            .contains("pruning could delete the last good backup")
    );
    let last = desired(&decision, LAST_BACKUP_SUCCEEDED).unwrap();
    assert_eq!(
        (last.status, last.reason.as_str()),
        (Status::False, "VerificationFailed")
    );
    assert!(last.message.contains(&job));
}

#[test]
fn a_due_time_waits_while_a_backup_runs() {
    let mut sim = hourly();
    let first = job_at("2026-03-01T01:00:00Z");
    sim.reconcile("2026-03-01T01:00:02Z");
    sim.reasons();

    sim.reconcile("2026-03-01T02:00:01Z");
    assert_eq!(sim.made, vec![first.clone()]);
    let second = job_at("2026-03-01T02:00:00Z");
    let pending = &sim.status.history[0];
    assert_eq!(
        (pending.job.as_str(), pending.result),
        (second.as_str(), BackupResult::Pending)
    );
    assert_eq!(
        pending.message.as_deref(),
        Some(format!("waiting for {first} to finish").as_str())
    );
    assert_eq!(sim.reasons(), vec!["BackupDelayed"]);

    // A newer time replaces the waiting one.
    sim.reconcile("2026-03-01T03:00:01Z");
    let third = job_at("2026-03-01T03:00:00Z");
    let pending: Vec<&str> = sim
        .status
        .history
        .iter()
        .filter(|record| record.result == BackupResult::Pending)
        .map(|record| record.job.as_str())
        .collect();
    assert_eq!(pending, vec![third.as_str()]);
    assert_eq!(sim.reasons(), vec!["BackupSkipped", "BackupDelayed"]);

    sim.finish(&first, true, "2026-03-01T03:10:00Z");
    sim.reconcile("2026-03-01T03:10:01Z");
    assert_eq!(sim.made, vec![first.clone(), third.clone()]);
    assert_eq!(sim.record(&third).result, BackupResult::Running);
    assert_eq!(
        sim.record(&third).scheduled_time,
        Some(Time(ts("2026-03-01T03:00:00Z")))
    );
    let started = sim.notes.last().unwrap();
    assert_eq!(started.reason, "BackupStarted");
    assert!(
        started.message.contains(&format!("waited for {first}")),
        "{}",
        started.message
    );
}

#[test]
fn pending_past_the_starting_deadline_is_skipped() {
    let mut spec = spec("0 * * * *");
    spec.schedule.starting_deadline = Some(Duration::from("30m"));
    let mut sim = Sim::new(spec, "2026-03-01T00:00:00Z");
    let first = job_at("2026-03-01T01:00:00Z");
    sim.reconcile("2026-03-01T01:00:02Z");
    sim.reconcile("2026-03-01T02:00:01Z");
    sim.finish(&first, true, "2026-03-01T02:40:00Z");
    sim.reasons();
    sim.reconcile("2026-03-01T02:40:01Z");
    assert_eq!(sim.made, vec![first]);
    assert!(
        sim.status
            .history
            .iter()
            .all(|r| r.result != BackupResult::Pending)
    );
    assert_eq!(sim.reasons(), vec!["BackupSucceeded", "BackupSkipped"]);
}

#[test]
fn after_downtime_only_the_latest_runs() {
    let mut sim = hourly();
    let first = job_at("2026-03-01T01:00:00Z");
    sim.reconcile("2026-03-01T01:00:02Z");
    sim.finish(&first, true, "2026-03-01T01:10:00Z");
    sim.reconcile("2026-03-01T01:10:00Z");
    sim.reasons();
    // Down from 01:10 to 04:30: 02:00, 03:00 and 04:00 came due.
    sim.reconcile("2026-03-01T04:30:00Z");
    assert_eq!(sim.made, vec![first, job_at("2026-03-01T04:00:00Z")]);
    let note = &sim.notes[0];
    assert_eq!(note.reason, "BackupStarted");
    assert!(
        note.message.contains("catch-up: 3 scheduled times"),
        "{}",
        note.message
    );
}

#[test]
fn after_downtime_past_the_deadline_nothing_runs() {
    let mut spec = spec("0 * * * *");
    spec.schedule.starting_deadline = Some(Duration::from("10m"));
    let mut sim = Sim::new(spec, "2026-03-01T00:00:00Z");
    sim.reconcile("2026-03-01T00:30:00Z");
    let decision = sim.reconcile("2026-03-01T04:30:00Z");
    assert!(sim.made.is_empty());
    assert_eq!(
        sim.status.last_schedule_time,
        Some(Time(ts("2026-03-01T04:00:00Z")))
    );
    assert_eq!(decision.wake_at, Some(ts("2026-03-01T05:00:00Z")));
    let note = &sim.notes[0];
    assert_eq!(
        (note.reason, &note.type_),
        ("BackupSkipped", &EventType::Warning)
    );
    assert!(
        note.message.contains("startingDeadline 10m"),
        "{}",
        note.message
    );
    assert!(
        note.message.contains("4 scheduled times"),
        "{}",
        note.message
    );
    assert!(
        note.message.contains("2026-03-01T05:00:00Z"),
        "{}",
        note.message
    );
    // The next one runs on time.
    sim.reconcile("2026-03-01T05:00:03Z");
    assert_eq!(sim.made, vec![job_at("2026-03-01T05:00:00Z")]);
}

#[test]
fn unsuspending_does_not_fire_a_backlog() {
    let mut sim = hourly();
    sim.reconcile("2026-03-01T00:30:00Z");
    sim.spec.schedule.suspend = Some(true);
    let decision = sim.reconcile("2026-03-01T01:30:00Z");
    assert_eq!(sim.status.phase, Some(BackupPolicyPhase::Suspended));
    assert_eq!(sim.status.next_schedule_time, None);
    assert_eq!(decision.wake_at, None);
    sim.reconcile("2026-03-01T05:30:00Z");
    assert!(sim.made.is_empty());

    sim.spec.schedule.suspend = None;
    sim.reconcile("2026-03-01T05:40:00Z");
    assert!(sim.made.is_empty());
    assert_eq!(
        sim.status.last_schedule_time,
        Some(Time(ts("2026-03-01T05:00:00Z")))
    );
    let note = sim.notes.last().unwrap();
    assert_eq!(note.reason, "BackupSkipped");
    assert!(
        note.message.starts_with("5 scheduled backup(s)"),
        "{}",
        note.message
    );
    assert_eq!(sim.status.phase, Some(BackupPolicyPhase::Scheduled));
    sim.reconcile("2026-03-01T06:00:01Z");
    assert_eq!(sim.made, vec![job_at("2026-03-01T06:00:00Z")]);
}

#[test]
fn unsuspending_while_a_backup_runs_does_not_fire_a_backlog() {
    let mut sim = hourly();
    sim.backup_now = Some("a".into());
    sim.spec.schedule.suspend = Some(true);
    sim.reconcile("2026-03-01T00:30:00Z");
    assert_eq!(sim.status.phase, Some(BackupPolicyPhase::Running));
    sim.spec.schedule.suspend = None;
    sim.reconcile("2026-03-01T02:30:00Z");
    assert_eq!(sim.made, vec![on_demand_job_name(P, "a")]);
    assert!(
        sim.status
            .history
            .iter()
            .all(|r| r.result != BackupResult::Pending)
    );
}

#[test]
fn suspending_drops_the_waiting_backup_and_backup_now_still_works() {
    let mut sim = hourly();
    let first = job_at("2026-03-01T01:00:00Z");
    sim.reconcile("2026-03-01T01:00:02Z");
    sim.reconcile("2026-03-01T02:00:01Z");
    sim.spec.schedule.suspend = Some(true);
    sim.reasons();
    sim.reconcile("2026-03-01T02:05:00Z");
    assert!(
        sim.status
            .history
            .iter()
            .all(|r| r.result != BackupResult::Pending)
    );
    assert_eq!(sim.reasons(), vec!["BackupSkipped"]);
    assert_eq!(
        sim.status.phase,
        Some(BackupPolicyPhase::Running),
        "the first still runs"
    );

    sim.finish(&first, true, "2026-03-01T02:10:00Z");
    sim.reconcile("2026-03-01T02:10:01Z");
    assert_eq!(sim.status.phase, Some(BackupPolicyPhase::Suspended));
    sim.backup_now = Some("manual".into());
    sim.reconcile("2026-03-01T02:20:00Z");
    let on_demand = on_demand_job_name(P, "manual");
    assert_eq!(sim.made, vec![first, on_demand.clone()]);
    let record = sim.record(&on_demand);
    assert_eq!(record.trigger, BackupTrigger::BackupNow);
    assert_eq!(record.request.as_deref(), Some("manual"));
}

#[test]
fn backup_now_runs_once_per_token_and_waits_while_busy() {
    let mut sim = hourly();
    sim.backup_now = Some("a".into());
    sim.reconcile("2026-03-01T00:10:00Z");
    let a = on_demand_job_name(P, "a");
    assert_eq!(sim.made, vec![a.clone()]);
    assert_eq!(sim.status.last_handled_backup_now.as_deref(), Some("a"));
    sim.reconcile("2026-03-01T00:11:00Z");
    assert_eq!(sim.made.len(), 1, "same token, nothing new");

    // A new token while the backup runs waits, unrecorded.
    sim.backup_now = Some("b".into());
    sim.reconcile("2026-03-01T00:12:00Z");
    assert_eq!(sim.made.len(), 1);
    assert_eq!(sim.status.last_handled_backup_now.as_deref(), Some("a"));
    sim.finish(&a, true, "2026-03-01T00:20:00Z");
    sim.reconcile("2026-03-01T00:20:01Z");
    let b = on_demand_job_name(P, "b");
    assert_eq!(sim.made, vec![a.clone(), b.clone()]);
    sim.finish(&b, true, "2026-03-01T00:30:00Z");
    sim.reconcile("2026-03-01T00:30:01Z");

    // Reusing a token is refused once, with a Warning.
    sim.backup_now = Some("a".into());
    sim.reasons();
    sim.reconcile("2026-03-01T00:40:00Z");
    assert_eq!(sim.made.len(), 2);
    assert_eq!(sim.reasons(), vec!["BackupNowIgnored"]);
    assert_eq!(sim.status.last_handled_backup_now.as_deref(), Some("a"));
}

#[test]
fn a_waiting_scheduled_backup_goes_before_a_token() {
    let mut sim = hourly();
    let first = job_at("2026-03-01T01:00:00Z");
    sim.reconcile("2026-03-01T01:00:02Z");
    sim.reconcile("2026-03-01T02:00:01Z");
    sim.backup_now = Some("t".into());
    sim.finish(&first, true, "2026-03-01T02:10:00Z");
    sim.reconcile("2026-03-01T02:10:01Z");
    let second = job_at("2026-03-01T02:00:00Z");
    assert_eq!(sim.made, vec![first, second.clone()]);
    sim.finish(&second, true, "2026-03-01T02:20:00Z");
    sim.reconcile("2026-03-01T02:20:01Z");
    assert_eq!(sim.made.last(), Some(&on_demand_job_name(P, "t")));
}

#[test]
fn a_job_created_but_not_recorded_is_adopted() {
    let mut sim = hourly();
    sim.reconcile("2026-03-01T00:30:00Z");
    let stored = sim.status.clone();
    // The process creates the Job and dies before writing status.
    let decision = sim.decide("2026-03-01T01:00:02Z");
    sim.create(&decision.create.unwrap(), ts("2026-03-01T01:00:02Z"));
    sim.status = stored;
    sim.reconcile("2026-03-01T01:00:30Z");
    let job = job_at("2026-03-01T01:00:00Z");
    assert_eq!(sim.made, vec![job.clone()], "no second Job");
    assert_eq!(sim.record(&job).result, BackupResult::Running);
    assert_eq!(
        sim.status.last_schedule_time,
        Some(Time(ts("2026-03-01T01:00:00Z")))
    );

    // The same for a token, after that Job finished unobserved.
    sim.finish(&job, true, "2026-03-01T01:05:00Z");
    sim.reconcile("2026-03-01T01:05:01Z");
    sim.backup_now = Some("t".into());
    let stored = sim.status.clone();
    let decision = sim.decide("2026-03-01T01:10:00Z");
    sim.create(&decision.create.unwrap(), ts("2026-03-01T01:10:00Z"));
    let token_job = on_demand_job_name(P, "t");
    sim.finish(&token_job, true, "2026-03-01T01:15:00Z");
    sim.status = stored;
    sim.reconcile("2026-03-01T01:20:00Z");
    assert_eq!(sim.made, vec![job, token_job.clone()]);
    assert_eq!(sim.status.last_handled_backup_now.as_deref(), Some("t"));
    assert_eq!(sim.record(&token_job).result, BackupResult::Succeeded);
    assert_eq!(sim.record(&token_job).trigger, BackupTrigger::BackupNow);
}

#[test]
fn a_pending_backup_whose_job_exists_is_not_created_again() {
    let mut sim = hourly();
    let first = job_at("2026-03-01T01:00:00Z");
    sim.reconcile("2026-03-01T01:00:02Z");
    sim.reconcile("2026-03-01T02:00:01Z");
    sim.finish(&first, true, "2026-03-01T02:10:00Z");
    let stored = sim.status.clone();
    let decision = sim.decide("2026-03-01T02:10:01Z");
    sim.create(&decision.create.unwrap(), ts("2026-03-01T02:10:01Z"));
    sim.status = stored;
    sim.notes.clear();
    sim.reconcile("2026-03-01T02:10:30Z");
    let second = job_at("2026-03-01T02:00:00Z");
    assert_eq!(sim.made, vec![first, second.clone()]);
    assert_eq!(sim.record(&second).result, BackupResult::Running);
}

#[test]
fn unrecorded_old_jobs_are_not_adopted() {
    let mut sim = hourly();
    sim.status.last_schedule_time = Some(Time(ts("2026-03-01T05:00:00Z")));
    sim.status.phase = Some(BackupPolicyPhase::Scheduled);
    sim.jobs.push(ObservedJob {
        scheduled_time: Some(ts("2026-03-01T04:00:00Z")),
        ..observed(
            &job_at("2026-03-01T04:00:00Z"),
            Stage::Backup,
            succeeded("2026-03-01T04:10:00Z"),
        )
    });
    let decision = sim.decide("2026-03-01T05:30:00Z");
    assert!(decision.status.history.is_empty());
    assert_eq!(decision.create, None);
}

#[test]
fn a_rejected_job_is_recorded_and_the_next_time_still_runs() {
    let mut sim = hourly();
    let first = job_at("2026-03-01T01:00:00Z");
    sim.refuse.push(first.clone());
    let decision = sim.reconcile("2026-03-01T01:00:02Z");
    assert!(sim.made.is_empty());
    let record = sim.record(&first);
    assert_eq!(record.result, BackupResult::Failed);
    assert_eq!(record.stage, BackupStage::Done);
    assert_eq!(
        record.message.as_deref(),
        Some(
            format!(
                "the API server rejected Job {first} made from spec.jobTemplate: \
                 spec.template: Required value"
            )
            .as_str()
        )
    );
    assert_eq!(sim.reasons(), vec!["JobRejected"]);
    let last = desired(&decision, LAST_BACKUP_SUCCEEDED).unwrap();
    assert_eq!(
        (last.status, last.reason.as_str()),
        (Status::False, "JobRejected")
    );
    assert_eq!(sim.status.phase, Some(BackupPolicyPhase::Scheduled));

    sim.reconcile("2026-03-01T02:00:02Z");
    assert_eq!(sim.made, vec![job_at("2026-03-01T02:00:00Z")]);
}

#[test]
fn a_rejected_verify_job_names_its_template() {
    let mut spec = spec("0 * * * *");
    spec.verify = follow_up();
    let mut sim = Sim::new(spec, "2026-03-01T00:00:00Z");
    let job = job_at("2026-03-01T01:00:00Z");
    sim.refuse.push(verify_job_name(&job));
    sim.reconcile("2026-03-01T01:00:02Z");
    sim.finish(&job, true, "2026-03-01T01:10:00Z");
    sim.notes.clear();
    let decision = sim.reconcile("2026-03-01T01:10:01Z");
    let rejected = sim
        .notes
        .iter()
        .find(|n| n.reason == "JobRejected")
        .unwrap();
    assert!(
        rejected.message.contains("spec.verify.jobTemplate"),
        "{}",
        rejected.message
    );
    assert_eq!(sim.record(&job).verified, Some(false));
    let last = desired(&decision, LAST_BACKUP_SUCCEEDED).unwrap();
    assert_eq!(
        (last.status, last.reason.as_str()),
        (Status::False, "JobRejected")
    );
}

#[test]
fn a_job_deleted_while_running_fails_the_backup() {
    let mut sim = hourly();
    let job = job_at("2026-03-01T01:00:00Z");
    sim.reconcile("2026-03-01T01:00:02Z");
    sim.jobs.clear();
    sim.reasons();
    sim.reconcile("2026-03-01T01:05:00Z");
    let record = sim.record(&job);
    assert_eq!(record.result, BackupResult::Failed);
    assert_eq!(
        record.message.as_deref(),
        Some(format!("Job {job} was deleted before it finished").as_str())
    );
    assert_eq!(sim.reasons(), vec!["BackupFailed"]);
}

#[test]
fn an_invalid_spec_starts_nothing() {
    let mut sim = Sim::new(spec("not cron"), "2026-03-01T00:00:00Z");
    sim.spec.verify = follow_up();
    sim.backup_now = Some("t".into());
    sim.status.history = vec![record("db-1", BackupResult::Running, BackupStage::Backup)];
    sim.jobs = vec![observed(
        "db-1",
        Stage::Backup,
        succeeded("2026-03-01T01:00:00Z"),
    )];
    let decision = sim.reconcile("2026-03-01T05:00:00Z");
    assert_eq!(decision.create, None);
    assert!(sim.made.is_empty());
    assert_eq!(sim.status.phase, Some(BackupPolicyPhase::Invalid));
    assert_eq!(sim.status.next_schedule_time, None);
    assert_eq!(
        sim.record("db-1").stage,
        BackupStage::Verify,
        "waits for a valid spec"
    );
    assert_eq!(sim.status.last_handled_backup_now, None);
}

// --- retention and history -------------------------------------------------------------------

#[test]
fn retention_deletes_the_oldest_beyond_the_limits() {
    let mut sim = hourly();
    use BackupResult::{Failed, Succeeded};
    // Newest first: 5 good, 3 bad (one of them a failed verification).
    sim.status.history = vec![
        done("g0", Succeeded, None),
        done("g1", Succeeded, Some(true)),
        done("b0", Succeeded, Some(false)),
        done("g2", Succeeded, None),
        done("g3", Succeeded, None),
        done("b1", Failed, None),
        done("g4", Succeeded, None),
        done("b2", Failed, None),
    ];
    sim.status.phase = Some(BackupPolicyPhase::Scheduled);
    let ok = || succeeded("2026-03-01T00:10:00Z");
    for name in ["g0", "g1", "b0", "g2", "g3", "g4", "b2"] {
        sim.jobs.push(observed(name, Stage::Backup, ok()));
    }
    sim.jobs.push(observed("g3-verify", Stage::Verify, ok()));
    sim.jobs.push(observed("g1-verify", Stage::Verify, ok()));
    let decision = sim.decide("2026-03-01T00:30:00Z");
    // b1's Job is already gone, so it is not deleted again.
    assert_eq!(decision.delete, vec!["b2", "g4", "g3", "g3-verify"]);
    assert_eq!(decision.status.history.len(), 8, "records stay");

    sim.spec.retention = Some(Retention {
        successful_jobs: Some(0),
        failed_jobs: Some(5),
    });
    let decision = sim.decide("2026-03-01T00:30:00Z");
    assert_eq!(
        decision.delete,
        vec!["g4", "g3", "g3-verify", "g2", "g1", "g1-verify", "g0"]
    );
}

#[test]
fn retention_reaches_jobs_whose_records_left_history() {
    let mut sim = hourly();
    sim.spec.retention = Some(Retention {
        successful_jobs: Some(1),
        failed_jobs: Some(1),
    });
    sim.status.history = vec![done("new", BackupResult::Succeeded, None)];
    sim.status.phase = Some(BackupPolicyPhase::Scheduled);
    let old = |name: &str, at: &str, outcome: JobOutcome| ObservedJob {
        created: Some(ts(at)),
        ..observed(name, Stage::Backup, outcome)
    };
    sim.jobs = vec![
        observed("new", Stage::Backup, succeeded("2026-03-01T00:10:00Z")),
        old(
            "older",
            "2026-02-20T00:00:00Z",
            succeeded("2026-02-20T00:10:00Z"),
        ),
        old(
            "oldest",
            "2026-02-10T00:00:00Z",
            succeeded("2026-02-10T00:10:00Z"),
        ),
        old(
            "broken",
            "2026-02-15T00:00:00Z",
            JobOutcome::Failed {
                at: ts("2026-02-15T00:10:00Z"),
                message: "x".into(),
            },
        ),
    ];
    let decision = sim.decide("2026-03-01T00:30:00Z");
    assert_eq!(decision.delete, vec!["oldest", "older"]);
}

#[test]
fn history_keeps_ten_plus_the_unfinished() {
    let mut sim = hourly();
    sim.status.phase = Some(BackupPolicyPhase::Running);
    sim.status.next_schedule_time = Some(Time(ts("2026-03-01T01:00:00Z")));
    sim.status.history = (0..11)
        .map(|i| done(&format!("old-{i}"), BackupResult::Succeeded, None))
        .collect();
    sim.status
        .history
        .push(record("slow", BackupResult::Running, BackupStage::Backup));
    sim.jobs = vec![observed("slow", Stage::Backup, JobOutcome::Running)];
    let decision = sim.decide("2026-03-01T00:30:00Z");
    let names: Vec<&str> = decision
        .status
        .history
        .iter()
        .map(|r| r.job.as_str())
        .collect();
    let mut expected: Vec<String> = (0..10).map(|i| format!("old-{i}")).collect();
    expected.push("slow".into());
    assert_eq!(names, expected);
}

// --- conditions ------------------------------------------------------------------------------

fn daily_with_rpo(rpo: &str) -> Sim {
    let mut spec = spec("0 1 * * *");
    spec.rpo = Some(Duration::from(rpo));
    Sim::new(spec, "2026-03-01T00:00:00Z")
}

#[test]
fn backup_fresh_flips_at_the_exact_instant() {
    let mut sim = daily_with_rpo("2h");
    let job = job_at("2026-03-01T01:00:00Z");
    sim.reconcile("2026-03-01T01:00:02Z");
    sim.finish(&job, true, "2026-03-01T01:10:00Z");
    sim.reconcile("2026-03-01T01:10:01Z");
    let decision = sim.reconcile("2026-03-01T03:09:59Z");
    let fresh = sim.condition(BACKUP_FRESH);
    assert_eq!(
        (fresh.status.as_str(), fresh.reason.as_str()),
        ("True", "WithinRPO")
    );
    assert!(
        fresh.message.contains("fresh until 2026-03-01T03:10:00Z"),
        "{}",
        fresh.message
    );
    assert_eq!(decision.wake_at, Some(ts("2026-03-01T03:10:00Z")));
    sim.reasons();

    // The timer fires a few seconds late; the condition says when it really flipped.
    let decision = sim.reconcile("2026-03-01T03:10:04Z");
    let fresh = sim.condition(BACKUP_FRESH);
    assert_eq!(
        (fresh.status.as_str(), fresh.reason.as_str()),
        ("False", "RPOViolated")
    );
    assert_eq!(fresh.last_transition_time, Time(ts("2026-03-01T03:10:00Z")));
    assert_eq!(decision.wake_at, Some(ts("2026-03-02T01:00:00Z")));
    assert_eq!(sim.reasons(), vec!["RPOViolated"]);
    sim.reconcile("2026-03-01T04:00:00Z");
    assert!(sim.reasons().is_empty(), "reported once");

    let next = job_at("2026-03-02T01:00:00Z");
    sim.reconcile("2026-03-02T01:00:01Z");
    sim.finish(&next, true, "2026-03-02T01:05:00Z");
    sim.reasons();
    sim.reconcile("2026-03-02T01:05:01Z");
    assert_eq!(sim.condition(BACKUP_FRESH).status, "True");
    assert_eq!(sim.reasons(), vec!["BackupSucceeded", "BackupFresh"]);
}

#[test]
fn backup_fresh_counts_from_verified_backups_when_verify_is_set() {
    let mut sim = daily_with_rpo("2h");
    sim.spec.verify = follow_up();
    let job = job_at("2026-03-01T01:00:00Z");
    sim.reconcile("2026-03-01T01:00:02Z");
    sim.finish(&job, true, "2026-03-01T01:10:00Z");
    let decision = sim.reconcile("2026-03-01T01:10:01Z");
    let fresh = desired(&decision, BACKUP_FRESH).unwrap();
    assert_eq!(
        fresh.status,
        Status::Unknown,
        "succeeded but not yet verified"
    );
    assert!(
        fresh.message.contains("no verified backup"),
        "{}",
        fresh.message
    );
    sim.finish(&verify_job_name(&job), true, "2026-03-01T01:30:00Z");
    let decision = sim.reconcile("2026-03-01T01:30:01Z");
    let fresh = desired(&decision, BACKUP_FRESH).unwrap();
    assert_eq!(fresh.status, Status::True);
    // Counted from the backup's finish, not the verification's.
    assert_eq!(decision.wake_at, Some(ts("2026-03-01T03:10:00Z")));
    assert!(
        fresh
            .message
            .starts_with("newest verified backup finished at 2026-03-01T01:10:00Z")
    );
}

#[test]
fn backup_fresh_before_the_first_backup() {
    let mut sim = daily_with_rpo("30m");
    let decision = sim.reconcile("2026-03-01T00:10:00Z");
    let fresh = desired(&decision, BACKUP_FRESH).unwrap();
    assert_eq!(
        (fresh.status, fresh.reason.as_str()),
        (Status::Unknown, "AwaitingFirstBackup")
    );
    assert_eq!(decision.wake_at, Some(ts("2026-03-01T00:30:00Z")));
    sim.reconcile("2026-03-01T00:30:00Z");
    let fresh = sim.condition(BACKUP_FRESH);
    assert_eq!(fresh.status, "False");
    assert_eq!(fresh.last_transition_time, Time(ts("2026-03-01T00:30:00Z")));
    assert!(
        fresh
            .message
            .contains("since the policy was created at 2026-03-01T00:00:00Z")
    );
}

#[test]
fn a_flip_in_a_reconcile_that_creates_a_job_is_reported_once() {
    // rpo runs out at 01:00, the very instant the first backup is due.
    let mut sim = daily_with_rpo("1h");
    sim.reconcile("2026-03-01T00:10:00Z");
    sim.reasons();
    sim.reconcile("2026-03-01T01:00:02Z");
    assert_eq!(sim.made, vec![job_at("2026-03-01T01:00:00Z")]);
    assert_eq!(sim.reasons(), vec!["BackupStarted", "RPOViolated"]);
    assert_eq!(sim.condition(BACKUP_FRESH).status, "False");
}

#[test]
fn schedule_meets_rpo_compares_the_longest_gap() {
    let now = ts("2026-03-01T00:00:00Z");
    let check = |cron: &str, zone: &str, rpo: i64| {
        let schedule = Schedule::parse(cron, Some(zone)).unwrap();
        schedule_meets_rpo(&schedule, SignedDuration::from_secs(rpo), now)
    };
    let minutely = check("* * * * *", "UTC", 30);
    assert_eq!(
        (minutely.status, minutely.reason.as_str()),
        (Status::False, "RPOShorterThanSchedule")
    );
    assert!(minutely.message.starts_with(
        "spec.rpo (30s) is shorter than the longest gap between scheduled backups (1m)"
    ));
    let daily = check("0 1 * * *", "Australia/Sydney", 26 * 3600);
    assert_eq!(
        (daily.status, daily.reason.as_str()),
        (Status::True, "Achievable")
    );
    // The night Sydney's clocks fall back (April) is 25 hours long.
    let tight = check("0 1 * * *", "Australia/Sydney", 24 * 3600);
    assert_eq!(tight.status, Status::False);
    assert!(tight.message.contains("(25h)"), "{}", tight.message);
    let never = check("0 0 30 2 *", "UTC", 3600);
    assert_eq!(never.reason, "NoUpcomingBackups");
}

#[test]
fn decide_reports_schedule_meets_rpo_only_with_rpo() {
    let sim = daily_with_rpo("26h");
    let decision = sim.decide("2026-03-01T00:10:00Z");
    assert_eq!(
        desired(&decision, SCHEDULE_MEETS_RPO).unwrap().status,
        Status::True
    );
    let sim = hourly();
    assert!(desired(&sim.decide("2026-03-01T00:10:00Z"), SCHEDULE_MEETS_RPO).is_none());
}

#[test]
fn spring_forward_gap_runs_once_at_the_jump() {
    let mut spec = spec("30 2 * * *");
    spec.schedule.time_zone = Some("Australia/Sydney".into());
    let mut sim = Sim::new(spec, "2026-10-01T00:00:00Z");
    // 02:30 AEST on 3 October.
    sim.status.last_schedule_time = Some(Time(ts("2026-10-02T16:30:00Z")));
    sim.status.phase = Some(BackupPolicyPhase::Scheduled);
    // 4 October: 02:00 AEST becomes 03:00 AEDT, so 02:30 runs at 03:00 AEDT (16:00 UTC).
    sim.reconcile("2026-10-03T15:59:00Z");
    assert!(sim.made.is_empty());
    sim.reconcile("2026-10-03T16:00:05Z");
    let jump = job_at("2026-10-03T16:00:00Z");
    assert_eq!(sim.made, vec![jump.clone()]);
    sim.finish(&jump, true, "2026-10-03T16:10:00Z");
    sim.reconcile("2026-10-03T16:30:05Z");
    assert_eq!(sim.made.len(), 1);
    assert_eq!(
        sim.status.next_schedule_time,
        Some(Time(ts("2026-10-04T15:30:00Z")))
    );
}
