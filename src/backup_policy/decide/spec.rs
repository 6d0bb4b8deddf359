//! What the API server's schema cannot check in a BackupPolicy spec, the schedule
//! [`decide`](super::decide) runs on, and the template each kind of Job is made from.

use k8s_openapi::api::batch::v1::JobTemplateSpec;

use super::Stage;
use crate::backup_policy::types::BackupPolicySpec;
use crate::conditions::SpecProblem;
use crate::embedded::Embedded;
use crate::schedule::Schedule;

/// The spec field restore Jobs are made from.
pub const RESTORE_TEMPLATE_FIELD: &str = "spec.restore.jobTemplate";

/// Every problem with the spec that the API server could not catch.
pub fn problems(spec: &BackupPolicySpec) -> Vec<SpecProblem> {
    let mut problems = crate::schedule::problems(
        &spec.schedule.cron,
        spec.schedule.time_zone.as_deref(),
        "spec.schedule",
    );
    let durations = [
        (
            "spec.schedule.startingDeadline",
            spec.schedule.starting_deadline.as_ref(),
        ),
        ("spec.rpo", spec.rpo.as_ref()),
    ];
    for (field, duration) in durations {
        match duration.map(|d| d.parse()) {
            Some(Err(err)) => problems.push(SpecProblem::new(field, err.to_string())),
            Some(Ok(d)) if d.is_zero() => {
                problems.push(SpecProblem::new(field, "must be longer than 0s"));
            }
            _ => {}
        }
    }
    for stage in [Stage::Backup, Stage::Verify, Stage::Prune] {
        if let Some(Err(err)) = template_of(spec, stage).map(|t| t.decode()) {
            problems.push(SpecProblem::new(stage.template_field(), err.to_string()));
        }
    }
    // Checked like verify and prune, though only a Runbook's restore step uses it: a template
    // that cannot be decoded is found when the policy is applied, not in the middle of an
    // outage.
    if let Some(Err(err)) = spec.restore.as_ref().map(|r| r.job_template.decode()) {
        problems.push(SpecProblem::new(RESTORE_TEMPLATE_FIELD, err.to_string()));
    }
    problems
}

/// The schedule of a spec without `problems`; `None` otherwise, and then
/// [`decide`](super::decide) creates no Job.
pub fn schedule(spec: &BackupPolicySpec, problems: &[SpecProblem]) -> Option<Schedule> {
    if !problems.is_empty() {
        return None;
    }
    Schedule::parse(&spec.schedule.cron, spec.schedule.time_zone.as_deref()).ok()
}

/// The spec's template for Jobs of `stage`, if the spec has one.
fn template_of(spec: &BackupPolicySpec, stage: Stage) -> Option<&Embedded<JobTemplateSpec>> {
    match stage {
        Stage::Backup => Some(&spec.job_template),
        Stage::Verify => spec.verify.as_ref().map(|v| &v.job_template),
        Stage::Prune => spec.prune.as_ref().map(|p| &p.job_template),
    }
}

/// The template a new Job of `stage` is made from, decoded; the message says which field is
/// missing or wrong.
pub fn template(spec: &BackupPolicySpec, stage: Stage) -> Result<JobTemplateSpec, String> {
    let field = stage.template_field();
    let template = template_of(spec, stage).ok_or_else(|| format!("{field} is not set"))?;
    template.decode().map_err(|err| format!("{field}: {err}"))
}
