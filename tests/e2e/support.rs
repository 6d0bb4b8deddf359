//! Test harness: each test gets its own namespace on the local cluster and its own operator
//! process, started out-of-cluster against the same kubeconfig and scoped to that namespace.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, PostParams};
use kube::{Client, Resource};
use runbook_operator::maintenance_window::MaintenanceWindow;
use serde::de::DeserializeOwned;

/// Longest a test waits for the cluster or the operator before it gives up. A bound on
/// hanging, not a performance assertion.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// Longest [`TestNamespace::wait_for`] waits for an object that keeps changing: a chain of
/// steps (a backup, its verification, its prune) may take longer than [`PATIENCE`] on a busy
/// machine while every step makes progress, so only a stall of [`PATIENCE`] fails the wait.
pub const PATIENCE_WHILE_CHANGING: Duration = Duration::from_secs(5 * 90);

/// A namespace of one test, deleted (with its operator stopped) when dropped.
pub struct TestNamespace {
    /// Admin client.
    pub client: Client,
    /// Namespace name.
    pub name: String,
    operator: Option<Operator>,
}

/// An operator process scoped to one namespace.
pub struct Operator {
    child: Child,
    /// Where its /metrics and /readyz are served.
    pub probe: String,
    /// Its log file.
    pub log: PathBuf,
}

impl Operator {
    /// The process id, e.g. to read its memory figures in /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the process exits on its own and returns how it exited.
    pub fn exited(&mut self) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for operator") {
                return status;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the operator did not exit; log: {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ServiceAccount every operator process of the suite acts as, e.g.
/// `system:serviceaccount:runbook-system:runbook-operator`: `make test` installs the Helm chart
/// and sets this, so the whole suite runs under the chart's RBAC and a missing rule fails the
/// test that needs it. Unset, operators run with the kubeconfig's own (admin) identity.
pub const OPERATOR_IDENTITY: &str = "E2E_OPERATOR_SERVICE_ACCOUNT";

/// A kubeconfig that authenticates as the chart's ServiceAccount with a token (written by
/// `make test`, `hack/operator-kubeconfig.sh`). Operators must use it rather than an admin
/// kubeconfig impersonating [`OPERATOR_IDENTITY`]: a client carries one impersonation only,
/// so the operator's own impersonation of an object's ServiceAccount would replace it and the
/// chart's `impersonate` rule would never be checked.
pub const OPERATOR_KUBECONFIG: &str = "E2E_OPERATOR_KUBECONFIG";

/// The kubeconfig operators of the suite run with: [`OPERATOR_KUBECONFIG`] when set, else
/// (an older setup) the suite's kubeconfig impersonating [`OPERATOR_IDENTITY`], written once.
pub fn operator_kubeconfig() -> Option<PathBuf> {
    static PATH: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(path) = std::env::var_os(OPERATOR_KUBECONFIG).filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(path));
        }
        let identity = std::env::var(OPERATOR_IDENTITY)
            .ok()
            .filter(|s| !s.is_empty())?;
        Some(impersonating_kubeconfig(&identity, "operator"))
    })
    .clone()
}

/// Writes a copy of the suite's kubeconfig whose users act as `identity` (the API server adds
/// a ServiceAccount's groups itself), and returns its path.
pub fn impersonating_kubeconfig(identity: &str, label: &str) -> PathBuf {
    let mut config = kube::config::Kubeconfig::read().expect("read the suite's kubeconfig");
    for named in &mut config.auth_infos {
        if let Some(auth) = named.auth_info.as_mut() {
            auth.impersonate = Some(identity.to_owned());
        }
    }
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "e2e-{label}-{:06x}.kubeconfig",
        rand::random::<u32>() & 0xff_ffff
    ));
    let yaml = serde_norway::to_string(&config).expect("kubeconfig as YAML");
    std::fs::write(&path, yaml).expect("write the impersonating kubeconfig");
    path
}

