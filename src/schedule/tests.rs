use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn sched(expression: &str, zone: &str) -> Schedule {
    Schedule::parse(expression, Some(zone)).unwrap()
}

fn all(list: &[&str]) -> Vec<Timestamp> {
    list.iter().map(|s| ts(s)).collect()
}

fn minus_1ns(t: Timestamp) -> Timestamp {
    t.checked_sub(SignedDuration::from_nanos(1)).unwrap()
}

#[test]
fn first_sunday_in_sydney() {
    let s = Schedule::parse("0 2 * * SUN#1", Some("Australia/Sydney")).unwrap();
    // 2026-12-06 is the first Sunday of December; Sydney is UTC+11 (daylight time) then.
    assert_eq!(
        s.next_after(ts("2026-11-25T00:00:00Z")),
        Some(ts("2026-12-05T15:00:00Z"))
    );
}

#[test]
fn last_day_of_month() {
    let s = Schedule::parse("30 23 L * *", None).unwrap();
    assert_eq!(
        s.next_after(ts("2027-02-01T00:00:00Z")),
        Some(ts("2027-02-28T23:30:00Z"))
    );
}

#[test]
fn refuses_wrong_field_counts() {
    for bad in ["* * * *", "0 0 2 * * SUN", "0 2 * * * 2027"] {
        let err = parse_cron(bad).unwrap_err();
        assert!(err.is_cron(), "{bad}");
        assert!(err.to_string().contains("not 5"), "{err}");
    }
}

#[test]
fn refuses_nonsense_with_a_hint() {
    let err = parse_cron("61 * * * *").unwrap_err().to_string();
    assert!(
        err.contains("\"61 * * * *\"") && err.contains("SUN#1"),
        "{err}"
    );
}

#[test]
fn unknown_time_zone_is_named() {
    let err = parse_time_zone("Mars/Olympus_Mons").unwrap_err();
    assert!(!err.is_cron());
    assert!(err.to_string().contains("Mars/Olympus_Mons"));
}

#[test]
fn empty_time_zone_is_utc() {
    assert_eq!(parse_time_zone("").unwrap(), TimeZone::UTC);
}

#[test]
fn kinds() {
    for (expression, kind) in [
        ("30 2 * * *", ScheduleKind::WallClock),
        ("0,30 1 * * *", ScheduleKind::WallClock),
        ("0 */6 * * *", ScheduleKind::WallClock),
        ("*/15 1 * * *", ScheduleKind::WallClock),
        ("0 2 * * SUN#1", ScheduleKind::WallClock),
        ("*/15 * * * *", ScheduleKind::Interval),
        ("5 * * * *", ScheduleKind::Interval),
        ("0 0-23 * * *", ScheduleKind::Interval),
        ("@hourly", ScheduleKind::Interval),
    ] {
        assert_eq!(sched(expression, "UTC").kind(), kind, "{expression}");
    }
}

// --- spring forward: a skipped wall-clock time runs at the instant of the jump ---------------

#[test]
fn spring_forward_new_york() {
    // 2027-03-14: 02:00 EST (UTC-5) becomes 03:00 EDT (UTC-4) at 07:00 UTC.
    let s = sched("30 2 * * *", "America/New_York");
    assert_eq!(
        s.upcoming(ts("2027-03-13T00:00:00Z"), 3),
        all(&[
            "2027-03-13T07:30:00Z", // 02:30 EST
            "2027-03-14T07:00:00Z", // 02:30 does not exist: 03:00 EDT
            "2027-03-15T06:30:00Z", // 02:30 EDT
        ])
    );
}

#[test]
fn spring_forward_berlin() {
    // 2027-03-28: 02:00 CET (UTC+1) becomes 03:00 CEST (UTC+2) at 01:00 UTC.
    let s = sched("30 2 * * *", "Europe/Berlin");
    assert_eq!(
        s.upcoming(ts("2027-03-27T00:00:00Z"), 3),
        all(&[
            "2027-03-27T01:30:00Z",
            "2027-03-28T01:00:00Z",
            "2027-03-29T00:30:00Z",
        ])
    );
}

