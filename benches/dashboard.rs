//! Benchmark of `kubectl runbook dashboard` in a real browser (issue 19: "page load time with
//! 1,000 runs and 200 windows in the namespace (target: first paint under 1 s on this
//! machine) and the plugin's RSS while serving").
//!
//! Run it through `hack/bench-dashboard.sh`, which starts a cluster (`benchdash` unless
//! BENCH_CLUSTER), installs the CRDs, creates the namespace with the examples' releases and
//! backup policies, and builds the plugin (release). Without `BENCH_PLUGIN_BIN` this binary
//! only prints how to run it and exits 0, so a plain `cargo bench` never touches whatever
//! cluster the current kubeconfig points at.
//!
//! Prints figures, not verdicts: it exits non-zero only when something broke.
//!
//! # Seeding (not measured)
//!
//! In BENCH_NAMESPACE: BENCH_RUNBOOKS (10) Runbooks `rb-NN` (three steps: sleep, approval,
//! sleep), BENCH_RUNS (1000) RunbookRuns `run-NNNN` whose status is written through the status
//! subresource (no operator runs: that is the quickest honest way to a namespace that looks
//! lived-in): 60% Succeeded, 25% Failed (the last step, 3 attempts), 5% WaitingForApproval,
//! 5% Running, 5% Cancelled, started 10 minutes apart going back ~7 days, triggers Manual,
//! Schedule, Alert and MaintenanceWindow in turn; BENCH_WINDOWS (200) MaintenanceWindows
//! `mw-NNN` (crons of daily, weekly, first-Sunday and monthly shapes over eight time zones,
//! 1-3 h long, no status).
//!
//! # A round (BENCH_ROUNDS, 3)
//!
//! A fresh dashboard (`kubectl-runbook dashboard --port 0 --namespace NS`) and a fresh
//! browser session (chromedriver, headless Chromium, a new `--user-data-dir`):
//! 1. RSS idle: VmRSS 2 s after the dashboard printed its URL (no page served yet).
//! 2. Cold: the first load of the Now page (the dashboard's caches fill on the first request
//!    of a namespace).
//! 3. One load of each other page; RSS "after one pass".
//! 4. Per page, BENCH_LOADS (10) loads, each `about:blank` then `URL#/<ns>/<page>`; around each
//!    page's loads the API server's `apiserver_request_total` is scraped (admin kubeconfig) and
//!    the delta divided by the loads: API requests per page view with warm caches.
//! 5. RSS "after serving all pages".
//!
//! Per load: first contentful paint (`performance.getEntriesByType('paint')`); data rendered:
//! `window.__dashboard.firstData` when the page sets it, else the time (performance.now) at
//! which a MutationObserver the bench installs before any page script runs (CDP
//! `Page.addScriptToEvaluateOnNewDocument`) first saw `body[data-renders] >= 1`; server time
//! of the page's JSON request (resource timing of `/api/ns/<ns>/<page>`: responseEnd -
//! requestStart) and its size (decoded bytes). Per round p50 and p99 of the warm loads; the
//! figures are medians over rounds.
//!
//! After the rounds: RSS with 200 runs (the runs `run-0200..` deleted, a fresh dashboard,
//! one pass): slope KiB per run against the 1,000-run rounds' "after one pass" figure.
//! Then the peer (BENCH_PEER_BIN: `kubectl-argo-rollouts`): `dashboard` with BENCH_ROLLOUTS
//! (200) Rollouts in `<NS>-peer`; whether it serves a UI at `/`, the client time of
//! `/api/v1/rollouts/<ns>/info` (cold and BENCH_LOADS warm, reqwest), its RSS; and our
//! `/api/ns/<ns>/runs` and `/now` timed the same way.

#[allow(
    dead_code,
    reason = "this bench drives a browser, not an operator: most of support is unused"
)]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use jiff::{Timestamp, ToSpan as _};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Client, Config as KubeConfig};
use serde_json::{Value, json};
use support::{
    env_positive, env_text, for_all, num, parse_prometheus, percentile, progress, sorted,
};

/// The tag of this bench's progress lines (see `support::progress`).
const PROGRESS_TAG: &str = "bench-dashboard";
/// The dashboard's pages, in nav order.
const PAGES: [&str; 5] = ["now", "runs", "calendar", "releases", "backups"];
/// Time zones of the seeded windows.
const ZONES: [&str; 8] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Tokyo",
    "Europe/London",
    "America/Los_Angeles",
    "Asia/Kolkata",
];
/// Installed before any page script: notes when the page first finished a data render.
const OBSERVER: &str = "(() => { const mark = () => { const b = document.body; if (!b) return; \
if (window.__benchFirstData === undefined && Number(b.dataset.renders || 0) >= 1) \
window.__benchFirstData = performance.now(); }; new MutationObserver(mark).observe(document, \
{subtree: true, attributes: true, attributeFilter: ['data-renders']}); })();";
/// What a load reports (arguments: namespace, page).
const COLLECT: &str = "const ns = arguments[0], page = arguments[1]; \
const fcp = performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint'); \
const path = '/api/ns/' + ns + '/' + page; \
const r = performance.getEntriesByType('resource').find(e => new URL(e.name).pathname === path); \
const d = window.__dashboard && window.__dashboard.firstData; \
return { fcp: fcp ? fcp.startTime : null, pageData: (typeof d === 'number') ? d : null, \
observed: (window.__benchFirstData === undefined) ? null : window.__benchFirstData, \
error: document.body ? (document.body.dataset.error || null) : null, \
server: r ? r.responseEnd - r.requestStart : null, bytes: r ? r.decodedBodySize : null, \
wire: r ? r.encodedBodySize : null };";

