//! `kubectl runbook dashboard` in a real browser: the built plugin serves the page for the
//! test's namespace (as the suite's identity, or as a person through an impersonating
//! kubeconfig) and headless Chromium drives it (tests/e2e/browser.rs). Every scenario is
//! checked twice: in the page (the DOM hooks of the page contract: `data-*` attributes,
//! `button[data-action]`) and in the cluster (what the click changed). Live updates are
//! checked without reload: a marker set on `window` before the click must survive it, and
//! `body[data-renders]` must grow. Screenshots land in `target/dashboard-screenshots/`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use runbook_operator::blue_green::BlueGreenRelease;
use runbook_operator::runbook_run::{RunbookRun, StepPhase};
use runbook_operator::well_known::APPROVE;
use serde_json::json;

use crate::browser::{Browser, DARK, Dashboard};
use crate::plugin::services;
use crate::support::{PATIENCE, TestNamespace, entry, impersonating_kubeconfig, output, run_yaml};

// ---------------------------------------------------------------------------------------------
// objects
// ---------------------------------------------------------------------------------------------

/// Runbook `gate`: an approval step `ask`, then a short sleep `after`.
const GATE: &str = "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {name: gate}\nspec:\n  steps:\n  - {name: ask, approval: {message: \"Ship it?\"}}\n  - {name: after, sleep: {duration: 1s}}\n";

/// Applies [`GATE`] and run `name` of it, and waits until the run waits at `ask`.
async fn waiting_run(ns: &TestNamespace, name: &str) -> RunbookRun {
    ns.apply(GATE);
    ns.apply(&run_yaml(name, "gate", "Run", &[]));
    ns.wait_for::<RunbookRun>(name, "waiting for approval at ask", waiting_at_ask)
        .await
}

fn run_phase(run: &RunbookRun) -> Option<&'static str> {
    run.status
        .as_ref()
        .and_then(|s| s.phase)
        .map(|p| p.as_str())
}

fn waiting_at_ask(run: &RunbookRun) -> bool {
    run_phase(run) == Some("WaitingForApproval")
        && run.status.as_ref().and_then(|s| s.current_step.as_deref()) == Some("ask")
}

/// The first-Sunday window of examples/maintenance-window.yaml, with a target nobody needs.
const FIRST_SUNDAY: &str = "apiVersion: ops.runbook.dev/v1alpha1\nkind: MaintenanceWindow\nmetadata: {name: first-sunday}\nspec:\n  schedule: {cron: \"0 2 * * SUN#1\", timeZone: Australia/Sydney, duration: 2h}\n  targets: [{kind: Deployment, name: absent, scaleTo: 0}]\n";

/// Release `web` of image tag `tag`, promoted by hand (kwok makes its pods Ready).
fn release(tag: &str) -> String {
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: BlueGreenRelease\nmetadata: {{name: web}}\nspec:\n  replicas: 2\n  services: {{active: web, preview: web-preview}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: web, image: \"registry.example.com/web:{tag}\"}}]}}\n  strategy: {{autoPromote: false, scaleDownDelay: 5s}}\n"
    )
}

fn release_phase(b: &BlueGreenRelease) -> String {
    b.status
        .as_ref()
        .and_then(|s| s.phase)
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default()
}

fn revisions(b: &BlueGreenRelease) -> (Option<String>, Option<String>) {
    let s = b.status.clone().unwrap_or_default();
    (s.active_revision, s.desired_revision)
}

async fn slot_of(ns: &TestNamespace, service: &str) -> Option<String> {
    let svc = ns.api::<Service>().get(service).await.expect("get service");
    let selector: BTreeMap<String, String> = svc.spec.and_then(|s| s.selector).unwrap_or_default();
    selector.get("ops.runbook.dev/slot").cloned()
}

// ---------------------------------------------------------------------------------------------
// page helpers
// ---------------------------------------------------------------------------------------------

