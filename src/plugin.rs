//! The pure parts of the `kubectl runbook` plugin (`src/bin/kubectl-runbook.rs`): the
//! RunbookRun it creates, the annotation patches it sends, the checks it makes before sending
//! them, and how it shows a run's journal and the maintenance windows. No I/O here; the clock is
//! an argument.
//!
//! The plugin only creates RunbookRuns and sets the operator's request annotations
//! (`approve`, `reject`, `cancel`, `promote`, `abort`, `backup-now`), each with a merge patch of that one
//! key under the field manager [`FIELD_MANAGER`]; it never writes a spec field of an object a
//! user (or Git) owns.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::backup_policy::{BackupPolicy, BackupResult};
use crate::blue_green::BlueGreenRelease;
use crate::maintenance_window::MaintenanceWindow;
use crate::runbook::Runbook;
use crate::runbook_run::{
    RunMode, RunPhase, RunbookRef, RunbookRun, RunbookRunSpec, RunbookRunStatus, StepPhase,
    StepStatus, Trigger, TriggerType,
};

/// The annotations the plugin writes, from the one list of well-known keys: `PROMOTE` and
/// `ABORT` name the release annotations.
pub use crate::well_known::{
    ABORT_ANNOTATION as ABORT, APPROVE, BACKUP_NOW, CANCEL, FIELD_MANAGER,
    PROMOTE_ANNOTATION as PROMOTE, PROMOTE_FULL_ANNOTATION as PROMOTE_FULL, REJECT,
    RETRY_ANNOTATION as RETRY,
};

/// Exit status of `run --wait` when the run failed.
pub const EXIT_FAILED: u8 = 3;
/// Exit status of `run --wait` when the run was cancelled.
pub const EXIT_CANCELLED: u8 = 4;

/// Outputs the journal keeps for the operator's own bookkeeping; neither `kubectl runbook
/// get` nor the dashboard shows them.
pub const HIDDEN_OUTPUTS: [&str; 2] = ["attemptStartedAt", "approvalRequestedAt"];
/// Longest output value shown in the tree, in characters.
const MAX_OUTPUT_CHARS: usize = 120;

// --- errors ---------------------------------------------------------------------------------

/// The message for an object that does not exist: what, where, and how to look.
pub fn not_found(kind: &str, plural: &str, name: &str, namespace: &str) -> String {
    format!(
        "{kind} {name:?} not found in namespace {namespace:?}; list them with: kubectl get {plural} -n {namespace}"
    )
}

// --- run ------------------------------------------------------------------------------------

/// Reads `-p KEY=VALUE` arguments. The value is everything after the first `=`, so it may
/// itself contain `=`; a key given twice is an error rather than a silent override.
pub fn parse_params(pairs: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut params = BTreeMap::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!(
                "-p {pair:?}: expected KEY=VALUE, e.g. -p image=registry.example.com/app:1.5"
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!(
                "-p {pair:?}: the parameter name before '=' is empty"
            ));
        }
        if params.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(format!(
                "-p {key}: given more than once; give each parameter once"
            ));
        }
    }
    Ok(params)
}

/// The `generateName` of a run of `runbook`: the Runbook's name and a dash. The API server
/// appends five random characters, so every run gets a new, readable name (e.g.
/// `nightly-backup-x7k2q`); a long name is shortened the way the API server would.
pub fn run_name_prefix(runbook: &str) -> String {
    // The API server keeps at most 58 characters of a generateName (63 minus the suffix).
    // Object names are ASCII, so the byte-bounded prefix is the first 57 characters.
    let kept = crate::names::prefix(runbook, 57).trim_end_matches(['-', '.']);
    format!("{kept}-")
}

