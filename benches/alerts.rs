//! Benchmark of the Alertmanager receiver under an alert storm: does every firing start its
//! run exactly once (minus the ones a cooldown suppresses), how fast, at what cost to the
//! operator and the API server, and does everything go quiet afterwards?
//!
//! Run it through `hack/bench-alerts.sh`, which starts a cluster, the namespaces and one
//! operator watching every namespace with the receiver on (`--alerts-addr`,
//! `--alerts-token-file`), and passes them in through the environment. Without
//! `BENCH_OPERATOR_URL` this binary only prints how to run it and exits 0.
//!
//! # What it does, BENCH_RUNS (3) times in fresh namespaces
//!
//! 1. In each of BENCH_NAMESPACES (20) namespaces a Runbook `storm` with one alert trigger
//!    (`match: {alertname: BenchStorm}`, `groupBy: [group]`, params from the alert's labels)
//!    and one `sleep: 1s` step, locked per group (`concurrency: {key: group/<group label>}`,
//!    Queue: runs of one namespace and group take turns); the Runbooks of every fourth
//!    namespace (0, 4, 8, ...) have `cooldown: 1h`.
//! 2. The storm: BENCH_ALERTS (100) distinct firing alerts (each its own fingerprint and
//!    startsAt), alert `i` in namespace `i % 20` with label `group=g<i % 10>`, each POSTed
//!    BENCH_REPEATS (10) times as its own webhook v4 notification: repeat after repeat, each
//!    repeat in a new random order, BENCH_CONCURRENCY (32) requests in flight. Every alert of
//!    a namespace shares its group, so in a namespace with a cooldown the first firing starts
//!    a run and the others are suppressed.
//! 3. Waits until the runs seen reach the expected count, then until every run finished
//!    (the lock outcomes, `runbook_operator_run_locks_total`, are counted then); then
//!    BENCH_SETTLE (10) s idle and BENCH_WINDOW (30) s counting the operator's writes.
//!
//! # Definitions
//!
//! All times are taken by this process on one monotonic clock.
//!
//! * **request latency**: HTTP round trip of one POST, sent to answered.
//! * **webhook -> run created**: from sending the first POST of a firing to the arrival of
//!   the first watch event showing its run (creationTimestamp has whole seconds only).
//! * **expected runs**: alerts minus suppressed, where suppressed is the firings whose every
//!   reply said `cooled_down`; the structural expectation (one run per cooled-down
//!   namespace) is printed beside it.
//! * **storm window**: from before the first POST until the last expected run is seen (or the
//!   wait times out); API counters and CPU are differences over it.
//! * **settled window**: after every run finished and BENCH_SETTLE s of idle.
//! * **bottleneck**: the receiver's mean request time vs the API server's mean time for the
//!   operator's writes of a request (record + create + Event), and the CPU seconds the
//!   operator and the API server used over the storm window.
//!
//! Environment (defaults in parentheses; hack/bench-alerts.sh sets them):
//! * BENCH_OPERATOR_URL: http://127.0.0.1:PORT of the operator's probe server (required)
//! * BENCH_OPERATOR_PID: the operator's pid, for RSS and CPU
//! * BENCH_APISERVER_PID: the API server's pid, for its CPU
//! * BENCH_ALERTS_URL: http://127.0.0.1:PORT of the receiver (required)
//! * BENCH_ALERTS_TOKEN_FILE: the receiver's bearer token (required)
//! * BENCH_NAMESPACE (bench-alerts): prefix of the namespaces `<prefix>-r<run>-<i>`
//! * BENCH_RUNS (3), BENCH_NAMESPACES (20), BENCH_ALERTS (100), BENCH_REPEATS (10),
//!   BENCH_GROUPS (10), BENCH_CONCURRENCY (32), BENCH_SETTLE (10), BENCH_WINDOW (30)
//! * BENCH_TIMEOUT (600): seconds for any one wait

#[allow(dead_code, reason = "most of support is unused here")]
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use futures::{StreamExt, stream};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use runbook_operator::runbook::Runbook;
use runbook_operator::runbook_run::{RunbookRun, TriggerType};
use serde_json::{Value, json};
use support::figures::Table;
use support::{
    Rig, Settings, env_positive, env_text, lock, now, parse_prometheus, percentile, progress,
    sorted,
};

/// The tag of this bench's progress lines (see `support::progress`).
const PROGRESS_TAG: &str = "bench-alerts";
/// Field manager of everything this binary writes.
const MANAGER: &str = "bench-alerts";
/// The alert name every storm alert carries (and every trigger matches).
const ALERT_NAME: &str = "BenchStorm";
/// The alert name of the probe that tells the receiver's cache holds a Runbook.
const PROBE_NAME: &str = "BenchProbe";

