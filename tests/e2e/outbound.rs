//! http steps run outside the reconciles, in a bounded pool: a blackholed endpoint neither
//! stalls other runs (in another namespace) nor outlives a cancel, and a huge answer does not
//! grow the operator's memory.

use std::sync::{Arc, Mutex};

use runbook_operator::runbook_run::{RunbookRun, StepPhase};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::egress::{Server, finished, run, runbook};
use crate::support::{TestNamespace, entry};

/// A listener on 127.0.0.1 that accepts connections and never answers (nor closes them); it
/// counts the connections the operator closed.
pub(crate) struct Blackhole {
    pub(crate) base: String,
    accepted: Arc<Mutex<usize>>,
    closed: tokio::sync::watch::Receiver<usize>,
}

impl Blackhole {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let accepted = Arc::new(Mutex::new(0));
        let (closed_tx, closed) = tokio::sync::watch::channel(0usize);
        let closed_tx = Arc::new(closed_tx);
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                *count.lock().expect("accepted") += 1;
                let closed_tx = closed_tx.clone();
                tokio::spawn(async move {
                    // Read whatever comes until the operator hangs up; never answer.
                    let mut stream: TcpStream = stream;
                    let mut buf = [0u8; 1024];
                    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                    closed_tx.send_modify(|n| *n += 1);
                });
            }
        });
        Self {
            base,
            accepted,
            closed,
        }
    }

    /// A Runbook `name` whose one step, `call`, sends a request here (timeout 10m).
    pub(crate) fn runbook(&self, name: &str) -> String {
        runbook(
            name,
            &format!(
                "  - {{name: call, timeout: 10m, http: {{url: \"{}/never\"}}}}",
                self.base
            ),
        )
    }

    /// Connections accepted so far.
    fn connections(&self) -> usize {
        *self.accepted.lock().expect("accepted")
    }

    /// Waits until the operator has closed `count` connections.
    async fn closed(&self, count: usize) {
        let mut closed = self.closed.clone();
        tokio::time::timeout(crate::support::PATIENCE, closed.wait_for(|n| *n >= count))
            .await
            .expect("the operator closes the connection")
            .expect("blackhole running");
    }
}

pub(crate) fn step_message(run: &RunbookRun, step: &str) -> String {
    run.status
        .as_ref()
        .and_then(|s| s.steps.iter().find(|e| e.name == step))
        .and_then(|e| e.message.clone())
        .unwrap_or_default()
}

fn phase(run: &RunbookRun) -> Option<&'static str> {
    run.status
        .as_ref()
        .and_then(|s| s.phase.map(|p| p.as_str()))
}