/// The lines listing a Runbook's parameters, for error messages.
fn describe_params(rb: &Runbook) -> String {
    if rb.spec.params.is_empty() {
        return format!("Runbook {:?} declares no parameters", rb.name_any());
    }
    let list = rb
        .spec
        .params
        .iter()
        .map(|p| match &p.default {
            Some(default) => format!("{} (default {:?})", p.name, default.as_text()),
            None => format!("{} (required)", p.name),
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!("Runbook {:?} takes: {list}", rb.name_any())
}

/// The RunbookRun `run` creates: a run of `rb` with `params`, in Plan mode when `plan`,
/// trigger Manual with `requested_by` as its source. Like the runs the operator starts, it
/// carries the Runbook label and a (non-controller) owner reference, so the Runbook's history
/// limits and deletion apply to it. The parameters are checked here as the operator would
/// check them, so a typo is reported before anything is created.
pub fn new_run(
    rb: &Runbook,
    params: BTreeMap<String, String>,
    plan: bool,
    requested_by: &str,
) -> Result<RunbookRun, String> {
    let name = rb.name_any();
    let mut problems = Vec::new();
    for key in params.keys() {
        if !rb.spec.params.iter().any(|p| &p.name == key) {
            problems.push(format!(
                "-p {key}: Runbook {name:?} has no parameter {key:?}"
            ));
        }
    }
    for p in &rb.spec.params {
        if p.default.is_none() && !params.contains_key(&p.name) {
            problems.push(format!(
                "parameter {:?} is required (it has no default): add -p {}=VALUE",
                p.name, p.name
            ));
        }
    }
    if problems.is_empty()
        && let Err(found) = crate::runbook_run::resolve::resolve(&name, &rb.spec, &params)
    {
        problems.extend(found.iter().map(ToString::to_string));
    }
    if !problems.is_empty() {
        return Err(format!("{}; {}", problems.join("; "), describe_params(rb)));
    }
    let mut run = RunbookRun::new(
        "",
        RunbookRunSpec {
            runbook_ref: RunbookRef { name: name.clone() },
            params,
            mode: plan.then_some(RunMode::Plan),
            trigger: Some(Trigger {
                type_: TriggerType::Manual,
                scheduled_time: None,
                source: Some(requested_by.to_owned()),
                alert: None,
            }),
        },
    );
    run.metadata.name = None;
    run.metadata.generate_name = Some(run_name_prefix(&name));
    run.metadata.namespace = rb.namespace();
    run.metadata.labels = Some(BTreeMap::from([(
        crate::well_known::RUNBOOK_LABEL.to_owned(),
        crate::names::label_value(&name).into_owned(),
    )]));
    run.metadata.owner_references = rb.metadata.uid.clone().map(|uid| {
        vec![OwnerReference {
            api_version: Runbook::api_version(&()).into_owned(),
            kind: Runbook::kind(&()).into_owned(),
            name: name.clone(),
            uid,
            controller: Some(false),
            block_owner_deletion: Some(false),
        }]
    });
    Ok(run)
}

/// The trigger source recorded on a run the plugin creates.
pub fn requested_by(user: Option<&str>) -> String {
    match user {
        Some(user) if !user.is_empty() => format!("kubectl-runbook by {user}"),
        _ => "kubectl-runbook".to_owned(),
    }
}

// --- annotations ----------------------------------------------------------------------------

/// A JSON merge patch setting one annotation and nothing else.
pub fn annotation_patch(key: &str, value: &str) -> Value {
    json!({"metadata": {"annotations": {key: value}}})
}

/// How kubectl names an object in its messages, `<kind in lower case>.<group>/<name>` (e.g.
/// `runbookrun.ops.runbook.dev/deploy-x7k2q`), from the kind's own type so the group is
/// written in one place.
pub fn object_ref<K: Resource<DynamicType = ()>>(name: &str) -> String {
    format!("{}.{}/{name}", K::kind(&()).to_lowercase(), K::group(&()))
}

/// A request token for `now`, unique per millisecond: the value of `cancel` and `backup-now`.
pub fn token(now: Timestamp) -> String {
    let millis = now.as_millisecond();
    Timestamp::from_millisecond(millis)
        .unwrap_or(now)
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn run_phase(run: &RunbookRun) -> RunPhase {
    run.status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or(RunPhase::Pending)
}

/// Checks an answer (`verb`: approve or reject) to `step` of `run`: the step must be an
/// approval step the run waits at now. An answer given earlier would not count (the operator
/// removes it when the step starts waiting, and the chart's admission policy refuses it), so
/// it is refused here with the reason rather than sent.
pub fn check_answer(run: &RunbookRun, step: &str, verb: &str) -> Result<(), String> {
    let name = run.name_any();
    let current = run_phase(run);
    if current.is_finished() {
        return Err(format!(
            "run {name:?} already finished ({current}); there is nothing to {verb}"
        ));
    }
    let status = run.status.clone().unwrap_or_default();
    let steps: Vec<&crate::step::Step> = status
        .resolved_steps
        .iter()
        .chain(&status.resolved_finally)
        .collect();
    if steps.is_empty() {
        return Err(format!(
            "run {name:?} has not started yet (phase {current}); an answer counts only while the run waits at the step: {verb} once it shows WaitingForApproval at step {step:?}"
        ));
    }
    let approvals: Vec<&str> = steps
        .iter()
        .filter(|s| s.approval.is_some())
        .map(|s| s.name.as_str())
        .collect();
    let Some(found) = steps.iter().find(|s| s.name == step) else {
        return Err(format!(
            "run {name:?} has no step {step:?}; {}",
            approval_list(&approvals)
        ));
    };
    if found.approval.is_none() {
        return Err(format!(
            "step {step:?} of run {name:?} is a {} step, not an approval; {}",
            found.action_name().unwrap_or("non-approval"),
            approval_list(&approvals)
        ));
    }
    let entry = status.steps.iter().find(|e| e.name == step);
    if let Some(e) = entry
        && matches!(
            e.phase,
            StepPhase::Succeeded | StepPhase::Failed | StepPhase::Skipped
        )
    {
        return Err(format!(
            "step {step:?} of run {name:?} is already {:?}; nothing to {verb}",
            e.phase
        ));
    }
    let waiting_here =
        current == RunPhase::WaitingForApproval && status.current_step.as_deref() == Some(step);
    if waiting_here {
        Ok(())
    } else {
        Err(format!(
            "run {name:?} is not waiting at step {step:?} now (phase {current}{}); an answer counts only while the run waits at the step: {verb} once it shows WaitingForApproval there (kubectl runbook get {name} --watch)",
            status
                .current_step
                .as_deref()
                .map(|s| format!(", at step {s:?}"))
                .unwrap_or_default()
        ))
    }
}

fn approval_list(approvals: &[&str]) -> String {
    match approvals {
        [] => "it has no approval step".to_owned(),
        _ => format!("its approval steps: {}", approvals.join(", ")),
    }
}

/// Checks a cancel of `run`: a finished run cannot be cancelled.
pub fn check_cancel(run: &RunbookRun) -> Result<(), String> {
    let current = run_phase(run);
    if current.is_finished() {
        return Err(format!(
            "run {:?} already finished ({current}); there is nothing to cancel",
            run.name_any()
        ));
    }
    if run.annotations().contains_key(CANCEL) {
        return Err(format!(
            "run {:?} is already being cancelled (annotation {CANCEL} is set); it stops after its finally steps",
            run.name_any()
        ));
    }
    Ok(())
}

/// A promote or an abort of a BlueGreenRelease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseRequest {
    /// Switch traffic to the revision (needed with `autoPromote: false`).
    Promote,
    /// Stop the release of the revision (or switch back from it).
    Abort,
    /// Release an aborted or rolled-back revision again, without a template change.
    Retry,
    /// Promote the revision now, skipping the gates still ahead of it (`promote --full`).
    PromoteFull,
}

impl ReleaseRequest {
    /// The annotation carrying the request.
    pub fn annotation(self) -> &'static str {
        match self {
            Self::Promote => PROMOTE,
            Self::Abort => ABORT,
            Self::Retry => RETRY,
            Self::PromoteFull => PROMOTE_FULL,
        }
    }

    /// The command (`promote`, `abort`, `retry`, `promote --full`).
    pub fn verb(self) -> &'static str {
        match self {
            Self::Promote => "promote",
            Self::Abort => "abort",
            Self::Retry => "retry",
            Self::PromoteFull => "promote --full",
        }
    }
}

