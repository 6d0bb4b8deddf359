//! The peer: Argo Rollouts' rollouts-controller (`ARGO_ROLLOUTS_BIN`, never built here) on the
//! same cluster, with Rollouts of the releases' shape: `strategy.blueGreen` with an active
//! Service of the Rollout's name, `autoPromotionEnabled: true`, `scaleDownDelaySeconds`
//! BENCH_SCALE_DOWN_DELAY, BENCH_REPLICAS replicas, the same pod template (a made-up image that
//! kwok runs). It runs namespaced (`--namespaced`), on the namespace `<prefix>-peer` alone,
//! after the operator's passes, while the operator is idle.
//!
//! Measured the same way as the releases, on this process's clock as watch events reach it:
//! **new ReplicaSet fully available** = the first event of the Rollout's ReplicaSet of the new
//! pod-template hash with observedGeneration current and spec.replicas = replicas = ready =
//! available (> 0); **selector switched** = the first event of the active Service, after the
//! change, whose `rollouts-pod-template-hash` selector names that hash. A change is done when
//! the Rollout's stableRS is the new hash, the Service selects it and every other ReplicaSet
//! of the Rollout shows 0 replicas (scaleDownDelaySeconds passed). RSS: VmRSS of the
//! controller process, idle and settled (BENCH_SETTLE s after the Rollouts finished).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::support::{Ticker, lock, now, proc_mib, progress, spawn_watch};
use super::{BENCH_LABEL, ENV_NAME, MANAGER, PARALLEL};

/// The label Argo Rollouts puts on a Rollout's ReplicaSets and pods, and in the Service
/// selectors it switches.
const HASH_LABEL: &str = "rollouts-pod-template-hash";

/// What the peer pass measured.
#[derive(Default)]
pub struct Figures {
    /// (releases changed at once, samples of "new ReplicaSet available -> switched" in seconds,
    /// changes without a sample).
    pub latency: Vec<(usize, Vec<f64>, usize)>,
    /// VmRSS (MiB) of the controller with no Rollout.
    pub idle_rss: Option<f64>,
    /// (Rollouts, VmRSS MiB) once settled, per size.
    pub settled_rss: Vec<(usize, Option<f64>)>,
}

#[derive(Default)]
struct Seen {
    /// Rollout name -> (phase, currentPodHash, stableRS).
    rollouts: HashMap<String, (String, String, String)>,
    /// (Rollout, hash) -> first time the ReplicaSet was fully available.
    available: HashMap<(String, String), f64>,
    /// (Rollout, hash) -> status.replicas as last seen.
    replicas: HashMap<(String, String), i32>,
    /// Service -> (time, hash) of every selector change seen.
    selectors: HashMap<String, Vec<(f64, String)>>,
}

fn record_rollout(seen: &mut Seen, _t: f64, r: DynamicObject) {
    let text = |path: &str| {
        r.data
            .pointer(path)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let status = (
        text("/status/phase"),
        text("/status/currentPodHash"),
        text("/status/stableRS"),
    );
    seen.rollouts.insert(r.name_any(), status);
}

fn record_replica_set(seen: &mut Seen, t: f64, rs: ReplicaSet) {
    let Some(hash) = rs.labels().get(HASH_LABEL).cloned() else {
        return;
    };
    let Some(owner) = rs
        .owner_references()
        .iter()
        .find(|o| o.kind == "Rollout")
        .map(|o| o.name.clone())
    else {
        return;
    };
    let (Some(spec), Some(status)) = (&rs.spec, &rs.status) else {
        return;
    };
    let want = spec.replicas.unwrap_or(1);
    let key = (owner, hash);
    seen.replicas.insert(key.clone(), status.replicas);
    let full = want > 0
        && status.observed_generation.unwrap_or(0) >= rs.metadata.generation.unwrap_or(0)
        && status.replicas == want
        && status.ready_replicas.unwrap_or(0) == want
        && status.available_replicas.unwrap_or(0) == want;
    if full {
        seen.available.entry(key).or_insert(t);
    }
}

fn record_service(seen: &mut Seen, t: f64, svc: Service) {
    let hash = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(|s| s.get(HASH_LABEL))
        .cloned()
        .unwrap_or_default();
    let trail = seen.selectors.entry(svc.name_any()).or_default();
    if trail.last().map(|(_, h)| h) != Some(&hash) {
        trail.push((t, hash));
    }
}

/// The controller process, killed when dropped.
struct Controller {
    child: Child,
    log: PathBuf,
}

impl Controller {
    fn rss(&self) -> Option<f64> {
        proc_mib(self.child.id(), "VmRSS")
    }

    fn alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "rollouts-controller exited ({status}); log {}",
                self.log.display()
            );
        }
        Ok(())
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The settings of the peer pass.
pub struct Peer<'a> {
    /// The rollouts-controller binary.
    pub bin: &'a Path,
    /// The bench's client (admin).
    pub client: kube::Client,
    /// Namespace of the Rollouts.
    pub namespace: String,
    /// Where the controller's log goes.
    pub out: PathBuf,
    /// Release counts, ascending; 1 means the lone Rollout changed `single_rounds` times.
    pub sizes: Vec<usize>,
    pub single_rounds: usize,
    pub replicas: i32,
    pub scale_down_delay: u64,
    pub settle: u64,
    pub timeout: Duration,
}