/// `body[data-renders]` now.
async fn renders(b: &Browser) -> u64 {
    b.attr("body", "data-renders")
        .await
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Opens `#/<route>` and waits until the page rendered data after it and shows `ready` (a
/// CSS selector); fails on `body[data-error]`.
async fn open(b: &Browser, dash: &Dashboard, route: &str, ready: &str) {
    let before = if b.url().await.starts_with(&dash.url) {
        renders(b).await
    } else {
        0
    };
    b.goto(&dash.page(route)).await;
    b.wait_js(
        &format!("#/{route} rendered, or an error"),
        &format!(
            "document.body.hasAttribute('data-error') || (Number(document.body.dataset.renders || 0) > {before} && document.querySelector({ready:?}))"
        ),
    )
    .await;
    no_error(b, dash, route).await;
}

/// Fails (with a screenshot and the dashboard's log) when the page reports an error.
async fn no_error(b: &Browser, dash: &Dashboard, route: &str) {
    if let Some(error) = b
        .js("return document.body.getAttribute('data-error')")
        .await
        .as_str()
    {
        panic!(
            "{}",
            b.failure(&format!(
                "#/{route} shows an error: {error}; dashboard log: {}",
                dash.log.display()
            ))
            .await
        );
    }
}

/// Sets a marker on `window` that only a full reload would remove, and returns the render
/// count.
async fn mark(b: &Browser) -> u64 {
    b.js("window.__marker = 1; return null;").await;
    renders(b).await
}

/// The page was not reloaded since [`mark`] and rendered again since `before`.
async fn assert_live(b: &Browser, before: u64, what: &str) {
    assert_eq!(
        b.js("return window.__marker === 1").await,
        json!(true),
        "{what}: the page was reloaded (the marker set before is gone)"
    );
    let now = renders(b).await;
    assert!(
        now > before,
        "{what}: data-renders did not grow ({before} → {now})"
    );
}

// ---------------------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------------------

/// The harness itself on a page of its own (no cluster, no dashboard): waits on a JS
/// predicate and a selector, clicks, reads text and attributes, and saves a screenshot.
#[tokio::test]
#[ignore = "needs the local cluster and the chart: make test"]
async fn the_browser_harness_drives_a_page() {
    let b = Browser::start("harness").await;
    let page = "data:text/html,<body data-renders=0><button id=b onclick=\"setTimeout(()=>{document.body.dataset.renders=1;document.getElementById('out').textContent='clicked'},300)\">Go</button><p id=out title=t></p></body>";
    b.goto(page).await;
    b.click("#b").await;
    b.wait_js(
        "the click's render",
        "document.body.dataset.renders === '1'",
    )
    .await;
    assert_eq!(b.text("#out").await, "clicked");
    assert_eq!(b.attr("#out", "title").await.as_deref(), Some("t"));
    let shot = b.screenshot("page").await;
    assert!(std::fs::metadata(&shot).expect("screenshot file").len() > 0);
    b.close().await;
}

/// a. The Now page lists a run waiting for approval with Approve; its link opens the run page
/// without reload; Approve there moves the run on (the step and run Succeeded in the cluster)
/// and the timeline shows the new phases without reload.
#[tokio::test]
#[ignore = "needs the local cluster and the chart: make test"]
async fn now_lists_a_waiting_run_and_approve_moves_it_on_live() {
    let mut ns = TestNamespace::new("dash-approve").await;
    ns.start_operator();
    waiting_run(&ns, "gate-1").await;
    let dash = Dashboard::start(&ns.name, None);
    let b = Browser::start("approve").await;

    let item = "#now-waiting [data-run=\"gate-1\"]";
    open(&b, &dash, &format!("{}/now", ns.name), item).await;
    let approve = "#now-waiting button[data-action=\"approve\"][data-run=\"gate-1\"]";
    assert_eq!(b.attr(approve, "data-step").await.as_deref(), Some("ask"));
    b.screenshot("now").await;

    // One click from the Now page to the run, by the fragment: no reload.
    let before = mark(&b).await;
    b.click(&format!("{item} a")).await;
    b.wait_js(
        "the run page",
        "location.hash.endsWith('/runs/gate-1') && document.querySelector('#timeline [data-step=\"ask\"]')",
    )
    .await;
    assert_live(&b, before, "opening the run from Now").await;
    assert_eq!(b.text("#run-phase").await, "WaitingForApproval");
    assert_eq!(
        b.attr("#timeline [data-step=\"ask\"]", "data-phase")
            .await
            .as_deref(),
        Some("WaitingForApproval")
    );
    b.screenshot("run-waiting").await;

    let before = mark(&b).await;
    b.click("button[data-action=\"approve\"][data-run=\"gate-1\"]")
        .await;
    let done = ns
        .wait_for::<RunbookRun>("gate-1", "Succeeded after the approval", |r| {
            run_phase(r) == Some("Succeeded")
        })
        .await;
    assert_eq!(entry(&done, "ask").phase, StepPhase::Succeeded);
    assert_eq!(entry(&done, "after").phase, StepPhase::Succeeded);
    assert_eq!(output(entry(&done, "ask"), "decision"), "Approved");
    b.wait_js(
        "the timeline's steps Succeeded",
        "document.querySelector('#timeline [data-step=\"ask\"][data-phase=\"Succeeded\"]') && document.querySelector('#timeline [data-step=\"after\"][data-phase=\"Succeeded\"]') && document.querySelector('#run-phase').textContent.trim() === 'Succeeded'",
    )
    .await;
    assert_live(&b, before, "the approval").await;
    assert!(
        !b.exists("button[data-action=\"approve\"]").await,
        "a finished run still offers Approve"
    );
    assert!(
        !b.text("#message").await.is_empty(),
        "#message should say what the approval did"
    );
    assert!(
        b.exists("#timeline [data-step=\"after\"] .bar").await,
        "the finished step has no bar"
    );
    b.screenshot("run-approved").await;
    b.close().await;
}

/// b. The first-Sunday 02:00 Australia/Sydney window of 2h, on the days and at the times the
/// controller's schedule code gives (elapsed duration; a start in a repeated hour happens at
/// its first occurrence, one in a skipped hour at the first instant after it):
/// - 2026-04-05, the day Sydney leaves daylight saving (03:00 AEDT → 02:00 AEST): opens at
///   the first 02:00 (AEDT, 15:00 UTC on 04-04) and closes 2h later, 03:00 AEST (17:00 UTC);
/// - 2026-05-03, standard time: 02:00–04:00 AEST, 16:00–18:00 UTC on 05-02;
/// - 2026-10-04, the day Sydney enters daylight saving (02:00 AEST → 03:00 AEDT): 02:00 does
///   not exist, so 03:00–05:00 AEDT, 16:00–18:00 UTC on 10-03.
///
/// The DST days carry a `.dst` marker naming the zone in the window's own zone, not in UTC.
#[tokio::test]
#[ignore = "needs the local cluster and the chart: make test"]
async fn calendar_shows_the_first_sunday_window_in_its_own_zone_and_in_utc() {
    let mut ns = TestNamespace::new("dash-calendar").await;
    ns.start_operator();
    ns.apply(FIRST_SUNDAY);
    let dash = Dashboard::start(&ns.name, None);
    let b = Browser::start("calendar").await;
    let entry_on =
        |date: &str| format!("[data-date=\"{date}\"] .entry[data-window=\"first-sunday\"]");
    let cal =
        |date: &str, zone: &str| format!("{}/calendar?span=month&date={date}&zone={zone}", ns.name);

    // April in the window's own zone.
    open(
        &b,
        &dash,
        &cal("2026-04-01", "own"),
        &entry_on("2026-04-05"),
    )
    .await;
    assert_times(&b, &entry_on("2026-04-05"), "02:00–03:00").await;
    assert_times(&b, &entry_on("2026-05-03"), "02:00–04:00").await;
    assert_dst(&b, "2026-04-05", true).await;
    assert_dst(&b, "2026-05-03", false).await;
    // Every entry of the grid is on a Sunday, and April has exactly one.
    assert_eq!(
        entry_dates(&b, false).await,
        vec!["2026-04-05".to_owned(), "2026-05-03".to_owned()]
    );
    assert_eq!(entry_dates(&b, true).await, vec!["2026-04-05".to_owned()]);
    b.screenshot("april-own").await;

    // The zone picker: UTC moves the entries to Saturday.
    let before = mark(&b).await;
    let zone = b.wait_css("select#zone").await;
    zone.select_by_value("UTC").await.expect("choose UTC");
    b.wait_js(
        "the UTC calendar",
        &format!(
            "location.hash.includes('zone=UTC') && document.querySelector('{}')",
            entry_on("2026-04-04").replace('\'', "\\'")
        ),
    )
    .await;
    assert_live(&b, before, "switching the zone").await;
    no_error(&b, &dash, "calendar in UTC").await;
    assert_times(&b, &entry_on("2026-04-04"), "15:00–17:00").await;
    assert_times(&b, &entry_on("2026-05-02"), "16:00–18:00").await;
    assert!(!b.exists(&entry_on("2026-04-05")).await);
    assert_dst(&b, "2026-04-05", false).await;
    assert_eq!(
        entry_dates(&b, false).await,
        vec!["2026-04-04".to_owned(), "2026-05-02".to_owned()]
    );
    b.screenshot("april-utc").await;

    // October, where Sydney's clocks go forward on the first Sunday.
    open(
        &b,
        &dash,
        &cal("2026-10-01", "own"),
        &entry_on("2026-10-04"),
    )
    .await;
    assert_times(&b, &entry_on("2026-10-04"), "03:00–05:00").await;
    assert_dst(&b, "2026-10-04", true).await;
    assert_eq!(entry_dates(&b, true).await, vec!["2026-10-04".to_owned()]);
    b.screenshot("october-own").await;
    open(
        &b,
        &dash,
        &cal("2026-10-01", "UTC"),
        &entry_on("2026-10-03"),
    )
    .await;
    assert_times(&b, &entry_on("2026-10-03"), "16:00–18:00").await;
    assert!(!b.exists(&entry_on("2026-10-04")).await);
    // November's first Sunday opens at 02:00 AEDT on 1 November, which is 15:00 UTC on
    // 31 October: in UTC, October holds two occurrences.
    assert_times(&b, &entry_on("2026-10-31"), "15:00–17:00").await;
    assert_eq!(
        entry_dates(&b, true).await,
        vec!["2026-10-03".to_owned(), "2026-10-31".to_owned()]
    );
    b.screenshot("october-utc").await;
    b.close().await;
}

async fn assert_times(b: &Browser, entry: &str, times: &str) {
    let text = b.text(entry).await;
    if !text.contains(times) {
        panic!(
            "{}",
            b.failure(&format!("{entry} should say {times}, says {text:?}"))
                .await
        );
    }
}

/// Whether the cell of `date` has a DST marker naming Australia/Sydney with visible text.
async fn assert_dst(b: &Browser, date: &str, expected: bool) {
    let css = format!("[data-date=\"{date}\"] .dst");
    if !expected {
        assert!(!b.exists(&css).await, "{date} should have no DST marker");
        return;
    }
    let title = b.attr(&css, "title").await.unwrap_or_default();
    assert!(
        title.contains("Australia/Sydney"),
        "{css} title should name the zone: {title:?}"
    );
    assert!(
        !b.text(&css).await.trim().is_empty(),
        "{css} should show text, not colour only"
    );
}

/// The dates of the window's entries (only the requested month's days when `in_span`);
/// asserts each is a Sunday in the own-zone view or a Saturday in UTC, i.e. one weekday.
async fn entry_dates(b: &Browser, in_span: bool) -> Vec<String> {
    let cells = if in_span {
        "[data-in-span=\"true\"]"
    } else {
        "[data-date]"
    };
    let v = b
        .js(&format!(
            "return [...document.querySelectorAll('{cells}')].filter(c => c.querySelector('.entry[data-window=\"first-sunday\"]')).map(c => [c.dataset.date, new Date(c.dataset.date + 'T00:00:00Z').getUTCDay()])"
        ))
        .await;
    let pairs: Vec<(String, u8)> = serde_json::from_value(v).expect("dates and weekdays");
    let weekdays: std::collections::BTreeSet<u8> = pairs.iter().map(|(_, d)| *d).collect();
    assert!(
        weekdays.len() <= 1 && weekdays.iter().all(|d| *d == 0 || *d == 6),
        "the window's entries fall on different weekdays: {pairs:?}"
    );
    pairs.into_iter().map(|(d, _)| d).collect()
}

/// c. Promote on a release's card (autoPromote false, AwaitingPromotion) switches the active
/// Service to the new slot in the cluster, and the card shows it without reload.
#[tokio::test]
#[ignore = "needs the local cluster and the chart: make test"]
async fn promote_switches_the_active_service_and_the_card_follows() {
    let mut ns = TestNamespace::new("dash-promote").await;
    ns.apply(&services());
    ns.apply(&release("1"));
    ns.start_operator();
    let first = ns
        .wait_for::<BlueGreenRelease>("web", "Healthy on blue", |b| {
            release_phase(b) == "Healthy"
                && revisions(b).0.is_some()
                && revisions(b).0 == revisions(b).1
        })
        .await;
    let r1 = revisions(&first).0.expect("active revision");
    ns.apply(&release("2"));
    let waiting = ns
        .wait_for::<BlueGreenRelease>("web", "AwaitingPromotion of a new revision", |b| {
            release_phase(b) == "AwaitingPromotion"
                && revisions(b).1.as_ref().is_some_and(|d| *d != r1)
        })
        .await;
    let r2 = revisions(&waiting).1.expect("desired revision");
    assert_eq!(slot_of(&ns, "web").await.as_deref(), Some("blue"));

    let dash = Dashboard::start(&ns.name, None);
    let b = Browser::start("promote").await;
    let card = "[data-release=\"web\"]";
    let promote = format!("{card} button[data-action=\"promote\"]");
    open(&b, &dash, &format!("{}/releases", ns.name), &promote).await;
    assert_eq!(
        b.attr(&promote, "data-revision").await.as_deref(),
        Some(r2.as_str()),
        "Promote must be bound to the waiting revision"
    );
    assert_eq!(
        b.text(&format!("{card} [data-field=\"phase\"]")).await,
        "AwaitingPromotion"
    );
    let selected = |slot: &str| format!("{card} [data-slot=\"{slot}\"]");
    assert_eq!(
        b.attr(&selected("blue"), "data-selected-by")
            .await
            .as_deref(),
        Some("active")
    );
    assert_eq!(
        b.attr(&selected("green"), "data-selected-by")
            .await
            .as_deref(),
        Some("preview")
    );
    assert!(b.text(&selected("green")).await.contains(&r2));
    b.screenshot("awaiting").await;

    let before = mark(&b).await;
    b.click(&promote).await;
    let started = std::time::Instant::now();
    while slot_of(&ns, "web").await.as_deref() != Some("green") {
        assert!(
            started.elapsed() < PATIENCE,
            "the active Service never selected green after Promote"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    b.wait_js(
        "green selected by the active Service on the card",
        &format!(
            "(document.querySelector('{card} [data-slot=\"green\"]')?.dataset.selectedBy || '').split(' ').includes('active')"
        ),
    )
    .await;
    assert_live(&b, before, "the promotion").await;
    let blue = b.attr(&selected("blue"), "data-selected-by").await;
    assert!(
        !blue.unwrap_or_default().split(' ').any(|s| s == "active"),
        "blue is still shown as active"
    );
    b.screenshot("promoted").await;
    b.close().await;
}

/// d. A person with get/list/watch but without `patch` on runbookruns sees the waiting run
/// with no Approve button, and the dashboard's POST of an approval as that person is refused
/// (403, the run unchanged). POSTs without the page's token, and requests with another
/// Host, are refused by the dashboard itself; the same POST with the token as the suite's
/// identity then approves.
#[tokio::test]
#[ignore = "needs the local cluster and the chart: make test"]
async fn a_reader_gets_no_approve_button_and_unguarded_requests_are_refused() {
    let mut ns = TestNamespace::new("dash-rbac").await;
    ns.start_operator();
    waiting_run(&ns, "gate-1").await;
    ns.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: reader}\nrules:\n- {apiGroups: [ops.runbook.dev], resources: [runbooks, runbookruns, maintenancewindows, bluegreenreleases, backuppolicies], verbs: [get, list, watch]}\n- {apiGroups: [\"\", events.k8s.io], resources: [events], verbs: [get, list, watch]}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: reader}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}\nsubjects: [{kind: User, apiGroup: rbac.authorization.k8s.io, name: rita}]\n",
    );
    // The dashboard's own guards, as the suite's identity (which may approve).
    let admin = Dashboard::start(&ns.name, None);
    let path = format!("/api/ns/{}/runs/gate-1/approve", ns.name);
    let body = r#"{"step":"ask"}"#;
    let (code, answer) =
        admin.request("POST", &path, &[("Content-Type", "application/json")], body);
    assert_eq!(code, 403, "a POST without the token: {answer}");
    let (code, answer) = admin.request("POST", &path, &post_headers("not-the-token"), body);
    assert_eq!(code, 403, "a POST with a wrong token: {answer}");
    let admin_token = admin_token(&admin);
    let foreign = crate::browser::http(
        &admin.addr,
        "POST",
        &path,
        "attacker.example:80",
        &post_headers(&admin_token),
        body,
    )
    .expect("POST with a foreign Host");
    assert!(
        (400..500).contains(&foreign.0),
        "a foreign Host header must be refused: {foreign:?}"
    );
    let foreign = crate::browser::http(
        &admin.addr,
        "GET",
        "/api/context",
        "attacker.example",
        &[],
        "",
    )
    .expect("GET with a foreign Host");
    assert!(
        (400..500).contains(&foreign.0),
        "a foreign Host header must be refused on GET too: {foreign:?}"
    );
    unchanged(&ns).await;

    // A reader's page and the reader's POST.
    let rita = impersonating_kubeconfig("rita", "dash-reader");
    let dash = Dashboard::start(&ns.name, Some(&rita));
    let b = Browser::start("reader").await;
    let item = "#now-waiting [data-run=\"gate-1\"]";
    open(&b, &dash, &format!("{}/now", ns.name), item).await;
    assert!(
        !b.exists("button[data-action=\"approve\"]").await,
        "rita may not patch runbookruns, yet the page offers Approve"
    );
    b.screenshot("now-reader").await;

    let token = b
        .js("return document.querySelector('meta[name=\"dashboard-token\"]').content")
        .await
        .as_str()
        .expect("the page's token")
        .to_owned();
    let (code, answer) = dash.request("POST", &path, &post_headers(&token), body);
    assert_eq!(code, 403, "rita's approval: {answer}");
    unchanged(&ns).await;

    // Someone who may read runs but no other kind still gets the Now page: the waiting run,
    // and which sections could not be read and why.
    ns.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: run-reader}\nrules:\n- {apiGroups: [ops.runbook.dev], resources: [runbookruns], verbs: [get, list, watch]}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: run-reader}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: run-reader}\nsubjects: [{kind: User, apiGroup: rbac.authorization.k8s.io, name: ron}]\n",
    );
    let ron = impersonating_kubeconfig("ron", "dash-run-reader");
    let ron_dash = Dashboard::start(&ns.name, Some(&ron));
    let (code, answer) = ron_dash.request("GET", &format!("/api/ns/{}/now", ns.name), &[], "");
    assert_eq!(code, 200, "ron's Now page: {answer}");
    let now: serde_json::Value = serde_json::from_str(&answer).expect("Now JSON");
    assert_eq!(now["waiting"][0]["run"]["name"], "gate-1", "{answer}");
    let unavailable = now["unavailable"].to_string();
    for kind in ["maintenancewindows", "bluegreenreleases", "backuppolicies"] {
        assert!(
            unavailable.contains(kind) && unavailable.contains("forbidden"),
            "the Now page should say {kind} could not be read: {unavailable}"
        );
    }
    assert!(!unavailable.contains("runbookruns"), "{unavailable}");

    // The same POST, guarded properly and permitted, does approve: the refusals above were
    // the guards'.
    let (code, answer) = admin.request("POST", &path, &post_headers(&admin_token), body);
    assert_eq!(code, 200, "the suite's approval: {answer}");
    ns.wait_for::<RunbookRun>("gate-1", "Succeeded", |r| run_phase(r) == Some("Succeeded"))
        .await;
    b.close().await;
}