/// The revision of the release's current template, computed as the operator computes it.
pub fn release_revision(bgr: &BlueGreenRelease) -> Result<String, String> {
    crate::blue_green::spec_revision(&bgr.spec).map_err(|err| {
        format!(
            "BlueGreenRelease {:?}: {err}; fix the template first",
            bgr.name_any()
        )
    })
}

/// What a promote or abort of `bgr` sets: the revision of its current template (the operator
/// acts on a request only while it names that revision), plus notes for the user. `named` is
/// the revision the user expects (`--revision`); a different current revision is an error,
/// so a request never lands on a template that changed under the user.
pub fn release_request(
    bgr: &BlueGreenRelease,
    request: ReleaseRequest,
    named: Option<&str>,
) -> Result<(String, Vec<String>), String> {
    let name = bgr.name_any();
    let revision = release_revision(bgr)?;
    if let Some(named) = named
        && named.trim() != revision
    {
        return Err(format!(
            "BlueGreenRelease {name:?}: --revision {named} is not the current revision {revision} (its template changed); check with: kubectl get bgr {name} -o yaml"
        ));
    }
    let status = bgr.status.clone().unwrap_or_default();
    let mut notes = Vec::new();
    if status.desired_revision.as_deref() != Some(revision.as_str()) {
        notes.push(format!(
            "the operator has not taken in revision {revision} yet (status.desiredRevision is {}); the request applies once it has",
            status.desired_revision.as_deref().unwrap_or("unset")
        ));
    }
    let phase_ = status.phase.map_or("unknown", |p| p.as_str());
    let active = status.active_revision.as_deref() == Some(revision.as_str());
    let open = status
        .history
        .first()
        .is_some_and(|r| r.revision == revision && r.result.is_none());
    match request {
        ReleaseRequest::Promote => {
            let auto = bgr
                .spec
                .strategy
                .as_ref()
                .and_then(|s| s.auto_promote)
                .unwrap_or(true);
            if active && !open {
                return Err(format!(
                    "BlueGreenRelease {name:?}: revision {revision} already serves (phase {phase_}); there is nothing to promote"
                ));
            }
            if auto {
                notes.push(format!(
                    "autoPromote is on: revision {revision} is promoted once its validation passes anyway"
                ));
            } else if phase_ != "AwaitingPromotion" {
                notes.push(format!(
                    "the release is in phase {phase_}; the switch happens once revision {revision} is available and validated"
                ));
            }
        }
        ReleaseRequest::PromoteFull => {
            if active && !open {
                return Err(format!(
                    "BlueGreenRelease {name:?}: revision {revision} already serves (phase {phase_}); there is nothing to promote"
                ));
            }
            if bgr.spec.requires_maintenance_window.is_some() {
                notes.push(
                    "a full promotion skips validation and promotion gates, not requiresMaintenanceWindow: the switch still waits for an open window".to_owned(),
                );
            }
        }
        ReleaseRequest::Retry => {
            let retryable = status.history.first().is_some_and(|r| {
                r.revision == revision
                    && matches!(r.result.as_deref(), Some("Aborted" | "RolledBack"))
            });
            if !retryable {
                return Err(format!(
                    "BlueGreenRelease {name:?}: revision {revision} was not aborted or rolled back (phase {phase_}); there is nothing to retry"
                ));
            }
        }
        ReleaseRequest::Abort => {
            if active && !open {
                return Err(format!(
                    "BlueGreenRelease {name:?}: the release of revision {revision} is finished (phase {phase_}); to roll back, change spec.template to the previous revision"
                ));
            }
        }
    }
    if bgr
        .annotations()
        .get(request.annotation())
        .map(|v| v.trim())
        == Some(revision.as_str())
    {
        notes.push(format!(
            "{} was already requested for revision {revision}",
            request.verb()
        ));
    }
    Ok((revision, notes))
}

