//! The `kubectl runbook` plugin driven as a user would: the built `kubectl-runbook` binary run
//! against the local cluster with the namespace's operator running, checked by its exit status
//! and output and by what it changed in the cluster (the runs it created, the annotations it
//! set, and what the operator then did).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::ListParams;
use runbook_operator::backup_policy::{BackupPolicy, BackupTrigger};
use runbook_operator::blue_green::BlueGreenRelease;
use runbook_operator::maintenance_window::MaintenanceWindow;
use runbook_operator::runbook_run::{RunMode, RunbookRun, StepPhase, TriggerType};

use crate::support::{PATIENCE, TestNamespace};

// ---------------------------------------------------------------------------------------------
// driving the plugin
// ---------------------------------------------------------------------------------------------

fn plugin_command(ns: &TestNamespace, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubectl-runbook"));
    cmd.args(["-n", &ns.name]).args(args);
    cmd
}

/// Runs the plugin in the test's namespace to the end.
fn plugin(ns: &TestNamespace, args: &[&str]) -> Output {
    plugin_command(ns, args)
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl-runbook")
}

/// Starts the plugin in the background, its output captured.
fn spawn_plugin(ns: &TestNamespace, args: &[&str]) -> Child {
    plugin_command(ns, args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kubectl-runbook")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Stdout of a run that must succeed; shows everything otherwise.
fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Waits for a background plugin to exit, without blocking the test's runtime.
async fn finish(mut child: Child) -> Output {
    let started = Instant::now();
    while child
        .try_wait()
        .expect("wait for kubectl-runbook")
        .is_none()
    {
        assert!(started.elapsed() < PATIENCE, "kubectl-runbook did not exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.wait_with_output().expect("kubectl-runbook output")
}

/// The run name from `runbookrun.ops.runbook.dev/<name> created`.
fn created_name(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("runbookrun.ops.runbook.dev/")
                .and_then(|rest| rest.strip_suffix(" created"))
        })
        .unwrap_or_else(|| panic!("no 'created' line in {stdout:?}"))
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// manifests and reading results
// ---------------------------------------------------------------------------------------------

fn runbook(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {{name: {name}}}\nspec:\n{spec}\n"
    )
}

fn deployment(name: &str, replicas: i32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers: [{{name: {name}, image: \"registry.example.com/{name}:1\"}}]\n"
    )
}

/// A job step whose pod succeeds, or fails when `fail` (hack/kwok/stages.yaml).
fn job_step(name: &str, fail: bool) -> String {
    let labels = if fail {
        "{sim.runbook.dev/outcome: fail}"
    } else {
        "{}"
    };
    format!(
        "{{name: {name}, job: {{template: {{spec: {{backoffLimit: 0, template: {{metadata: {{labels: {labels}}}, spec: {{restartPolicy: Never, containers: [{{name: task, image: \"registry.example.com/task:1\"}}]}}}}}}}}}}}}"
    )
}

fn phase(run: &RunbookRun) -> &str {
    run.status
        .as_ref()
        .and_then(|s| s.phase.map(|p| p.as_str()))
        .unwrap_or_default()
}

fn step_phase(run: &RunbookRun, step: &str) -> StepPhase {
    run.status
        .as_ref()
        .and_then(|s| s.steps.iter().find(|e| e.name == step))
        .map(|e| e.phase)
        .unwrap_or_else(|| panic!("no step {step:?} in {:#?}", run.status))
}

async fn runs_of(ns: &TestNamespace, runbook: &str) -> Vec<RunbookRun> {
    ns.api::<RunbookRun>()
        .list(&ListParams::default())
        .await
        .expect("list runs")
        .items
        .into_iter()
        .filter(|r| r.spec.runbook_ref.name == runbook)
        .collect()
}

/// Waits for the one run of `runbook` to reach `phase`.
async fn only_run_in(ns: &TestNamespace, runbook: &str, want: &str) -> RunbookRun {
    let started = Instant::now();
    loop {
        let runs = runs_of(ns, runbook).await;
        if let [run] = runs.as_slice()
            && phase(run) == want
        {
            return run.clone();
        }
        assert!(runs.len() <= 1, "more than one run of {runbook}: {runs:#?}");
        assert!(
            started.elapsed() < PATIENCE,
            "no run of {runbook} in phase {want}: {runs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Who last wrote `key` of the object's annotations: the managedFields entry owning it.
fn annotation_manager(
    managed: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry],
    key: &str,
) -> Vec<String> {
    managed
        .iter()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .and_then(|f| f.0.pointer("/f:metadata/f:annotations"))
                .and_then(|a| a.get(format!("f:{key}")))
                .is_some()
        })
        .filter_map(|m| m.manager.clone())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// run, get
// ---------------------------------------------------------------------------------------------

/// `run -p k=v --wait` creates one Manual run with those parameters, follows it and exits 0
/// when it Succeeded, printing the journal; the run did what its parameters said. `get` shows
/// every step, finally steps included; bad parameters and unknown names are refused with
/// what, where and what to do, and nothing is created.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn run_with_params_waits_for_success_and_get_shows_each_step() {
    let mut ns = TestNamespace::new("plugin-run").await;
    ns.apply(&deployment("app", 1));
    ns.apply(&runbook(
        "configure",
        "  params:\n  - {name: level}\n  - {name: region, default: eu}\n  steps:\n  - {name: set-level, setEnv: {target: {kind: Deployment, name: app}, set: [{name: LOG_LEVEL, value: \"{{ params.level }}\"}, {name: REGION, value: \"{{ params.region }}\"}]}}\n  - {name: settle, sleep: {duration: 1s}}\n  finally:\n  - {name: wrap-up, sleep: {duration: 1s}}",
    ));
    ns.start_operator();

    // Refused before anything is created.
    let missing = plugin(&ns, &["run", "configure"]);
    assert_eq!(missing.status.code(), Some(1));
    let err = text(&missing.stderr);
    assert!(
        err.contains("-p level=VALUE") && err.contains("level (required)"),
        "{err}"
    );
    let typo = plugin(&ns, &["run", "configure", "-p", "levle=debug"]);
    assert!(
        text(&typo.stderr).contains("has no parameter \"levle\""),
        "{}",
        text(&typo.stderr)
    );
    let nothing = plugin(&ns, &["run", "no-such-runbook"]);
    assert_eq!(nothing.status.code(), Some(1));
    let err = text(&nothing.stderr);
    assert!(
        err.contains(&format!(
            "Runbook \"no-such-runbook\" not found in namespace \"{}\"",
            ns.name
        )) && err.contains(&format!("kubectl get runbooks -n {}", ns.name)),
        "{err}"
    );
    assert!(runs_of(&ns, "configure").await.is_empty());

    let out = plugin(&ns, &["run", "configure", "-p", "level=debug", "--wait"]);
    let stdout = ok(&out, "run --wait");
    let name = created_name(&stdout);
    let run = ns.api::<RunbookRun>().get(&name).await.expect("the run");
    assert_eq!(phase(&run), "Succeeded");
    assert_eq!(
        run.spec.params.get("level").map(String::as_str),
        Some("debug")
    );
    assert_eq!(run.spec.mode, None);
    let trigger = run.spec.trigger.clone().expect("trigger");
    assert_eq!(trigger.type_, TriggerType::Manual);
    assert!(
        trigger
            .source
            .as_deref()
            .unwrap_or_default()
            .starts_with("kubectl-runbook"),
        "{trigger:?}"
    );
    assert_eq!(
        run.labels()
            .get("ops.runbook.dev/runbook")
            .map(String::as_str),
        Some("configure")
    );
    let env: Vec<(String, String)> = ns
        .api::<Deployment>()
        .get("app")
        .await
        .expect("app")
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers[0].env.clone().unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect();
    assert!(
        env.contains(&("LOG_LEVEL".into(), "debug".into())),
        "{env:?}"
    );
    assert!(env.contains(&("REGION".into(), "eu".into())), "{env:?}");
    // The journal printed at the end.
    for want in [
        "✔ Succeeded",
        "✔ set-level",
        "✔ settle",
        "Finally",
        "✔ wrap-up",
        "level=debug",
    ] {
        assert!(stdout.contains(want), "{want:?} missing from:\n{stdout}");
    }
    // Progress went to stderr as it happened.
    let progress = text(&out.stderr);
    assert!(
        progress.contains("set-level started") && progress.contains("run Succeeded"),
        "{progress}"
    );

    let get = plugin(&ns, &["get", &name]);
    let tree = ok(&get, "get");
    for step in ["set-level", "settle", "wrap-up"] {
        let line = tree
            .lines()
            .find(|l| l.contains(&format!("✔ {step} ")))
            .unwrap_or_else(|| panic!("no line for step {step} in:\n{tree}"));
        assert!(
            line.contains("Succeeded") && line.contains("1 attempt"),
            "{line}"
        );
    }
    assert!(
        tree.contains("prior.app.LOG_LEVEL: absent"),
        "outputs are shown:\n{tree}"
    );
    let ascii = ok(&plugin(&ns, &["get", &name, "--ascii"]), "get --ascii");
    assert!(ascii.is_ascii() && ascii.contains("+ settle"), "{ascii}");

    // A Runbook's name given to get: the answer points at its last run.
    let wrong = plugin(&ns, &["get", "configure"]);
    assert_eq!(wrong.status.code(), Some(1));
    let err = text(&wrong.stderr);
    assert!(
        err.contains("RunbookRun \"configure\" not found") && err.contains("is a Runbook"),
        "{err}"
    );
}

/// `run --plan --wait` creates a run in Plan mode: it succeeds and the Deployment it would
/// scale keeps its replicas.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn plan_mode_changes_nothing() {
    let mut ns = TestNamespace::new("plugin-plan").await;
    ns.apply(&deployment("app", 1));
    ns.apply(&runbook(
        "grow",
        "  steps:\n  - {name: scale-up, scale: {target: {kind: Deployment, name: app}, replicas: 3}}",
    ));
    ns.start_operator();
    let out = plugin(&ns, &["run", "grow", "--plan", "--wait"]);
    let stdout = ok(&out, "run --plan --wait");
    let run = ns
        .api::<RunbookRun>()
        .get(&created_name(&stdout))
        .await
        .expect("the run");
    assert_eq!(run.spec.mode, Some(RunMode::Plan));
    assert_eq!(phase(&run), "Succeeded");
    assert!(stdout.contains("Plan mode"), "{stdout}");
    let replicas = ns
        .api::<Deployment>()
        .get("app")
        .await
        .expect("app")
        .spec
        .and_then(|s| s.replicas);
    assert_eq!(replicas, Some(1), "Plan mode scaled the Deployment");
}

/// A run whose step fails: `run --wait` exits 3 and the tree shows the failed step and why.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_failing_run_exits_non_zero_with_the_failure_shown() {
    let mut ns = TestNamespace::new("plugin-fail").await;
    ns.apply(&runbook(
        "doomed",
        &format!(
            "  steps:\n  - {}\n  - {{name: never, sleep: {{duration: 1s}}}}",
            job_step("migrate", true)
        ),
    ));
    ns.start_operator();
    let out = plugin(&ns, &["run", "doomed", "--wait"]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    let run = ns
        .api::<RunbookRun>()
        .get(&created_name(&stdout))
        .await
        .expect("the run");
    assert_eq!(phase(&run), "Failed");
    assert!(stdout.contains("✖ Failed (StepFailed)"), "{stdout}");
    assert!(
        stdout.contains("✖ migrate") && stdout.contains("⊘ never"),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------------------------
// approve, cancel, get --watch
// ---------------------------------------------------------------------------------------------

/// A run waiting at an approval step: `get --watch` shows it waiting and redraws as it moves
/// on; approving another step is refused; `approve <run> <step>` lets it finish, so the
/// `run --wait` that started it exits 0.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn approve_lets_a_waiting_run_finish_and_get_watch_follows_it() {
    let mut ns = TestNamespace::new("plugin-approve").await;
    ns.apply(&runbook(
        "gated",
        "  steps:\n  - {name: ask, approval: {message: \"Ship it?\"}}\n  - {name: nap, sleep: {duration: 1s}}",
    ));
    ns.start_operator();
    let waiting_run = spawn_plugin(&ns, &["run", "gated", "--wait"]);
    let run = only_run_in(&ns, "gated", "WaitingForApproval").await;
    let name = run.name_any();

    // get --watch, read line by line as it draws.
    let mut watch = spawn_plugin(&ns, &["get", &name, "--watch"]);
    let stdout = watch.stdout.take().expect("watch stdout");
    let (lines_tx, lines) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let started = Instant::now();
    while !seen.iter().any(|l: &String| l.contains("⏸ ask")) {
        assert!(
            started.elapsed() < PATIENCE,
            "get --watch never drew the waiting step: {seen:#?}"
        );
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("⏸ WaitingForApproval")),
        "{seen:#?}"
    );

    let wrong = plugin(&ns, &["approve", &name, "nap"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        text(&wrong.stderr).contains("is a sleep step, not an approval"),
        "{}",
        text(&wrong.stderr)
    );
    let approved = plugin(&ns, &["approve", &name, "ask"]);
    ok(&approved, "approve");

    let waited = finish(waiting_run).await;
    let tree = ok(&waited, "run --wait after approval");
    assert!(
        tree.contains("✔ ask") && tree.contains("approved"),
        "{tree}"
    );
    let run = ns.api::<RunbookRun>().get(&name).await.expect("the run");
    assert_eq!(phase(&run), "Succeeded");
    assert_eq!(
        run.annotations()
            .get("ops.runbook.dev/approve")
            .map(String::as_str),
        Some("ask")
    );
    assert_eq!(
        annotation_manager(run.managed_fields(), "ops.runbook.dev/approve"),
        ["runbook-operator"]
    );

    // The watch redrew after the approval and stopped once the run had finished.
    let watched = finish(watch).await;
    assert!(watched.status.success(), "{}", text(&watched.stderr));
    reader.join().expect("reader");
    seen.extend(lines.try_iter());
    let headers = seen.iter().filter(|l| l.starts_with("RunbookRun ")).count();
    assert!(headers >= 2, "get --watch drew once only: {seen:#?}");
    assert!(seen.iter().any(|l| l.contains("✔ Succeeded")), "{seen:#?}");
}

/// `reject <run> <step>` fails the waiting step with reason Rejected, so `run --wait` exits 3;
/// an answer to a step the run does not wait at yet is refused (it would not count).
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn reject_fails_the_waiting_step_and_an_early_answer_is_refused() {
    let mut ns = TestNamespace::new("plugin-reject").await;
    ns.apply(&runbook(
        "gated",
        "  steps:\n  - {name: first, approval: {message: \"Start?\"}}\n  - {name: ask, approval: {message: \"Ship it?\"}}",
    ));
    ns.start_operator();
    let waiting_run = spawn_plugin(&ns, &["run", "gated", "--wait"]);
    let run = only_run_in(&ns, "gated", "WaitingForApproval").await;
    let name = run.name_any();

    let early = plugin(&ns, &["approve", &name, "ask"]);
    assert_eq!(early.status.code(), Some(1));
    assert!(
        text(&early.stderr).contains("is not waiting at step \"ask\" now"),
        "{}",
        text(&early.stderr)
    );
    ok(&plugin(&ns, &["reject", &name, "first"]), "reject");
    let waited = finish(waiting_run).await;
    assert_eq!(waited.status.code(), Some(3), "{}", text(&waited.stdout));
    let run = ns.api::<RunbookRun>().get(&name).await.expect("the run");
    assert_eq!(phase(&run), "Failed");
    assert_eq!(step_phase(&run, "first"), StepPhase::Failed);
    assert_eq!(step_phase(&run, "ask"), StepPhase::Skipped);
    let first = &run.status.as_ref().expect("status").steps[0];
    assert_eq!(
        first.outputs.get("reason").map(String::as_str),
        Some("Rejected")
    );
    assert!(
        first
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("rejected by ")),
        "{first:#?}"
    );
}

/// `cancel <run>` stops a running run: `run --wait` exits 4, the run is Cancelled, its finally
/// step still ran; a second cancel is refused as the run has finished.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn cancel_stops_a_run_and_its_finally_step_runs() {
    let mut ns = TestNamespace::new("plugin-cancel").await;
    ns.apply(&runbook(
        "long",
        "  steps:\n  - {name: wait-long, sleep: {duration: 10m}}\n  finally:\n  - {name: clean-up, sleep: {duration: 1s}}",
    ));
    ns.start_operator();
    let waiting_run = spawn_plugin(&ns, &["run", "long", "--wait"]);
    let run = only_run_in(&ns, "long", "Running").await;
    let name = run.name_any();
    // The run is Running as soon as it has started; its first step may still be Pending, and
    // a cancel then skips it instead of stopping it. Cancel once the step runs.
    ns.wait_for::<RunbookRun>(&name, "running its first step", |r| {
        step_phase(r, "wait-long") == StepPhase::Running
    })
    .await;
    ok(&plugin(&ns, &["cancel", &name]), "cancel");
    let waited = finish(waiting_run).await;
    assert_eq!(
        waited.status.code(),
        Some(4),
        "stdout:\n{}\nstderr:\n{}",
        text(&waited.stdout),
        text(&waited.stderr)
    );
    let run = ns.api::<RunbookRun>().get(&name).await.expect("the run");
    assert_eq!(phase(&run), "Cancelled");
    assert_eq!(step_phase(&run, "wait-long"), StepPhase::Failed);
    assert_eq!(step_phase(&run, "clean-up"), StepPhase::Succeeded);
    assert_eq!(
        annotation_manager(run.managed_fields(), "ops.runbook.dev/cancel"),
        ["runbook-operator"]
    );
    let again = plugin(&ns, &["cancel", &name]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already finished (Cancelled)"),
        "{}",
        text(&again.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// promote, abort
// ---------------------------------------------------------------------------------------------

/// Services `web` (active) and `web-preview`, selecting `app: web`; the operator adds the
/// slot key.
pub(crate) fn services() -> String {
    ["web", "web-preview"]
        .map(|name| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: web}}\n  ports: [{{port: 80}}]\n"
            )
        })
        .join("---\n")
}

fn release(tag: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: BlueGreenRelease\nmetadata: {{name: web}}\nspec:\n  replicas: 1\n  services: {{active: web, preview: web-preview}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: web, image: \"registry.example.com/web:{tag}\"}}]}}\n  strategy: {{autoPromote: false, scaleDownDelay: 2s, abortScaleDownDelay: 2s}}\n"
    )
}

fn release_status(bgr: &BlueGreenRelease) -> runbook_operator::blue_green::BlueGreenReleaseStatus {
    bgr.status.clone().unwrap_or_default()
}

/// Waits until the release waits for promotion of a revision other than `old`; returns it.
async fn awaiting_promotion(ns: &TestNamespace, old: &str) -> String {
    let bgr = ns
        .wait_for::<BlueGreenRelease>("web", "AwaitingPromotion", |b| {
            let s = release_status(b);
            s.observed_generation == b.metadata.generation
                && s.phase.map(|p| p.as_str()) == Some("AwaitingPromotion")
                && s.desired_revision.as_deref().is_some_and(|r| r != old)
        })
        .await;
    release_status(&bgr).desired_revision.unwrap_or_default()
}

/// With autoPromote false: `abort web` stops the waiting revision (history Aborted, traffic
/// untouched); after a new template `promote web --revision <other>` is refused and
/// `promote web` switches to the current revision. The plugin wrote only the two
/// annotations (field manager runbook-operator), never the spec.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn promote_and_abort_a_blue_green_release() {
    let mut ns = TestNamespace::new("plugin-bg").await;
    ns.apply(&services());
    ns.apply(&release("1"));
    ns.start_operator();
    let first = ns
        .wait_for::<BlueGreenRelease>("web", "Healthy", |b| {
            let s = release_status(b);
            s.phase.map(|p| p.as_str()) == Some("Healthy") && s.active_revision.is_some()
        })
        .await;
    let r1 = release_status(&first).active_revision.unwrap_or_default();
    let nothing = plugin(&ns, &["promote", "web"]);
    assert_eq!(nothing.status.code(), Some(1));
    assert!(
        text(&nothing.stderr).contains("already serves"),
        "{}",
        text(&nothing.stderr)
    );

    ns.apply(&release("2"));
    let r2 = awaiting_promotion(&ns, &r1).await;
    let generation = ns
        .api::<BlueGreenRelease>()
        .get("web")
        .await
        .expect("web")
        .metadata
        .generation;
    let out = ok(&plugin(&ns, &["abort", "web"]), "abort");
    assert!(out.contains(&format!("revision {r2}")), "{out}");
    let aborted = ns
        .wait_for::<BlueGreenRelease>("web", "aborted", |b| {
            release_status(b)
                .history
                .first()
                .is_some_and(|h| h.revision == r2 && h.result.as_deref() == Some("Aborted"))
        })
        .await;
    assert_eq!(
        release_status(&aborted).active_revision.as_deref(),
        Some(r1.as_str())
    );
    assert_eq!(
        aborted.metadata.generation, generation,
        "the plugin changed the spec"
    );
    assert_eq!(
        aborted
            .annotations()
            .get("ops.runbook.dev/abort")
            .map(String::as_str),
        Some(r2.as_str())
    );
    assert_eq!(
        annotation_manager(aborted.managed_fields(), "ops.runbook.dev/abort"),
        ["runbook-operator"]
    );

    ns.apply(&release("3"));
    let r3 = awaiting_promotion(&ns, &r2).await;
    let stale = plugin(&ns, &["promote", "web", "--revision", &r2]);
    assert_eq!(stale.status.code(), Some(1));
    assert!(
        text(&stale.stderr).contains("not the current revision"),
        "{}",
        text(&stale.stderr)
    );
    let out = ok(
        &plugin(&ns, &["promote", "web", "--revision", &r3]),
        "promote",
    );
    assert!(out.contains(&format!("revision {r3}")), "{out}");
    let promoted = ns
        .wait_for::<BlueGreenRelease>("web", "promoted and recorded", |b| {
            let s = release_status(b);
            // The history records the result once the switch is done, a moment after
            // activeRevision changes.
            s.active_revision.as_deref() == Some(r3.as_str())
                && s.history.first().is_some_and(|h| h.result.is_some())
        })
        .await;
    assert_eq!(
        promoted
            .annotations()
            .get("ops.runbook.dev/promote")
            .map(String::as_str),
        Some(r3.as_str())
    );
    assert_eq!(
        release_status(&promoted)
            .history
            .first()
            .map(|h| (h.revision.clone(), h.result.clone())),
        Some((r3.clone(), Some("Promoted".to_owned())))
    );
}

