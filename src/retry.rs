//! When a failed reconcile is tried again, and what a reconcile that panics does to its
//! controller (nothing: it fails that object only).
//!
//! Every controller's error policy ([`crate::runtime::run`]) asks [`delay`]: a transient
//! failure waits 5 s, doubling per failure in a row of the same object up to 5 minutes; a
//! permanent one (the API server refused the request as such, or the kind says nothing can
//! change without an edit) waits the 5 minutes at once. A change to the object reconciles it
//! at once anyway; the wait is only the fallback when nothing changes. Each wait is spread by
//! up to ±20% so that objects which failed together are not retried together; the spread is a
//! hash of the object and the attempt, so it is the same on every run and tests can check it.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;

/// The wait after an object's first transient failure.
pub const FIRST_WAIT: Duration = Duration::from_secs(5);
/// The longest wait: where the doubling stops, and where a permanent failure starts.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// How far a wait is spread either way, in percent of it.
pub const JITTER_PERCENT: u64 = 20;

/// Whether a failed reconcile can succeed on a retry while nothing changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// It may: a conflict, throttling, a timeout, a server error, a missing permission that
    /// someone may grant. Retried with a doubling wait.
    Transient,
    /// It cannot until the object (or what it names) changes, which wakes it anyway: retried
    /// only after the longest wait.
    Permanent,
}

/// The class of `err` by the API server's answer anywhere in its chain: a 4xx other than
/// 401 (a token being refreshed), 403 (a permission someone may grant, reported as
/// `Forbidden` on the object), 408, 409 (a conflict) and 429 (throttled) is permanent;
/// anything else (5xx, no answer) is transient.
pub fn api_class(err: &(dyn std::error::Error + 'static)) -> Class {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if let Some(kube::Error::Api(status)) = err.downcast_ref::<kube::Error>() {
            return match status.code {
                401 | 403 | 408 | 409 | 429 => Class::Transient,
                400..=499 => Class::Permanent,
                _ => Class::Transient,
            };
        }
        cause = err.source();
    }
    Class::Transient
}

/// The wait before retrying the object `key` after its `failures`-th failure in a row
/// (0: the first), jittered by a hash of the key and the count.
pub fn delay(key: &str, failures: u32, class: Class) -> Duration {
    let nominal = match class {
        Class::Permanent => MAX_WAIT,
        // 5 s << 6 is past the cap already: a larger shift would only overflow.
        Class::Transient => (FIRST_WAIT * (1u32 << failures.min(6))).min(MAX_WAIT),
    };
    let spread = 2 * JITTER_PERCENT * 10 + 1;
    let hash = crate::names::fnv32(&format!("{key}#{failures}"));
    // -200..=+200 per mille for a 20% spread.
    let offset = i64::from(hash % spread as u32) - (JITTER_PERCENT * 10) as i64;
    let millis = nominal.as_millis() as i64;
    Duration::from_millis((millis + millis * offset / 1000).max(0) as u64)
}

/// Failures in a row per object, for [`delay`]; an object's count goes when it reconciles.
#[derive(Clone, Default)]
pub struct Failures(Arc<Mutex<HashMap<String, u32>>>);

impl Failures {
    /// Counts a failure of `key`; returns how many came before it in a row (0 the first time).
    pub fn count(&self, key: &str) -> u32 {
        let Ok(mut map) = self.0.lock() else {
            return 0;
        };
        let count = map.entry(key.to_owned()).or_insert(0);
        let before = *count;
        *count = count.saturating_add(1);
        before
    }

    /// Forgets `key`'s failures: it reconciled.
    pub fn clear(&self, key: &str) {
        if let Ok(mut map) = self.0.lock()
            && !map.is_empty()
        {
            map.remove(key);
        }
    }
}

/// A reconcile that panicked, with what the panic said.
#[derive(Debug, thiserror::Error)]
#[error("the reconcile panicked: {0}")]
pub struct Panicked(pub String);

/// Longest part of a panic's message that is kept (logged): enough for the place and the
/// reason, never a whole object.
const MAX_PANIC_MESSAGE: usize = 300;

