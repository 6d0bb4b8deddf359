//! The pure parts of the `kubectl runbook` plugin (`src/bin/kubectl-runbook.rs`): the
//! RunbookRun it creates, the annotation patches it sends, the checks it makes before sending
//! them, and how it shows a run's journal and the maintenance windows. No I/O here; the clock is
//! an argument.
//!
//! The plugin only creates RunbookRuns and sets the operator's request annotations
//! (`approve`, `cancel`, `promote`, `abort`, `backup-now`), each with a merge patch of that one
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
use crate::runbook_run::engine::phase;
use crate::runbook_run::{
    RunMode, RunbookRef, RunbookRun, RunbookRunSpec, RunbookRunStatus, StepPhase, StepStatus,
    Trigger, TriggerType,
};

/// The annotations the plugin writes, from the one list of well-known keys: `PROMOTE` and
/// `ABORT` name the release annotations.
pub use crate::well_known::{
    ABORT_ANNOTATION as ABORT, APPROVE, BACKUP_NOW, CANCEL, FIELD_MANAGER,
    PROMOTE_ANNOTATION as PROMOTE,
};

/// Exit status of `run --wait` when the run failed.
pub const EXIT_FAILED: u8 = 3;
/// Exit status of `run --wait` when the run was cancelled.
pub const EXIT_CANCELLED: u8 = 4;

