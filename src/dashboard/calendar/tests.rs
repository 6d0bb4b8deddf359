use serde_json::{Value, json};

use super::*;

fn window(name: &str, spec: Value, status: Value) -> MaintenanceWindow {
    serde_json::from_value(json!({
        "apiVersion": "ops.runbook.dev/v1alpha1", "kind": "MaintenanceWindow",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": spec,
        "status": status,
    }))
    .unwrap()
}

/// The window of the issue: first Sunday of the month, 02:00 in Sydney, for 2h.
fn first_sunday() -> MaintenanceWindow {
    window(
        "patching",
        json!({"schedule": {"cron": "0 2 * * SUN#1", "timeZone": "Australia/Sydney", "duration": "2h"}}),
        json!({}),
    )
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn date(text: &str) -> Date {
    text.parse().unwrap()
}

fn month(day: &str, zone: Zone) -> Request {
    Request {
        span: Span::Month,
        date: date(day),
        zone,
    }
}

fn sydney() -> Zone {
    Zone::Named("Australia/Sydney".into())
}

fn utc() -> Zone {
    Zone::Named("UTC".into())
}

/// (date, window, start–end, continued, continues) of every entry, in grid order.
fn entries(calendar: &Calendar) -> Vec<(String, String, String, bool, bool)> {
    calendar
        .days
        .iter()
        .flat_map(|d| {
            d.entries.iter().map(|e| {
                (
                    d.date.clone(),
                    e.window.clone(),
                    format!("{}–{}", e.start_local, e.end_local),
                    e.continued,
                    e.continues,
                )
            })
        })
        .collect()
}

fn day<'a>(calendar: &'a Calendar, date: &str) -> &'a Day {
    calendar.days.iter().find(|d| d.date == date).unwrap()
}

fn entry(day: &str, window: &str, times: &str) -> (String, String, String, bool, bool) {
    (day.into(), window.into(), times.into(), false, false)
}

fn dst_days(calendar: &Calendar) -> Vec<(String, String, String)> {
    calendar
        .days
        .iter()
        .flat_map(|d| {
            d.dst
                .iter()
                .map(|c| (d.date.clone(), c.time_zone.clone(), c.change.clone()))
        })
        .collect()
}

#[test]
fn april_2026_in_sydney_the_dst_end_sunday_opens_at_the_first_0200_and_lasts_2h_elapsed() {
    let now = at("2026-04-20T00:00:00Z");
    for zone in [Zone::Own, sydney()] {
        let cal = calendar(&[first_sunday()], &month("2026-04-17", zone.clone()), now).unwrap();
        // April 2026 starts on a Wednesday and ends on a Thursday: Mon 30 March to Sun 3 May.
        assert_eq!(cal.days.len(), 35);
        assert_eq!(cal.days[0].date, "2026-03-30");
        assert_eq!(cal.days[34].date, "2026-05-03");
        assert!(!cal.days[0].in_span && day(&cal, "2026-04-01").in_span);
        assert!(!day(&cal, "2026-05-03").in_span);
        // On 5 April Sydney's clocks go back at 03:00 AEDT to 02:00 AEST, so 02:00 happens
        // twice. The schedule code opens the window once, at the first 02:00 (AEDT, 15:00Z),
        // and the 2h are elapsed time: it closes at 17:00Z, which is 03:00 AEST. On 3 May
        // (no change) it is the plain 02:00–04:00.
        assert_eq!(
            entries(&cal),
            vec![
                entry("2026-04-05", "patching", "02:00–03:00"),
                entry("2026-05-03", "patching", "02:00–04:00"),
            ],
            "zone {zone:?}"
        );
        let e = &day(&cal, "2026-04-05").entries[0];
        assert_eq!(
            (e.start, e.end),
            (at("2026-04-04T15:00:00Z"), at("2026-04-04T17:00:00Z"))
        );
        assert_eq!(e.time_zone, "Australia/Sydney");
        assert_eq!(
            dst_days(&cal),
            vec![(
                "2026-04-05".to_owned(),
                "Australia/Sydney".to_owned(),
                "+11:00 → +10:00".to_owned()
            )]
        );
    }
    let own = calendar(&[first_sunday()], &month("2026-04-17", Zone::Own), now).unwrap();
    assert_eq!(
        (own.title.as_str(), own.zone.as_str()),
        ("April 2026", "own")
    );
    assert_eq!(
        (own.previous.as_str(), own.next.as_str()),
        ("2026-03-01", "2026-05-01")
    );
}