/// Every this-many-th namespace's Runbook has a cooldown.
const COOLDOWN_EVERY: usize = 4;

#[tokio::main]
async fn main() {
    support::main(
        "benches/alerts.rs: run it with hack/bench-alerts.sh (it needs a cluster and the operator with its receiver)",
        bench,
    )
    .await;
}

/// The knobs of the storm.
struct Config {
    prefix: String,
    runs: usize,
    namespaces: usize,
    alerts: usize,
    repeats: usize,
    groups: usize,
    concurrency: usize,
    settle: u64,
    window: u64,
    alerts_url: String,
    token: String,
    apiserver_pid: Option<u32>,
}

impl Config {
    fn from_env() -> Result<Self> {
        let token_file =
            env_text("BENCH_ALERTS_TOKEN_FILE").context("BENCH_ALERTS_TOKEN_FILE is required")?;
        let token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("reading BENCH_ALERTS_TOKEN_FILE {token_file}"))?
            .trim()
            .to_owned();
        Ok(Self {
            prefix: env_text("BENCH_NAMESPACE").unwrap_or_else(|| "bench-alerts".into()),
            runs: env_positive("BENCH_RUNS", 3)? as usize,
            namespaces: env_positive("BENCH_NAMESPACES", 20)? as usize,
            alerts: env_positive("BENCH_ALERTS", 100)? as usize,
            repeats: env_positive("BENCH_REPEATS", 10)? as usize,
            groups: env_positive("BENCH_GROUPS", 10)? as usize,
            concurrency: env_positive("BENCH_CONCURRENCY", 32)? as usize,
            settle: env_positive("BENCH_SETTLE", 10)?,
            window: env_positive("BENCH_WINDOW", 30)?,
            alerts_url: env_text("BENCH_ALERTS_URL")
                .context("BENCH_ALERTS_URL is required")?
                .trim_end_matches('/')
                .to_owned(),
            token,
            apiserver_pid: env_text("BENCH_APISERVER_PID")
                .map(|p| p.parse().context("BENCH_APISERVER_PID"))
                .transpose()?,
        })
    }

    fn namespace(&self, run: usize, i: usize) -> String {
        format!("{}-r{run}-{i:02}", self.prefix)
    }
}

