use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use super::*;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn measured(secs: i64, phase: Phase, value: &str) -> Measurement {
    Measurement {
        time: at(secs),
        value: (phase != Phase::Error).then(|| value.to_owned()),
        phase,
        message: (phase == Phase::Error).then(|| value.to_owned()),
    }
}

fn limits(count: u32) -> Limits {
    Limits {
        count,
        failure_limit: 0,
        inconclusive_limit: 0,
        consecutive_error_limit: 4,
        interval: Duration::from_secs(10),
    }
}

fn tally(phases: &[Phase]) -> Tally {
    let mut tally = Tally::default();
    for (i, phase) in phases.iter().enumerate() {
        tally.add(measured(i as i64 * 10, *phase, "0.01"));
    }
    tally
}

#[test]
fn first_measurement_is_due_at_once() {
    assert_eq!(
        query_next(&Tally::default(), &limits(3), at(0)),
        Next::Measure
    );
}

#[test]
fn next_measurement_is_due_an_interval_after_the_last() {
    let t = tally(&[Phase::Successful]);
    assert_eq!(query_next(&t, &limits(3), at(5)), Next::WaitUntil(at(10)));
    assert_eq!(query_next(&t, &limits(3), at(10)), Next::Measure);
}

#[test]
fn succeeds_after_count_measurements() {
    let t = tally(&[Phase::Successful; 3]);
    let Next::Succeed(message) = query_next(&t, &limits(3), at(100)) else {
        panic!("expected success");
    };
    assert!(
        message.contains("3 measurements (3 successful"),
        "{message}"
    );
    assert!(message.contains("last value 0.01"), "{message}");
}

#[test]
fn fails_when_failed_exceeds_the_failure_limit() {
    let mut l = limits(5);
    l.failure_limit = 1;
    let one = tally(&[Phase::Successful, Phase::Failed]);
    assert_eq!(query_next(&one, &l, at(100)), Next::Measure);
    let two = tally(&[Phase::Failed, Phase::Successful, Phase::Failed]);
    let Next::Fail { reason, message } = query_next(&two, &l, at(100)) else {
        panic!("expected failure");
    };
    assert_eq!(reason, "MetricFailed");
    assert!(message.contains("2 failed measurements, more than failureLimit 1"));
}

#[test]
fn default_failure_limit_fails_on_the_first_failure() {
    let t = tally(&[Phase::Failed]);
    assert!(matches!(
        query_next(&t, &limits(3), at(100)),
        Next::Fail {
            reason: "MetricFailed",
            ..
        }
    ));
}

#[test]
fn inconclusive_over_its_limit_fails_inconclusive() {
    let t = tally(&[Phase::Inconclusive]);
    assert!(matches!(
        query_next(&t, &limits(3), at(100)),
        Next::Fail {
            reason: "MetricInconclusive",
            ..
        }
    ));
}

#[test]
fn errors_in_a_row_over_the_limit_fail_with_metric_error() {
    let four = tally(&[Phase::Error; 4]);
    assert_eq!(query_next(&four, &limits(1), at(100)), Next::Measure);
    let five = tally(&[Phase::Error; 5]);
    let Next::Fail { reason, message } = query_next(&five, &limits(1), at(100)) else {
        panic!("expected failure");
    };
    assert_eq!(reason, "MetricError");
    assert!(message.contains("last error: 0.01"), "{message}");
}

#[test]
fn a_judged_measurement_resets_consecutive_errors_and_errors_do_not_count() {
    let t = tally(&[Phase::Error, Phase::Error, Phase::Successful, Phase::Error]);
    assert_eq!(t.consecutive_errors, 1);
    assert_eq!(t.errors, 3);
    assert_eq!(t.judged(), 1);
    assert_eq!(query_next(&t, &limits(2), at(100)), Next::Measure);
}

#[test]
fn the_journal_round_trips_and_keeps_the_newest_ten() {
    let t = tally(&[Phase::Successful; 12]);
    assert_eq!(t.measurements.len(), KEPT);
    assert_eq!(t.measurements[0].time, at(20));
    let mut outputs = BTreeMap::new();
    t.write(&mut outputs, 1);
    assert_eq!(outputs["successful"], "12");
    assert_eq!(outputs["result"], "0.01");
    assert_eq!(Tally::read(&outputs, 1), t);
}

#[test]
fn a_retry_measures_afresh() {
    let mut outputs = BTreeMap::new();
    tally(&[Phase::Failed]).write(&mut outputs, 1);
    assert_eq!(Tally::read(&outputs, 2), Tally::default());
}

#[test]
fn garbled_outputs_read_as_nothing_measured() {
    let mut outputs = BTreeMap::new();
    outputs.insert("measuredAttempt".to_owned(), "1".to_owned());
    outputs.insert("failed".to_owned(), "many".to_owned());
    outputs.insert("measurements".to_owned(), "{not json".to_owned());
    assert_eq!(Tally::read(&outputs, 1), Tally::default());
}

#[test]
fn judging_follows_argo_rollouts() {
    assert_eq!(judge(Some(true), None), Phase::Successful);
    assert_eq!(judge(Some(false), None), Phase::Failed);
    assert_eq!(judge(None, Some(true)), Phase::Failed);
    assert_eq!(judge(None, Some(false)), Phase::Successful);
    assert_eq!(judge(Some(true), Some(true)), Phase::Failed);
    assert_eq!(judge(Some(false), Some(false)), Phase::Inconclusive);
    assert_eq!(judge(Some(true), Some(false)), Phase::Successful);
}

const WAIT: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(60));

#[test]
fn wait_polls_until_the_condition_holds() {
    assert_eq!(
        wait_next(&Tally::default(), WAIT, at(0), at(0)),
        Next::Measure
    );
    let not_yet = tally(&[Phase::Failed, Phase::Error]);
    assert_eq!(
        wait_next(&not_yet, WAIT, at(0), at(12)),
        Next::WaitUntil(at(20))
    );
    assert_eq!(wait_next(&not_yet, WAIT, at(0), at(20)), Next::Measure);
    let done = tally(&[Phase::Failed, Phase::Successful]);
    assert!(matches!(
        wait_next(&done, WAIT, at(0), at(500)),
        Next::Succeed(_)
    ));
}

#[test]
fn wait_times_out_with_the_last_value() {
    let mut t = Tally::default();
    t.add(measured(50, Phase::Failed, "1500"));
    assert_eq!(wait_next(&t, WAIT, at(0), at(55)), Next::WaitUntil(at(60)));
    let Next::Fail { reason, message } = wait_next(&t, WAIT, at(0), at(60)) else {
        panic!("expected a timeout");
    };
    assert_eq!(reason, "TimedOut");
    assert!(message.contains("last value 1500"), "{message}");
}

#[test]
fn intervals_are_at_least_a_second_and_bad_ones_name_the_field() {
    let short = crate::duration::Duration("10ms".into());
    assert_eq!(interval(Some(&short), "query.interval"), Ok(MIN_INTERVAL));
    assert_eq!(interval(None, "query.interval"), Ok(DEFAULT_INTERVAL));
    let bad = crate::duration::Duration("soon".into());
    assert!(
        interval(Some(&bad), "query.interval")
            .unwrap_err()
            .contains("query.interval")
    );
}