/// Notes about a backup-now request on `policy` (it runs anyway; these say when).
pub fn backup_now_notes(policy: &BackupPolicy) -> Vec<String> {
    let mut notes = Vec::new();
    let busy = policy.status.as_ref().and_then(|s| {
        s.history
            .iter()
            .find(|r| matches!(r.result, BackupResult::Running | BackupResult::Pending))
    });
    if let Some(record) = busy {
        notes.push(format!(
            "backup Job {} is still {:?}; this backup starts when it is done",
            record.job, record.result
        ));
    }
    if policy.spec.schedule.suspend == Some(true) {
        notes.push("the policy is suspended; on-demand backups still run".to_owned());
    }
    notes
}

// --- outcome --------------------------------------------------------------------------------

/// The exit status for a finished run (0 Succeeded, [`EXIT_FAILED`], [`EXIT_CANCELLED`]), or
/// `None` while it runs.
pub fn exit_status(run: &RunbookRun) -> Option<u8> {
    match run_phase(run) {
        RunPhase::Succeeded => Some(0),
        RunPhase::Failed => Some(EXIT_FAILED),
        RunPhase::Cancelled => Some(EXIT_CANCELLED),
        _ => None,
    }
}

// --- the journal as a tree ------------------------------------------------------------------

/// Characters of the tree: Unicode, or plain ASCII for terminals and logs that lack it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Style {
    /// Only ASCII characters.
    pub ascii: bool,
}