/// Output outputs the journal keeps for the operator's own bookkeeping; not shown.
const HIDDEN_OUTPUTS: [&str; 1] = ["attemptStartedAt"];
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
    let mut prefix: String = runbook.chars().take(57).collect();
    while prefix.ends_with(['-', '.']) {
        prefix.pop();
    }
    prefix.push('-');
    prefix
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
            Some(default) => format!("{} (default {default:?})", p.name),
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
            }),
        },
    );
    run.metadata.name = None;
    run.metadata.generate_name = Some(run_name_prefix(&name));
    run.metadata.namespace = rb.namespace();
    run.metadata.labels = Some(BTreeMap::from([(
        crate::well_known::RUNBOOK_LABEL.to_owned(),
        name.clone(),
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

/// A request token for `now`, unique per millisecond: the value of `cancel` and `backup-now`.
pub fn token(now: Timestamp) -> String {
    let millis = now.as_millisecond();
    Timestamp::from_millisecond(millis)
        .unwrap_or(now)
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn run_phase(run: &RunbookRun) -> &str {
    run.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or(phase::PENDING)
}

/// Checks an approval of `step` on `run`. `Ok` carries a note for the user when the approval
/// is valid but will not take effect at once.
pub fn check_approve(run: &RunbookRun, step: &str) -> Result<Option<String>, String> {
    let name = run.name_any();
    let current = run_phase(run);
    if phase::is_finished(Some(current)) {
        return Err(format!(
            "run {name:?} already finished ({current}); there is nothing to approve"
        ));
    }
    let status = run.status.clone().unwrap_or_default();
    let steps: Vec<&crate::step::Step> = status
        .resolved_steps
        .iter()
        .chain(&status.resolved_finally)
        .collect();
    if steps.is_empty() {
        return Ok(Some(format!(
            "run {name:?} has not started yet (phase {current}); the approval is recorded and counts when step {step:?} is reached"
        )));
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
            "step {step:?} of run {name:?} is already {:?}; nothing to approve",
            e.phase
        ));
    }
    let waiting_here =
        current == phase::WAITING_FOR_APPROVAL && status.current_step.as_deref() == Some(step);
    if waiting_here {
        Ok(None)
    } else {
        Ok(Some(format!(
            "run {name:?} is not waiting at step {step:?} now (phase {current}{}); the approval counts when the step is reached",
            status
                .current_step
                .as_deref()
                .map(|s| format!(", at step {s:?}"))
                .unwrap_or_default()
        )))
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
    if phase::is_finished(Some(current)) {
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
}

impl ReleaseRequest {
    /// The annotation carrying the request.
    pub fn annotation(self) -> &'static str {
        match self {
            Self::Promote => PROMOTE,
            Self::Abort => ABORT,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Self::Promote => "promote",
            Self::Abort => "abort",
        }
    }
}

/// The revision of the release's current template, computed as the operator computes it.
pub fn release_revision(bgr: &BlueGreenRelease) -> Result<String, String> {
    let template = bgr.spec.template.decode().map_err(|err| {
        format!(
            "BlueGreenRelease {:?}: spec.template is not a valid pod template ({err}); fix the template first",
            bgr.name_any()
        )
    })?;
    Ok(crate::blue_green::revision(&template))
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
        phase::SUCCEEDED => Some(0),
        phase::FAILED => Some(EXIT_FAILED),
        phase::CANCELLED => Some(EXIT_CANCELLED),
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
    pub fn run_symbol(self, phase_: &str) -> &'static str {
        let (unicode, ascii) = match phase_ {
            phase::SUCCEEDED => ("✔", "+"),
            phase::FAILED => ("✖", "x"),
            phase::CANCELLED => ("⊘", "-"),
            phase::RUNNING => ("▶", ">"),
            phase::WAITING_FOR_APPROVAL => ("⏸", "?"),
            phase::WAITING_FOR_WINDOW => ("⧗", "~"),
            _ => ("○", "."),
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
        .find(|c| c.type_ == crate::runbook_run::controller::SUCCEEDED)
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
    let phase_ = status.phase.as_deref().unwrap_or(phase::PENDING);
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
        Some((reason, message)) if reason != phase_ && !message.is_empty() => {
            format!(" ({reason}): {message}")
        }
        Some((_, message)) if !message.is_empty() && phase::is_finished(Some(phase_)) => {
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
                phase::WAITING_FOR_WINDOW => "the run waits for a maintenance window (see Phase).",
                p if phase::is_finished(Some(p)) => "the run ended before its first step.",
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
    let waiting_at = (phase_ == phase::WAITING_FOR_APPROVAL)
        .then_some(status.current_step.as_deref())
        .flatten();
    let label = |e: &StepStatus| -> String {
        if waiting_at == Some(e.name.as_str()) && e.phase == StepPhase::Running {
            phase::WAITING_FOR_APPROVAL.to_owned()
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
    let old_phase = before.and_then(|s| s.phase.as_deref());
    let new_phase = after.phase.as_deref();
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
            phase::WAITING_FOR_APPROVAL => {
                let step = after.current_step.as_deref().unwrap_or("?");
                lines.push(format!(
                    "{} run waits for approval of step {step:?}: kubectl runbook approve {run_name} {step} -n {namespace}",
                    style.run_symbol(p)
                ));
            }
            phase::WAITING_FOR_WINDOW => lines.push(format!(
                "{} run waits for a maintenance window",
                style.run_symbol(p)
            )),
            p if phase::is_finished(Some(p)) => {
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
            let open = status.phase.as_deref() == Some("Active");
            let next = status.next_start.as_ref().map(|t| t.0);
            let ends = match (&status.current_window, open) {
                (Some(current), true) => Some(current.end.0),
                _ => status.next_end.as_ref().map(|t| t.0),
            };
            let mut row = vec![
                mw.name_any(),
                status.phase.clone().unwrap_or_else(dash),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn runbook(params: Value) -> Runbook {
        serde_json::from_value(json!({
            "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "Runbook",
            "metadata": {"name": "deploy", "namespace": "shop", "uid": "u-1"},
            "spec": {
                "params": params,
                "steps": [{"name": "go", "approval": {"message": "ship {{ params.image }}?"}}]
            }
        }))
        .unwrap()
    }

    fn image_param() -> Value {
        json!([{"name": "image"}, {"name": "replicas", "default": "2"}])
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn params_split_at_the_first_equals_and_refuse_duplicates_and_bad_pairs() {
        let p = parse_params(&strings(&["image=app:1.5", "flags=a=b", "empty="])).unwrap();
        assert_eq!(p["image"], "app:1.5");
        assert_eq!(p["flags"], "a=b");
        assert_eq!(p["empty"], "");
        assert!(
            parse_params(&strings(&["image"]))
                .unwrap_err()
                .contains("KEY=VALUE")
        );
        assert!(
            parse_params(&strings(&["=x"]))
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            parse_params(&strings(&["a=1", "a=2"]))
                .unwrap_err()
                .contains("more than once")
        );
    }

    #[test]
    fn new_run_is_a_manual_run_with_a_generated_name_params_and_plan_mode() {
        let rb = runbook(image_param());
        let params = BTreeMap::from([("image".to_owned(), "app:1.5".to_owned())]);
        let run = new_run(&rb, params.clone(), true, "kubectl-runbook by alice").unwrap();
        assert_eq!(run.metadata.name, None);
        assert_eq!(run.metadata.generate_name.as_deref(), Some("deploy-"));
        assert_eq!(run.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(run.spec.runbook_ref.name, "deploy");
        assert_eq!(run.spec.params, params);
        assert_eq!(run.spec.mode, Some(RunMode::Plan));
        let trigger = run.spec.trigger.clone().unwrap();
        assert_eq!(trigger.type_, TriggerType::Manual);
        assert_eq!(trigger.source.as_deref(), Some("kubectl-runbook by alice"));
        assert_eq!(run.labels()["ops.runbook.dev/runbook"], "deploy");
        let owner = &run.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Runbook", "u-1", Some(false))
        );
        let json = serde_json::to_value(&run).unwrap();
        assert_eq!(json["spec"]["mode"], "Plan");
        assert_eq!(json["spec"]["trigger"]["type"], "Manual");
        // Without --plan the mode is left to its default.
        let run = new_run(
            &rb,
            BTreeMap::from([("image".into(), "x".into())]),
            false,
            "k",
        )
        .unwrap();
        assert_eq!(run.spec.mode, None);
    }

    #[test]
    fn new_run_reports_unknown_and_missing_params_with_what_the_runbook_takes() {
        let rb = runbook(image_param());
        let err = new_run(
            &rb,
            BTreeMap::from([("imgae".to_owned(), "x".to_owned())]),
            false,
            "k",
        )
        .unwrap_err();
        assert!(err.contains("has no parameter \"imgae\""), "{err}");
        assert!(err.contains("-p image=VALUE"), "{err}");
        assert!(
            err.contains("takes: image (required), replicas (default \"2\")"),
            "{err}"
        );
    }

    #[test]
    fn run_name_prefix_is_bounded_and_ends_in_a_dash() {
        assert_eq!(run_name_prefix("nightly"), "nightly-");
        let long = format!("{}-x", "a".repeat(56));
        let prefix = run_name_prefix(&long);
        assert!(prefix.len() <= 58 && prefix.ends_with('-') && !prefix.ends_with("--"));
    }

    #[test]
    fn annotation_patches_touch_one_key_only() {
        assert_eq!(
            annotation_patch(APPROVE, "go"),
            json!({"metadata": {"annotations": {"ops.runbook.dev/approve": "go"}}})
        );
        let t: Timestamp = "2026-11-25T10:03:05.123456Z".parse().unwrap();
        assert_eq!(token(t), "2026-11-25T10:03:05.123Z");
    }

    fn run_with(status: Value, annotations: Value) -> RunbookRun {
        serde_json::from_value(json!({
            "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "RunbookRun",
            "metadata": {"name": "deploy-x7k2q", "namespace": "shop", "annotations": annotations},
            "spec": {"runbookRef": {"name": "deploy"}, "params": {"image": "app:1.5"},
                     "trigger": {"type": "Manual", "source": "kubectl-runbook by alice"}},
            "status": status
        }))
        .unwrap()
    }

    fn journal(phase_: &str, current: &str, entries: Value) -> Value {
        json!({
            "phase": phase_,
            "currentStep": current,
            "startTime": "2026-11-25T10:03:05Z",
            "resolvedSteps": [
                {"name": "backup", "backup": {"policy": "pg"}},
                {"name": "go", "approval": {"message": "ship it?"}},
                {"name": "scale-up", "scale": {"target": {"kind": "Deployment", "name": "app"}, "replicas": 4}}
            ],
            "resolvedFinally": [{"name": "tell", "notify": {"url": "http://x", "message": "done"}}],
            "steps": entries
        })
    }

    fn waiting_at_go() -> RunbookRun {
        run_with(
            journal(
                "WaitingForApproval",
                "go",
                json!([
                    {"name": "backup", "phase": "Succeeded", "attempts": 1,
                     "startTime": "2026-11-25T10:03:05Z", "completionTime": "2026-11-25T10:03:17Z",
                     "message": "backup pg-now-1a2b3c4d succeeded", "outputs": {"backupJob": "pg-now-1a2b3c4d", "attemptStartedAt": "x"}},
                    {"name": "go", "phase": "Running", "attempts": 1, "startTime": "2026-11-25T10:03:18Z",
                     "message": "waiting for approval: ship it?"},
                    {"name": "scale-up", "phase": "Pending", "attempts": 0},
                    {"name": "tell", "phase": "Pending", "attempts": 0}
                ]),
            ),
            json!({}),
        )
    }

    #[test]
    fn approve_checks_the_step_is_an_approval_the_run_can_still_reach() {
        let run = waiting_at_go();
        assert_eq!(check_approve(&run, "go"), Ok(None));
        let err = check_approve(&run, "nope").unwrap_err();
        assert!(
            err.contains("no step \"nope\"") && err.contains("approval steps: go"),
            "{err}"
        );
        let err = check_approve(&run, "scale-up").unwrap_err();
        assert!(err.contains("is a scale step, not an approval"), "{err}");
        let done = run_with(journal("Succeeded", "", json!([])), json!({}));
        assert!(
            check_approve(&done, "go")
                .unwrap_err()
                .contains("already finished")
        );
        let unstarted = run_with(json!({"phase": "WaitingForWindow"}), json!({}));
        assert!(
            check_approve(&unstarted, "go")
                .unwrap()
                .unwrap()
                .contains("not started")
        );
    }

    #[test]
    fn cancel_refuses_finished_and_already_cancelled_runs() {
        assert_eq!(check_cancel(&waiting_at_go()), Ok(()));
        let done = run_with(json!({"phase": "Failed"}), json!({}));
        assert!(
            check_cancel(&done)
                .unwrap_err()
                .contains("already finished (Failed)")
        );
        let cancelling = run_with(json!({"phase": "Running"}), json!({CANCEL: "x"}));
        assert!(
            check_cancel(&cancelling)
                .unwrap_err()
                .contains("already being cancelled")
        );
    }

    #[test]
    fn the_tree_shows_every_step_with_symbol_action_attempts_message_and_outputs() {
        let tree = render_run(&waiting_at_go(), Style::default());
        let expected = "\
RunbookRun shop/deploy-x7k2q   Runbook deploy
Phase:    ⏸ WaitingForApproval
Trigger:  Manual (kubectl-runbook by alice)
Params:   image=app:1.5
Started:  2026-11-25 10:03:05 UTC

Steps
├─ ✔ backup    backup    Succeeded           1 attempt   12s
│    backup pg-now-1a2b3c4d succeeded
│    backupJob: pg-now-1a2b3c4d
├─ ⏸ go        approval  WaitingForApproval  1 attempt   since 10:03:18 UTC
│    waiting for approval: ship it?
└─ ○ scale-up  scale     Pending

Finally
└─ ○ tell      notify    Pending

Waiting for approval of step \"go\": kubectl runbook approve deploy-x7k2q go -n shop
";
        assert_eq!(tree, expected, "\n{tree}");
    }

    #[test]
    fn a_failed_run_says_why_and_ascii_mode_has_no_unicode() {
        let mut status = journal(
            "Failed",
            "",
            json!([
                {"name": "backup", "phase": "Failed", "attempts": 3,
                 "startTime": "2026-11-25T10:03:05Z", "completionTime": "2026-11-25T10:05:12Z",
                 "message": "BackupFailed: Job pg-now-1 failed\nsee its logs",
                 "target": "BackupPolicy/pg", "outputs": {"reason": "BackupFailed", "body": "x".repeat(300)}},
                {"name": "go", "phase": "Skipped", "attempts": 0, "message": "skipped: an earlier step failed"},
                {"name": "scale-up", "phase": "Skipped", "attempts": 0},
                {"name": "tell", "phase": "Succeeded", "attempts": 1,
                 "startTime": "2026-11-25T10:05:12Z", "completionTime": "2026-11-25T10:05:13Z"}
            ]),
        );
        status["completionTime"] = json!("2026-11-25T10:05:13Z");
        status["conditions"] = json!([{"type": "Succeeded", "status": "False", "reason": "StepFailed",
            "message": "step \"backup\" failed", "lastTransitionTime": "2026-11-25T10:05:13Z"}]);
        let run = run_with(status, json!({}));
        let tree = render_run(&run, Style { ascii: true });
        assert!(tree.is_ascii(), "{tree}");
        assert!(
            tree.contains("Phase:    x Failed (StepFailed): step \"backup\" failed"),
            "{tree}"
        );
        assert!(
            tree.contains("Started:  2026-11-25 10:03:05 UTC   finished 10:05:13 UTC (took 2m08s)"),
            "{tree}"
        );
        assert!(tree.contains("|- x backup"), "{tree}");
        assert!(tree.contains("3 attempts   2m07s"), "{tree}");
        assert!(
            tree.contains("|    BackupFailed: Job pg-now-1 failed\n|    see its logs\n"),
            "{tree}"
        );
        assert!(tree.contains("|    target: BackupPolicy/pg"), "{tree}");
        assert!(
            tree.contains(&format!("|    body: {}...", "x".repeat(120))),
            "{tree}"
        );
        assert!(tree.contains("`- - scale-up"), "{tree}");
        assert!(tree.contains("Finally\n`- + tell"), "{tree}");
        assert_eq!(exit_status(&run), Some(EXIT_FAILED));
        assert_eq!(exit_status(&waiting_at_go()), None);
    }

    #[test]
    fn a_run_that_has_not_started_says_so() {
        let run = run_with(
            json!({"phase": "WaitingForWindow", "conditions": [{"type": "Succeeded",
            "status": "Unknown", "reason": "WaitingForWindow", "message": "waiting for a MaintenanceWindow labelled w=1 to be Active",
            "lastTransitionTime": "2026-11-25T10:05:13Z"}]}),
            json!({}),
        );
        let tree = render_run(&run, Style::default());
        assert!(tree.contains("⧗ WaitingForWindow"), "{tree}");
        assert!(
            tree.contains("No steps yet: the run waits for a maintenance window"),
            "{tree}"
        );
    }

    #[test]
    fn transitions_name_started_finished_and_waiting_steps() {
        let before = waiting_at_go().status.unwrap();
        let mut after = before.clone();
        after.phase = Some("Running".into());
        after.steps[1].phase = StepPhase::Succeeded;
        after.steps[1].completion_time = after.steps[1].start_time.clone();
        after.steps[1].message = Some("approved".into());
        after.steps[2].phase = StepPhase::Running;
        let lines = transitions(Some(&before), &after, ("shop", "r"), Style::default());
        assert_eq!(
            lines,
            ["✔ go Succeeded (0s): approved", "▶ scale-up started"]
        );
        let lines = transitions(None, &before, ("shop", "r"), Style { ascii: true });
        assert_eq!(
            lines.last().unwrap(),
            "? run waits for approval of step \"go\": kubectl runbook approve r go -n shop"
        );
    }

    fn window(name: &str, spec: Value, status: Value) -> MaintenanceWindow {
        serde_json::from_value(json!({
            "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "MaintenanceWindow",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": spec, "status": status
        }))
        .unwrap()
    }

    #[test]
    fn the_windows_table_shows_the_next_start_in_the_windows_zone_and_in_utc() {
        let monthly = window(
            "monthly",
            json!({"schedule": {"cron": "0 2 * * SUN#1", "timeZone": "Australia/Sydney", "duration": "2h"}}),
            json!({"phase": "Scheduled", "nextStart": "2026-12-05T15:00:00Z", "nextEnd": "2026-12-05T17:00:00Z",
                   "lastWindow": {"start": "2026-11-01T15:00:00Z", "end": "2026-11-01T17:00:00Z", "result": "DriftRespected"}}),
        );
        let once = window(
            "once",
            json!({"start": "2026-11-25T10:00:00Z", "end": "2026-11-25T11:00:00Z"}),
            json!({"phase": "Active", "currentWindow": {"start": "2026-11-25T10:00:00Z", "end": "2026-11-25T11:00:00Z"}}),
        );
        let fresh = window(
            "fresh",
            json!({"start": "2026-11-25T10:00:00Z", "end": "2026-11-25T11:00:00Z"}),
            json!(null),
        );
        let table = render_windows(&[once, monthly, fresh], false);
        let expected = "\
NAME      PHASE       NEXT START                  NEXT START UTC         ENDS                        LAST RESULT
fresh     -           -                           -                      -                           -
monthly   Scheduled   Sun 2026-12-06 02:00 AEDT   2026-12-05 15:00 UTC   Sun 2026-12-06 04:00 AEDT   DriftRespected
once      Active      -                           -                      Wed 2026-11-25 11:00 UTC    -
";
        assert_eq!(table, expected, "\n{table}");
        let all = render_windows(&[window("w", json!({}), json!({}))], true);
        assert!(all.starts_with("NAMESPACE   NAME"), "{all}");
        assert!(all.contains("\nshop        w"), "{all}");
    }

    #[test]
    fn a_window_in_another_season_gets_that_seasons_abbreviation() {
        let zone = TimeZone::get("Australia/Sydney").unwrap();
        let winter: Timestamp = "2026-07-04T16:00:00Z".parse().unwrap();
        assert_eq!(local_time(winter, &zone), "Sun 2026-07-05 02:00 AEST");
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(
            local_time("2026-03-29T01:00:00Z".parse().unwrap(), &berlin),
            "Sun 2026-03-29 03:00 CEST"
        );
    }

    fn release(auto: bool, status: Value, annotations: Value) -> BlueGreenRelease {
        serde_json::from_value(json!({
            "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "BlueGreenRelease",
            "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
            "spec": {"replicas": 2, "services": {"active": "web"},
                     "strategy": {"autoPromote": auto},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "web:2"}]}}},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn promote_and_abort_name_the_revision_of_the_current_template() {
        let probe = release(false, json!({}), json!({}));
        let r2 = release_revision(&probe).unwrap();
        let template = probe.spec.template.decode().unwrap();
        assert_eq!(r2, crate::blue_green::revision(&template));
        let awaiting = release(
            false,
            json!({"phase": "AwaitingPromotion", "desiredRevision": r2, "activeRevision": "r1",
                   "history": [{"revision": r2}, {"revision": "r1", "result": "Promoted"}]}),
            json!({}),
        );
        assert_eq!(
            release_request(&awaiting, ReleaseRequest::Promote, None),
            Ok((r2.clone(), vec![]))
        );
        assert_eq!(
            release_request(&awaiting, ReleaseRequest::Abort, Some(&r2)),
            Ok((r2.clone(), vec![]))
        );
        let err =
            release_request(&awaiting, ReleaseRequest::Promote, Some("0123456789")).unwrap_err();
        assert!(err.contains("not the current revision"), "{err}");
        let settled = release(
            false,
            json!({"phase": "Healthy", "desiredRevision": r2, "activeRevision": r2,
                   "history": [{"revision": r2, "result": "Promoted"}]}),
            json!({}),
        );
        assert!(
            release_request(&settled, ReleaseRequest::Promote, None)
                .unwrap_err()
                .contains("already serves")
        );
        assert!(
            release_request(&settled, ReleaseRequest::Abort, None)
                .unwrap_err()
                .contains("to roll back")
        );
        let unseen = release(true, json!({"desiredRevision": "r1"}), json!({}));
        let (_, notes) = release_request(&unseen, ReleaseRequest::Promote, None).unwrap();
        assert!(notes[0].contains("has not taken in"), "{notes:?}");
        assert!(notes[1].contains("autoPromote is on"), "{notes:?}");
    }

    #[test]
    fn backup_now_notes_say_when_the_backup_starts() {
        let policy: BackupPolicy = serde_json::from_value(json!({
            "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "BackupPolicy",
            "metadata": {"name": "pg", "namespace": "shop"},
            "spec": {"schedule": {"cron": "0 1 * * *", "suspend": true}, "jobTemplate": {"spec": {}}},
            "status": {"history": [{"job": "pg-1", "trigger": "Schedule", "result": "Running", "stage": "Backup"}]}
        }))
        .unwrap();
        let notes = backup_now_notes(&policy);
        assert!(notes[0].contains("pg-1 is still Running"), "{notes:?}");
        assert!(notes[1].contains("suspended"), "{notes:?}");
    }

    #[test]
    fn durations_read_like_people_say_them() {
        let d = SignedDuration::from_secs;
        assert_eq!(human_duration(d(0)), "0s");
        assert_eq!(human_duration(d(45)), "45s");
        assert_eq!(human_duration(d(187)), "3m07s");
        assert_eq!(human_duration(d(7500)), "2h05m");
        assert_eq!(human_duration(d(3 * 86_400 + 4 * 3600)), "3d4h");
        assert_eq!(human_duration(d(-5)), "0s");
    }

    #[test]
    fn not_found_says_what_where_and_how_to_look() {
        assert_eq!(
            not_found("Runbook", "runbooks", "x", "y"),
            "Runbook \"x\" not found in namespace \"y\"; list them with: kubectl get runbooks -n y"
        );
    }
}