/// Writes a copy of the suite's kubeconfig whose users authenticate as ServiceAccount
/// `account` of `namespace` with a fresh token (no impersonation), and returns its path. An
/// operator run with it impersonates objects' ServiceAccounts with that account's own
/// `impersonate` right, which an admin kubeconfig impersonating the account would bypass.
pub fn token_kubeconfig(namespace: &str, account: &str, label: &str) -> PathBuf {
    let out = kubectl_in(
        Some(namespace),
        &["create", "token", account, "--duration=2h"],
        None,
    );
    assert!(
        out.status.success(),
        "create a token for {namespace}/{account}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let config = kube::config::Kubeconfig::read().expect("read the suite's kubeconfig");
    let mut config = serde_json::to_value(&config).expect("kubeconfig as JSON");
    for user in config["users"].as_array_mut().into_iter().flatten() {
        user["user"] = serde_json::json!({"token": token});
    }
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "e2e-{label}-{:06x}.kubeconfig",
        rand::random::<u32>() & 0xff_ffff
    ));
    let yaml = serde_norway::to_string(&config).expect("kubeconfig as YAML");
    std::fs::write(&path, yaml).expect("write the token kubeconfig");
    path
}

/// A port on 127.0.0.1 nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// What the steps, windows, releases and policies of the suite do to their targets: the Role
/// [`TestNamespace::new`] grants the namespace's `default` ServiceAccount, which objects act as
/// when they name no other (the operator's `--default-service-account`). Owner references with
/// blockOwnerDeletion (step and backup Jobs, slot Deployments) need `update` on the owner's
/// finalizers, as OwnerReferencesPermissionEnforcement checks the creator.
pub const RUNNER_RULES: &str = r#"
- {apiGroups: [apps], resources: [deployments, statefulsets], verbs: [get, list, watch, create, patch]}
- {apiGroups: [apps], resources: [deployments/scale, statefulsets/scale], verbs: [get, patch]}
- {apiGroups: [apps], resources: [replicasets], verbs: [list]}
- {apiGroups: [batch], resources: [jobs], verbs: [get, list, watch, create, delete]}
- {apiGroups: [batch], resources: [cronjobs], verbs: [get, patch]}
- {apiGroups: [""], resources: [pods], verbs: [list, delete]}
- {apiGroups: [""], resources: [services, secrets], verbs: [get, patch]}
- {apiGroups: [""], resources: [configmaps], verbs: [get, create, patch]}
- {apiGroups: [ops.runbook.dev], resources: [backuppolicies], verbs: [get, patch]}
- {apiGroups: [ops.runbook.dev], resources: [runbookruns/finalizers, backuppolicies/finalizers, bluegreenreleases/finalizers], verbs: [update]}
"#;

impl TestNamespace {
    /// Creates `t-<prefix>-<random>` and grants its `default` ServiceAccount the runner Role
    /// ([`RUNNER_RULES`]), so objects that name no ServiceAccount may act.
    pub async fn new(prefix: &str) -> Self {
        let ns = Self::without_runner(prefix).await;
        ns.grant_runner("default");
        ns
    }