impl Style {
    fn branch(self, last: bool) -> &'static str {
        match (self.ascii, last) {
            (false, false) => "├─ ",
            (false, true) => "└─ ",
            (true, false) => "|- ",
            (true, true) => "`- ",
        }
    }

    fn stem(self, last: bool) -> &'static str {
        match (self.ascii, last) {
            (false, false) => "│    ",
            (true, false) => "|    ",
            (_, true) => "     ",
        }
    }

    /// The symbol of a step in `phase`; `waiting` marks the approval step the run waits at.
    pub fn step_symbol(self, phase: StepPhase, waiting: bool) -> &'static str {
        let (unicode, ascii) = match (phase, waiting) {
            (StepPhase::Running, true) => ("⏸", "?"),
            (StepPhase::Pending, _) => ("○", "."),
            (StepPhase::Running, false) => ("▶", ">"),
            (StepPhase::Succeeded, _) => ("✔", "+"),
            (StepPhase::Failed, _) => ("✖", "x"),
            (StepPhase::Skipped, _) => ("⊘", "-"),
        };
        if self.ascii { ascii } else { unicode }
    }

    /// The symbol of a run in `phase`.
    pub fn run_symbol(self, phase_: RunPhase) -> &'static str {
        let (unicode, ascii) = match phase_ {
            RunPhase::Succeeded => ("✔", "+"),
            RunPhase::Failed => ("✖", "x"),
            RunPhase::Cancelled => ("⊘", "-"),
            RunPhase::Running => ("▶", ">"),
            RunPhase::WaitingForApproval => ("⏸", "?"),
            RunPhase::WaitingForWindow => ("⧗", "~"),
            RunPhase::Pending => ("○", "."),
        };
        if self.ascii { ascii } else { unicode }
    }
}