// ---------------------------------------------------------------------------
// configuration
// ---------------------------------------------------------------------------

struct Config {
    ns: String,
    runbooks: usize,
    runs: usize,
    windows: usize,
    rounds: usize,
    loads: usize,
    parallel: usize,
    timeout: Duration,
    plugin: PathBuf,
    chromedriver: PathBuf,
    driver_port: u16,
    kubeconfig: Option<String>,
    out: PathBuf,
    peer: Option<PathBuf>,
    peer_note: Option<String>,
    peer_port: u16,
    rollouts: usize,
}

impl Config {
    fn from_env(plugin: String) -> Result<Self> {
        let out = PathBuf::from(env_text("BENCH_OUT").unwrap_or_else(|| "/tmp".into()));
        let runs = env_positive("BENCH_RUNS", 1000)? as usize;
        if runs > 9999 {
            bail!("BENCH_RUNS must be at most 9999");
        }
        Ok(Self {
            ns: env_text("BENCH_NAMESPACE").unwrap_or_else(|| "bench-dashboard".into()),
            runbooks: env_positive("BENCH_RUNBOOKS", 10)? as usize,
            runs,
            windows: env_positive("BENCH_WINDOWS", 200)? as usize,
            rounds: env_positive("BENCH_ROUNDS", 3)? as usize,
            loads: env_positive("BENCH_LOADS", 10)? as usize,
            parallel: env_positive("BENCH_PARALLEL", 32)? as usize,
            timeout: Duration::from_secs(env_positive("BENCH_TIMEOUT", 120)?),
            plugin: PathBuf::from(plugin),
            chromedriver: PathBuf::from(
                env_text("BENCH_CHROMEDRIVER").unwrap_or_else(|| "/usr/bin/chromedriver".into()),
            ),
            driver_port: env_positive("BENCH_DRIVER_PORT", 19515)? as u16,
            kubeconfig: env_text("KUBECONFIG"),
            out,
            peer: env_text("BENCH_PEER_BIN").map(PathBuf::from),
            peer_note: env_text("BENCH_PEER_NOTE"),
            peer_port: env_positive("BENCH_PEER_PORT", 19516)? as u16,
            rollouts: env_positive("BENCH_ROLLOUTS", 200)? as usize,
        })
    }
}

// ---------------------------------------------------------------------------
// seeding
// ---------------------------------------------------------------------------

fn runbook_steps() -> Value {
    json!([
        {"name": "check", "sleep": {"duration": "30s"}},
        {"name": "approve", "approval": {"message": "Apply the change now?"}},
        {"name": "apply", "sleep": {"duration": "30s"}},
    ])
}

fn rfc(t: Timestamp) -> String {
    t.round(jiff::Unit::Second).unwrap_or(t).to_string()
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, at: Timestamp) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": rfc(at), "observedGeneration": 1})
}

fn step(
    name: &str,
    phase: &str,
    attempts: i32,
    start: Option<Timestamp>,
    end: Option<Timestamp>,
    message: Option<&str>,
) -> Value {
    let mut s = json!({"name": name, "phase": phase, "attempts": attempts});
    if let Some(t) = start {
        s["startTime"] = json!(rfc(t));
    }
    if let Some(t) = end {
        s["completionTime"] = json!(rfc(t));
    }
    if let Some(m) = message {
        s["message"] = json!(m);
    }
    s
}