/// The headers of an action: JSON, and the dashboard's token.
fn post_headers(token: &str) -> [(&str, &str); 2] {
    [
        ("Content-Type", "application/json"),
        ("X-Dashboard-Token", token),
    ]
}

/// The token in the page `GET /` serves.
fn admin_token(dash: &Dashboard) -> String {
    let (code, page) = dash.request("GET", "/", &[], "");
    assert_eq!(code, 200, "GET /: {page}");
    let at = page
        .find("name=\"dashboard-token\"")
        .unwrap_or_else(|| panic!("no dashboard-token meta tag in the page:\n{page}"));
    let tag_start = page[..at].rfind('<').expect("the meta tag's start");
    let tag = &page[tag_start..tag_start + page[tag_start..].find('>').expect("tag end")];
    let content = tag
        .split("content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no content in {tag}"));
    content.to_owned()
}

/// The run still waits at `ask` and carries no approval.
async fn unchanged(ns: &TestNamespace) {
    let run = ns.api::<RunbookRun>().get("gate-1").await.expect("get run");
    assert!(waiting_at_ask(&run), "{:#?}", run.status);
    assert_eq!(run.annotations().get(APPROVE), None);
}

/// e. With examples/ applied every page loads without error; a screenshot of each, light,
/// and the Now page in dark mode (the system's preference, which the style sheet follows:
/// the body's computed background is dark).
#[tokio::test]
#[ignore = "needs the local cluster and the chart: make test"]
async fn every_page_loads_with_the_examples_light_and_dark() {
    let mut ns = TestNamespace::new("dash-pages").await;
    ns.apply_examples();
    ns.start_operator();
    waiting_run(&ns, "gate-1").await;
    let dash = Dashboard::start(&ns.name, None);
    let b = Browser::start("pages").await;
    let n = &ns.name;
    let pages = [
        ("now", format!("{n}/now"), "#now-waiting [data-run]"),
        ("runs", format!("{n}/runs"), "table#runs tr[data-run]"),
        ("run", format!("{n}/runs/gate-1"), "#timeline [data-step]"),
        (
            "calendar-month",
            format!("{n}/calendar?span=month&date=2026-04-01&zone=own"),
            ".entry[data-window]",
        ),
        (
            "calendar-week",
            format!("{n}/calendar?span=week&date=2026-04-01&zone=own"),
            "[data-date]",
        ),
        ("releases", format!("{n}/releases"), "[data-release]"),
        ("backups", format!("{n}/backups"), "[data-policy]"),
    ];
    for (name, route, ready) in &pages {
        open(&b, &dash, route, ready).await;
        let nav = route.split(['/', '?']).nth(1).expect("page");
        if *name != "run" {
            assert_eq!(
                b.attr(&format!("a[data-nav=\"{nav}\"]"), "aria-current")
                    .await
                    .as_deref(),
                Some("page"),
                "{name}: the nav does not mark the current page"
            );
        }
        if *name == "calendar-week" {
            assert_eq!(
                b.js("return document.querySelectorAll('[data-date]').length")
                    .await,
                json!(7),
                "the week view has 7 days"
            );
        }
        b.screenshot(name).await;
    }
    open(&b, &dash, &format!("{n}/now"), "#now-waiting [data-run]").await;
    let light = background(&b).await;
    b.close().await;

    let dark = Browser::start_with("pages-dark", &[DARK]).await;
    assert_eq!(
        dark.js("return matchMedia('(prefers-color-scheme: dark)').matches")
            .await,
        json!(true),
        "{DARK} did not make Chromium prefer dark"
    );
    open(&dark, &dash, &format!("{n}/now"), "#now-waiting [data-run]").await;
    let shade = background(&dark).await;
    dark.screenshot("now-dark").await;
    assert!(
        luminance(shade) < 0.3 && luminance(light) > 0.6,
        "the dark style sheet did not apply: background light {light:?}, dark {shade:?}"
    );
    dark.close().await;
}