/// CPU seconds (user + system) of a process so far.
fn cpu_of(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The receiver's own counters from the operator's /metrics.
#[derive(Default, Clone)]
struct Receiver {
    /// `runbook_operator_alerts_total` by outcome.
    outcomes: BTreeMap<String, f64>,
    /// `runbook_operator_alert_requests_total` by code.
    requests: BTreeMap<String, f64>,
    /// `runbook_operator_run_locks_total` by outcome (the runs' per-target locks).
    locks: BTreeMap<String, f64>,
    /// `runbook_operator_alert_request_duration_seconds` sum and count.
    duration_sum: f64,
    duration_count: f64,
    /// Its buckets: upper bound -> cumulative count.
    buckets: Vec<(f64, f64)>,
}

impl Receiver {
    async fn take(rig: &Rig) -> Result<Self> {
        let text = rig
            .http
            .get(format!("{}/metrics", rig.operator_url))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .context("scraping the operator's /metrics")?
            .text()
            .await?;
        let mut r = Receiver::default();
        let mut buckets: BTreeMap<String, f64> = BTreeMap::new();
        for s in parse_prometheus(&text) {
            let get = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
            match s.name.as_str() {
                "runbook_operator_alerts_total" => {
                    *r.outcomes.entry(get("outcome")).or_default() += s.value
                }
                "runbook_operator_alert_requests_total" => {
                    *r.requests.entry(get("outcome")).or_default() += s.value
                }
                "runbook_operator_run_locks_total" => {
                    *r.locks.entry(get("outcome")).or_default() += s.value
                }
                "runbook_operator_alert_request_duration_seconds_sum" => r.duration_sum += s.value,
                "runbook_operator_alert_request_duration_seconds_count" => {
                    r.duration_count += s.value
                }
                "runbook_operator_alert_request_duration_seconds_bucket" => {
                    *buckets.entry(get("le")).or_default() += s.value
                }
                _ => {}
            }
        }
        r.buckets = buckets
            .into_iter()
            .map(|(le, v)| (le.parse().unwrap_or(f64::INFINITY), v))
            .collect();
        r.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(r)
    }

    fn since(&self, before: &Receiver) -> Receiver {
        let diff = |a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>| {
            a.iter()
                .map(|(k, v)| (k.clone(), v - b.get(k).copied().unwrap_or(0.0)))
                .filter(|(_, v)| *v != 0.0)
                .collect()
        };
        Receiver {
            outcomes: diff(&self.outcomes, &before.outcomes),
            requests: diff(&self.requests, &before.requests),
            locks: diff(&self.locks, &before.locks),
            duration_sum: self.duration_sum - before.duration_sum,
            duration_count: self.duration_count - before.duration_count,
            buckets: self
                .buckets
                .iter()
                .map(|(le, v)| {
                    let b = before
                        .buckets
                        .iter()
                        .find(|(l, _)| l == le)
                        .map_or(0.0, |x| x.1);
                    (*le, v - b)
                })
                .collect(),
        }
    }

    /// The upper bound of the bucket holding quantile `q` (histogram resolution).
    fn quantile_bound(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        self.buckets
            .iter()
            .find(|(_, c)| *c >= q * total)
            .map(|(le, _)| *le)
    }
}

fn counts_text(map: &BTreeMap<String, f64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k} {}", support::figures::num(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the watch saw of this run's RunbookRuns: first arrival and whether finished, by name.
#[derive(Default)]
struct Seen {
    first: HashMap<String, (f64, String)>,
    finished: HashSet<String>,
    not_alert: usize,
}

/// One alert of the storm.
struct Firing {
    namespace: String,
    group: String,
    fingerprint: String,
    starts_at: String,
    instance: usize,
}

impl Firing {
    fn body(&self) -> Value {
        json!({
            "version": "4",
            "groupKey": format!("{{}}:{{group=\"{}\"}}", self.group),
            "status": "firing",
            "receiver": "runbook-operator",
            "groupLabels": {"group": self.group},
            "commonLabels": {"alertname": ALERT_NAME, "group": self.group},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager.invalid",
            "truncatedAlerts": 0,
            "alerts": [{
                "status": "firing",
                "labels": {
                    "alertname": ALERT_NAME,
                    "namespace": self.namespace,
                    "group": self.group,
                    "instance": format!("pod-{}", self.instance),
                    "severity": "critical",
                },
                "annotations": {"summary": format!("storm alert {}", self.instance)},
                "startsAt": self.starts_at,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.invalid/graph",
                "fingerprint": self.fingerprint,
            }],
        })
    }
}

/// One POST's answer: status code, round trip in seconds, body.
type Reply = (u16, f64, Value);

/// The figures of one storm, by label, for the median table.
type Figures = Vec<(&'static str, &'static str, Option<f64>)>;

async fn create_runbooks(rig: &Rig, cfg: &Config, run: usize) -> Result<usize> {
    let mut cooled = 0;
    for i in 0..cfg.namespaces {
        let ns = cfg.namespace(run, i);
        let mut trigger = json!({
            "match": {"alertname": ALERT_NAME},
            "groupBy": ["group"],
            "params": {"instance": "{{ alert.labels.instance }}", "group": "{{ alert.labels.group }}"},
        });
        if i % COOLDOWN_EVERY == 0 {
            trigger["cooldown"] = json!("1h");
            cooled += 1;
        }
        let runbook: Runbook = serde_json::from_value(json!({
            "apiVersion": "ops.runbook.dev/v1alpha1",
            "kind": "Runbook",
            "metadata": {"name": "storm"},
            "spec": {
                "params": [{"name": "instance"}, {"name": "group"}],
                // Runs of one group take turns, as runs acting on one target would.
                "concurrency": {"key": "group/{{ params.group }}"},
                // The probe trigger: a resolved BenchProbe alert is `ignored` by a Runbook the
                // receiver's cache holds (and `no_match` before), with no write.
                "triggers": {"alerts": [trigger, {"match": {"alertname": PROBE_NAME}}]},
                "steps": [{"name": "nap", "sleep": {"duration": "1s"}}],
            },
        }))?;
        Api::<Runbook>::namespaced(rig.client.clone(), &ns)
            .create(
                &PostParams {
                    field_manager: Some(MANAGER.into()),
                    ..Default::default()
                },
                &runbook,
            )
            .await
            .with_context(|| format!("creating Runbook {ns}/storm"))?;
    }
    Ok(cooled)
}

/// Waits until every namespace's Runbook reports a status (the controller saw it) and the
/// receiver's own Runbook cache holds it: a resolved probe alert per namespace comes back
/// `ignored` (matched, `onResolved: Ignore`), not `no_match`. The receiver watches Runbooks on
/// its own, so the controller having seen them says nothing about it.
async fn wait_runbooks_seen(rig: &Rig, cfg: &Config, run: usize) -> Result<()> {
    rig.wait_for("the Runbooks to be observed by the operator", || async {
        let mut missing = 0;
        for i in 0..cfg.namespaces {
            let ns = cfg.namespace(run, i);
            let rb = Api::<Runbook>::namespaced(rig.client.clone(), &ns)
                .get("storm")
                .await?;
            let observed = rb
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .is_some_and(|g| Some(g) == rb.metadata.generation);
            if !observed {
                missing += 1;
            }
        }
        Ok((missing > 0).then(|| format!("{missing} not observed yet")))
    })
    .await?;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/alerts/alertmanager", cfg.alerts_url);
    rig.wait_for("the receiver's cache to hold the Runbooks", || async {
        let mut missing = 0;
        for i in 0..cfg.namespaces {
            let probe = json!({"version": "4", "status": "resolved", "alerts": [{
                "status": "resolved",
                "labels": {"alertname": PROBE_NAME, "namespace": cfg.namespace(run, i)},
                "startsAt": "2026-01-01T00:00:00Z", "fingerprint": "probe"}]});
            let reply: Value = http
                .post(&url)
                .bearer_auth(&cfg.token)
                .body(probe.to_string())
                .send()
                .await?
                .bytes()
                .await
                .map(|b| serde_json::from_slice(&b).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            if reply["alerts"][0]["runbooks"][0]["outcome"] != "ignored" {
                missing += 1;
            }
        }
        Ok((missing > 0).then(|| format!("{missing} not in the receiver's cache yet")))
    })
    .await
}

/// What the watch of one storm's runs saw, whether it listed, and its task (aborted after the
/// storm).
type RunWatch = (
    Arc<Mutex<Seen>>,
    Arc<Mutex<bool>>,
    tokio::task::JoinHandle<()>,
);

fn spawn_run_watch(rig: &Rig, cfg: &Config, run: usize) -> RunWatch {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let synced = Arc::new(Mutex::new(false));
    let prefix = format!("{}-r{run}-", cfg.prefix);
    let api = Api::<RunbookRun>::all(rig.client.clone());
    let (into, ready) = (seen.clone(), synced.clone());
    let task = tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            let t = now();
            let run = match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => o,
                Ok(watcher::Event::InitDone) => {
                    *lock(&ready) = true;
                    continue;
                }
                Ok(_) => continue,
                Err(err) => {
                    progress(format!("watch error (retried): {err}"));
                    continue;
                }
            };
            let ns = run.metadata.namespace.clone().unwrap_or_default();
            if !ns.starts_with(&prefix) {
                continue;
            }
            let name = format!("{ns}/{}", run.metadata.name.clone().unwrap_or_default());
            let mut seen = lock(&into);
            let trigger = &run.spec.trigger;
            let alert = trigger
                .as_ref()
                .filter(|t| matches!(t.type_, TriggerType::Alert))
                .and_then(|t| t.alert.as_ref());
            let Some(alert) = alert else {
                if !seen.first.contains_key(&name) {
                    seen.not_alert += 1;
                }
                continue;
            };
            let firing = alert.fingerprint.clone();
            seen.first.entry(name.clone()).or_insert((t, firing));
            if run
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(|p| p.is_finished())
            {
                seen.finished.insert(name);
            }
        }
    });
    (seen, synced, task)
}