#[test]
fn spring_forward_sydney() {
    // 2026-10-04: 02:00 AEST (UTC+10) becomes 03:00 AEDT (UTC+11) at 16:00 UTC on the 3rd.
    let s = sched("30 2 * * *", "Australia/Sydney");
    assert_eq!(
        s.upcoming(ts("2026-10-02T00:00:00Z"), 3),
        all(&[
            "2026-10-02T16:30:00Z",
            "2026-10-03T16:00:00Z",
            "2026-10-04T15:30:00Z",
        ])
    );
}

#[test]
fn spring_forward_several_skipped_times_run_once_at_the_jump() {
    // 02:00, 02:20 and 02:40 are all skipped; they run once, at 03:00 EDT, together with
    // nothing else, and 02:00 the next day is back to normal.
    let s = sched("*/20 2 * * *", "America/New_York");
    assert_eq!(
        s.upcoming(ts("2027-03-14T00:00:00Z"), 2),
        all(&["2027-03-14T07:00:00Z", "2027-03-15T06:00:00Z"])
    );
    // A time after the gap on the same day still runs (croner alone skips 02:30 here).
    let s = sched("30 2,14 * * *", "America/New_York");
    assert_eq!(
        s.upcoming(ts("2027-03-14T00:00:00Z"), 2),
        all(&["2027-03-14T07:00:00Z", "2027-03-14T18:30:00Z"])
    );
    // A scheduled time right at the end of the gap coincides with the jump: one run.
    let s = sched("0,30 2,3 * * *", "America/New_York");
    assert_eq!(
        s.upcoming(ts("2027-03-14T06:00:00Z"), 2),
        all(&["2027-03-14T07:00:00Z", "2027-03-14T07:30:00Z"])
    );
}

#[test]
fn half_hour_and_midnight_transitions() {
    // Lord Howe Island moves its clocks by 30 minutes: 02:00 becomes 02:30 (UTC+10:30 to
    // +11) on 2026-10-04 and 02:00 becomes 01:30 again on 2027-04-04.
    let s = sched("15 2 * * *", "Australia/Lord_Howe");
    assert_eq!(
        s.upcoming(ts("2026-10-03T00:00:00Z"), 2),
        all(&["2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"])
    );
    let s = sched("45 1 * * *", "Australia/Lord_Howe");
    assert_eq!(
        s.upcoming(ts("2027-04-03T00:00:00Z"), 2),
        all(&["2027-04-03T14:45:00Z", "2027-04-04T15:15:00Z"])
    );
    // Chile springs forward at midnight (00:00 -04 becomes 01:00 -03 on 2026-09-06): a
    // midnight job runs at the jump, still on the Sunday.
    let s = sched("0 0 * * SUN", "America/Santiago");
    assert_eq!(
        s.next_after(ts("2026-09-01T00:00:00Z")),
        Some(ts("2026-09-06T04:00:00Z"))
    );
}

// --- fall back: a repeated wall-clock time runs once, at its first occurrence ----------------

#[test]
fn fall_back_new_york_runs_once() {
    // 2026-11-01: 02:00 EDT (UTC-4) becomes 01:00 EST (UTC-5) at 06:00 UTC; 01:30 happens at
    // 05:30 and 06:30 UTC.
    let s = sched("30 1 * * *", "America/New_York");
    assert_eq!(
        s.upcoming(ts("2026-10-31T00:00:00Z"), 3),
        all(&[
            "2026-10-31T05:30:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-02T06:30:00Z",
        ])
    );
    // Asking from between the two occurrences (or during the second) finds the next day.
    for from in ["2026-11-01T05:45:00Z", "2026-11-01T06:30:00Z"] {
        assert_eq!(s.next_after(ts(from)), Some(ts("2026-11-02T06:30:00Z")));
    }
}

#[test]
fn fall_back_several_times_in_the_repeated_hour() {
    // croner alone runs these twice each.
    let s = sched("0,30 1 * * *", "America/New_York");
    assert_eq!(
        s.upcoming(ts("2026-11-01T00:00:00Z"), 3),
        all(&[
            "2026-11-01T05:00:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-02T06:00:00Z",
        ])
    );
    let s = sched("30 1,13 * * *", "America/New_York");
    assert_eq!(
        s.upcoming(ts("2026-11-01T00:00:00Z"), 3),
        all(&[
            "2026-11-01T05:30:00Z",
            "2026-11-01T18:30:00Z",
            "2026-11-02T06:30:00Z",
        ])
    );
    // A sub-hourly wall-clock schedule pauses during the repeated hour.
    let s = sched("*/15 1 * * *", "America/New_York");
    assert_eq!(
        s.upcoming(ts("2026-11-01T00:00:00Z"), 5),
        all(&[
            "2026-11-01T05:00:00Z",
            "2026-11-01T05:15:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-01T05:45:00Z",
            "2026-11-02T06:00:00Z",
        ])
    );
}