/// A namespace `prefix-…` with its operator, whose run `stuck-1` has its one request in
/// flight to a fresh [`Blackhole`] (one connection open); returns the run as it then was.
async fn one_request_in_flight(prefix: &str) -> (Blackhole, TestNamespace, RunbookRun) {
    let hole = Blackhole::start().await;
    let mut ns = TestNamespace::new(prefix).await;
    ns.apply(&hole.runbook("stuck"));
    ns.start_operator();
    ns.apply(&run("stuck-1", "stuck"));
    let r = ns
        .wait_for::<RunbookRun>("stuck-1", "the request to be in flight", |r| {
            step_message(r, "call").contains("waiting for the answer")
        })
        .await;
    (hole, ns, r)
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_cancel_interrupts_a_request_that_never_answers() {
    let (hole, ns, _) = one_request_in_flight("outbound-cancel").await;
    assert_eq!(hole.connections(), 1);
    ns.kubectl_ok(&[
        "annotate",
        "runbookrun",
        "stuck-1",
        "ops.runbook.dev/cancel=true",
    ]);
    let r = finished(&ns, "stuck-1").await;
    assert_eq!(phase(&r), Some("Cancelled"), "{:#?}", r.status);
    let e = entry(&r, "call");
    assert_eq!(
        e.outputs.get("reason").map(String::as_str),
        Some("Cancelled"),
        "{e:#?}"
    );
    // The request was dropped, not left to run out its timeout.
    hole.closed(1).await;
}

/// Peak resident memory of a process, in bytes (VmHWM).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_100_mib_answer_does_not_grow_the_operator() {
    let server = Server::start("").await;
    let mut ns = TestNamespace::new("outbound-huge").await;
    ns.apply(&runbook(
        "download",
        &format!(
            "  - {{name: huge, http: {{url: \"{}/huge\"}}}}",
            server.base
        ),
    ));
    let pid = ns.start_operator().pid();
    ns.apply(&run("download-1", "download"));
    let r = finished(&ns, "download-1").await;
    let e = entry(&r, "huge");
    assert_eq!(e.phase, StepPhase::Succeeded, "{e:#?}");
    let message = e.message.as_deref().unwrap_or_default();
    assert!(
        message.contains("read the first 64 KiB only"),
        "the step says the body was cut: {message:?}"
    );
    // Reading the whole answer would have needed 100 MiB at least, at once.
    let peak = peak_rss(pid);
    assert!(
        peak < 100 * 1024 * 1024,
        "operator peak RSS {} MiB after a 100 MiB answer",
        peak / 1024 / 1024
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn blackholed_runs_in_one_namespace_leave_the_others_running() {
    let hole = Blackhole::start().await;
    let server = Server::start("").await;
    let mut stuck = TestNamespace::new("outbound-stuck").await;
    let other = TestNamespace::new("outbound-other").await;
    stuck.apply(&hole.runbook("stuck"));
    other.apply(&runbook(
        "ordinary",
        &format!(
            "  - {{name: health, http: {{url: \"{}/health\"}}}}",
            server.base
        ),
    ));
    // One operator for both namespaces, with its default limits (16 reconciles, 8 requests
    // per namespace): 20 blackholed runs are more than either.
    let operator = stuck.spawn_operator("", &["--namespace", &other.name], "ok");
    stuck.adopt_operator(operator);
    for i in 0..20 {
        stuck.apply(&run(&format!("stuck-{i}"), "stuck"));
    }
    // Every stuck run has its request in flight or queued behind its namespace's limit.
    for i in 0..20 {
        stuck
            .wait_for::<RunbookRun>(&format!("stuck-{i}"), "its request pending", |r| {
                step_message(r, "call").contains("waiting for")
            })
            .await;
    }
    let queued = stuck
        .api::<RunbookRun>()
        .list(&Default::default())
        .await
        .expect("runs")
        .items
        .iter()
        .filter(|r| step_message(r, "call").contains("waiting for an outbound slot (8 in flight"))
        .count();
    assert_eq!(
        queued, 12,
        "8 in flight, the rest queued in their namespace"
    );
    other.apply(&run("ordinary-1", "ordinary"));
    let r = finished(&other, "ordinary-1").await;
    assert_eq!(phase(&r), Some("Succeeded"), "{:#?}", r.status);
    // The stuck runs are still waiting, not failed.
    let still = stuck
        .api::<RunbookRun>()
        .get("stuck-0")
        .await
        .expect("stuck-0");
    assert!(step_message(&still, "call").contains("waiting for"));
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_request_in_flight_when_the_operator_stops_is_reported_not_resent() {
    let (hole, mut ns, _) = one_request_in_flight("outbound-restart").await;
    // A new process knows nothing of the request: whether it reached the endpoint is
    // unknown, and it is not sent again.
    ns.start_operator();
    let r = finished(&ns, "stuck-1").await;
    assert_eq!(phase(&r), Some("Failed"), "{:#?}", r.status);
    let e = entry(&r, "call");
    assert_eq!(
        e.outputs.get("reason").map(String::as_str),
        Some("Unknown"),
        "{e:#?}"
    );
    assert_eq!(hole.connections(), 1, "the request was not sent again");
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn deleting_a_run_interrupts_its_request_and_lets_it_go() {
    let (hole, ns, r) = one_request_in_flight("outbound-delete").await;
    let uid = r.metadata.uid.clone().unwrap_or_default();
    ns.kubectl_ok(&["delete", "runbookrun", "stuck-1", "--wait=false"]);
    // The finalizer goes once the request is aborted and the run is ended, long before the
    // request's 5 minutes.
    let gone = kube::runtime::wait::await_condition(
        ns.api::<RunbookRun>(),
        "stuck-1",
        kube::runtime::wait::conditions::is_deleted(&uid),
    );
    tokio::time::timeout(crate::support::PATIENCE, gone)
        .await
        .expect("the deleted run is gone")
        .expect("watching the run");
    hole.closed(1).await;
}