#[test]
fn april_2026_in_utc_draws_the_same_occurrence_on_saturday_15_00_to_17_00() {
    let cal = calendar(
        &[first_sunday()],
        &month("2026-04-01", utc()),
        at("2026-04-20T00:00:00Z"),
    )
    .unwrap();
    // 02:00 AEDT on Sunday 5 April is 15:00Z on Saturday 4 April; 2h later is 17:00Z. The May
    // occurrence, 02:00 AEST (+10:00) on 3 May, is 16:00Z on Saturday 2 May.
    assert_eq!(
        entries(&cal),
        vec![
            entry("2026-04-04", "patching", "15:00–17:00"),
            entry("2026-05-02", "patching", "16:00–18:00"),
        ]
    );
    assert_eq!(cal.zone, "UTC");
    assert_eq!(day(&cal, "2026-04-04").entries[0].time_zone, "UTC");
    // UTC has no clock changes; the drawing zone is the only one marked.
    assert!(dst_days(&cal).is_empty());
}

#[test]
fn october_2026_the_dst_start_sunday_opens_after_the_skipped_hour() {
    let now = at("2026-10-20T00:00:00Z");
    // On 4 October Sydney's clocks jump from 02:00 AEST to 03:00 AEDT: 02:00 does not exist,
    // and the schedule code starts at the first valid instant after it, 03:00 AEDT (16:00Z on
    // 3 October); 2h later is 05:00 AEDT (18:00Z).
    let own = calendar(&[first_sunday()], &month("2026-10-04", Zone::Own), now).unwrap();
    // October 2026: Thursday 1 to Saturday 31, drawn Mon 28 September to Sun 1 November,
    // whose first Sunday's window (02:00 AEDT = 15:00Z on 31 October) is drawn too.
    assert_eq!(own.days.first().unwrap().date, "2026-09-28");
    assert_eq!(own.days.last().unwrap().date, "2026-11-01");
    assert_eq!(
        entries(&own),
        vec![
            entry("2026-10-04", "patching", "03:00–05:00"),
            entry("2026-11-01", "patching", "02:00–04:00"),
        ]
    );
    assert_eq!(
        dst_days(&own),
        vec![(
            "2026-10-04".to_owned(),
            "Australia/Sydney".to_owned(),
            "+10:00 → +11:00".to_owned()
        )]
    );
    let e = &day(&own, "2026-10-04").entries[0];
    assert_eq!(
        (e.start, e.end),
        (at("2026-10-03T16:00:00Z"), at("2026-10-03T18:00:00Z"))
    );
    let utc_view = calendar(&[first_sunday()], &month("2026-10-04", utc()), now).unwrap();
    assert_eq!(
        entries(&utc_view),
        vec![
            entry("2026-10-03", "patching", "16:00–18:00"),
            entry("2026-10-31", "patching", "15:00–17:00"),
        ]
    );
    assert!(dst_days(&utc_view).is_empty());
}

#[test]
fn an_occurrence_across_midnight_is_drawn_on_both_days_with_continued_and_continues() {
    let nightly = window(
        "nightly",
        json!({"schedule": {"cron": "0 23 * * *", "duration": "2h"}}),
        json!({}),
    );
    let request = Request {
        span: Span::Week,
        date: date("2026-04-06"),
        zone: Zone::Own,
    };
    let cal = calendar(&[nightly], &request, at("2026-04-01T00:00:00Z")).unwrap();
    let first = entries(&cal).into_iter().take(3).collect::<Vec<_>>();
    // The night from Sunday 5 April into Monday began before the week and still shows on
    // Monday, continued; Monday's own 23:00 goes on into Tuesday.
    let times = "23:00–01:00".to_owned();
    assert_eq!(
        first,
        vec![
            (
                "2026-04-06".into(),
                "nightly".into(),
                times.clone(),
                true,
                false
            ),
            (
                "2026-04-06".into(),
                "nightly".into(),
                times.clone(),
                false,
                true
            ),
            ("2026-04-07".into(), "nightly".into(), times, true, false),
        ]
    );
    // 7 nights start in the week, plus the one running into its first day.
    assert_eq!(entries(&cal).len(), 14);
    let last = cal.days.last().unwrap();
    assert_eq!(last.date, "2026-04-12");
    assert!(last.entries[1].continues);
}