fn rollout_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Rollout"))
}

fn name(i: usize) -> String {
    format!("peer-{i:04}")
}

impl Peer<'_> {
    fn rollout(&self, i: usize, rev: u32) -> Value {
        let name = name(i);
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name, "namespace": self.namespace, "labels": {BENCH_LABEL: "1"}},
            "spec": {
                "replicas": self.replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{
                        "name": "app", "image": "registry.invalid/bench-app:1",
                        "env": [{"name": ENV_NAME, "value": rev.to_string()}]
                    }]}
                },
                "strategy": {"blueGreen": {
                    "activeService": name,
                    "autoPromotionEnabled": true,
                    "scaleDownDelaySeconds": self.scale_down_delay
                }}
            }
        })
    }

    fn service(&self, i: usize) -> Value {
        let name = name(i);
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": self.namespace, "labels": {BENCH_LABEL: "1"}},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        })
    }

    /// Runs the peer pass.
    pub async fn run(&self) -> Result<Figures> {
        let pp = PatchParams::apply(MANAGER).force();
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let ns = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": self.namespace, "labels": {BENCH_LABEL: "1"}}});
        namespaces
            .patch(&self.namespace, &pp, &Patch::Apply(&ns))
            .await
            .context("creating the peer namespace")?;
        std::fs::create_dir_all(&self.out)?;
        let log = self.out.join("rollouts-controller.log");
        let file = std::fs::File::create(&log)?;
        let kubeconfig = std::env::var("KUBECONFIG").context("KUBECONFIG (the bench cluster's)")?;
        let port = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).map(|l| l.local_addr());
        let metrics = port(0)??.port();
        let healthz = port(0)??.port();
        let args = [
            "--leader-elect=false".to_owned(),
            "--namespaced".to_owned(),
            format!("--namespace={}", self.namespace),
            format!("--kubeconfig={kubeconfig}"),
            format!("--metricsPort={metrics}"),
            format!("--healthzPort={healthz}"),
            "--loglevel=warn".to_owned(),
        ];
        progress(format!(
            "peer: starting {} {}",
            self.bin.display(),
            args.join(" ")
        ));
        let child = Command::new(self.bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        let mut ctl = Controller { child, log };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + self.timeout;
        loop {
            ctl.alive()?;
            let url = format!("http://127.0.0.1:{healthz}/healthz");
            if let Ok(r) = http.get(&url).timeout(Duration::from_secs(2)).send().await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("rollouts-controller not healthy within {:?}", self.timeout);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let seen = Arc::new(Mutex::new(Seen::default()));
        let rollouts: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &rollout_resource());
        spawn_watch(
            rollouts.clone(),
            watcher::Config::default(),
            seen.clone(),
            record_rollout,
        );
        spawn_watch(
            Api::<ReplicaSet>::namespaced(self.client.clone(), &self.namespace),
            watcher::Config::default().labels(HASH_LABEL),
            seen.clone(),
            record_replica_set,
        );
        spawn_watch(
            Api::<Service>::namespaced(self.client.clone(), &self.namespace),
            watcher::Config::default().labels(BENCH_LABEL),
            seen.clone(),
            record_service,
        );
        tokio::time::sleep(Duration::from_secs(self.settle)).await;
        let mut figures = Figures {
            idle_rss: ctl.rss(),
            ..Figures::default()
        };
        let largest = self.sizes.iter().copied().max().unwrap_or(1);
        let mut revision = vec![0u32; largest];
        let mut created = 0;
        for &size in &self.sizes {
            progress(format!(
                "peer: creating Rollouts {created}..{size} and their Services"
            ));
            let services: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
            let fresh: Vec<usize> = (created..size).collect();
            futures::stream::iter(fresh.iter().copied())
                .map(|i| {
                    revision[i] = 1;
                    let (svc, ro) = (self.service(i), self.rollout(i, 1));
                    let (services, rollouts, pp) = (services.clone(), rollouts.clone(), pp.clone());
                    async move {
                        services.patch(&name(i), &pp, &Patch::Apply(&svc)).await?;
                        rollouts.patch(&name(i), &pp, &Patch::Apply(&ro)).await?;
                        Ok::<_, kube::Error>(())
                    }
                })
                .buffer_unordered(PARALLEL)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .context("creating the peer's Rollouts")?;
            created = size;
            let all: Vec<(usize, f64, String)> =
                (0..size).map(|i| (i, 0.0, String::new())).collect();
            self.wait(&seen, &mut ctl, &all, "peer Rollouts Healthy")
                .await?;
            tokio::time::sleep(Duration::from_secs(self.settle)).await;
            figures.settled_rss.push((size, ctl.rss()));
            let rounds = if size == 1 { self.single_rounds } else { 1 };
            let mut samples = Vec::new();
            let mut missing = 0;
            for round in 1..=rounds {
                progress(format!("peer: {size} at once, change {round}/{rounds}"));
                let sent: Vec<(usize, f64, String)> = {
                    let seen = lock(&seen);
                    (0..size)
                        .map(|i| {
                            let old = seen.rollouts.get(&name(i)).map(|r| r.1.clone());
                            (i, 0.0, old.unwrap_or_default())
                        })
                        .collect()
                };
                let mut stamped = Vec::new();
                for chunk in sent.chunks(PARALLEL) {
                    let calls = chunk.iter().map(|(i, _, old)| {
                        revision[*i] += 1;
                        let body = self.rollout(*i, revision[*i]);
                        let (rollouts, pp) = (rollouts.clone(), pp.clone());
                        let (i, old) = (*i, old.clone());
                        async move {
                            let t = now();
                            rollouts.patch(&name(i), &pp, &Patch::Apply(&body)).await?;
                            Ok::<_, kube::Error>((i, t, old))
                        }
                    });
                    for r in futures::future::join_all(calls).await {
                        stamped.push(r.context("changing a peer Rollout")?);
                    }
                }
                self.wait(&seen, &mut ctl, &stamped, "peer template changes")
                    .await?;
                let seen = lock(&seen);
                for (i, t, _) in &stamped {
                    let n = name(*i);
                    let hash = seen
                        .rollouts
                        .get(&n)
                        .map(|r| r.2.clone())
                        .unwrap_or_default();
                    let switched = seen
                        .selectors
                        .get(&n)
                        .and_then(|v| v.iter().find(|(ts, h)| ts >= t && *h == hash))
                        .map(|(ts, _)| *ts);
                    let available = seen.available.get(&(n, hash)).copied();
                    match (available, switched) {
                        (Some(a), Some(s)) => samples.push(s - a),
                        _ => missing += 1,
                    }
                }
            }
            figures.latency.push((size, samples, missing));
        }
        let _ = ctl.alive();
        Ok(figures)
    }

    /// Waits until every Rollout of `which` (index, sent at, hash before) is done: stable on a
    /// hash other than the one before, its Service on it, other ReplicaSets at 0 replicas.
    async fn wait(
        &self,
        seen: &Mutex<Seen>,
        ctl: &mut Controller,
        which: &[(usize, f64, String)],
        what: &str,
    ) -> Result<()> {
        let deadline = Instant::now() + self.timeout;
        let mut tick = Ticker::new();
        loop {
            let pending = {
                let seen = lock(seen);
                which
                    .iter()
                    .filter(|(i, _, old)| {
                        let n = name(*i);
                        let Some((phase, current, stable)) = seen.rollouts.get(&n) else {
                            return true;
                        };
                        let selects = seen
                            .selectors
                            .get(&n)
                            .and_then(|v| v.last())
                            .is_some_and(|(_, h)| h == stable);
                        let others_down = seen
                            .replicas
                            .iter()
                            .filter(|((r, h), _)| *r == n && h != stable)
                            .all(|(_, replicas)| *replicas == 0);
                        !(phase == "Healthy"
                            && !stable.is_empty()
                            && stable == current
                            && stable != old
                            && selects
                            && others_down)
                    })
                    .count()
            };
            if pending == 0 {
                return Ok(());
            }
            ctl.alive()?;
            if Instant::now() > deadline {
                bail!(
                    "{what}: {pending} of {} Rollouts not done within {:?}",
                    which.len(),
                    self.timeout
                );
            }
            if tick.due() {
                progress(format!(
                    "  ... {what}: {}/{} done",
                    which.len() - pending,
                    which.len()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Least-squares slope of `points` (x, y); `None` with fewer than two distinct x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if n < 2.0 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}