/// A duration as people say it: `45s`, `3m07s`, `2h05m`, `3d4h`.
pub fn human_duration(d: SignedDuration) -> String {
    let secs = d.as_secs().max(0);
    let (days, hours, mins, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    if days > 0 {
        format!("{days}d{hours}h")
    } else if hours > 0 {
        format!("{hours}h{mins:02}m")
    } else if mins > 0 {
        format!("{mins}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

fn utc(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn clock(t: Timestamp) -> String {
    t.strftime("%H:%M:%S UTC").to_string()
}

/// One line for an output value: newlines shown as `⏎`, long values cut.
fn one_line(value: &str, style: Style) -> String {
    let newline = if style.ascii { "\\n" } else { "⏎" };
    let flat = value.trim_end().replace('\n', newline);
    if flat.chars().count() <= MAX_OUTPUT_CHARS {
        return flat;
    }
    let cut: String = flat.chars().take(MAX_OUTPUT_CHARS).collect();
    format!("{cut}{}", if style.ascii { "..." } else { "…" })
}

fn succeeded_condition(status: &RunbookRunStatus) -> Option<(String, String)> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == crate::runbook_run::status::SUCCEEDED)
        .map(|c| (c.reason.clone(), c.message.clone()))
}

/// The step's timing: how long a finished step took, since when a running one runs.
fn step_time(entry: &StepStatus) -> String {
    match (&entry.start_time, &entry.completion_time) {
        (Some(start), Some(end)) => human_duration(end.0.duration_since(start.0)),
        (Some(start), None) => format!("since {}", clock(start.0)),
        _ => String::new(),
    }
}

fn attempts(n: i32) -> String {
    match n {
        0 => String::new(),
        1 => "1 attempt".to_owned(),
        n => format!("{n} attempts"),
    }
}

/// The run's journal as a tree: a header (run, Runbook, phase with the Succeeded condition's
/// reason and message, trigger, parameters, times), then each step with a symbol for its
/// phase, its action, phase, attempts and time, and under it its message, target and outputs;
/// finally steps in their own branch. Readable in a terminal at 3 a.m.: the failure and what
/// to do next are spelled out.
pub fn render_run(run: &RunbookRun, style: Style) -> String {
    let mut out = String::new();
    let name = run.name_any();
    let namespace = run.namespace().unwrap_or_default();
    let status = run.status.clone().unwrap_or_default();
    let phase_ = status.phase.unwrap_or(RunPhase::Pending);
    let plan = if run.spec.mode == Some(RunMode::Plan) {
        "   (Plan mode: Kubernetes changes are dry-run)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "RunbookRun {namespace}/{name}   Runbook {}{plan}",
        run.spec.runbook_ref.name
    );
    let condition = succeeded_condition(&status);
    let detail = match &condition {
        Some((reason, message)) if reason != phase_.as_str() && !message.is_empty() => {
            format!(" ({reason}): {message}")
        }
        Some((_, message)) if !message.is_empty() && phase_.is_finished() => {
            format!(": {message}")
        }
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "Phase:    {} {phase_}{detail}",
        style.run_symbol(phase_)
    );
    if let Some(trigger) = &run.spec.trigger {
        let source = trigger
            .source
            .as_deref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        let _ = writeln!(out, "Trigger:  {:?}{source}", trigger.type_);
    }
    if !run.spec.params.is_empty() {
        let params = run
            .spec
            .params
            .iter()
            .map(|(k, v)| format!("{k}={}", one_line(v, style)))
            .collect::<Vec<_>>()
            .join("  ");
        let _ = writeln!(out, "Params:   {params}");
    }
    match (&status.start_time, &status.completion_time) {
        (Some(start), Some(end)) => {
            let _ = writeln!(
                out,
                "Started:  {}   finished {} (took {})",
                utc(start.0),
                if start.0.strftime("%F").to_string() == end.0.strftime("%F").to_string() {
                    clock(end.0)
                } else {
                    utc(end.0)
                },
                human_duration(end.0.duration_since(start.0))
            );
        }
        (Some(start), None) => {
            let _ = writeln!(out, "Started:  {}", utc(start.0));
        }
        (None, Some(end)) => {
            let _ = writeln!(out, "Finished: {}", utc(end.0));
        }
        (None, None) => {}
    }
    if status.steps.is_empty() {
        let _ = writeln!(
            out,
            "\nNo steps yet: {}",
            match phase_ {
                RunPhase::WaitingForWindow => "the run waits for a maintenance window (see Phase).",
                p if p.is_finished() => "the run ended before its first step.",
                _ => "the operator has not started the run (is it running?).",
            }
        );
        return out;
    }
    let main = if status.resolved_steps.is_empty() {
        status.steps.len()
    } else {
        status.resolved_steps.len().min(status.steps.len())
    };
    let actions: Vec<&str> = status
        .resolved_steps
        .iter()
        .chain(&status.resolved_finally)
        .map(|s| s.action_name().unwrap_or("?"))
        .collect();
    let waiting_at = (phase_ == RunPhase::WaitingForApproval)
        .then_some(status.current_step.as_deref())
        .flatten();
    let label = |e: &StepStatus| -> String {
        if waiting_at == Some(e.name.as_str()) && e.phase == StepPhase::Running {
            RunPhase::WaitingForApproval.as_str().to_owned()
        } else {
            format!("{:?}", e.phase)
        }
    };
    let name_w = status
        .steps
        .iter()
        .map(|e| e.name.chars().count())
        .max()
        .unwrap_or(0);
    let action_w = actions.iter().map(|a| a.len()).max().unwrap_or(0);
    let phase_w = status
        .steps
        .iter()
        .map(|e| label(e).len())
        .max()
        .unwrap_or(0);
    let sections = [("Steps", 0..main), ("Finally", main..status.steps.len())];
    for (title, range) in sections {
        if range.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title}");
        let last_index = range.end - 1;
        for i in range {
            let e = &status.steps[i];
            let last = i == last_index;
            let waiting = waiting_at == Some(e.name.as_str());
            let tail = [attempts(e.attempts), step_time(e)]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("   ");
            let line = format!(
                "{}{} {:<name_w$}  {:<action_w$}  {:<phase_w$}  {tail}",
                style.branch(last),
                style.step_symbol(e.phase, waiting),
                e.name,
                actions.get(i).copied().unwrap_or(""),
                label(e),
            );
            let _ = writeln!(out, "{}", line.trim_end());
            let stem = style.stem(last);
            if let Some(message) = e.message.as_deref().filter(|m| !m.is_empty()) {
                for text in message.lines() {
                    let _ = writeln!(out, "{stem}{text}");
                }
            }
            if let Some(target) = &e.target {
                let _ = writeln!(out, "{stem}target: {target}");
            }
            for (key, value) in &e.outputs {
                if HIDDEN_OUTPUTS.contains(&key.as_str()) {
                    continue;
                }
                let _ = writeln!(out, "{stem}{key}: {}", one_line(value, style));
            }
        }
    }
    if let Some(step) = waiting_at {
        let _ = writeln!(
            out,
            "\nWaiting for approval of step {step:?}: kubectl runbook approve {name} {step} -n {namespace}"
        );
    }
    out
}

/// What changed between two versions of a run's status, one line each, for following a run
/// (`run --wait`): steps that started or finished, and the run's phase.
pub fn transitions(
    before: Option<&RunbookRunStatus>,
    after: &RunbookRunStatus,
    run: (&str, &str),
    style: Style,
) -> Vec<String> {
    let (namespace, run_name) = run;
    let mut lines = Vec::new();
    let old_phase = before.and_then(|s| s.phase);
    let new_phase = after.phase;
    for e in &after.steps {
        let previous = before.and_then(|s| s.steps.iter().find(|o| o.name == e.name));
        let old = previous.map_or(StepPhase::Pending, |o| o.phase);
        let retried = previous.is_some_and(|o| o.attempts != e.attempts) && e.attempts > 1;
        if old == e.phase && !retried {
            continue;
        }
        let symbol = style.step_symbol(e.phase, false);
        let line = match e.phase {
            StepPhase::Pending => continue,
            StepPhase::Running if retried => {
                format!("{symbol} {} attempt {}", e.name, e.attempts)
            }
            StepPhase::Running => format!("{symbol} {} started", e.name),
            done => {
                let message = e
                    .message
                    .as_deref()
                    .map(|m| format!(": {}", one_line(m, style)))
                    .unwrap_or_default();
                format!("{symbol} {} {done:?} ({}){message}", e.name, step_time(e))
            }
        };
        lines.push(line);
    }
    if new_phase != old_phase
        && let Some(p) = new_phase
    {
        match p {
            RunPhase::WaitingForApproval => {
                let step = after.current_step.as_deref().unwrap_or("?");
                lines.push(format!(
                    "{} run waits for approval of step {step:?}: kubectl runbook approve {run_name} {step} -n {namespace}",
                    style.run_symbol(p)
                ));
            }
            RunPhase::WaitingForWindow => lines.push(format!(
                "{} run waits for a maintenance window",
                style.run_symbol(p)
            )),
            p if p.is_finished() => {
                lines.push(format!("{} run {p}", style.run_symbol(p)));
            }
            _ => {}
        }
    }
    lines
}

// --- windows --------------------------------------------------------------------------------

/// The time zone a window's times are shown in: its schedule's, or UTC (one-off windows, and
/// a zone that does not parse, which the window reports itself).
fn window_zone(mw: &MaintenanceWindow) -> TimeZone {
    mw.spec
        .schedule
        .as_ref()
        .and_then(|s| s.time_zone.as_deref())
        .and_then(|z| TimeZone::get(z).ok())
        .unwrap_or(TimeZone::UTC)
}

/// `at` in `zone`, with weekday and abbreviation: `Sun 2026-12-06 02:00 AEDT`.
pub fn local_time(at: Timestamp, zone: &TimeZone) -> String {
    at.to_zoned(zone.clone())
        .strftime("%a %Y-%m-%d %H:%M %Z")
        .to_string()
}

/// `at` in UTC: `2026-12-05 15:00 UTC`.
pub fn utc_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// Left-aligned columns separated by three spaces, like `kubectl get`.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count() + 3;
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The `windows` table: NAME, PHASE, NEXT START in the window's time zone, NEXT START in
/// UTC, ENDS (the end of the open window while one is open, else of the next one, in the
/// window's time zone) and LAST RESULT; NAMESPACE first when `all_namespaces`.
pub fn render_windows(windows: &[MaintenanceWindow], all_namespaces: bool) -> String {
    let mut header = vec![
        "NAME",
        "PHASE",
        "NEXT START",
        "NEXT START UTC",
        "ENDS",
        "LAST RESULT",
    ];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    let mut sorted: Vec<&MaintenanceWindow> = windows.iter().collect();
    sorted.sort_by_key(|mw| (mw.namespace(), mw.name_any()));
    let dash = || "-".to_owned();
    let rows: Vec<Vec<String>> = sorted
        .into_iter()
        .map(|mw| {
            let zone = window_zone(mw);
            let status = mw.status.clone().unwrap_or_default();
            let open = status.phase == Some(crate::maintenance_window::WindowPhase::Active);
            let next = status.next_start.as_ref().map(|t| t.0);
            let ends = match (&status.current_window, open) {
                (Some(current), true) => Some(current.end.0),
                _ => status.next_end.as_ref().map(|t| t.0),
            };
            let mut row = vec![
                mw.name_any(),
                status
                    .phase
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(dash),
                next.map(|t| local_time(t, &zone)).unwrap_or_else(dash),
                next.map(utc_time).unwrap_or_else(dash),
                ends.map(|t| local_time(t, &zone)).unwrap_or_else(dash),
                status
                    .last_window
                    .and_then(|w| w.result)
                    .unwrap_or_else(dash),
            ];
            if all_namespaces {
                row.insert(0, mw.namespace().unwrap_or_default());
            }
            row
        })
        .collect();
    table(&header, &rows)
}

pub mod actions;
pub mod alerts;

#[cfg(test)]
mod tests;
