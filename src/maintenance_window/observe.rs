//! What the cluster says about a MaintenanceWindow: the Runbooks it names, the objects its
//! targets name, the runs it started, and (read while acting) the workloads it changes and the
//! later windows that hold a field it saved. Reads only: no decisions, no writes.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::decide::RunOutcome;
use super::decide::changes::Workload;
use super::types::{MaintenanceWindow, SavedValue, TargetKind, WindowPhase, WindowTarget};
use crate::context::Context;
use crate::runbook::Runbook;
use crate::runbook_run::RunPhase;
use crate::runbook_run::RunbookRun;
use crate::runtime::{self, Cache};
use crate::well_known::WINDOW_LABEL;

/// A read that failed, naming what was read.
pub type Error = crate::errors::ReadError;

/// `result` with the read named.
fn reading<T>(what: impl FnOnce() -> String, result: Result<T, kube::Error>) -> Result<T, Error> {
    result.map_err(|source| Error {
        what: what(),
        source,
    })
}

/// The caches the controller keeps for its windows.
pub struct Caches {
    /// Every MaintenanceWindow.
    pub windows: Store<MaintenanceWindow>,
    /// Runbooks, metadata only.
    pub runbooks: Cache<PartialObjectMeta<Runbook>>,
    /// The RunbookRuns windows started (labelled with their window).
    pub runs: Cache<RunbookRun>,
    /// Deployments, metadata only.
    pub deployments: Cache<PartialObjectMeta<Deployment>>,
    /// StatefulSets, metadata only.
    pub statefulsets: Cache<PartialObjectMeta<StatefulSet>>,
    /// CronJobs, metadata only.
    pub cronjobs: Cache<PartialObjectMeta<CronJob>>,
}

/// What one reconcile reads about a window before deciding.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// Runbooks named by beforeStart/afterEnd that do not exist, with the field path.
    pub missing_runbooks: Vec<(&'static str, String)>,
    /// When the reconcile looked (after the Runbooks, as the clock-dependent checks of the
    /// spec use it).
    pub now: Timestamp,
    /// One sentence per target that names nothing that exists, with its field path.
    pub missing_targets: Vec<String>,
    /// How the runs this window started stand, by name.
    pub runs: BTreeMap<String, RunOutcome>,
}

/// Reads everything a reconcile of `mw` decides on.
pub async fn observe(caches: &Caches, mw: &MaintenanceWindow) -> Result<Observed, Error> {
    let namespace = mw.namespace().unwrap_or_default();
    let mut missing_runbooks = Vec::new();
    for (field, runbook) in runbooks_named(mw) {
        let found = runtime::exists(&caches.runbooks, &namespace, runbook).await;
        if !reading(|| format!("Runbook {namespace}/{runbook}"), found)? {
            missing_runbooks.push((field, runbook.to_owned()));
        }
    }
    let now = Timestamp::now();
    let missing_targets = missing_targets(caches, mw).await?;
    let runs = run_outcomes(caches, mw).await?;
    Ok(Observed {
        missing_runbooks,
        now,
        missing_targets,
        runs,
    })
}

/// The Runbooks a window names, with the field naming each.
pub fn runbooks_named(mw: &MaintenanceWindow) -> impl Iterator<Item = (&'static str, &str)> {
    let before = mw
        .spec
        .before_start
        .as_ref()
        .map(|b| ("spec.beforeStart.runbook", b.runbook.as_str()));
    let after = mw
        .spec
        .after_end
        .as_ref()
        .map(|a| ("spec.afterEnd.runbook", a.runbook.as_str()));
    before.into_iter().chain(after)
}

/// Whether `target` names the object `name` with `labels`.
fn target_names(target: &WindowTarget, name: &str, labels: &BTreeMap<String, String>) -> bool {
    match (&target.name, &target.selector) {
        (Some(n), _) => n == name,
        (None, Some(selector)) => selector_matches(&selector.match_labels, labels),
        (None, None) => false,
    }
}

fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Windows in the object's namespace with a target of `kind` naming it.
pub fn windows_targeting<K: Resource>(
    windows: &Store<MaintenanceWindow>,
    kind: TargetKind,
    obj: &PartialObjectMeta<K>,
) -> Vec<ObjectRef<MaintenanceWindow>> {
    let name = obj.name_any();
    let labels = obj.labels().clone();
    runtime::referrers(windows, obj.namespace(), |mw| {
        mw.spec
            .targets
            .iter()
            .any(|t| t.kind == kind && target_names(t, &name, &labels))
    })
}

/// The objects `target` names, by the metadata caches: a named object (present or not: a
/// GET decides), or every object its selector matches.
pub async fn resolve(
    caches: &Caches,
    namespace: &str,
    target: &WindowTarget,
) -> Result<Vec<String>, Error> {
    if let Some(name) = &target.name {
        return Ok(vec![name.clone()]);
    }
    let Some(selector) = &target.selector else {
        return Ok(Vec::new());
    };
    let matching =
        |labels: &BTreeMap<String, String>| selector_matches(&selector.match_labels, labels);
    let names = match target.kind {
        TargetKind::Deployment => names_in(&caches.deployments, namespace, matching).await,
        TargetKind::StatefulSet => names_in(&caches.statefulsets, namespace, matching).await,
        TargetKind::CronJob => names_in(&caches.cronjobs, namespace, matching).await,
    };
    let mut names = reading(|| format!("the {:?} cache", target.kind), names)?;
    names.sort();
    Ok(names)
}

async fn names_in<K>(
    cache: &Cache<PartialObjectMeta<K>>,
    namespace: &str,
    matching: impl Fn(&BTreeMap<String, String>) -> bool,
) -> Result<Vec<String>, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone,
{
    cache.synced().await?;
    Ok(cache
        .store
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(namespace) && matching(o.labels()))
        .map(|o| o.name_any())
        .collect())
}

