//! The lock decision: who takes a free lock, who waits, who is skipped.

use super::*;

fn at(second: i64) -> Option<Timestamp> {
    Some(Timestamp::from_second(1_800_000_000 + second).unwrap())
}

fn run(uid: &str, created: i64) -> Contender {
    Contender {
        uid: uid.into(),
        name: format!("run-{uid}"),
        created: at(created),
        finished: false,
        started: false,
        key: None,
    }
}

fn held_by(uid: &str) -> LeaseView {
    LeaseView {
        holder: Some(uid.into()),
        resource_version: Some("7".into()),
    }
}

const ME: Asker<'static> = Asker {
    uid: "me",
    name: "run-me",
    created: None,
};

fn me(created: i64) -> Asker<'static> {
    Asker {
        created: at(created),
        ..ME
    }
}

#[test]
fn a_free_lock_is_created_and_a_live_holder_makes_the_run_wait_or_skip() {
    assert_eq!(
        lock(&me(5), "k", LockPolicy::Queue, None, &[]),
        Lock::Create
    );
    let holder = Contender {
        started: true,
        key: Some("k".into()),
        ..run("a", 1)
    };
    let lease = held_by("a");
    match lock(
        &me(5),
        "k",
        LockPolicy::Queue,
        Some(&lease),
        std::slice::from_ref(&holder),
    ) {
        Lock::Wait {
            message,
            behind_queued,
        } => {
            assert!(message.contains("held by run \"run-a\""), "{message}");
            assert!(!behind_queued, "a holder's release changes its Lease");
        }
        other => panic!("{other:?}"),
    }
    match lock(&me(5), "k", LockPolicy::Skip, Some(&lease), &[holder]) {
        Lock::Skip { message } => assert!(message.contains("run-a"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_run_that_holds_the_lock_already_goes_on() {
    let lease = held_by("me");
    assert_eq!(
        lock(&me(5), "k", LockPolicy::Skip, Some(&lease), &[]),
        Lock::Held {
            resource_version: Some("7".into())
        }
    );
}

#[test]
fn a_finished_or_vanished_holder_is_taken_over_with_the_version_read() {
    let lease = held_by("a");
    let finished = Contender {
        finished: true,
        started: true,
        ..run("a", 1)
    };
    assert_eq!(
        lock(&me(5), "k", LockPolicy::Queue, Some(&lease), &[finished]),
        Lock::TakeOver {
            resource_version: Some("7".into()),
            previous: Some("run-a".into())
        }
    );
    assert_eq!(
        lock(&me(5), "k", LockPolicy::Skip, Some(&lease), &[]),
        Lock::TakeOver {
            resource_version: Some("7".into()),
            previous: None
        }
    );
    let released = LeaseView {
        holder: None,
        resource_version: Some("9".into()),
    };
    assert!(matches!(
        lock(&me(5), "k", LockPolicy::Queue, Some(&released), &[]),
        Lock::TakeOver { .. }
    ));
}

#[test]
fn a_free_lock_goes_to_the_oldest_queued_run_first() {
    let queued = |uid: &str, created: i64| Contender {
        key: Some("k".into()),
        ..run(uid, created)
    };
    let runs = [queued("b", 3), queued("a", 2), queued("c", 9)];
    match lock(&me(5), "k", LockPolicy::Queue, None, &runs) {
        Lock::Wait {
            message,
            behind_queued,
        } => {
            assert!(message.contains("\"run-a\" is queued ahead"), "{message}");
            assert!(
                behind_queued,
                "a queued run may go away without a Lease change"
            );
        }
        other => panic!("{other:?}"),
    }
    // The oldest takes it; a younger one, or one of another key, does not hold it up.
    let oldest = Asker {
        uid: "a",
        name: "run-a",
        created: at(2),
    };
    assert_eq!(
        lock(&oldest, "k", LockPolicy::Queue, None, &runs),
        Lock::Create
    );
    assert_eq!(
        lock(&me(5), "other", LockPolicy::Queue, None, &runs),
        Lock::Create
    );
    // Same second: the name decides.
    let tie = [queued("a", 5)];
    assert!(matches!(
        lock(&me(5), "k", LockPolicy::Queue, None, &tie),
        Lock::Wait { .. }
    ));
    // Queued runs that finished (cancelled) or started do not count.
    let gone = [
        Contender {
            finished: true,
            ..queued("a", 1)
        },
        Contender {
            started: true,
            ..queued("b", 1)
        },
    ];
    assert_eq!(
        lock(&me(5), "k", LockPolicy::Queue, None, &gone),
        Lock::Create
    );
    assert!(matches!(
        lock(&me(5), "k", LockPolicy::Skip, None, &runs),
        Lock::Skip { .. }
    ));
}

#[test]
fn the_same_input_gives_the_same_decision() {
    let runs = [run("a", 1), run("b", 2)];
    let lease = held_by("a");
    let first = lock(&me(5), "k", LockPolicy::Queue, Some(&lease), &runs);
    assert_eq!(
        first,
        lock(&me(5), "k", LockPolicy::Queue, Some(&lease), &runs)
    );
}