#[test]
fn fall_back_berlin_runs_once() {
    // 2026-10-25: 03:00 CEST (UTC+2) becomes 02:00 CET (UTC+1) at 01:00 UTC; 02:30 happens at
    // 00:30 and 01:30 UTC.
    let s = sched("30 2 * * *", "Europe/Berlin");
    assert_eq!(
        s.upcoming(ts("2026-10-24T00:00:00Z"), 3),
        all(&[
            "2026-10-24T00:30:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-26T01:30:00Z",
        ])
    );
}

// --- interval schedules keep their real-time rhythm --------------------------------------

#[test]
fn every_15_minutes_across_fall_back() {
    let s = sched("*/15 * * * *", "America/New_York");
    let runs = s.upcoming(ts("2026-11-01T04:30:00Z"), 12);
    // 00:45 EDT, 01:00..01:45 EDT, 01:00..01:45 EST, 02:00 EST, ... every 15 real minutes.
    let expected: Vec<Timestamp> = (1..=12)
        .map(|i| ts("2026-11-01T04:30:00Z") + SignedDuration::from_mins(15 * i))
        .collect();
    assert_eq!(runs, expected);
}

#[test]
fn every_15_minutes_across_spring_forward() {
    let s = sched("*/15 * * * *", "America/New_York");
    // 01:30 EST, 01:45 EST, 03:00 EDT, 03:15 EDT: still 15 real minutes apart.
    assert_eq!(
        s.upcoming(ts("2027-03-14T06:15:00Z"), 4),
        all(&[
            "2027-03-14T06:30:00Z",
            "2027-03-14T06:45:00Z",
            "2027-03-14T07:00:00Z",
            "2027-03-14T07:15:00Z",
        ])
    );
}

#[test]
fn hourly_across_both_transitions() {
    let s = sched("0 * * * *", "America/New_York");
    // 00:00 EDT, 01:00 EDT, 01:00 EST, 02:00 EST.
    assert_eq!(
        s.upcoming(ts("2026-11-01T03:30:00Z"), 4),
        all(&[
            "2026-11-01T04:00:00Z",
            "2026-11-01T05:00:00Z",
            "2026-11-01T06:00:00Z",
            "2026-11-01T07:00:00Z",
        ])
    );
    // 01:00 EST, 03:00 EDT (02:00 does not exist), 04:00 EDT.
    assert_eq!(
        s.upcoming(ts("2027-03-14T05:30:00Z"), 3),
        all(&[
            "2027-03-14T06:00:00Z",
            "2027-03-14T07:00:00Z",
            "2027-03-14T08:00:00Z",
        ])
    );
}

// --- calendar features -------------------------------------------------------------------

#[test]
fn first_sunday_in_sydney_for_a_year() {
    // 02:00 local on the first Sunday of each month, June 2026 to May 2027. Both DST
    // transitions fall on a first Sunday: 2026-10-04 (02:00 skipped: runs at the jump,
    // 03:00 AEDT) and 2027-04-04 (02:00 twice: runs once, at 02:00 AEDT).
    let s = sched("0 2 * * SUN#1", "Australia/Sydney");
    assert_eq!(
        s.upcoming(ts("2026-06-01T00:00:00Z"), 12),
        all(&[
            "2026-06-06T16:00:00Z",
            "2026-07-04T16:00:00Z",
            "2026-08-01T16:00:00Z",
            "2026-09-05T16:00:00Z",
            "2026-10-03T16:00:00Z",
            "2026-10-31T15:00:00Z",
            "2026-12-05T15:00:00Z",
            "2027-01-02T15:00:00Z",
            "2027-02-06T15:00:00Z",
            "2027-03-06T15:00:00Z",
            "2027-04-03T15:00:00Z",
            "2027-05-01T16:00:00Z",
        ])
    );
}