/// Run `i`: its spec (trigger) and the status it is given.
fn run_objects(i: usize, runbooks: usize, now: Timestamp) -> (Value, Value) {
    let name = format!("run-{i:04}");
    let start = now - (10 * i as i64 + 5).minutes();
    let at = |s: i64| Some(start + s.seconds());
    let trigger = match i % 4 {
        0 => json!({"type": "Manual"}),
        1 => json!({"type": "Schedule", "scheduledTime": rfc(start)}),
        2 => json!({"type": "Alert", "source": "alertmanager",
                    "alert": {"name": "HighErrorRate", "status": "firing", "fingerprint": format!("{i:016x}")}}),
        _ => json!({"type": "MaintenanceWindow", "source": format!("mw-{:03}", i % 200)}),
    };
    let run = json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "RunbookRun",
        "metadata": {"name": name},
        "spec": {"runbookRef": {"name": format!("rb-{:02}", i % runbooks)}, "trigger": trigger},
    });
    let ok = |n: &str, a: i64, b: i64| step(n, "Succeeded", 1, at(a), at(b), None);
    let (phase, steps, current, done, succeeded) = match i % 20 {
        0..=11 => (
            "Succeeded",
            vec![
                ok("check", 0, 30),
                ok("approve", 30, 300),
                ok("apply", 300, 330),
            ],
            None,
            at(330),
            condition(
                "Succeeded",
                "True",
                "Succeeded",
                "all steps succeeded",
                start + 330.seconds(),
            ),
        ),
        12..=15 | 19 => (
            "Failed",
            vec![
                ok("check", 0, 30),
                ok("approve", 30, 300),
                step(
                    "apply",
                    "Failed",
                    3,
                    at(300),
                    at(420),
                    Some(
                        "timed out after 30s waiting for Deployment app to become available (attempt 3 of 3)",
                    ),
                ),
            ],
            None,
            at(420),
            condition(
                "Succeeded",
                "False",
                "StepFailed",
                "step apply failed",
                start + 420.seconds(),
            ),
        ),
        16 => (
            "WaitingForApproval",
            vec![
                ok("check", 0, 30),
                step(
                    "approve",
                    "Running",
                    1,
                    at(30),
                    None,
                    Some("Apply the change now?"),
                ),
                step("apply", "Pending", 0, None, None, None),
            ],
            Some("approve"),
            None,
            condition(
                "Succeeded",
                "Unknown",
                "WaitingForApproval",
                "waiting at step approve",
                start + 30.seconds(),
            ),
        ),
        17 => (
            "Running",
            vec![
                step("check", "Running", 1, at(0), None, None),
                step("approve", "Pending", 0, None, None, None),
                step("apply", "Pending", 0, None, None, None),
            ],
            Some("check"),
            None,
            condition(
                "Succeeded",
                "Unknown",
                "Running",
                "running step check",
                start,
            ),
        ),
        _ => (
            "Cancelled",
            vec![
                ok("check", 0, 30),
                step("approve", "Skipped", 0, None, None, Some("cancelled")),
                step("apply", "Skipped", 0, None, None, Some("cancelled")),
            ],
            None,
            at(60),
            condition(
                "Succeeded",
                "False",
                "Cancelled",
                "cancelled by admin",
                start + 60.seconds(),
            ),
        ),
    };
    let mut status = json!({
        "phase": phase, "observedGeneration": 1, "startTime": rfc(start),
        "resolvedSteps": runbook_steps(), "steps": steps,
        "conditions": [condition("Ready", "True", "Valid", "the run is valid", start), succeeded],
    });
    if let Some(t) = done {
        status["completionTime"] = json!(rfc(t));
    }
    if let Some(c) = current {
        status["currentStep"] = json!(c);
    }
    (run, json!({"status": status}))
}

fn window_object(i: usize) -> Value {
    let hour = i % 24;
    let cron = match i % 4 {
        0 => format!("0 {hour} * * *"),
        1 => format!(
            "30 {hour} * * {}",
            ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"][i % 7]
        ),
        2 => format!("0 {hour} * * SUN#1"),
        _ => format!("0 {hour} {} * *", 1 + i % 28),
    };
    json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "MaintenanceWindow",
        "metadata": {"name": format!("mw-{i:03}")},
        "spec": {
            "schedule": {"cron": cron, "timeZone": ZONES[i % ZONES.len()], "duration": format!("{}h", 1 + i % 3)},
            "targets": [{"kind": "Deployment", "name": format!("app-{}", i % 10), "scaleTo": 0}],
        },
    })
}