#[test]
fn a_one_off_window_has_one_entry_in_utc_and_says_one_off_in_the_legend() {
    let once = window(
        "db-upgrade",
        json!({"start": "2026-04-10T09:00:00Z", "end": "2026-04-10T11:30:00Z"}),
        json!({"phase": "Completed", "lastWindow": {
            "start": "2026-04-10T09:00:00Z", "end": "2026-04-10T11:30:00Z", "result": "Succeeded"}}),
    );
    let cal = calendar(
        &[once],
        &month("2026-04-01", Zone::Own),
        at("2026-04-20T00:00:00Z"),
    )
    .unwrap();
    assert_eq!(
        entries(&cal),
        vec![entry("2026-04-10", "db-upgrade", "09:00–11:30")]
    );
    let e = &day(&cal, "2026-04-10").entries[0];
    assert_eq!(e.result.as_deref(), Some("Succeeded"));
    assert!(!e.active);
    assert_eq!(
        cal.windows,
        vec![WindowLegend {
            name: "db-upgrade".into(),
            schedule: "one-off".into(),
            time_zone: "UTC".into(),
            duration: Some("2h30m".into()),
            phase: "Completed".into(),
            problem: None,
        }]
    );
}

#[test]
fn suspended_and_invalid_windows_are_in_the_legend_with_their_problem_and_no_entries() {
    let suspended = window(
        "paused",
        json!({"schedule": {"cron": "0 2 * * *", "duration": "1h"}, "suspend": true}),
        json!({"phase": "Suspended"}),
    );
    let bad_cron = window(
        "bad-cron",
        json!({"schedule": {"cron": "61 * * * *", "duration": "1h"}}),
        json!({}),
    );
    let bad_zone = window(
        "bad-zone",
        json!({"schedule": {"cron": "0 2 * * *", "timeZone": "Mars/Olympus", "duration": "1h"}}),
        json!({}),
    );
    let cal = calendar(
        &[suspended, bad_cron, bad_zone],
        &month("2026-04-01", Zone::Own),
        at("2026-04-20T00:00:00Z"),
    )
    .unwrap();
    assert!(entries(&cal).is_empty());
    let problems: Vec<(&str, &str)> = cal
        .windows
        .iter()
        .map(|w| (w.name.as_str(), w.problem.as_deref().unwrap_or("")))
        .collect();
    // Sorted by name.
    assert_eq!(problems[0].0, "bad-cron");
    assert!(
        problems[0].1.starts_with("spec.schedule.cron:"),
        "{}",
        problems[0].1
    );
    assert_eq!(problems[1].0, "bad-zone");
    assert!(
        problems[1].1.starts_with("spec.schedule.timeZone:"),
        "{}",
        problems[1].1
    );
    assert_eq!(problems[2].0, "paused");
    assert!(problems[2].1.contains("suspended"), "{}", problems[2].1);
    assert_eq!(cal.windows[2].phase, "Suspended");
    // A zone that does not parse is shown as UTC (and the problem says why).
    assert_eq!(cal.windows[1].time_zone, "UTC");
}

