//! Time arithmetic that cannot panic, and the one way the operator reads "now" for status.
//!
//! Durations come from users (`timeout: 100000000h` passes the schema), so every sum of a
//! timestamp and a duration saturates at the ends of jiff's range instead of overflowing.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// A std duration as a signed one, saturating at [`SignedDuration::MAX`].
pub fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// `at + by`, saturating at [`Timestamp::MIN`] / [`Timestamp::MAX`].
pub fn add(at: Timestamp, by: SignedDuration) -> Timestamp {
    at.checked_add(by).unwrap_or(if by.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// `at + by` for a std duration, saturating.
pub fn add_std(at: Timestamp, by: Duration) -> Timestamp {
    add(at, signed(by))
}

/// `at - by`, saturating.
pub fn sub(at: Timestamp, by: SignedDuration) -> Timestamp {
    // Negating SignedDuration::MIN would overflow; MIN is more than any Timestamp span anyway.
    add(at, by.checked_neg().unwrap_or(SignedDuration::MAX))
}

/// Time from `now` until `end`, zero if `end` is past.
pub fn until(now: Timestamp, end: Timestamp) -> Duration {
    Duration::try_from(end.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// `at` truncated to whole seconds, as the API server stores `metav1.Time`, so a value the
/// operator writes compares equal to the value it reads back.
pub fn whole_seconds(at: Timestamp) -> Timestamp {
    Timestamp::from_second(at.as_second()).unwrap_or(at)
}

/// `at` truncated to whole microseconds, as the API server stores `metav1.MicroTime`.
pub fn whole_micros(at: Timestamp) -> Timestamp {
    Timestamp::from_microsecond(at.as_microsecond()).unwrap_or(at)
}

/// `at` as a `metav1.Time`, in whole seconds.
pub fn to_time(at: Timestamp) -> Time {
    Time(whole_seconds(at))
}

/// The current time as a `metav1.Time`, in whole seconds.
pub fn now() -> Time {
    to_time(Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_saturate_instead_of_panicking() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let huge = Duration::from_secs(100_000_000 * 3600);
        assert_eq!(add_std(now, huge), Timestamp::MAX);
        assert_eq!(add(now, SignedDuration::MAX), Timestamp::MAX);
        assert_eq!(sub(now, SignedDuration::MAX), Timestamp::MIN);
        assert_eq!(sub(now, SignedDuration::MIN), Timestamp::MAX);
        assert_eq!(
            add(Timestamp::MAX, SignedDuration::from_secs(1)),
            Timestamp::MAX
        );
        assert_eq!(signed(Duration::MAX), SignedDuration::MAX);
    }

    #[test]
    fn until_is_zero_for_the_past() {
        let now = Timestamp::from_second(100).unwrap();
        assert_eq!(
            until(now, Timestamp::from_second(90).unwrap()),
            Duration::ZERO
        );
        assert_eq!(
            until(now, Timestamp::from_second(103).unwrap()),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn whole_seconds_truncates() {
        let at: Timestamp = "2026-03-01T10:00:00.999Z".parse().unwrap();
        assert_eq!(
            whole_seconds(at),
            "2026-03-01T10:00:00Z".parse::<Timestamp>().unwrap()
        );
    }
}