    /// Grants ServiceAccount `account` of this namespace the runner Role ([`RUNNER_RULES`]).
    pub fn grant_runner(&self, account: &str) {
        let yaml = format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: runner}}\nrules:{RUNNER_RULES}---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: runner-{account}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: runner}}\nsubjects: [{{kind: ServiceAccount, name: {account}, namespace: {ns}}}]\n",
            ns = self.name
        );
        self.apply(&yaml);
    }

    /// Creates `t-<prefix>-<random>` with no rights for its ServiceAccounts: objects acting as
    /// `default` are refused everything (for refusal tests).
    pub async fn without_runner(prefix: &str) -> Self {
        let client = Client::try_default()
            .await
            .expect("KUBECONFIG must point at the local cluster: run `make test`");
        let name = format!("t-{prefix}-{:06x}", rand::random::<u32>() & 0xff_ffff);
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"runbook-operator.dev/test": prefix}}
        }))
        .expect("namespace object");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create test namespace");
        Self {
            client,
            name,
            operator: None,
        }
    }

    /// The typed API of `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Starts the operator for this namespace and waits until its caches have synced.
    pub fn start_operator(&mut self) -> &Operator {
        self.stop_operator();
        let operator = self.spawn_operator("", &[], "ok");
        self.operator.insert(operator)
    }

    /// Starts one more operator process for this namespace with `extra` arguments, logging
    /// to `<namespace><suffix>.log`, and waits until its /readyz answers `ready` (e.g.
    /// `standby: ...` for a replica waiting for the leader Lease). The caller owns it: it is
    /// killed when dropped.
    pub fn spawn_operator(&self, suffix: &str, extra: &[&str], ready: &str) -> Operator {
        self.spawn_operator_with(suffix, extra, ready, None)
    }

    /// [`TestNamespace::spawn_operator`] with the operator's own kubeconfig (e.g. one that
    /// impersonates a ServiceAccount), instead of the suite's.
    pub fn spawn_operator_with(
        &self,
        suffix: &str,
        extra: &[&str],
        ready: &str,
        kubeconfig: Option<&std::path::Path>,
    ) -> Operator {
        self.spawn(suffix, extra, ready, kubeconfig, true)
    }

    /// [`TestNamespace::spawn_operator`] without `--allow-loopback-egress`, as in a cluster:
    /// http steps to the suite's local servers (on 127.0.0.1) are refused.
    pub fn spawn_operator_fenced(&self, suffix: &str) -> Operator {
        self.spawn(suffix, &[], "ok", None, false)
    }

    fn spawn(
        &self,
        suffix: &str,
        extra: &[&str],
        ready: &str,
        kubeconfig: Option<&std::path::Path>,
        loopback: bool,
    ) -> Operator {
        let port = free_port();
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("e2e-logs")
            .join(format!("{}{suffix}.log", self.name));
        std::fs::create_dir_all(log.parent().expect("log dir")).expect("log dir");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("operator log file");
        // E2E_OPERATOR_BINARY: a copy of this checkout's binary, for checkouts that share a
        // target directory (another checkout's build would replace the one cargo built).
        let binary = std::env::var_os("E2E_OPERATOR_BINARY")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_runbook-operator")));
        let mut command = Command::new(binary);
        command
            .args(["run", "--namespace", &self.name, "--probe-addr"])
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            // The suite's http servers listen on 127.0.0.1, which the fence refuses otherwise.
            .args(loopback.then_some("--allow-loopback-egress"))
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .env("NO_COLOR", "1");
        if let Some(kubeconfig) = kubeconfig.map(PathBuf::from).or_else(operator_kubeconfig) {
            command.env("KUBECONFIG", kubeconfig);
        }
        let child = command.spawn().expect("start the operator binary");
        let operator = Operator {
            child,
            probe: format!("http://127.0.0.1:{port}"),
            log,
        };
        let started = Instant::now();
        // An empty `ready` waits only for the process to serve (/healthz), for an operator
        // that is not meant to become ready.
        let probe = if ready.is_empty() {
            "/healthz"
        } else {
            "/readyz"
        };
        while !http_get(&operator.probe, probe).is_some_and(|r| r.starts_with(ready)) {
            assert!(
                started.elapsed() < PATIENCE,
                "operator did not become ready; log: {}",
                operator.log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        operator
    }

    /// Makes `operator` this namespace's operator (for [`TestNamespace::terminate_operator`]).
    pub fn adopt_operator(&mut self, operator: Operator) {
        self.operator = Some(operator);
    }

    /// Stops this namespace's operator, if running.
    pub fn stop_operator(&mut self) {
        self.operator = None;
    }

    /// Sends SIGTERM to the operator and waits for it to exit.
    pub fn terminate_operator(&mut self) -> std::process::ExitStatus {
        let mut operator = self.operator.take().expect("operator started");
        let pid = operator.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success(), "could not signal the operator");
        let started = Instant::now();
        loop {
            if let Some(status) = operator.child.try_wait().expect("wait for operator") {
                return status;
            }
            assert!(started.elapsed() < PATIENCE, "operator ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where this namespace's operator logs.
    pub fn log_path(&self) -> PathBuf {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("e2e-logs")
            .join(format!("{}.log", self.name))
    }

    /// The running operator.
    pub fn operator(&self) -> &Operator {
        self.operator.as_ref().expect("operator started")
    }

    /// Runs kubectl in this namespace with `stdin` as input.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        kubectl_in(Some(&self.name), args, stdin)
    }

    /// Runs kubectl in this namespace and returns its output; panics with kubectl's message
    /// if it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args, None);
        assert!(
            out.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Applies every file of examples/ into this namespace; panics with kubectl's message if
    /// one is refused.
    pub fn apply_examples(&self) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        self.kubectl_ok(&["apply", "-f", dir.to_str().expect("utf-8 path")]);
    }

    /// Applies YAML; panics with kubectl's message if it is refused.
    pub fn apply(&self, yaml: &str) {
        let out = self.kubectl(&["apply", "-f", "-"], Some(yaml));
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Polls `K` named `name` until `done` holds, returning the object. Gives up when the
    /// object has not changed (resourceVersion) for [`PATIENCE`], or after
    /// [`PATIENCE_WHILE_CHANGING`] in all.
    pub async fn wait_for<K>(&self, name: &str, what: &str, done: impl Fn(&K) -> bool) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let api = self.api::<K>();
        let started = Instant::now();
        let mut last_change = Instant::now();
        let mut last_version: Option<String> = None;
        loop {
            let current = api.get_opt(name).await.expect("get object");
            if let Some(obj) = &current
                && done(obj)
            {
                return obj.clone();
            }
            let version = current
                .as_ref()
                .and_then(|obj| obj.meta().resource_version.clone());
            if version != last_version {
                last_version = version;
                last_change = Instant::now();
            }
            assert!(
                last_change.elapsed() < PATIENCE && started.elapsed() < PATIENCE_WHILE_CHANGING,
                "{} {name} never became {what} (unchanged for {:?}, waited {:?}); last seen: {current:#?}",
                K::kind(&()),
                last_change.elapsed(),
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `name` no longer exists (`why` says what should remove it).
    pub async fn wait_gone<K>(&self, name: &str, why: &str)
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let api = self.api::<K>();
        let started = Instant::now();
        while let Some(current) = api.get_opt(name).await.expect("get object") {
            assert!(
                started.elapsed() < PATIENCE,
                "{} {name} is still there ({why}); last seen: {current:#?}",
                K::kind(&())
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// True while this namespace's operator process has not exited.
    pub fn operator_running(&mut self) -> bool {
        let operator = self.operator.as_mut().expect("operator started");
        operator
            .child
            .try_wait()
            .expect("operator process state")
            .is_none()
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        self.stop_operator();
        // kubectl rather than the client: the client's connection task lives on the test's
        // runtime, which is blocked inside this drop. Cleanup is best-effort; the cluster is
        // torn down after the run anyway.
        let _ = kubectl_in(
            None,
            &["delete", "namespace", &self.name, "--wait=false"],
            None,
        );
    }
}

/// Runs kubectl (from PATH, as `make test` sets it) in `namespace`.
pub fn kubectl_in(namespace: Option<&str>, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new("kubectl");
    if let Some(ns) = namespace {
        cmd.args(["-n", ns]);
    }
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl on PATH (run via `make test`)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write kubectl stdin");
    }
    child.wait_with_output().expect("kubectl output")
}

/// A tiny HTTP/1.0 GET against the operator's probe server; the body, or None.
pub fn http_get(base: &str, path: &str) -> Option<String> {
    let (code, body) = http_get_any(base, path)?;
    (code == 200).then_some(body)
}

/// GET `path` from `base`: the status code and body, whatever the code.
pub fn http_get_any(base: &str, path: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let addr = base.strip_prefix("http://")?;
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

/// Sum of a counter family in Prometheus text, optionally only series containing `filter`.
pub fn counter_sum(metrics: &str, name: &str, filter: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The condition of `type_` in a list.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when `Ready` is True and the status describes the current generation.
pub fn ready(conditions: &[Condition], observed: Option<i64>, generation: Option<i64>) -> bool {
    observed == generation && condition(conditions, "Ready").is_some_and(|c| c.status == "True")
}

/// True when the object is Stalled with reason InvalidSpec for the current generation.
pub fn stalled(conditions: &[Condition], observed: Option<i64>, generation: Option<i64>) -> bool {
    observed == generation
        && condition(conditions, "Stalled")
            .is_some_and(|c| c.status == "True" && c.reason == "InvalidSpec")
        && condition(conditions, "Ready").is_some_and(|c| c.status == "False")
}

impl TestNamespace {
    /// Lets the suite's operator identity ([`OPERATOR_IDENTITY`], when set) hold leader Leases
    /// in this namespace, as the chart's leader-election Role does in the release namespace.
    pub fn grant_leader_election(&self) {
        let Some(identity) = std::env::var(OPERATOR_IDENTITY)
            .ok()
            .filter(|s| !s.is_empty())
        else {
            return;
        };
        let mut parts = identity.rsplitn(2, ':');
        let (Some(account), Some(prefix)) = (parts.next(), parts.next()) else {
            panic!(
                "{OPERATOR_IDENTITY} is not system:serviceaccount:<namespace>:<name>: {identity}"
            );
        };
        let namespace = prefix.trim_start_matches("system:serviceaccount:");
        let yaml = format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: leader-election}}\nrules:\n- {{apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, patch, create]}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: leader-election}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: leader-election}}\nsubjects: [{{kind: ServiceAccount, name: {account}, namespace: {namespace}}}]\n"
        );
        let out = self.kubectl(&["apply", "-f", "-"], Some(&yaml));
        assert!(
            out.status.success(),
            "grant leader election: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A client that acts as ServiceAccount `name` of this namespace (the admin identity
    /// impersonates it), for checking what RBAC lets that account do.
    pub async fn client_as_service_account(&self, name: &str) -> Client {
        let mut config = kube::Config::infer().await.expect("kubeconfig");
        config.auth_info.impersonate = Some(format!("system:serviceaccount:{}:{name}", self.name));
        Client::try_from(config).expect("impersonating client")
    }
}

impl TestNamespace {
    /// Messages of the Events with `reason` about the object named `name`, as they are now.
    pub fn event_messages(&self, name: &str, reason: &str) -> String {
        let out = self.kubectl(
            &[
                "get",
                "events",
                "--field-selector",
                &format!("involvedObject.name={name},reason={reason}"),
                "-o",
                "jsonpath={.items[*].message}",
            ],
            None,
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until an Event with `reason` about the object `name` says `words` (Events are
    /// published in the background, a moment after the change they report); returns the
    /// messages of such Events.
    pub async fn wait_for_event(&self, name: &str, reason: &str, words: &str) -> String {
        let started = Instant::now();
        loop {
            let messages = self.event_messages(name, reason);
            if messages.contains(words) {
                return messages;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "no {reason} Event about {name} saying {words:?}; messages: {messages:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Now plus `secs` seconds, on a whole second (status times are stored to the second), for
/// the start and end of windows a test opens shortly.
pub fn from_now(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + secs).expect("a timestamp")
}

impl TestNamespace {
    /// Deletes every MaintenanceWindow of the namespace and waits until they are gone (an
    /// active one restores first), so no window's finalizer holds the namespace once the
    /// operator is stopped.
    pub async fn delete_windows(&self) {
        let out = self.kubectl(
            &["delete", "maintenancewindows", "--all", "--wait=false"],
            None,
        );
        assert!(
            out.status.success(),
            "kubectl delete maintenancewindows: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let api = self.api::<MaintenanceWindow>();
        let started = Instant::now();
        loop {
            let left = api
                .list(&kube::api::ListParams::default())
                .await
                .expect("list windows")
                .items;
            if left.is_empty() {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "windows still there after delete: {left:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Names of our kinds' objects of `kind` in the example files, sorted.
pub fn example_names(kind: &str) -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).expect("examples/") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("example file");
        for doc in serde_norway::Deserializer::from_str(&text) {
            let value: serde_norway::Value = serde::Deserialize::deserialize(doc).expect("yaml");
            if value["kind"].as_str() == Some(kind) {
                names.push(value["metadata"]["name"].as_str().expect("name").to_owned());
            }
        }
    }
    names.sort();
    names
}

/// A RunbookRun of `runbook` in `mode` (Run or Plan) with string `params`, as YAML.
pub fn run_yaml(name: &str, runbook: &str, mode: &str, params: &[(&str, String)]) -> String {
    let params = params
        .iter()
        .map(|(k, v)| format!("{k}: \"{v}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "apiVersion: ops.runbook.dev/v1alpha1\nkind: RunbookRun\nmetadata: {{name: {name}}}\nspec:\n  runbookRef: {{name: {runbook}}}\n  mode: {mode}\n  params: {{{params}}}\n"
    )
}

/// A client acting as user `user` in `groups` (the suite's admin identity impersonates them;
/// the API server adds system:authenticated), for checking what a person's RBAC lets them do.
pub async fn client_as(user: &str, groups: &[&str]) -> Client {
    let mut config = kube::Config::infer().await.expect("kubeconfig");
    config.auth_info.impersonate = Some(user.to_owned());
    if !groups.is_empty() {
        config.auth_info.impersonate_groups =
            Some(groups.iter().map(|g| (*g).to_owned()).collect());
    }
    Client::try_from(config).expect("impersonating client")
}

/// The journal entry of `step` in `run` (panics, showing the status, when there is none).
pub fn entry<'a>(
    run: &'a runbook_operator::runbook_run::RunbookRun,
    step: &str,
) -> &'a runbook_operator::runbook_run::StepStatus {
    run.status
        .as_ref()
        .and_then(|s| s.steps.iter().find(|e| e.name == step))
        .unwrap_or_else(|| panic!("no journal entry for step {step:?}: {:#?}", run.status))
}

/// The output `key` the journal entry recorded (panics, showing the entry, when missing).
pub fn output<'a>(entry: &'a runbook_operator::runbook_run::StepStatus, key: &str) -> &'a str {
    entry
        .outputs
        .get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("step {:?} has no output {key:?}: {entry:#?}", entry.name))
}
