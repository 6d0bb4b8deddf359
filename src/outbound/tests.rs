use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

fn key(run: &str, step: usize) -> Key {
    Key {
        run: run.into(),
        step,
        attempt: 1,
    }
}

fn owner(namespace: &str) -> Owner {
    Owner {
        namespace: namespace.into(),
        name: "run".into(),
    }
}

fn ok(message: &str) -> Reply {
    Reply {
        outputs: vec![("httpStatus".into(), "200".into())],
        verdict: Verdict::Succeeded(message.into()),
    }
}

/// A request that never answers, and a flag that tells whether it was dropped (aborted).
fn blackholed() -> (
    impl Future<Output = Reply> + Send + 'static,
    Arc<AtomicBool>,
) {
    struct Dropped(Arc<AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = Dropped(dropped.clone());
    let request = async move {
        let _guard = guard;
        std::future::pending::<()>().await;
        ok("never")
    };
    (request, dropped)
}

/// Waits until `key` reaches a progress that `done` accepts (woken by the pool).
async fn wait_for(
    pool: &Pool,
    wakes: &mut broadcast::Receiver<Owner>,
    key: &Key,
    done: impl Fn(&Progress) -> bool,
) -> Progress {
    loop {
        if let Some(p) = pool.progress(key)
            && done(&p)
        {
            return p;
        }
        wakes.recv().await.expect("wake");
    }
}

#[tokio::test]
async fn a_namespace_at_its_limit_queues_its_own_requests_only() {
    let pool = Pool::new(10, 2);
    for step in 0..2 {
        let (request, _) = blackholed();
        assert_eq!(
            pool.start(key("a", step), owner("shop"), request),
            Progress::InFlight
        );
    }
    let (request, _) = blackholed();
    let queued = pool.start(key("a", 2), owner("shop"), request);
    assert_eq!(
        queued,
        Progress::Queued {
            namespace: true,
            in_flight: 2
        }
    );
    assert_eq!(
        queued.waiting_message("shop", "GET http://x/").as_deref(),
        Some(
            "waiting for an outbound slot (2 in flight in namespace \"shop\") to send GET http://x/"
        )
    );
    let (request, _) = blackholed();
    assert_eq!(
        pool.start(key("b", 0), owner("other"), request),
        Progress::InFlight
    );
    assert_eq!(pool.in_flight(), 3);
}

#[tokio::test]
async fn the_global_limit_queues_every_namespace() {
    let pool = Pool::new(2, 2);
    for (run, ns) in [("a", "one"), ("b", "two")] {
        let (request, _) = blackholed();
        assert_eq!(
            pool.start(key(run, 0), owner(ns), request),
            Progress::InFlight
        );
    }
    let (request, _) = blackholed();
    assert_eq!(
        pool.start(key("c", 0), owner("three"), request),
        Progress::Queued {
            namespace: false,
            in_flight: 2
        }
    );
}

#[tokio::test]
async fn an_abort_drops_the_request_and_frees_its_slot() {
    let pool = Pool::new(10, 1);
    let mut wakes = pool.subscribe();
    let (request, dropped) = blackholed();
    pool.start(key("a", 0), owner("shop"), request);
    let (request, _) = blackholed();
    let waiting = key("b", 0);
    assert!(matches!(
        pool.start(waiting.clone(), owner("shop"), request),
        Progress::Queued { .. }
    ));
    pool.abort(&key("a", 0));
    let progress = wait_for(&pool, &mut wakes, &waiting, |p| *p == Progress::InFlight).await;
    assert_eq!(progress, Progress::InFlight);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the aborted request was dropped"
    );
    assert_eq!(
        pool.progress(&key("a", 0)),
        None,
        "an aborted request is forgotten"
    );
}

#[tokio::test]
async fn a_reply_is_kept_until_forgotten_and_wakes_its_run() {
    let pool = Pool::default();
    let mut wakes = pool.subscribe();
    let k = key("a", 3);
    pool.start(k.clone(), owner("shop"), async { ok("answered 200") });
    let progress = wait_for(&pool, &mut wakes, &k, |p| matches!(p, Progress::Done(_))).await;
    assert_eq!(progress, Progress::Done(ok("answered 200")));
    // Starting again (a reconcile whose write failed) does not send twice.
    let again = pool.start(k.clone(), owner("shop"), async { ok("twice") });
    assert_eq!(again, Progress::Done(ok("answered 200")));
    pool.forget(&k);
    assert_eq!(pool.progress(&k), None);
    assert!(pool.is_empty());
}

#[tokio::test]
async fn ending_a_run_aborts_its_requests_only() {
    let pool = Pool::default();
    let (first, first_dropped) = blackholed();
    let (second, second_dropped) = blackholed();
    let (other, other_dropped) = blackholed();
    pool.start(key("a", 0), owner("shop"), first);
    pool.start(key("a", 1), owner("shop"), second);
    pool.start(key("b", 0), owner("shop"), other);
    pool.abort_run("a");
    // Aborted tasks are dropped at their next poll; let the runtime get there.
    while !(first_dropped.load(Ordering::SeqCst) && second_dropped.load(Ordering::SeqCst)) {
        tokio::task::yield_now().await;
    }
    assert!(!other_dropped.load(Ordering::SeqCst));
    assert_eq!(pool.len(), 1);
}

#[test]
fn timeouts_are_capped_at_five_minutes() {
    assert_eq!(
        capped_timeout(Duration::from_secs(30)),
        Duration::from_secs(30)
    );
    assert_eq!(
        capped_timeout(Duration::from_secs(100_000_000 * 3600)),
        MAX_TIMEOUT
    );
}