// ---------------------------------------------------------------------------------------------
// backup-now, windows
// ---------------------------------------------------------------------------------------------

/// `backup-now pg` starts one on-demand backup: the Job it names appears, labelled with the
/// policy, and the policy's history records it as BackupNow.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn backup_now_starts_a_backup_job() {
    let mut ns = TestNamespace::new("plugin-backup").await;
    ns.apply(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {name: pg}\nspec:\n  schedule: {cron: \"0 0 1 1 *\"}\n  jobTemplate: {spec: {backoffLimit: 0, template: {spec: {restartPolicy: Never, containers: [{name: dump, image: \"registry.example.com/pg-dump:1\"}]}}}}\n",
    );
    ns.start_operator();
    let missing = plugin(&ns, &["backup-now", "nope"]);
    assert!(
        text(&missing.stderr).contains("BackupPolicy \"nope\" not found"),
        "{}",
        text(&missing.stderr)
    );

    let out = ok(&plugin(&ns, &["backup-now", "pg"]), "backup-now");
    let job = out
        .split("Job ")
        .nth(1)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| panic!("no Job named in {out:?}"));
    assert!(job.starts_with("pg-now-"), "{job}");
    let created = ns.wait_for::<Job>(&job, "created", |_| true).await;
    assert_eq!(
        created
            .labels()
            .get("ops.runbook.dev/backup-policy")
            .map(String::as_str),
        Some("pg")
    );
    let policy = ns
        .wait_for::<BackupPolicy>("pg", "recording the backup", |p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.history.iter().any(|r| r.job == job))
        })
        .await;
    let record = policy
        .status
        .clone()
        .unwrap_or_default()
        .history
        .into_iter()
        .find(|r| r.job == job)
        .expect("record");
    assert_eq!(record.trigger, BackupTrigger::BackupNow);
    assert_eq!(
        annotation_manager(policy.managed_fields(), "ops.runbook.dev/backup-now"),
        ["runbook-operator"]
    );
}