async fn present<K>(
    cache: &Cache<PartialObjectMeta<K>>,
    namespace: &str,
    target: &WindowTarget,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone,
{
    Ok(match (&target.name, &target.selector) {
        (Some(name), _) => runtime::exists(cache, namespace, name).await?,
        (None, Some(selector)) => !names_in(cache, namespace, |labels| {
            selector_matches(&selector.match_labels, labels)
        })
        .await?
        .is_empty(),
        (None, None) => false,
    })
}

/// One sentence per target that names nothing that exists, with its field path.
async fn missing_targets(caches: &Caches, mw: &MaintenanceWindow) -> Result<Vec<String>, Error> {
    let namespace = mw.namespace().unwrap_or_default();
    let mut missing = Vec::new();
    for (i, target) in mw.spec.targets.iter().enumerate() {
        let found = match target.kind {
            TargetKind::Deployment => present(&caches.deployments, &namespace, target).await,
            TargetKind::StatefulSet => present(&caches.statefulsets, &namespace, target).await,
            TargetKind::CronJob => present(&caches.cronjobs, &namespace, target).await,
        };
        if reading(|| format!("the {:?} cache", target.kind), found)? {
            continue;
        }
        missing.push(match (&target.name, &target.selector) {
            (Some(name), _) => format!(
                "spec.targets[{i}]: {:?} {name:?} not found in namespace {namespace:?}",
                target.kind
            ),
            (None, Some(selector)) => format!(
                "spec.targets[{i}].selector: no {:?} in namespace {namespace:?} has the labels {}",
                target.kind,
                selector
                    .match_labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            (None, None) => format!("spec.targets[{i}]: set name or selector"),
        });
    }
    Ok(missing)
}

/// How the runs this window started stand, by name.
async fn run_outcomes(
    caches: &Caches,
    mw: &MaintenanceWindow,
) -> Result<BTreeMap<String, RunOutcome>, Error> {
    reading(
        || "the RunbookRun cache".to_owned(),
        caches.runs.synced().await,
    )?;
    let namespace = mw.namespace();
    let name = crate::names::label_value(&mw.name_any()).into_owned();
    Ok(caches
        .runs
        .store
        .state()
        .iter()
        .filter(|run| run.namespace() == namespace && run.labels().get(WINDOW_LABEL) == Some(&name))
        .map(|run| {
            let outcome = match run.status.as_ref().and_then(|s| s.phase) {
                Some(RunPhase::Succeeded) => RunOutcome::Succeeded,
                Some(RunPhase::Failed | RunPhase::Cancelled) => RunOutcome::Failed,
                _ => RunOutcome::Running,
            };
            (run.name_any(), outcome)
        })
        .collect())
}

/// Reads one workload; `None` if it does not exist.
/// Read with `client`: a window reads its targets as its identity.
pub async fn fetch(
    client: &kube::Client,
    namespace: &str,
    kind: TargetKind,
    name: &str,
) -> Result<Option<Workload>, Error> {
    let client = client.clone();
    let found = match kind {
        TargetKind::Deployment => Api::<Deployment>::namespaced(client, namespace)
            .get_opt(name)
            .await
            .map(|o| o.map(|o| Workload::Deployment(Box::new(o)))),
        TargetKind::StatefulSet => Api::<StatefulSet>::namespaced(client, namespace)
            .get_opt(name)
            .await
            .map(|o| o.map(|o| Workload::StatefulSet(Box::new(o)))),
        TargetKind::CronJob => Api::<CronJob>::namespaced(client, namespace)
            .get_opt(name)
            .await
            .map(|o| o.map(|o| Workload::CronJob(Box::new(o)))),
    };
    reading(|| format!("{kind:?} {namespace}/{name}"), found)
}

/// The windows (other than `name` in `namespace`) that started after `start`, are still open
/// or restoring, and hold a saved value for the same field as `saved`: that field is theirs to
/// put back first. Confirmed with a fresh read, as the cache may not yet show their last
/// restore.
pub async fn later_holders(
    ctx: &Context,
    caches: &Caches,
    namespace: &str,
    name: &str,
    start: Timestamp,
    saved: &[SavedValue],
) -> Result<Vec<MaintenanceWindow>, Error> {
    let candidates: Vec<String> = caches
        .windows
        .state()
        .iter()
        .filter(|w| w.namespace().as_deref() == Some(namespace) && w.name_any() != name)
        .filter(|w| holds_later(w, start, name, saved))
        .map(|w| w.name_any())
        .collect();
    let api: Api<MaintenanceWindow> = Api::namespaced(ctx.client.clone(), namespace);
    let mut holders = Vec::new();
    for other in candidates {
        let read = api.get_opt(&other).await;
        if let Some(w) = reading(|| format!("MaintenanceWindow {namespace}/{other}"), read)?
            && holds_later(&w, start, name, saved)
        {
            holders.push(w);
        }
    }
    Ok(holders)
}

/// Whether `other` started after the window (`start`, `name`) (ties broken by name), is still
/// open or restoring, and holds a saved value for a field in `saved`.
pub fn holds_later(
    other: &MaintenanceWindow,
    start: Timestamp,
    name: &str,
    saved: &[SavedValue],
) -> bool {
    let Some(status) = &other.status else {
        return false;
    };
    let Some(current) = &status.current_window else {
        return false;
    };
    if !WindowPhase::from_status(status.phase).changes_in_effect() {
        return false;
    }
    let later =
        current.start.0 > start || (current.start.0 == start && other.name_any().as_str() > name);
    later
        && status.saved.iter().any(|o| {
            saved
                .iter()
                .any(|s| s.target == o.target && s.field == o.field)
        })
}