/// The body's computed background colour as RGB.
async fn background(b: &Browser) -> (u8, u8, u8) {
    // The page's background may be the body's or, with a transparent body, the root's.
    let css = b
        .js("const c = getComputedStyle(document.body).backgroundColor; return (c === 'transparent' || c === 'rgba(0, 0, 0, 0)') ? getComputedStyle(document.documentElement).backgroundColor : c")
        .await;
    let css = css.as_str().unwrap_or_default().to_owned();
    let parts: Vec<u8> = css
        .trim_start_matches("rgba(")
        .trim_start_matches("rgb(")
        .trim_end_matches(')')
        .split(',')
        .take(3)
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    match parts[..] {
        [r, g, bl] => (r, g, bl),
        _ => panic!("body background is not an rgb() colour: {css:?}"),
    }
}

fn luminance((r, g, b): (u8, u8, u8)) -> f64 {
    (0.2126 * f64::from(r) + 0.7152 * f64::from(g) + 0.0722 * f64::from(b)) / 255.0
}

/// Text from the cluster is shown as text: a parameter value and the approval question it
/// goes into hold HTML with an event handler, and neither becomes markup or runs.
#[tokio::test]
#[ignore = "needs the local cluster and the chart: make test"]
async fn hostile_text_from_the_cluster_is_shown_as_text() {
    const HOSTILE: &str = "<img src=x onerror='window.__pwned=1'><b id='injected'>bold</b>";
    let mut ns = TestNamespace::new("dash-hostile").await;
    ns.apply(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata: {name: shout}\nspec:\n  params: [{name: note, default: x}]\n  steps:\n  - {name: ask, approval: {message: \"Ship {{ params.note }}?\"}}\n",
    );
    ns.start_operator();
    ns.apply(&run_yaml(
        "shout-1",
        "shout",
        "Run",
        &[("note", HOSTILE.to_owned())],
    ));
    ns.wait_for::<RunbookRun>("shout-1", "waiting for approval at ask", waiting_at_ask)
        .await;
    let dash = Dashboard::start(&ns.name, None);
    let b = Browser::start("hostile").await;
    let item = "#now-waiting [data-run=\"shout-1\"]";
    open(&b, &dash, &format!("{}/now", ns.name), item).await;
    let shown = b.text(item).await;
    assert!(
        shown.contains(HOSTILE),
        "the question should read as the text it is: {shown:?}"
    );
    open(
        &b,
        &dash,
        &format!("{}/runs/shout-1", ns.name),
        "#timeline [data-step=\"ask\"]",
    )
    .await;
    let params = b.text(".params").await;
    assert!(
        params.contains(HOSTILE),
        "the parameter as text: {params:?}"
    );
    assert!(!b.exists("#injected").await, "the value became markup");
    assert_eq!(
        b.js("return window.__pwned === undefined").await,
        json!(true),
        "the value's event handler ran"
    );
    b.screenshot("run").await;
    b.close().await;
}