#[test]
fn nth_weekday() {
    // Third Friday: 2026-05-01 is a Friday, so the 15th; June's is the 19th.
    let s = sched("0 10 * * FRI#3", "Europe/Berlin");
    assert_eq!(
        s.upcoming(ts("2026-05-01T00:00:00Z"), 2),
        all(&["2026-05-15T08:00:00Z", "2026-06-19T08:00:00Z"])
    );
    // Second Sunday of March 2027 is New York's spring-forward day.
    let s = sched("0 2 * * SUN#2", "America/New_York");
    assert_eq!(
        s.next_after(ts("2027-03-01T00:00:00Z")),
        Some(ts("2027-03-14T07:00:00Z"))
    );
    // First Sunday of November 2026 is New York's fall-back day: 01:00 runs once.
    let s = sched("0 1 * * SUN#1", "America/New_York");
    assert_eq!(
        s.upcoming(ts("2026-10-15T00:00:00Z"), 2),
        all(&["2026-11-01T05:00:00Z", "2026-12-06T06:00:00Z"])
    );
}

#[test]
fn last_day_of_month_in_leap_and_common_years() {
    let s = sched("0 12 L * *", "UTC");
    assert_eq!(
        s.upcoming(ts("2027-01-31T12:00:00Z"), 3),
        all(&[
            "2027-02-28T12:00:00Z",
            "2027-03-31T12:00:00Z",
            "2027-04-30T12:00:00Z",
        ])
    );
    let s = sched("0 0 L 2 *", "Europe/Berlin");
    assert_eq!(
        s.upcoming(ts("2026-06-01T00:00:00Z"), 2),
        all(&["2027-02-27T23:00:00Z", "2028-02-28T23:00:00Z"])
    );
}

#[test]
fn never_matching_expression_has_no_occurrences() {
    let s = sched("0 0 30 2 *", "Europe/Berlin");
    assert_eq!(s.next_after(ts("2026-01-01T00:00:00Z")), None);
    assert_eq!(s.latest_due(None, ts("2026-01-01T00:00:00Z")), None);
    assert!(s.upcoming(ts("2026-01-01T00:00:00Z"), 3).is_empty());
}

#[test]
fn upcoming_is_strictly_after_and_sub_second_safe() {
    let s = sched("* * * * *", "UTC");
    assert_eq!(
        s.upcoming(ts("2026-01-01T00:00:00Z"), 2),
        all(&["2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"])
    );
    assert_eq!(
        s.next_after(ts("2026-01-01T00:00:00.5Z")),
        Some(ts("2026-01-01T00:01:00Z"))
    );
    assert_eq!(
        s.latest_due(None, ts("2026-01-01T00:00:59.999Z")),
        Some(ts("2026-01-01T00:00:00Z"))
    );
    assert!(s.upcoming(ts("2026-01-01T00:00:00Z"), 0).is_empty());
}

// --- latest_due and missed_count ---------------------------------------------------------

#[test]
fn latest_due_agrees_with_next_after_across_transitions() {
    // For every pair of consecutive occurrences (a, b): the latest due time just before b is
    // a, at b it is b, and nothing is due in (a, b) once a has run.
    let cases = [
        ("30 2 * * *", "America/New_York", "2027-03-12T00:00:00Z"),
        ("30 1 * * *", "America/New_York", "2026-10-30T00:00:00Z"),
        ("0,30 1 * * *", "America/New_York", "2026-10-30T00:00:00Z"),
        ("*/20 2 * * *", "America/New_York", "2027-03-13T00:00:00Z"),
        ("30 2 * * *", "Europe/Berlin", "2026-10-23T00:00:00Z"),
        ("30 2 * * *", "Europe/Berlin", "2027-03-26T00:00:00Z"),
        ("0 2 * * SUN#1", "Australia/Sydney", "2026-06-01T00:00:00Z"),
        ("*/15 * * * *", "America/New_York", "2026-11-01T03:00:00Z"),
        ("*/15 * * * *", "Australia/Sydney", "2027-04-03T14:00:00Z"),
        ("0 * * * *", "Europe/Berlin", "2027-03-27T22:00:00Z"),
        ("*/15 1 * * *", "America/New_York", "2026-10-31T00:00:00Z"),
        ("0 12 L * *", "Europe/Berlin", "2026-01-01T00:00:00Z"),
    ];
    for (expression, zone, from) in cases {
        let s = sched(expression, zone);
        let runs = s.upcoming(ts(from), 40);
        assert_eq!(runs.len(), 40, "{expression} {zone}");
        for pair in runs.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let ctx = format!("{expression} in {zone}: {a} .. {b}");
            assert!(a < b, "{ctx}");
            assert_eq!(s.latest_due(None, minus_1ns(b)), Some(a), "{ctx}");
            assert_eq!(s.latest_due(None, b), Some(b), "{ctx}");
            assert_eq!(s.latest_due(Some(a), minus_1ns(b)), None, "{ctx}");
            assert_eq!(s.latest_due(Some(minus_1ns(a)), b), Some(b), "{ctx}");
            assert_eq!(s.next_after(minus_1ns(b)), Some(b), "{ctx}");
        }
        let (first, last) = (runs[0], runs[39]);
        assert_eq!(s.missed_count(Some(minus_1ns(first)), last, 100), 40);
        assert_eq!(s.missed_count(Some(first), last, 100), 39);
        assert_eq!(s.missed_count(Some(first), last, 5), 5);
    }
}