fn api(
    client: &Client,
    ns: &str,
    kind: &str,
    plural: &str,
    group: &str,
    version: &str,
) -> Api<DynamicObject> {
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

async fn seed(client: &Client, cfg: &Config) -> Result<()> {
    let t0 = Instant::now();
    let runbooks = api(
        client,
        &cfg.ns,
        "Runbook",
        "runbooks",
        "ops.runbook.dev",
        "v1alpha1",
    );
    let runs = api(
        client,
        &cfg.ns,
        "RunbookRun",
        "runbookruns",
        "ops.runbook.dev",
        "v1alpha1",
    );
    let windows = api(
        client,
        &cfg.ns,
        "MaintenanceWindow",
        "maintenancewindows",
        "ops.runbook.dev",
        "v1alpha1",
    );
    let pp = PostParams::default();
    for_all(cfg.runbooks, cfg.parallel, |i| {
        let (runbooks, pp) = (runbooks.clone(), pp.clone());
        async move {
            let rb: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "Runbook",
                "metadata": {"name": format!("rb-{i:02}")},
                "spec": {"description": format!("Bench runbook {i}"), "steps": runbook_steps()},
            }))?;
            runbooks
                .create(&pp, &rb)
                .await
                .with_context(|| format!("creating Runbook rb-{i:02}"))?;
            Ok(())
        }
    })
    .await?;
    let now = Timestamp::now();
    let n = cfg.runbooks;
    for_all(cfg.runs, cfg.parallel, |i| {
        let (runs, pp) = (runs.clone(), pp.clone());
        async move {
            let (run, status) = run_objects(i, n, now);
            let name = format!("run-{i:04}");
            runs.create(&pp, &serde_json::from_value(run)?)
                .await
                .with_context(|| format!("creating RunbookRun {name}"))?;
            runs.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .with_context(|| format!("writing the status of RunbookRun {name}"))?;
            Ok(())
        }
    })
    .await?;
    for_all(cfg.windows, cfg.parallel, |i| {
        let (windows, pp) = (windows.clone(), pp.clone());
        async move {
            windows
                .create(&pp, &serde_json::from_value(window_object(i))?)
                .await
                .with_context(|| format!("creating MaintenanceWindow mw-{i:03}"))?;
            Ok(())
        }
    })
    .await?;
    let phases = runs
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|r| {
            r.data
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("none")
                .to_owned()
        })
        .collect::<Vec<_>>();
    progress(format!(
        "seeded {} Runbooks, {} RunbookRuns ({}), {} MaintenanceWindows in {:.1}s",
        cfg.runbooks,
        cfg.runs,
        support::counts(phases),
        cfg.windows,
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}

// ---------------------------------------------------------------------------
// processes: the dashboard, chromedriver
// ---------------------------------------------------------------------------

/// A server process this bench started (killed on drop).
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn rss_kib(&self) -> Option<f64> {
        support::proc_mib(self.pid(), "VmRSS").map(|m| m * 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first (the dashboard stops on it), then make sure.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the dashboard and waits for its `Dashboard: http://...` line.
fn start_dashboard(cfg: &Config, label: &str) -> Result<Server> {
    let log = std::fs::File::create(cfg.out.join(format!("dashboard-{label}.log")))?;
    let mut child = Command::new(&cfg.plugin)
        .args(["dashboard", "--port", "0", "--namespace", &cfg.ns])
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {} dashboard", cfg.plugin.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
        // keep the pipe open so the dashboard never gets SIGPIPE
        std::thread::sleep(Duration::from_secs(u64::MAX / 4));
    });
    let mut server = Server {
        child,
        url: String::new(),
    };
    let line = rx.recv_timeout(cfg.timeout).map_err(|_| {
        anyhow!(
            "the dashboard printed no URL within {:?} (log: dashboard-{label}.log)",
            cfg.timeout
        )
    })?;
    let url = line
        .trim()
        .strip_prefix("Dashboard: ")
        .ok_or_else(|| anyhow!("unexpected first line of the dashboard: {line:?}"))?;
    server.url = url.trim_end_matches('/').to_owned();
    Ok(server)
}

fn start_chromedriver(cfg: &Config) -> Result<Child> {
    let log = std::fs::File::create(cfg.out.join("chromedriver.log"))?;
    let child = Command::new(&cfg.chromedriver)
        .arg(format!("--port={}", cfg.driver_port))
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", cfg.chromedriver.display()))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", cfg.driver_port)).is_err() {
        if Instant::now() > deadline {
            bail!(
                "chromedriver does not listen on port {} (log: chromedriver.log)",
                cfg.driver_port
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(child)
}

// ---------------------------------------------------------------------------
// the browser
// ---------------------------------------------------------------------------

/// `POST /session/{id}/goog/cdp/execute`: a Chrome DevTools command through chromedriver.
#[derive(Debug)]
struct Cdp(Value);

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or("")
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.0.to_string()))
    }
}

async fn browser(cfg: &Config, label: &str) -> Result<fantoccini::Client> {
    let profile = cfg.out.join(format!("chrome-{label}"));
    let _ = std::fs::remove_dir_all(&profile);
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,800",
    ];
    let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), json!({"args": args}));
    let client =
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", cfg.driver_port))
            .await
            .context("starting a browser session through chromedriver")?;
    client
        .issue_cmd(Cdp(
            json!({"cmd": "Page.addScriptToEvaluateOnNewDocument", "params": {"source": OBSERVER}}),
        ))
        .await
        .context("installing the render observer (CDP Page.addScriptToEvaluateOnNewDocument)")?;
    Ok(client)
}

/// One page load's figures (ms; bytes).
#[derive(Clone, Debug, Default)]
struct Load {
    fcp: Option<f64>,
    data: Option<f64>,
    /// Whether `data` came from the page's own `window.__dashboard.firstData`.
    page_mark: bool,
    server: Option<f64>,
    bytes: Option<f64>,
}