/// `windows` lists each window with its next start in its own time zone (with the
/// abbreviation) and in UTC, its end and its last result.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn windows_shows_the_next_start_in_local_time_and_utc() {
    let mut ns = TestNamespace::new("plugin-windows").await;
    ns.apply(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: MaintenanceWindow\nmetadata: {name: monthly}\nspec:\n  schedule: {cron: \"0 2 * * SUN#1\", timeZone: Australia/Sydney, duration: 2h}\n",
    );
    ns.start_operator();
    let mw = ns
        .wait_for::<MaintenanceWindow>("monthly", "scheduled", |w| {
            w.status.as_ref().is_some_and(|s| s.next_start.is_some())
        })
        .await;
    let next = mw
        .status
        .clone()
        .unwrap_or_default()
        .next_start
        .expect("next start")
        .0;
    let zone = jiff::tz::TimeZone::get("Australia/Sydney").expect("zone");
    let local = runbook_operator::plugin::local_time(next, &zone);
    let utc = runbook_operator::plugin::utc_time(next);
    assert!(
        local.ends_with("AEDT") || local.ends_with("AEST"),
        "{local}"
    );
    assert!(
        local.contains(" 02:00 ") && local.starts_with("Sun "),
        "{local}"
    );

    let table = ok(&plugin(&ns, &["windows"]), "windows");
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    for column in [
        "NAME",
        "PHASE",
        "NEXT START",
        "NEXT START UTC",
        "ENDS",
        "LAST RESULT",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let row = lines
        .find(|l| l.starts_with("monthly "))
        .unwrap_or_else(|| panic!("no row for the window:\n{table}"));
    assert!(
        row.contains("Scheduled") && row.contains(&local) && row.contains(&utc),
        "{row}"
    );
    assert!(
        row.contains(" 04:00 "),
        "the end (2h later) is missing: {row}"
    );

    let all = ok(&plugin(&ns, &["windows", "-A"]), "windows -A");
    assert!(
        all.lines()
            .any(|l| l.starts_with(&ns.name) && l.contains("monthly")),
        "{all}"
    );
    ns.delete_windows().await;
}