#[test]
fn latest_due_on_fall_back_day_does_not_run_twice() {
    let s = sched("30 1 * * *", "America/New_York");
    // During the second 01:xx hour (01:45 EST) the due time is still the first 01:30.
    let now = ts("2026-11-01T06:45:00Z");
    assert_eq!(
        s.latest_due(Some(ts("2026-10-31T05:30:00Z")), now),
        Some(ts("2026-11-01T05:30:00Z"))
    );
    assert_eq!(s.latest_due(Some(ts("2026-11-01T05:30:00Z")), now), None);
    assert_eq!(s.missed_count(Some(ts("2026-10-31T05:30:00Z")), now, 10), 1);
}

#[test]
fn latest_due_on_spring_forward_day() {
    let s = sched("30 2 * * *", "America/New_York");
    assert_eq!(
        s.latest_due(None, ts("2027-03-14T07:00:00Z")),
        Some(ts("2027-03-14T07:00:00Z"))
    );
    assert_eq!(
        s.latest_due(None, ts("2027-03-14T06:59:59Z")),
        Some(ts("2027-03-13T07:30:00Z"))
    );
}

#[test]
fn latest_due_after_long_downtime_returns_only_the_latest() {
    // A minutely schedule, last run half a year ago: one answer, found without walking
    // every minute in between.
    let s = sched("* * * * *", "Europe/Berlin");
    let since = Some(ts("2026-01-01T00:00:00Z"));
    let now = ts("2026-06-15T12:34:56Z");
    assert_eq!(s.latest_due(since, now), Some(ts("2026-06-15T12:34:00Z")));
    assert_eq!(s.missed_count(since, now, 1_000), 1_000);

    let s = sched("30 2 * * *", "Europe/Berlin");
    let since = Some(ts("2026-02-15T01:30:00Z")); // 02:30 CET on 2026-02-15
    let now = ts("2026-04-01T12:00:00Z");
    assert_eq!(s.latest_due(since, now), Some(ts("2026-04-01T00:30:00Z")));
    // 16.02 .. 01.04 (45 days; 2026-03-29 is spring-forward day and still runs once).
    assert_eq!(s.missed_count(since, now, 1_000), 45);
    assert_eq!(s.latest_due(Some(now), now), None);
    assert_eq!(s.latest_due(Some(ts("2026-04-02T00:00:00Z")), now), None);
}

// --- due_decision ------------------------------------------------------------------------

fn daily() -> Schedule {
    sched("0 3 * * *", "Europe/Berlin") // 03:00 CEST = 01:00 UTC in summer
}

#[test]
fn due_runs_the_latest_time_once() {
    let s = daily();
    let created = ts("2026-06-01T00:00:00Z");
    let now = ts("2026-06-10T01:00:30Z");
    let due = due_decision(
        &s,
        Some(ts("2026-06-05T01:00:00Z")),
        created,
        now,
        None,
        false,
    );
    assert_eq!(
        due,
        Due {
            run: Some(ts("2026-06-10T01:00:00Z")),
            skipped_past_deadline: None,
            next: Some(ts("2026-06-11T01:00:00Z")),
        }
    );
    assert_eq!(
        due.requeue_after(now),
        Some(std::time::Duration::from_secs(24 * 3600 - 30))
    );
    // Once recorded, nothing more is due.
    let due = due_decision(&s, due.run, created, now, None, false);
    assert_eq!(due.run, None);
    assert_eq!(due.skipped_past_deadline, None);
    assert_eq!(due.next, Some(ts("2026-06-11T01:00:00Z")));
}