/// Runs `fut`, turning a panic inside it into [`Panicked`] instead of unwinding into the
/// controller: one object's bug must not end the reconciles of every other object.
pub async fn catch_panic<T>(fut: impl Future<Output = T>) -> Result<T, Panicked> {
    // The reconcile shares nothing with the caller that a half-done reconcile could leave
    // inconsistent: its state is the object and the API server, read again on the retry.
    AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|payload| Panicked(panic_message(payload.as_ref())))
}

/// What a panic said, when it said it with a string, cut to [`MAX_PANIC_MESSAGE`].
fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    match text.char_indices().nth(MAX_PANIC_MESSAGE) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within_jitter(wait: Duration, nominal: Duration) -> bool {
        let low = nominal.as_millis() * (100 - u128::from(JITTER_PERCENT)) / 100;
        let high = nominal.as_millis() * (100 + u128::from(JITTER_PERCENT)) / 100;
        (low..=high).contains(&wait.as_millis())
    }

    #[test]
    fn transient_failures_double_from_five_seconds_to_the_cap() {
        let nominal = [5, 10, 20, 40, 80, 160, 300, 300, 300];
        for (failures, secs) in nominal.into_iter().enumerate() {
            for key in ["Runbook/shop/a", "RunbookRun/shop/b", "x"] {
                let wait = delay(key, failures as u32, Class::Transient);
                assert!(
                    within_jitter(wait, Duration::from_secs(secs)),
                    "{key} after {failures}: {wait:?} vs {secs}s"
                );
            }
        }
        // Far past the cap nothing overflows.
        let wait = delay("x", u32::MAX, Class::Transient);
        assert!(within_jitter(wait, MAX_WAIT), "{wait:?}");
    }

    #[test]
    fn a_permanent_failure_waits_the_longest_at_once() {
        for failures in [0, 1, 9] {
            let wait = delay("RunbookRun/shop/b", failures, Class::Permanent);
            assert!(within_jitter(wait, MAX_WAIT), "{wait:?}");
        }
    }

    #[test]
    fn jitter_is_stable_per_object_and_spread_across_objects() {
        let a = delay("RunbookRun/shop/a", 2, Class::Transient);
        assert_eq!(a, delay("RunbookRun/shop/a", 2, Class::Transient));
        let waits: std::collections::BTreeSet<Duration> = (0..50)
            .map(|i| delay(&format!("RunbookRun/shop/r{i}"), 2, Class::Transient))
            .collect();
        assert!(waits.len() > 25, "spread: {waits:?}");
    }

    #[test]
    fn failures_count_in_a_row_and_reset_on_success() {
        let failures = Failures::default();
        assert_eq!(failures.count("a"), 0);
        assert_eq!(failures.count("a"), 1);
        assert_eq!(failures.count("b"), 0);
        failures.clear("a");
        assert_eq!(failures.count("a"), 0);
    }

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure("refused", "Reason").with_code(code),
        ))
    }

    #[test]
    fn client_errors_are_permanent_except_those_a_retry_can_pass() {
        for code in [400, 404, 405, 413, 422] {
            assert_eq!(api_class(&api(code)), Class::Permanent, "{code}");
        }
        for code in [401, 403, 408, 409, 429, 500, 503] {
            assert_eq!(api_class(&api(code)), Class::Transient, "{code}");
        }
        // Found through a kind's error chain.
        let read = crate::errors::ReadError {
            what: "Service shop/web".into(),
            source: api(422),
        };
        assert_eq!(api_class(&read), Class::Permanent);
        assert_eq!(api_class(&Panicked("x".into())), Class::Transient);
    }

    #[tokio::test]
    async fn a_panicking_reconcile_becomes_an_error_and_the_next_one_runs() {
        let reconcile = |n: u32| async move {
            if n == 1 {
                panic!("overflow adding {n}h to a timestamp");
            }
            n * 2
        };
        let failed = catch_panic(reconcile(1)).await.unwrap_err();
        assert_eq!(failed.0, "overflow adding 1h to a timestamp");
        assert_eq!(catch_panic(reconcile(2)).await.unwrap(), 4);
        let long = catch_panic(async { panic!("{}", "x".repeat(5000)) })
            .await
            .unwrap_err();
        assert!(long.0.len() < 400, "{}", long.0.len());
        let quiet = catch_panic(async { std::panic::panic_any(7u8) })
            .await
            .unwrap_err();
        assert_eq!(quiet.0, "a panic without a message");
    }
}