async fn load(b: &fantoccini::Client, cfg: &Config, url: &str, page: &str) -> Result<Load> {
    b.goto("about:blank").await?;
    b.goto(&format!("{url}/#/{}/{page}", cfg.ns)).await?;
    let deadline = Instant::now() + cfg.timeout;
    loop {
        let v = b.execute(COLLECT, vec![json!(cfg.ns), json!(page)]).await?;
        if let Some(err) = v["error"].as_str() {
            bail!("the {page} page shows an error: {err}");
        }
        let data = v["pageData"].as_f64().or(v["observed"].as_f64());
        if let (Some(_), Some(fcp)) = (data, v["fcp"].as_f64()) {
            return Ok(Load {
                fcp: Some(fcp),
                data,
                page_mark: v["pageData"].is_number(),
                server: v["server"].as_f64(),
                bytes: v["bytes"].as_f64(),
            });
        }
        if Instant::now() > deadline {
            bail!(
                "the {page} page did not render data within {:?} (last: {v})",
                cfg.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// API server requests
// ---------------------------------------------------------------------------

/// `apiserver_request_total` by "VERB group/resource[/sub]" (resource requests only; Leases
/// left out: the control plane renews its own all the time).
async fn requests(client: &Client) -> Result<BTreeMap<String, f64>> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client
        .request_text(request)
        .await
        .context("reading the API server's /metrics")?;
    let mut out = BTreeMap::new();
    for s in parse_prometheus(&text) {
        if s.name != "apiserver_request_total" {
            continue;
        }
        let l = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
        let resource = l("resource");
        if resource.is_empty() || resource == "leases" {
            continue;
        }
        let group = if l("group").is_empty() {
            "core".to_owned()
        } else {
            l("group")
        };
        let sub = l("subresource");
        let key = format!(
            "{} {group}/{resource}{}{sub}",
            l("verb"),
            if sub.is_empty() { "" } else { "/" }
        );
        *out.entry(key).or_default() += s.value;
    }
    Ok(out)
}

fn delta(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

// ---------------------------------------------------------------------------
// a round
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Round {
    rss_idle: Option<f64>,
    rss_pass: Option<f64>,
    rss_served: Option<f64>,
    cold: Load,
    /// page -> warm loads
    warm: BTreeMap<&'static str, Vec<Load>>,
    /// page -> API requests per view, by key
    api: BTreeMap<&'static str, BTreeMap<String, f64>>,
}

async fn round(client: &Client, cfg: &Config, r: usize, pages: &[&'static str]) -> Result<Round> {
    let mut out = Round::default();
    let dash = start_dashboard(cfg, &format!("r{r}"))?;
    progress(format!(
        "round {r}: dashboard at {} (pid {})",
        dash.url,
        dash.pid()
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    out.rss_idle = dash.rss_kib();
    let b = browser(cfg, &format!("r{r}")).await?;
    let result = async {
        out.cold = load(&b, cfg, &dash.url, pages[0]).await?;
        for page in &pages[1..] {
            load(&b, cfg, &dash.url, page).await?;
        }
        out.rss_pass = dash.rss_kib();
        for &page in pages {
            let before = requests(client).await?;
            let mut loads = Vec::new();
            for _ in 0..cfg.loads {
                loads.push(load(&b, cfg, &dash.url, page).await?);
            }
            let after = requests(client).await?;
            let per_view = delta(&after, &before)
                .into_iter()
                .map(|(k, v)| (k, v / cfg.loads as f64))
                .collect();
            out.api.insert(page, per_view);
            progress(format!(
                "round {r}: {page}: {} loads, data rendered p50 {} ms",
                loads.len(),
                percentile(&sorted(loads.iter().filter_map(|l| l.data).collect()), 0.5)
                    .map_or("-".into(), num)
            ));
            out.warm.insert(page, loads);
        }
        out.rss_served = dash.rss_kib();
        anyhow::Ok(())
    }
    .await;
    let _ = b.close().await;
    result?;
    Ok(out)
}

/// What a fresh dashboard answers to one GET of each page's JSON (a plain HTTP client):
/// per page (HTTP status, bytes, ms, error text), then its RSS, and the API server requests
/// a second such pass cost (caches warm), by key.
struct Pass {
    pages: Vec<(&'static str, u16, usize, f64, String)>,
    /// 2 s after the dashboard printed its URL, before any request.
    rss_idle: Option<f64>,
    rss: Option<f64>,
    api: BTreeMap<String, f64>,
}

async fn json_pass(client: &Client, cfg: &Config, label: &str) -> Result<Pass> {
    let dash = start_dashboard(cfg, label)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = dash.rss_kib();
    let http = reqwest::Client::new();
    let mut pages = Vec::new();
    for page in PAGES {
        let url = format!("{}/api/ns/{}/{page}", dash.url, cfg.ns);
        let t = Instant::now();
        let resp = http
            .get(&url)
            .timeout(cfg.timeout)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let code = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let error = if code == 200 {
            String::new()
        } else {
            body.chars().take(160).collect()
        };
        pages.push((page, code, body.len(), ms, error));
    }
    let rss = dash.rss_kib();
    let before = requests(client).await?;
    for page in PAGES {
        let _ = timed_get(&http, &format!("{}/api/ns/{}/{page}", dash.url, cfg.ns)).await?;
    }
    let api = delta(&requests(client).await?, &before);
    Ok(Pass {
        pages,
        rss_idle,
        rss,
        api,
    })
}

fn print_pass(title: &str, pass: &Pass) {
    println!("{title}");
    for (page, code, bytes, ms, error) in &pass.pages {
        value_row(
            &format!(
                "  GET /api/ns/<ns>/{page}: HTTP {code}, {} KiB",
                num(*bytes as f64 / 1024.0)
            ),
            &[Some(*ms)],
            "ms",
        );
        if !error.is_empty() {
            println!("         {:<52} {error}", "");
        }
    }
    value_row(
        "  plugin RSS idle before it",
        &[pass.rss_idle.map(|k| k / 1024.0)],
        "MiB",
    );
    value_row(
        "  plugin RSS after it",
        &[pass.rss.map(|k| k / 1024.0)],
        "MiB",
    );
    let total: f64 = pass.api.values().sum();
    value_row(
        "  API server requests of a second pass (5 GETs)",
        &[Some(total)],
        "req",
    );
    let text = pass
        .api
        .iter()
        .map(|(k, v)| format!("{k} {}", num(*v)))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "         {:<52} {}",
        "",
        if text.is_empty() { "none".into() } else { text }
    );
}

// ---------------------------------------------------------------------------
// the peer: Argo Rollouts' dashboard
// ---------------------------------------------------------------------------

struct Peer {
    ui: String,
    cold_ms: f64,
    warm_ms: Vec<f64>,
    bytes: usize,
    rss_idle: Option<f64>,
    rss_served: Option<f64>,
}

async fn timed_get(http: &reqwest::Client, url: &str) -> Result<(f64, usize, u16)> {
    let t = Instant::now();
    let resp = http
        .get(url)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let code = resp.status().as_u16();
    let body = resp.bytes().await?;
    Ok((t.elapsed().as_secs_f64() * 1000.0, body.len(), code))
}

async fn peer(client: &Client, cfg: &Config, bin: &Path) -> Result<Peer> {
    let ns = format!("{}-peer", cfg.ns);
    let nss: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("", "v1", "Namespace"),
            "namespaces",
        ),
    );
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )?,
    )
    .await
    .with_context(|| format!("creating namespace {ns}"))?;
    let rollouts = api(
        client,
        &ns,
        "Rollout",
        "rollouts",
        "argoproj.io",
        "v1alpha1",
    );
    for_all(cfg.rollouts, cfg.parallel, |i| {
        let rollouts = rollouts.clone();
        async move {
            let name = format!("ro-{i:03}");
            let ro = json!({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": name},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}},
                    "strategy": {"blueGreen": {"activeService": format!("{name}-active"), "autoPromotionEnabled": false}}},
            });
            rollouts.create(&PostParams::default(), &serde_json::from_value(ro)?).await.with_context(|| format!("creating Rollout {name}"))?;
            Ok(())
        }
    })
    .await?;
    let log = std::fs::File::create(cfg.out.join("peer-dashboard.log"))?;
    let child = Command::new(bin)
        .args(["dashboard", "--port", &cfg.peer_port.to_string()])
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {} dashboard", bin.display()))?;
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{}", cfg.peer_port),
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + cfg.timeout;
    while std::net::TcpStream::connect(("127.0.0.1", cfg.peer_port)).is_err() {
        if Instant::now() > deadline {
            bail!(
                "the peer's dashboard does not listen on port {} (log: peer-dashboard.log)",
                cfg.peer_port
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = server.rss_kib();
    let root = http.get(format!("{}/rollouts/", server.url)).send().await?;
    let code = root.status().as_u16();
    let body = root.text().await.unwrap_or_default();
    let ui = if code == 200 && body.to_ascii_lowercase().contains("<script") {
        format!("serves a UI at /rollouts/ (HTTP 200, {} bytes)", body.len())
    } else {
        format!(
            "serves no UI at /rollouts/ (HTTP {code}, {} bytes: its UI assets need a yarn build, not available offline)",
            body.len()
        )
    };
    let info = format!("{}/rollouts/api/v1/rollouts/{ns}/info", server.url);
    let (cold_ms, bytes, code) = timed_get(&http, &info).await?;
    if code != 200 {
        bail!("the peer answered {code} to GET {info}");
    }
    let mut warm_ms = Vec::new();
    for _ in 0..cfg.loads {
        warm_ms.push(timed_get(&http, &info).await?.0);
    }
    Ok(Peer {
        ui,
        cold_ms,
        warm_ms,
        bytes,
        rss_idle,
        rss_served: server.rss_kib(),
    })
}

// ---------------------------------------------------------------------------
// figures
// ---------------------------------------------------------------------------

fn median(v: Vec<f64>) -> Option<f64> {
    percentile(&sorted(v), 0.5)
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), num)
}

/// "figure  p50  p99  unit  per round (p50/p99)" over rounds of per-round samples.
fn dist_row(label: &str, per_round: &[Vec<f64>], unit: &str) {
    let p = |q: f64| -> Vec<Option<f64>> {
        per_round
            .iter()
            .map(|s| percentile(&sorted(s.clone()), q))
            .collect()
    };
    let (p50, p99) = (p(0.5), p(0.99));
    let rounds = p50
        .iter()
        .zip(&p99)
        .map(|(a, b)| format!("{}/{}", opt(*a), opt(*b)))
        .collect::<Vec<_>>()
        .join(" ");
    println!(
        "figure {:<52} {:>9} {:>9} {:<4} rounds: {rounds}",
        label,
        opt(median(p50.into_iter().flatten().collect())),
        opt(median(p99.into_iter().flatten().collect())),
        unit
    );
}

fn value_row(label: &str, per_round: &[Option<f64>], unit: &str) {
    let rounds = per_round
        .iter()
        .map(|v| opt(*v))
        .collect::<Vec<_>>()
        .join(" ");
    println!(
        "figure {:<52} {:>9} {:>9} {:<4} rounds: {rounds}",
        label,
        opt(median(per_round.iter().flatten().copied().collect())),
        "",
        unit
    );
}

fn print_figures(cfg: &Config, rounds: &[Round], pages: &[&'static str]) {
    println!(
        "{:<59} {:>9} {:>9} {:<4} (medians over {} rounds; per round p50/p99 of {} warm loads)",
        "",
        "p50",
        "p99",
        "unit",
        rounds.len(),
        cfg.loads
    );
    let pick = |page: &str, f: fn(&Load) -> Option<f64>| -> Vec<Vec<f64>> {
        rounds
            .iter()
            .map(|r| {
                r.warm
                    .get(page)
                    .map(|v| v.iter().filter_map(f).collect())
                    .unwrap_or_default()
            })
            .collect()
    };
    let cold = |f: fn(&Load) -> Option<f64>| -> Vec<Option<f64>> {
        rounds.iter().map(|r| f(&r.cold)).collect()
    };
    let first = pages[0];
    println!("cold: first load of {first}, fresh dashboard and browser (its caches fill)");
    value_row(
        &format!("  {first} cold: first contentful paint"),
        &cold(|l| l.fcp),
        "ms",
    );
    value_row(
        &format!("  {first} cold: data rendered"),
        &cold(|l| l.data),
        "ms",
    );
    value_row(
        &format!("  {first} cold: server time of /api/ns/<ns>/{first}"),
        &cold(|l| l.server),
        "ms",
    );
    for &page in pages {
        println!("{page} (warm)");
        dist_row(
            &format!("  {page}: first contentful paint"),
            &pick(page, |l| l.fcp),
            "ms",
        );
        dist_row(
            &format!("  {page}: data rendered"),
            &pick(page, |l| l.data),
            "ms",
        );
        dist_row(
            &format!("  {page}: server time of /api/ns/<ns>/{page}"),
            &pick(page, |l| l.server),
            "ms",
        );
        dist_row(
            &format!("  {page}: JSON size (decoded)"),
            &pick(page, |l| l.bytes.map(|b| b / 1024.0)),
            "KiB",
        );
        let per_view: Vec<Option<f64>> = rounds
            .iter()
            .map(|r| r.api.get(page).map(|m| m.values().sum()))
            .collect();
        value_row(
            &format!("  {page}: API server requests per view"),
            &per_view,
            "req",
        );
        for r in rounds {
            if let Some(m) = r.api.get(page) {
                let text = m
                    .iter()
                    .map(|(k, v)| format!("{k} {}", num(*v)))
                    .collect::<Vec<_>>()
                    .join(", ");
                println!(
                    "         {:<52} {}",
                    "",
                    if text.is_empty() { "none".into() } else { text }
                );
            }
        }
    }
    let marks: usize = rounds
        .iter()
        .flat_map(|r| r.warm.values().flatten())
        .filter(|l| l.page_mark)
        .count();
    let all: usize = rounds
        .iter()
        .map(|r| r.warm.values().map(Vec::len).sum::<usize>())
        .sum();
    println!(
        "data rendered from window.__dashboard.firstData in {marks} of {all} warm loads; the others: the bench's observer of body[data-renders]"
    );
    println!("plugin RSS (VmRSS)");
    value_row(
        "  idle after startup",
        &rounds
            .iter()
            .map(|r| r.rss_idle.map(|k| k / 1024.0))
            .collect::<Vec<_>>(),
        "MiB",
    );
    value_row(
        "  after one pass of the pages",
        &rounds
            .iter()
            .map(|r| r.rss_pass.map(|k| k / 1024.0))
            .collect::<Vec<_>>(),
        "MiB",
    );
    value_row(
        &format!(
            "  after serving all pages ({} loads)",
            pages.len() * (1 + cfg.loads)
        ),
        &rounds
            .iter()
            .map(|r| r.rss_served.map(|k| k / 1024.0))
            .collect::<Vec<_>>(),
        "MiB",
    );
}

// ---------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------

const USAGE: &str = "benches/dashboard.rs: run it through hack/bench-dashboard.sh (make bench-dashboard); \
without BENCH_PLUGIN_BIN it does nothing.";

#[tokio::main]
async fn main() {
    let Some(plugin) = env_text("BENCH_PLUGIN_BIN") else {
        println!("{USAGE}");
        return;
    };
    support::t0();
    if let Err(err) = bench(plugin).await {
        progress(format!("ERROR: {err:#}"));
        std::process::exit(1);
    }
}

async fn bench(plugin: String) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = Config::from_env(plugin)?;
    let kube_config = KubeConfig::infer()
        .await
        .context("reading the kubeconfig")?;
    let client = Client::try_from(kube_config)?;
    progress(format!(
        "seeding namespace {} (kubeconfig {})",
        cfg.ns,
        cfg.kubeconfig.as_deref().unwrap_or("default")
    ));
    seed(&client, &cfg).await?;
    let mut driver = start_chromedriver(&cfg)?;
    let result = measure(&client, &cfg).await;
    let _ = driver.kill();
    let _ = driver.wait();
    result
}

async fn measure(client: &Client, cfg: &Config) -> Result<()> {
    // Which pages the browser can measure: those whose JSON answers 200.
    let full = json_pass(client, cfg, "preflight").await?;
    print_pass(
        &format!(
            "JSON of each page, one GET each, fresh dashboard (the first GET fills its caches), plain HTTP client ({} runs)",
            cfg.runs
        ),
        &full,
    );
    let pages: Vec<&'static str> = full
        .pages
        .iter()
        .filter(|p| p.1 == 200)
        .map(|p| p.0)
        .collect();
    if pages.is_empty() {
        println!("browser rounds left out: no page's JSON answered 200");
    } else {
        let mut rounds = Vec::new();
        for r in 1..=cfg.rounds {
            match round(client, cfg, r, &pages).await {
                Ok(round) => rounds.push(round),
                Err(err) => {
                    progress(format!("round {r} failed: {err:#}"));
                    println!("browser round {r} failed: {err:#}");
                    break;
                }
            }
        }
        if !rounds.is_empty() {
            print_figures(cfg, &rounds, &pages);
        }
    }

    // RSS against the number of runs: the same JSON pass with 1,000 and then 200 runs.
    let (rss_full, bytes_full) = (
        full.rss,
        full.pages
            .iter()
            .find(|p| p.0 == "runs")
            .map(|p| p.2 as f64),
    );
    let keep = 200.min(cfg.runs);
    let runs = api(
        client,
        &cfg.ns,
        "RunbookRun",
        "runbookruns",
        "ops.runbook.dev",
        "v1alpha1",
    );
    for_all(cfg.runs - keep, cfg.parallel, |i| {
        let runs = runs.clone();
        async move {
            runs.delete(&format!("run-{:04}", keep + i), &DeleteParams::default())
                .await?;
            Ok(())
        }
    })
    .await?;
    let left = runs.list(&ListParams::default()).await?.items.len();
    let small = json_pass(client, cfg, "small").await?;
    print_pass(
        &format!(
            "JSON of each page, one GET each, fresh dashboard (the first GET fills its caches), plain HTTP client ({left} runs)"
        ),
        &small,
    );
    let (rss_small, bytes_small) = (
        small.rss,
        small
            .pages
            .iter()
            .find(|p| p.0 == "runs")
            .map(|p| p.2 as f64),
    );
    println!("plugin RSS against runs (fresh dashboard, one GET of each page's JSON)");
    value_row(
        &format!("  with {} runs", cfg.runs),
        &[rss_full.map(|k| k / 1024.0)],
        "MiB",
    );
    value_row(
        &format!("  with {left} runs"),
        &[rss_small.map(|k| k / 1024.0)],
        "MiB",
    );
    let slope = match (rss_full, rss_small) {
        (Some(a), Some(b)) if cfg.runs > left => Some((a - b) / (cfg.runs - left) as f64),
        _ => None,
    };
    value_row("  slope", &[slope], "KiB/run");
    value_row(
        &format!("  /runs JSON with {} runs", cfg.runs),
        &[bytes_full.map(|b| b / 1024.0)],
        "KiB",
    );
    value_row(
        &format!("  /runs JSON with {left} runs"),
        &[bytes_small.map(|b| b / 1024.0)],
        "KiB",
    );

    // Our JSON endpoints timed by a plain HTTP client, the way the peer's is.
    let dash = start_dashboard(cfg, "http")?;
    let http = reqwest::Client::new();
    println!(
        "HTTP client (reqwest) time of the JSON endpoints, fresh dashboard, {left} runs, {} windows: cold, then {} warm",
        cfg.windows, cfg.loads
    );
    for page in ["now", "runs"] {
        let url = format!("{}/api/ns/{}/{page}", dash.url, cfg.ns);
        let (cold, bytes, code) = timed_get(&http, &url).await?;
        let mut warm = Vec::new();
        for _ in 0..cfg.loads {
            warm.push(timed_get(&http, &url).await?.0);
        }
        value_row(
            &format!(
                "  GET /api/ns/<ns>/{page} cold (HTTP {code}, {} KiB)",
                num(bytes as f64 / 1024.0)
            ),
            &[Some(cold)],
            "ms",
        );
        dist_row(&format!("  GET /api/ns/<ns>/{page} warm"), &[warm], "ms");
    }
    drop(dash);

    println!("peer: Argo Rollouts dashboard (kubectl argo rollouts dashboard)");
    match (&cfg.peer, &cfg.peer_note) {
        (_, Some(note)) => println!("  left out: {note}"),
        (None, None) => println!("  left out: BENCH_PEER_BIN not set"),
        (Some(bin), None) => match peer(client, cfg, bin).await {
            Ok(p) => {
                println!(
                    "  {}; measured only its API endpoint, by HTTP client (reqwest), {} Rollouts (no controller: no status)",
                    p.ui, cfg.rollouts
                );
                value_row(
                    &format!(
                        "  GET /rollouts/api/v1/rollouts/<ns>/info cold ({} KiB)",
                        num(p.bytes as f64 / 1024.0)
                    ),
                    &[Some(p.cold_ms)],
                    "ms",
                );
                dist_row(
                    "  GET /rollouts/api/v1/rollouts/<ns>/info warm",
                    &[p.warm_ms],
                    "ms",
                );
                value_row(
                    "  RSS idle after startup",
                    &[p.rss_idle.map(|k| k / 1024.0)],
                    "MiB",
                );
                value_row(
                    "  RSS after serving",
                    &[p.rss_served.map(|k| k / 1024.0)],
                    "MiB",
                );
            }
            Err(err) => println!("  failed: {err:#}"),
        },
    }
    Ok(())
}