#[test]
fn the_week_view_shows_seven_days_from_the_date_and_marks_today_in_the_drawing_zone() {
    let request = Request {
        span: Span::Week,
        date: date("2026-04-01"),
        zone: sydney(),
    };
    // 20:00Z on 4 April is already 06:00 on 5 April in Sydney (AEST by then).
    let now = at("2026-04-04T20:00:00Z");
    let cal = calendar(&[first_sunday()], &request, now).unwrap();
    let dates: Vec<&str> = cal.days.iter().map(|d| d.date.as_str()).collect();
    assert_eq!(
        dates,
        [
            "2026-04-01",
            "2026-04-02",
            "2026-04-03",
            "2026-04-04",
            "2026-04-05",
            "2026-04-06",
            "2026-04-07"
        ]
    );
    assert!(cal.days.iter().all(|d| d.in_span));
    let today: Vec<&str> = cal
        .days
        .iter()
        .filter(|d| d.today)
        .map(|d| d.date.as_str())
        .collect();
    assert_eq!(today, ["2026-04-05"]);
    assert_eq!(cal.days[0].day, 1);
    assert_eq!(
        (cal.span.as_str(), cal.title.as_str()),
        ("week", "1–7 April 2026")
    );
    assert_eq!(
        (cal.previous.as_str(), cal.next.as_str()),
        ("2026-03-25", "2026-04-08")
    );
    // In Own mode today is the UTC date.
    let own = calendar(
        &[],
        &Request {
            zone: Zone::Own,
            ..request
        },
        now,
    )
    .unwrap();
    let today: Vec<&str> = own
        .days
        .iter()
        .filter(|d| d.today)
        .map(|d| d.date.as_str())
        .collect();
    assert_eq!(today, ["2026-04-04"]);
    // Titles of weeks across a month and a year.
    let across = |d: &str| {
        let r = Request {
            span: Span::Week,
            date: date(d),
            zone: Zone::Own,
        };
        calendar(&[], &r, now).unwrap().title
    };
    assert_eq!(across("2026-09-28"), "28 September – 4 October 2026");
    assert_eq!(across("2026-12-28"), "28 December 2026 – 3 January 2027");
}

#[test]
fn the_open_occurrence_is_active_and_status_results_colour_past_ones() {
    let mut w = first_sunday();
    w.status = serde_json::from_value(json!({
        "phase": "Active",
        "currentWindow": {"start": "2026-04-04T15:00:00Z", "end": "2026-04-04T17:00:00Z"},
        "lastWindow": {"start": "2026-02-28T15:00:00Z", "end": "2026-02-28T17:00:00Z", "result": "PreflightFailed"},
    }))
    .unwrap();
    let now = at("2026-04-04T15:30:00Z");
    let cal = calendar(&[w], &month("2026-03-01", utc()), now).unwrap();
    // March 2026 in UTC is drawn Mon 23 February to Sun 5 April: the March occurrence
    // (02:00 AEDT on 1 March = 15:00Z on 28 February) ended with the recorded result, the
    // April one (15:00Z on 4 April) is open at `now`.
    let flags: Vec<(String, bool, Option<String>)> = cal
        .days
        .iter()
        .flat_map(|d| {
            d.entries
                .iter()
                .map(move |e| (d.date.clone(), e.active, e.result.clone()))
        })
        .collect();
    assert_eq!(
        flags,
        vec![
            (
                "2026-02-28".to_owned(),
                false,
                Some("PreflightFailed".to_owned())
            ),
            ("2026-04-04".to_owned(), true, None),
        ]
    );
}

#[test]
fn a_minutely_window_is_cut_at_a_thousand_occurrences_per_page() {
    let minutely = window(
        "minutely",
        json!({"schedule": {"cron": "* * * * *", "duration": "30s"}}),
        json!({}),
    );
    let cal = calendar(
        &[minutely],
        &month("2026-04-01", Zone::Own),
        at("2026-04-20T00:00:00Z"),
    )
    .unwrap();
    let all = entries(&cal);
    assert_eq!(all.len(), MAX_OCCURRENCES_PER_WINDOW);
    // The first day is Monday 30 March, whose 1,440 minutes are more than the cap.
    assert!(all.iter().all(|e| e.0 == "2026-03-30"));
    assert_eq!(all[0].2, "00:00–00:00");
}

#[test]
fn an_unknown_drawing_zone_is_refused_with_what_to_write() {
    let err = calendar(
        &[first_sunday()],
        &month("2026-04-01", Zone::Named("Sydney".into())),
        at("2026-04-20T00:00:00Z"),
    )
    .unwrap_err();
    assert_eq!(
        err,
        "zone \"Sydney\": unknown time zone; use an IANA name such as UTC or Australia/Sydney"
    );
}