#[test]
fn due_starts_from_creation() {
    let s = daily();
    // Created after today's 03:00: nothing due until tomorrow.
    let created = ts("2026-06-10T02:00:00Z");
    let now = ts("2026-06-10T02:00:05Z");
    let due = due_decision(&s, None, created, now, None, false);
    assert_eq!(due.run, None);
    assert_eq!(due.next, Some(ts("2026-06-11T01:00:00Z")));
    // Created before it: today's run is due.
    let due = due_decision(&s, None, ts("2026-06-09T12:00:00Z"), now, None, false);
    assert_eq!(due.run, Some(ts("2026-06-10T01:00:00Z")));
    // A last scheduled time from before creation does not widen the window.
    let due = due_decision(
        &s,
        Some(ts("2026-06-01T01:00:00Z")),
        created,
        now,
        None,
        false,
    );
    assert_eq!(due.run, None);
}

#[test]
fn due_past_starting_deadline_is_skipped() {
    let s = daily();
    let created = ts("2026-06-01T00:00:00Z");
    let last = Some(ts("2026-06-09T01:00:00Z"));
    let deadline = Some(std::time::Duration::from_secs(300));
    // Six minutes late: skipped.
    let now = ts("2026-06-10T01:06:00Z");
    let due = due_decision(&s, last, created, now, deadline, false);
    assert_eq!(
        due,
        Due {
            run: None,
            skipped_past_deadline: Some(ts("2026-06-10T01:00:00Z")),
            next: Some(ts("2026-06-11T01:00:00Z")),
        }
    );
    // Exactly at the deadline: still runs.
    let now = ts("2026-06-10T01:05:00Z");
    let due = due_decision(&s, last, created, now, deadline, false);
    assert_eq!(due.run, Some(ts("2026-06-10T01:00:00Z")));
    assert_eq!(due.skipped_past_deadline, None);
    // No deadline: however late, the latest runs.
    let now = ts("2026-06-10T23:00:00Z");
    let due = due_decision(&s, last, created, now, None, false);
    assert_eq!(due.run, Some(ts("2026-06-10T01:00:00Z")));
}

#[test]
fn due_while_suspended_and_after_resuming() {
    let s = daily();
    let created = ts("2026-06-01T00:00:00Z");
    let last = ts("2026-06-02T01:00:00Z");
    let now = ts("2026-06-10T01:00:30Z");
    let due = due_decision(&s, Some(last), created, now, None, true);
    assert_eq!(due, Due::default());
    assert_eq!(due.requeue_after(now), None);
    // Resumed at 12:00 on the 9th: the caller passes max(last, resumed) and the backlog
    // from while it was suspended does not run; the 10th's time, after resuming, does.
    let resumed = ts("2026-06-09T12:00:00Z");
    let due = due_decision(&s, Some(last.max(resumed)), created, now, None, false);
    assert_eq!(due.run, Some(ts("2026-06-10T01:00:00Z")));
    let due = due_decision(
        &s,
        Some(last.max(resumed)),
        created,
        ts("2026-06-09T12:00:05Z"),
        None,
        false,
    );
    assert_eq!(due.run, None);
    assert_eq!(due.next, Some(ts("2026-06-10T01:00:00Z")));
}

#[test]
fn due_across_fall_back_runs_once() {
    let s = sched("30 1 * * *", "America/New_York");
    let created = ts("2026-10-01T00:00:00Z");
    let first = due_decision(
        &s,
        Some(ts("2026-10-31T05:30:00Z")),
        created,
        ts("2026-11-01T05:30:10Z"),
        None,
        false,
    );
    assert_eq!(first.run, Some(ts("2026-11-01T05:30:00Z")));
    // An hour later the wall clock shows 01:30 again: nothing runs.
    let second = due_decision(
        &s,
        first.run,
        created,
        ts("2026-11-01T06:30:10Z"),
        None,
        false,
    );
    assert_eq!(second.run, None);
    assert_eq!(second.next, Some(ts("2026-11-02T06:30:00Z")));
}