/// One storm in the namespaces of `run`; its figures.
async fn storm(rig: &Rig, cfg: &Config, run: usize) -> Result<(Table, Figures, bool)> {
    let cooled_namespaces = create_runbooks(rig, cfg, run).await?;
    wait_runbooks_seen(rig, cfg, run).await?;
    let (seen, synced, watch_task) = spawn_run_watch(rig, cfg, run);
    rig.wait_for("the run watch to list", || async {
        Ok((!*lock(&synced)).then(|| "not yet".to_owned()))
    })
    .await?;

    // The firings, and the POSTs: repeat after repeat, each in a new order.
    let starts_at = jiff::Timestamp::now();
    let firings: Vec<Firing> = (0..cfg.alerts)
        .map(|i| Firing {
            namespace: cfg.namespace(run, i % cfg.namespaces),
            group: format!("g{}", i % cfg.groups),
            fingerprint: format!(
                "{:016x}",
                runbook_operator::names::fnv64(format!("{}/{run}/{i}", cfg.prefix).as_bytes())
            ),
            starts_at: (starts_at + jiff::SignedDuration::from_millis(i as i64)).to_string(),
            instance: i,
        })
        .collect();
    let per_ns: Vec<usize> = (0..cfg.namespaces)
        .map(|n| (0..cfg.alerts).filter(|i| i % cfg.namespaces == n).count())
        .collect();
    let structural_suppressed: usize = (0..cfg.namespaces)
        .filter(|n| n % COOLDOWN_EVERY == 0)
        .map(|n| per_ns[n].saturating_sub(1))
        .sum();
    let mut order = Vec::with_capacity(cfg.alerts * cfg.repeats);
    let mut rng = fastrand_seed(run as u64 + 1);
    for _ in 0..cfg.repeats {
        let mut round: Vec<usize> = (0..cfg.alerts).collect();
        for k in (1..round.len()).rev() {
            let j = (rng() % (k as u64 + 1)) as usize;
            round.swap(k, j);
        }
        order.extend(round);
    }

    let receiver_before = Receiver::take(rig).await?;
    let snap_before = rig.snapshot().await?;
    let (cpu_before, api_cpu_before) = (rig.cpu_seconds(), cpu_of(cfg.apiserver_pid));
    let rss = support::pace::RssSamples::start(rig.operator_pid, now);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(cfg.concurrency)
        .build()?;
    let first_sent: Arc<Mutex<HashMap<usize, f64>>> = Arc::default();
    progress(format!(
        "run {run}: storm of {} POSTs ({} alerts x {}), {} in flight, into {} namespaces",
        order.len(),
        cfg.alerts,
        cfg.repeats,
        cfg.concurrency,
        cfg.namespaces
    ));
    let t_storm = now();
    let url = format!("{}/v1/alerts/alertmanager", cfg.alerts_url);
    let results: Vec<(usize, Result<Reply>)> = stream::iter(order)
        .map(|i| {
            let (http, url, first) = (http.clone(), url.clone(), first_sent.clone());
            let body = firings[i].body().to_string();
            let token = cfg.token.clone();
            async move {
                let t = now();
                lock(&first).entry(i).or_insert(t);
                let result = async {
                    let resp = http
                        .post(&url)
                        .bearer_auth(token)
                        .header("content-type", "application/json")
                        .body(body)
                        .timeout(Duration::from_secs(60))
                        .send()
                        .await?;
                    let code = resp.status().as_u16();
                    let reply: Value =
                        serde_json::from_slice(&resp.bytes().await?).unwrap_or(Value::Null);
                    Ok::<_, anyhow::Error>((code, now() - t, reply))
                }
                .await;
                (i, result)
            }
        })
        .buffer_unordered(cfg.concurrency)
        .collect()
        .await;
    let t_sent = now();

    // Replies: status codes, latencies, outcomes per firing.
    let mut codes: BTreeMap<String, f64> = BTreeMap::new();
    let mut latency = Vec::new();
    let mut outcomes: HashMap<usize, Vec<String>> = HashMap::new();
    let mut reply_outcomes: BTreeMap<String, f64> = BTreeMap::new();
    for (i, r) in &results {
        match r {
            Ok((code, l, reply)) => {
                *codes.entry(code.to_string()).or_default() += 1.0;
                latency.push(*l);
                let got: Vec<String> = reply["alerts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|a| a["runbooks"].as_array().cloned().unwrap_or_default())
                    .filter_map(|rb| rb["outcome"].as_str().map(str::to_owned))
                    .collect();
                for o in &got {
                    *reply_outcomes.entry(o.clone()).or_default() += 1.0;
                }
                outcomes.entry(*i).or_default().extend(got);
            }
            Err(err) => {
                *codes.entry("error".into()).or_default() += 1.0;
                progress(format!("  POST of alert {i} failed: {err:#}"));
            }
        }
    }
    let suppressed = outcomes
        .values()
        .filter(|o| !o.is_empty() && o.iter().all(|x| x == "cooled_down"))
        .count();
    let expected = cfg.alerts - suppressed;
    let all_ok = codes.len() == 1 && codes.contains_key("200");

    // The runs: wait for the expected count (then a little more, to catch any extra ones).
    let count_seen = || lock(&seen).first.len();
    let waited = rig
        .wait_for("the expected runs", || async {
            let n = count_seen();
            Ok((n < expected).then(|| format!("{n} of {expected} runs seen")))
        })
        .await;
    let t_runs = now();
    if let Err(err) = &waited {
        progress(format!("  {err:#}"));
    }
    let receiver_after = Receiver::take(rig).await?;
    let snap_storm = rig.snapshot().await?;
    let (cpu_storm, api_cpu_storm) = (rig.cpu_seconds(), cpu_of(cfg.apiserver_pid));
    let rss_peak = rss.peak(t_storm, t_runs);
    let rss_end = rig.proc_mib("VmRSS");

    // Webhook -> run created, per firing.
    let mut created = Vec::new();
    {
        let by_fp: HashMap<&str, usize> = firings
            .iter()
            .enumerate()
            .map(|(i, f)| (f.fingerprint.as_str(), i))
            .collect();
        let first = lock(&first_sent);
        for (t, fp) in lock(&seen).first.values() {
            if let Some(i) = by_fp.get(fp.as_str())
                && let Some(sent) = first.get(i)
            {
                created.push(t - sent);
            }
        }
    }

    // Every run finished, then idle, then the settled window.
    progress(format!(
        "run {run}: {} runs seen; waiting for them to finish",
        count_seen()
    ));
    rig.wait_for("the runs to finish", || async {
        let s = lock(&seen);
        let (done, all) = (s.finished.len(), s.first.len());
        Ok((done < all).then(|| format!("{done} of {all} finished")))
    })
    .await?;
    let t_finished = now();
    let snap_finished = rig.snapshot().await?;
    // Lock outcomes happen until the last queued run started: counted once all finished.
    let receiver_finished = Receiver::take(rig).await?;
    tokio::time::sleep(Duration::from_secs(cfg.settle)).await;
    rig.operator_alive()?;
    let snap_settle0 = rig.snapshot().await?;
    progress(format!(
        "run {run}: settled window, {} s counting writes",
        cfg.window
    ));
    tokio::time::sleep(Duration::from_secs(cfg.window)).await;
    rig.operator_alive()?;
    let snap_settle1 = rig.snapshot().await?;
    watch_task.abort();
    let settled = snap_settle1.since(&snap_settle0);
    let storm_d = snap_storm.since(&snap_before);
    let after_d = snap_finished.since(&snap_storm);
    let recv = receiver_after.since(&receiver_before);
    let locks = receiver_finished.since(&receiver_before).locks;
    let runs_listed = count_alert_runs(rig, cfg, run).await?;
    let extra_runs = lock(&seen).not_alert;

    let storm_secs = t_runs - t_storm;
    let op_cpu = cpu_storm.zip(cpu_before).map(|(a, b)| a - b);
    let api_cpu = api_cpu_storm.zip(api_cpu_before).map(|(a, b)| a - b);
    let op_write_latency = storm_d.mean_latency(|verb, what| {
        (verb == "POST" && what == "ops.runbook.dev/runbookruns")
            || (verb == "PATCH" && what == "ops.runbook.dev/runbooks/status")
    });
    let mean_request = (recv.duration_count > 0.0).then(|| recv.duration_sum / recv.duration_count);
    let created_sorted = sorted(created.clone());
    let latency_sorted = sorted(latency.clone());

    let mut t = Table::default();
    t.heading(format!(
        "run {run}: {} POSTs, {} alerts x {}, {} namespaces ({} with cooldown 1h), {} groups, {} in flight",
        results.len(),
        cfg.alerts,
        cfg.repeats,
        cfg.namespaces,
        cooled_namespaces,
        cfg.groups,
        cfg.concurrency
    ));
    t.value(
        "  requests by status code",
        Some(results.len() as f64),
        "reqs",
        counts_text(&codes),
    );
    t.value(
        "  runs created (RunbookRuns, trigger Alert)",
        Some(runs_listed as f64),
        "runs",
        format!(
            "listed after the storm; watch saw {}; other runs {extra_runs}",
            count_seen()
        ),
    );
    t.value(
        "  runs expected (alerts - suppressed)",
        Some(expected as f64),
        "runs",
        format!(
            "suppressed {suppressed} (every reply cooled_down); structurally {}",
            cfg.alerts - structural_suppressed
        ),
    );
    t.value(
        "  reply outcomes (per alert and Runbook)",
        Some(reply_outcomes.values().sum()),
        "",
        counts_text(&reply_outcomes),
    );
    t.value(
        "  receiver: runbook_operator_alerts_total",
        Some(recv.outcomes.values().sum()),
        "",
        counts_text(&recv.outcomes),
    );
    t.value(
        "  locks: runbook_operator_run_locks_total",
        Some(locks.values().sum()),
        "",
        format!(
            "{} (until every run finished; runs of one namespace and group share a lock)",
            counts_text(&locks)
        ),
    );
    t.value(
        "  receiver: runbook_operator_alert_requests_total",
        Some(recv.requests.values().sum()),
        "reqs",
        counts_text(&recv.requests),
    );
    t.value(
        "  receiver: alert_request_duration_seconds mean",
        mean_request,
        "s",
        format!(
            "count {}; p50 <= {}, p99 <= {} (bucket bounds)",
            support::figures::num(recv.duration_count),
            recv.quantile_bound(0.5).map_or("-".into(), support::num),
            recv.quantile_bound(0.99).map_or("-".into(), support::num)
        ),
    );
    t.dist(
        "  webhook -> run created (watch)",
        created,
        "s",
        "first POST of a firing -> its run's first watch event",
    );
    t.dist("  request latency (HTTP round trip)", latency, "s", "");
    t.value(
        "  storm duration",
        Some(storm_secs),
        "s",
        format!(
            "first POST -> last expected run seen; POSTs done after {}",
            support::num(t_sent - t_storm)
        ),
    );
    t.value(
        "  operator RSS peak during the storm",
        rss_peak,
        "MiB",
        format!("at the end {}", rss_end.map_or("-".into(), support::num)),
    );
    t.value(
        "  operator CPU during the storm",
        op_cpu,
        "s",
        format!(
            "{} % of one core",
            op_cpu.map_or("-".into(), |c| support::num(100.0 * c / storm_secs))
        ),
    );
    t.value(
        "  API server CPU during the storm",
        api_cpu,
        "s",
        format!(
            "{} % of one core",
            api_cpu.map_or("-".into(), |c| support::num(100.0 * c / storm_secs))
        ),
    );
    t.value(
        "  storm: operator API requests",
        Some(storm_d.flows.values().sum()),
        "reqs",
        format!(
            "writes {} (crd {}, events {}, other {}); GET {}, LIST {}",
            support::figures::num(storm_d.op_writes()),
            support::figures::num(storm_d.flow("crd-write")),
            support::figures::num(storm_d.flow("events")),
            support::figures::num(storm_d.flow("write")),
            support::figures::num(storm_d.flow("get")),
            support::figures::num(storm_d.flow("list"))
        ),
    );
    t.value(
        "  storm: operator api_writes metric",
        Some(storm_d.op_sum("write ")),
        "writes",
        format!(
            "alerts: {}",
            ["record", "create", "cancel"]
                .iter()
                .map(|w| format!(
                    "{w} {}",
                    support::figures::num(storm_d.op_sum(&format!("write alerts/{w}")))
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    t.value(
        "  storm: API server mean latency of the operator's writes",
        op_write_latency,
        "s",
        "POST runbookruns + PATCH runbooks/status (apiserver_request_duration_seconds)",
    );
    t.value(
        "  runs finishing: operator writes",
        Some(after_d.op_writes()),
        "writes",
        format!(
            "until every run finished ({} s)",
            support::num(t_finished - t_runs)
        ),
    );
    t.value(
        "  settled: operator writes (FlowSchemas)",
        Some(settled.op_writes()),
        "writes",
        format!(
            "{} s window after {} s idle; must be 0",
            cfg.window, cfg.settle
        ),
    );
    t.write_checks(&settled, "alerts");
    t.value(
        "  settled: operator requests by FlowSchema",
        Some(settled.flows.values().sum()),
        "reqs",
        counts_text(&settled.flows),
    );
    t.value(
        "  settled: all clients' writes",
        Some(settled.api_writes().map(|(_, v)| v).sum()),
        "writes",
        counts_text(&settled.api_writes().map(|(k, v)| (k.clone(), *v)).collect()),
    );
    // The API server's time on the receiver's path (record, create, Events, fresh reads),
    // summed over the storm and spread over the requests, against the receiver's own mean
    // request time: near it, the requests waited on the API server; far below it, on the
    // operator (its per-Runbook lock and its own work).
    let api_path_secs: f64 = storm_d
        .latency_sum
        .iter()
        .filter(|(k, _)| {
            let (verb, what) = k.split_once(' ').unwrap_or((k, ""));
            (verb == "POST" && what == "ops.runbook.dev/runbookruns")
                || (verb == "PATCH" && what == "ops.runbook.dev/runbooks/status")
                || (verb == "GET" && what == "ops.runbook.dev/runbooks")
                || what.ends_with("/events")
        })
        .map(|(_, v)| v)
        .sum();
    let bottleneck = match mean_request {
        Some(req) if recv.duration_count > 0.0 => {
            let per_request = api_path_secs / recv.duration_count;
            let share = per_request / req;
            format!(
                "API server time on the receiver's path {} s per request = {} % of the mean request time: {}",
                support::num(per_request),
                support::num(100.0 * share),
                if share >= 0.5 {
                    "API server"
                } else {
                    "operator (waiting in the receiver)"
                }
            )
        }
        _ => "not measured".into(),
    };
    t.value(
        "  storm: refused API requests (all clients)",
        Some(storm_d.refused.values().sum()),
        "reqs",
        counts_text(&storm_d.refused),
    );
    t.value("  bottleneck", None, "", bottleneck);

    rig.write_out(
        &format!("run-{run}-settled.tsv"),
        &settled.tsv(&[
            support::Counters::Api,
            support::Counters::Flows,
            support::Counters::Op,
        ]),
    );
    let ok = all_ok && runs_listed == expected && settled.op_writes() == 0.0 && waited.is_ok();
    rig.write_out(
        &format!("run-{run}-storm.tsv"),
        &storm_d.tsv(&[
            support::Counters::Api,
            support::Counters::Flows,
            support::Counters::Op,
        ]),
    );
    let figures: Figures = vec![
        ("requests answered 200", "reqs", codes.get("200").copied()),
        ("runs created", "runs", Some(runs_listed as f64)),
        ("runs expected", "runs", Some(expected as f64)),
        ("suppressed (cooldown)", "firings", Some(suppressed as f64)),
        (
            "webhook -> run created p50",
            "s",
            percentile(&created_sorted, 0.5),
        ),
        (
            "webhook -> run created p99",
            "s",
            percentile(&created_sorted, 0.99),
        ),
        ("request latency p50", "s", percentile(&latency_sorted, 0.5)),
        (
            "request latency p99",
            "s",
            percentile(&latency_sorted, 0.99),
        ),
        ("receiver mean request time", "s", mean_request),
        ("API server mean write latency", "s", op_write_latency),
        ("operator RSS peak", "MiB", rss_peak),
        ("operator CPU during storm", "s", op_cpu),
        ("API server CPU during storm", "s", api_cpu),
        (
            "storm: operator writes",
            "writes",
            Some(storm_d.op_writes()),
        ),
        (
            "storm: operator GET+LIST",
            "reqs",
            Some(storm_d.flow("get") + storm_d.flow("list")),
        ),
        (
            "settled: operator writes",
            "writes",
            Some(settled.op_writes()),
        ),
    ];
    if !ok {
        progress(format!(
            "run {run}: something is off (codes {}, runs {runs_listed} vs {expected}, settled writes {})",
            counts_text(&codes),
            settled.op_writes()
        ));
    }
    Ok((t, figures, ok))
}

async fn count_alert_runs(rig: &Rig, cfg: &Config, run: usize) -> Result<usize> {
    let mut n = 0;
    for i in 0..cfg.namespaces {
        let ns = cfg.namespace(run, i);
        n += Api::<RunbookRun>::namespaced(rig.client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .with_context(|| format!("listing RunbookRuns in {ns}"))?
            .items
            .iter()
            .filter(|r| {
                r.spec
                    .trigger
                    .as_ref()
                    .is_some_and(|t| matches!(t.type_, TriggerType::Alert))
            })
            .count();
    }
    Ok(n)
}

/// A small xorshift generator: the order of each repeat, reproducible per run.
fn fastrand_seed(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

async fn bench(operator_url: String) -> Result<bool> {
    let settings = Settings::from_env(operator_url)?;
    let rig = Rig::connect(settings, "runbook-bench-op-").await?;
    let cfg = Config::from_env()?;
    if cfg.alerts < cfg.namespaces {
        bail!("BENCH_ALERTS must be at least BENCH_NAMESPACES");
    }
    let mut all: Vec<Figures> = Vec::new();
    let mut ok = true;
    for run in 0..cfg.runs {
        let (table, figures, fine) = storm(&rig, &cfg, run).await?;
        table.print();
        println!();
        all.push(figures);
        ok &= fine;
    }
    let mut t = Table::default();
    t.heading(format!("median over {} runs", cfg.runs));
    let labels = all.first().cloned().unwrap_or_default();
    for (k, (label, unit, _)) in labels.iter().enumerate() {
        let values: Vec<f64> = all
            .iter()
            .filter_map(|f| f.get(k).and_then(|x| x.2))
            .collect();
        let median = percentile(&sorted(values.clone()), 0.5);
        t.value(
            format!("  {label}"),
            median,
            unit,
            format!(
                "runs: {}",
                values
                    .iter()
                    .map(|v| support::num(*v))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    t.print();
    if !ok {
        return Err(anyhow!(
            "a run had non-200 replies, a run count off, or writes in the settled window (see above)"
        ));
    }
    Ok(true)
}
