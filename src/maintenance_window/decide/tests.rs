use super::*;
use crate::duration::Duration;
use crate::maintenance_window::types::{
    AfterEnd, BeforeStart, MaintenanceWindow, MissedStart, MissedStartPolicy, SavedValue,
    WindowInterval, WindowSchedule,
};
use crate::testing::{Checks, checked, json_round_trip};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

const W: &str = "nightly";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn occ(start: &str, end: &str) -> Occurrence {
    Occurrence {
        start: ts(start),
        end: ts(end),
    }
}

fn secs(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

fn mins(n: i64) -> SignedDuration {
    SignedDuration::from_mins(n)
}

/// Local wall-clock time with its offset, to state DST expectations in local terms.
fn local(t: Timestamp, zone: &str) -> String {
    t.to_zoned(jiff::tz::TimeZone::get(zone).unwrap())
        .strftime("%Y-%m-%d %H:%M %:z")
        .to_string()
}

fn base() -> MaintenanceWindowSpec {
    MaintenanceWindowSpec {
        schedule: None,
        start: None,
        end: None,
        suspend: None,
        before_start: None,
        targets: Vec::new(),
        after_end: None,
        on_drift: None,
        missed_start: None,
        service_account_name: None,
        notifications: Vec::new(),
    }
}

fn recurring(cron: &str, zone: &str, duration: &str) -> MaintenanceWindowSpec {
    MaintenanceWindowSpec {
        schedule: Some(WindowSchedule {
            cron: cron.into(),
            time_zone: Some(zone.into()),
            duration: duration.into(),
        }),
        ..base()
    }
}

fn one_off(start: &str, end: &str) -> MaintenanceWindowSpec {
    MaintenanceWindowSpec {
        start: Some(Time(ts(start))),
        end: Some(Time(ts(end))),
        ..base()
    }
}

fn with_preflight(
    mut spec: MaintenanceWindowSpec,
    lead: Option<&str>,
    required: Option<bool>,
) -> MaintenanceWindowSpec {
    spec.before_start = Some(BeforeStart {
        runbook: "backup".into(),
        params: BTreeMap::new(),
        lead_time: lead.map(Duration::from),
        required,
    });
    spec
}

fn with_after_end(mut spec: MaintenanceWindowSpec) -> MaintenanceWindowSpec {
    spec.after_end = Some(AfterEnd {
        runbook: "verify".into(),
        params: BTreeMap::new(),
    });
    spec
}

fn with_missed(
    mut spec: MaintenanceWindowSpec,
    policy: MissedStartPolicy,
    within: Option<&str>,
) -> MaintenanceWindowSpec {
    spec.missed_start = Some(MissedStart {
        policy,
        within: within.map(Duration::from),
    });
    spec
}

fn settings(spec: &MaintenanceWindowSpec) -> WindowSettings {
    WindowSettings::from_spec(spec).unwrap()
}

/// A window created long before any occurrence in the tests.
fn fresh() -> WindowState {
    WindowState {
        created: Some(ts("2026-01-01T00:00:00Z")),
        ..WindowState::default()
    }
}

fn active(occurrence: Occurrence) -> WindowState {
    WindowState {
        phase: WindowPhase::Active,
        activated: Some(occurrence),
        has_saved: true,
        last_handled: Some(occurrence.start),
        ..fresh()
    }
}

/// What the controller records after carrying out a decision, so multi-step scenarios can
/// be walked through.
fn apply(state: &mut WindowState, decision: &Decision) {
    if let Some(phase) = decision.phase() {
        state.phase = phase;
    }
    match decision {
        Decision::StartPreflight { run_name, .. } | Decision::StartAfterEnd { run_name, .. } => {
            state.runs.insert(run_name.clone(), RunOutcome::Running);
        }
        Decision::SkipOccurrence { occurrence, .. } => {
            state.last_handled = Some(occurrence.start);
        }
        Decision::Activate { occurrence, .. } => {
            state.activated = Some(*occurrence);
            state.has_saved = true;
            state.last_handled = Some(occurrence.start);
        }
        Decision::Restore { .. } => state.has_saved = false,
        Decision::Finish { occurrence } => {
            state.activated = None;
            state.last_handled = Some(occurrence.start);
        }
        _ => {}
    }
}

// --- the checks every decision of these tests runs ------------------------------------------

/// What [`decide`] decides on: the spec and what the controller knows about the window.
#[derive(Clone, Debug)]
struct Input {
    spec: MaintenanceWindowSpec,
    state: WindowState,
}

/// The input as a restarted operator rebuilds it: the window (spec, metadata and a status
/// recording `state`) as the API server stores it, read back through
/// [`WindowState::from_status`], with the same runs (they are RunbookRuns in the cluster).
/// `watching_since` is kept: it is the running operator's own start, not stored state (a
/// restarted operator's later start is what `a_slow_but_running_operator_...` covers).
fn restarted(input: &Input) -> Input {
    let state = &input.state;
    let mut mw = MaintenanceWindow::new(W, input.spec.clone());
    mw.metadata.namespace = Some("shop".into());
    mw.metadata.creation_timestamp = state.created.map(Time);
    mw.metadata.deletion_timestamp = state.deleting.then(|| Time(ts("2026-01-01T00:00:00Z")));
    let current_window = state.activated.map(|o| WindowInterval {
        start: Time(o.start),
        end: Time(o.end),
        result: None,
    });
    // The latest occurrence handled, if it is not the one in force, is the last window.
    let last_window = state
        .last_handled
        .filter(|last| state.activated.is_none_or(|o| o.start != *last))
        .map(|start| WindowInterval {
            start: Time(start),
            end: Time(start),
            result: Some("Succeeded".into()),
        });
    let saved = state
        .has_saved
        .then(|| SavedValue {
            target: "Deployment/web".into(),
            field: "replicas".into(),
            prior: Some("3".into()),
            prior_value_from: None,
            written: "0".into(),
            applied: true,
        })
        .into_iter()
        .collect();
    mw.status = Some(MaintenanceWindowStatus {
        phase: Some(state.phase),
        current_window,
        last_window,
        saved,
        ..MaintenanceWindowStatus::default()
    });
    let stored = json_round_trip(&mw);
    let status = stored.status.clone().unwrap_or_default();
    let mut rebuilt = WindowState::from_status(
        &stored,
        &status,
        &state.runs,
        state.watching_since.unwrap_or(Timestamp::MAX),
    );
    rebuilt.watching_since = state.watching_since;
    Input {
        spec: stored.spec,
        state: rebuilt,
    }
}

/// The safety invariant of a MaintenanceWindow, as the code guarantees it for each decision
/// (the closest true statement of "no change outside an open occurrence, and every recorded
/// change has a restore decided by the time the occurrence ends"):
/// - a change is made ([`Decision::Activate`]) only for an occurrence open at `now`, with
///   nothing else in force, never while suspended or being deleted;
/// - while changes are recorded (`saved`), every decision is [`Decision::Restore`] or
///   [`Decision::StayActive`] for the occurrence in force, and the latter only before that
///   occurrence's end (under the current spec, which may have moved it), which is the instant
///   it names to decide again: a restore is decided by the time the occurrence ends, at the
///   latest (the simulation below checks that it is).
fn changes_stay_inside_occurrences(
    input: &Input,
    now: Timestamp,
    decision: &Decision,
) -> Result<(), String> {
    let state = &input.state;
    match decision {
        Decision::Activate { occurrence, .. } => {
            if !occurrence.contains(now) {
                return Err(format!("activates {occurrence:?}, not open at {now}"));
            }
            if state.has_saved || state.activated.is_some() {
                return Err("activates while other changes are in force".into());
            }
            if state.deleting || input.spec.suspend == Some(true) {
                return Err("activates while deleting or suspended".into());
            }
        }
        Decision::Restore { .. } => {}
        Decision::StayActive {
            occurrence,
            requeue_at,
        } => {
            if state.activated != Some(*occurrence) {
                return Err(format!(
                    "keeps {occurrence:?} in force, but {:?} is the one activated",
                    state.activated
                ));
            }
            let end = WindowSettings::from_spec(&input.spec).map_or(occurrence.end, |settings| {
                settings.effective_end(occurrence)
            });
            if *requeue_at != end || now >= end {
                return Err(format!(
                    "keeps the changes of {occurrence:?} in force at {now} until {requeue_at}, \
                     though it ends at {end}"
                ));
            }
        }
        other if state.has_saved => {
            return Err(format!("leaves recorded changes in place: {other:?}"));
        }
        _ => {}
    }
    Ok(())
}

/// [`decide`] for `state` at `now`, after [`checked`] proved on that input that it is pure,
/// that a restarted operator decides the same, and [`changes_stay_inside_occurrences`].
fn decided(spec: &MaintenanceWindowSpec, state: &WindowState, now: Timestamp) -> Decision {
    let decide_at = |input: &Input, now: Timestamp| decide(W, &input.spec, &input.state, now);
    let invariant =
        |input: &Input, decision: &Decision| changes_stay_inside_occurrences(input, now, decision);
    let checks = Checks {
        decide: &decide_at,
        restart: &restarted,
        invariant: &invariant,
    };
    let input = Input {
        spec: spec.clone(),
        state: state.clone(),
    };
    checked(&checks, &input, now)
}

/// Decides and applies until the decision is a wait; returns every decision.
fn settle(spec: &MaintenanceWindowSpec, state: &mut WindowState, now: Timestamp) -> Vec<Decision> {
    let mut seen = Vec::new();
    for _ in 0..20 {
        let decision = decided(spec, state, now);
        apply(state, &decision);
        let done = !decision.is_action() || decision == Decision::Release;
        seen.push(decision);
        if done {
            return seen;
        }
    }
    panic!("no wait reached: {seen:?}");
}

// --- occurrences -------------------------------------------------------------------------

fn sydney() -> MaintenanceWindowSpec {
    recurring("0 2 * * SUN#1", "Australia/Sydney", "2h")
}

#[test]
fn sydney_first_sunday_in_standard_time() {
    let p = settings(&sydney());
    let first = p.next(ts("2026-09-01T00:00:00Z")).unwrap();
    assert_eq!(first, occ("2026-09-05T16:00:00Z", "2026-09-05T18:00:00Z"));
    assert_eq!(
        local(first.start, "Australia/Sydney"),
        "2026-09-06 02:00 +10:00"
    );
}

#[test]
fn sydney_spring_forward_starts_at_the_jump_and_lasts_elapsed_time() {
    // 2026-10-04: 02:00 AEST becomes 03:00 AEDT, so 02:00 does not exist.
    let p = settings(&sydney());
    let expected = occ("2026-10-03T16:00:00Z", "2026-10-03T18:00:00Z");
    assert_eq!(p.next(ts("2026-09-06T00:00:00Z")), Some(expected));
    assert_eq!(
        local(expected.start, "Australia/Sydney"),
        "2026-10-04 03:00 +11:00"
    );
    assert_eq!(
        local(expected.end, "Australia/Sydney"),
        "2026-10-04 05:00 +11:00"
    );
    assert_eq!(p.current(ts("2026-10-03T15:59:59Z")), None);
    assert_eq!(p.current(ts("2026-10-03T16:00:00Z")), Some(expected));
    assert_eq!(p.current(ts("2026-10-03T17:59:59Z")), Some(expected));
    assert_eq!(p.current(ts("2026-10-03T18:00:00Z")), None);
}

#[test]
fn sydney_fall_back_starts_once_at_the_first_two_oclock() {
    // 2027-04-04: 03:00 AEDT becomes 02:00 AEST, so 02:00-03:00 happens twice.
    let p = settings(&sydney());
    let expected = occ("2027-04-03T15:00:00Z", "2027-04-03T17:00:00Z");
    assert_eq!(
        local(expected.start, "Australia/Sydney"),
        "2027-04-04 02:00 +11:00"
    );
    // Two hours elapsed: the wall clock shows 03:00 again, in standard time.
    assert_eq!(
        local(expected.end, "Australia/Sydney"),
        "2027-04-04 03:00 +10:00"
    );
    // During the second 02:xx hour it is the same occurrence, not a new one.
    assert_eq!(p.current(ts("2027-04-03T16:30:00Z")), Some(expected));
    assert_eq!(p.current(ts("2027-04-03T17:00:00Z")), None);
    assert_eq!(
        p.next(expected.start).unwrap().start,
        ts("2027-05-01T16:00:00Z") // 2027-05-02 02:00 AEST
    );
    let starts: Vec<_> = p
        .upcoming(ts("2027-03-10T00:00:00Z"), 3)
        .iter()
        .map(|o| o.start)
        .collect();
    assert_eq!(
        starts,
        [
            ts("2027-04-03T15:00:00Z"),
            ts("2027-05-01T16:00:00Z"),
            ts("2027-06-05T16:00:00Z")
        ]
    );
}

#[test]
fn berlin_transitions() {
    let p = settings(&recurring("30 2 * * *", "Europe/Berlin", "1h"));
    // 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 runs at the jump.
    let spring = p.next(ts("2026-03-28T12:00:00Z")).unwrap();
    assert_eq!(spring, occ("2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"));
    assert_eq!(
        local(spring.start, "Europe/Berlin"),
        "2026-03-29 03:00 +02:00"
    );
    // 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 runs at the first one only.
    let fall = p.next(ts("2026-10-24T12:00:00Z")).unwrap();
    assert_eq!(fall, occ("2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"));
    // 02:45 CET, the second 02:xx hour: the window (an hour elapsed) is over.
    assert_eq!(p.current(ts("2026-10-25T01:45:00Z")), None);
    assert_eq!(
        p.next(ts("2026-10-25T01:45:00Z")).unwrap().start,
        ts("2026-10-26T01:30:00Z")
    );
}

#[test]
fn new_york_transitions() {
    // 2026-11-01: 02:00 EDT becomes 01:00 EST.
    let p = settings(&recurring("30 1 * * *", "America/New_York", "1h"));
    let fall = occ("2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z");
    assert_eq!(p.current(ts("2026-11-01T06:00:00Z")), Some(fall));
    // 01:45 EST: the wall clock passed 01:30 again, but that is not a start.
    assert_eq!(p.current(ts("2026-11-01T06:45:00Z")), None);
    assert_eq!(
        p.next(ts("2026-11-01T06:45:00Z")).unwrap().start,
        ts("2026-11-02T06:30:00Z")
    );
    // 2027-03-14: 02:00 EST becomes 03:00 EDT; 02:30 runs at the jump, for 2h elapsed.
    let p = settings(&recurring("30 2 * * *", "America/New_York", "2h"));
    let spring = p.next(ts("2027-03-13T12:00:00Z")).unwrap();
    assert_eq!(spring, occ("2027-03-14T07:00:00Z", "2027-03-14T09:00:00Z"));
    assert_eq!(
        local(spring.end, "America/New_York"),
        "2027-03-14 05:00 -04:00"
    );
}

#[test]
fn quarterly_first_sunday() {
    let p = settings(&recurring("0 1 * 1,4,7,10 SUN#1", "Europe/Berlin", "4h"));
    let up = p.upcoming(ts("2026-01-10T00:00:00Z"), 3);
    assert_eq!(
        up,
        [
            occ("2026-04-04T23:00:00Z", "2026-04-05T03:00:00Z"),
            occ("2026-07-04T23:00:00Z", "2026-07-05T03:00:00Z"),
            occ("2026-10-03T23:00:00Z", "2026-10-04T03:00:00Z"),
        ]
    );
    // January is in CET.
    assert_eq!(
        p.next(ts("2026-10-04T12:00:00Z")),
        Some(occ("2027-01-03T00:00:00Z", "2027-01-03T04:00:00Z"))
    );
    assert_eq!(p.current(ts("2026-04-05T02:59:59Z")), Some(up[0]));
    assert_eq!(p.current(ts("2026-04-05T03:00:00Z")), None);
    assert_eq!(p.check(ts("2026-01-10T00:00:00Z")), Ok(()));
}

#[test]
fn one_off_occurrence() {
    let spec = one_off("2026-12-06T02:00:00+11:00", "2026-12-06T04:00:00+11:00");
    let window = occ("2026-12-05T15:00:00Z", "2026-12-05T17:00:00Z");
    assert_eq!(
        next_occurrence(&spec, ts("2026-12-01T00:00:00Z")),
        Ok(Some(window))
    );
    assert_eq!(
        upcoming(&spec, ts("2026-12-01T00:00:00Z"), 3),
        Ok(vec![window])
    );
    assert_eq!(
        current_occurrence(&spec, ts("2026-12-05T14:59:59Z")),
        Ok(None)
    );
    assert_eq!(
        current_occurrence(&spec, ts("2026-12-05T15:00:00Z")),
        Ok(Some(window))
    );
    assert_eq!(
        current_occurrence(&spec, ts("2026-12-05T17:00:00Z")),
        Ok(None)
    );
    assert_eq!(next_occurrence(&spec, ts("2026-12-05T15:00:00Z")), Ok(None));
    assert_eq!(upcoming(&spec, ts("2026-12-05T16:00:00Z"), 3), Ok(vec![]));
}

#[test]
fn back_to_back_occurrences_do_not_overlap() {
    let p = settings(&recurring("0 * * * *", "UTC", "1h"));
    assert_eq!(
        p.current(ts("2026-06-01T10:00:00Z")),
        Some(occ("2026-06-01T10:00:00Z", "2026-06-01T11:00:00Z"))
    );
    assert_eq!(
        p.current(ts("2026-06-01T09:59:59Z")),
        Some(occ("2026-06-01T09:00:00Z", "2026-06-01T10:00:00Z"))
    );
    assert_eq!(p.check_overlap(ts("2026-06-01T10:00:00Z")), Ok(()));
}

#[test]
fn overlapping_occurrences_current_is_the_latest_started() {
    let p = settings(&recurring("0 * * * *", "UTC", "90m"));
    assert_eq!(
        p.current(ts("2026-06-01T10:15:00Z")),
        Some(occ("2026-06-01T10:00:00Z", "2026-06-01T11:30:00Z"))
    );
    let err = p.check_overlap(ts("2026-06-01T10:15:00Z")).unwrap_err();
    assert!(matches!(err, SpecError::Overlap { .. }), "{err}");
    assert!(
        err.to_string().starts_with("spec.schedule.duration:"),
        "{err}"
    );
}

#[test]
fn overlap_is_found_at_a_short_dst_day() {
    // 23h30m fits every day but the 23-hour spring-forward day.
    let p = settings(&recurring("0 1 * * *", "America/New_York", "23h30m"));
    let err = p.check_overlap(ts("2026-06-01T00:00:00Z")).unwrap_err();
    assert_eq!(
        err,
        SpecError::Overlap {
            duration: "23h 30m".into(),
            gap: "23h".into(),
            // 01:00 EST on the transition day, then 01:00 EDT the next day.
            first: ts("2027-03-14T06:00:00Z"),
            second: ts("2027-03-15T05:00:00Z"),
        }
    );
    assert_eq!(
        settings(&recurring("0 1 * * *", "America/New_York", "23h"))
            .check_overlap(ts("2026-06-01T00:00:00Z")),
        Ok(())
    );
}

#[test]
fn spec_errors_name_the_field() {
    let cases = [
        (
            recurring("0 2 * * *", "Mars/Olympus", "1h"),
            "spec.schedule.timeZone",
        ),
        (recurring("0 2 * *", "UTC", "1h"), "spec.schedule.cron"),
        (
            recurring("0 2 * * *", "UTC", "0s"),
            "spec.schedule.duration",
        ),
        (
            recurring("0 2 * * *", "UTC", "1d"),
            "spec.schedule.duration",
        ),
        (
            with_missed(
                recurring("0 2 * * *", "UTC", "1h"),
                MissedStartPolicy::StartIfWithin,
                None,
            ),
            "spec.missedStart.within",
        ),
        (
            with_preflight(recurring("0 2 * * *", "UTC", "1h"), Some("soon"), None),
            "spec.beforeStart.leadTime",
        ),
        (
            one_off("2026-12-06T04:00:00Z", "2026-12-06T02:00:00Z"),
            "spec.end",
        ),
        (base(), "spec:"),
    ];
    for (spec, field) in cases {
        let err = WindowSettings::from_spec(&spec).unwrap_err().to_string();
        assert!(err.starts_with(field), "{field}: {err}");
    }
    let never = settings(&recurring("0 0 30 2 *", "UTC", "1h"));
    let err = never.check(ts("2026-01-01T00:00:00Z")).unwrap_err();
    assert!(matches!(err, SpecError::NeverFires { .. }), "{err}");
    assert!(err.to_string().starts_with("spec.schedule.cron"), "{err}");
}

#[test]
fn run_names_are_deterministic_and_bounded() {
    assert_eq!(
        preflight_run_name(W, ts("2026-10-03T16:00:00Z")),
        "nightly-pre-29850720"
    );
    assert_eq!(
        after_end_run_name(W, ts("2026-10-03T16:00:30Z")),
        "nightly-post-29850720"
    );
    let long = "a".repeat(250);
    let a = preflight_run_name(&long, ts("2026-10-03T16:00:00Z"));
    let b = preflight_run_name(&long, ts("2026-10-03T17:00:00Z"));
    assert!(a.len() <= crate::names::MAX_NAME && b.len() <= crate::names::MAX_NAME);
    assert_ne!(a, b);
}

// --- decide: the way through one occurrence ----------------------------------------------

/// Daily 02:00 UTC for an hour.
fn daily() -> MaintenanceWindowSpec {
    recurring("0 2 * * *", "UTC", "1h")
}

fn today() -> Occurrence {
    occ("2026-06-10T02:00:00Z", "2026-06-10T03:00:00Z")
}

#[test]
fn scheduled_waits_for_the_start_then_activates() {
    let spec = daily();
    let d = decided(&spec, &fresh(), ts("2026-06-10T01:00:00Z"));
    assert_eq!(
        d,
        Decision::Idle {
            requeue_at: Some(today().start)
        }
    );
    assert_eq!(d.phase(), Some(WindowPhase::Scheduled));
    assert_eq!(d.requeue_at(), Some(today().start));
    assert!(!d.is_action());
    let d = decided(&spec, &fresh(), ts("2026-06-10T02:00:00.300Z"));
    assert_eq!(
        d,
        Decision::Activate {
            occurrence: today(),
            late: false
        }
    );
    assert_eq!(d.phase(), Some(WindowPhase::Active));
    assert!(d.is_action());
}

#[test]
fn active_stays_until_the_end_then_restores_and_returns_to_scheduled() {
    let spec = daily();
    let mut state = active(today());
    let d = decided(&spec, &state, ts("2026-06-10T02:30:00Z"));
    assert_eq!(
        d,
        Decision::StayActive {
            occurrence: today(),
            requeue_at: today().end
        }
    );
    assert_eq!(d.requeue_at(), Some(today().end));
    let seen = settle(&spec, &mut state, today().end);
    assert_eq!(
        seen,
        [
            Decision::Restore {
                occurrence: Some(today()),
                reason: RestoreReason::Ended
            },
            Decision::Finish {
                occurrence: today()
            },
            Decision::Idle {
                requeue_at: Some(ts("2026-06-11T02:00:00Z"))
            },
        ]
    );
    assert_eq!(seen[0].phase(), Some(WindowPhase::Restoring));
    assert_eq!(state.phase, WindowPhase::Scheduled);
    assert_eq!(state.last_handled, Some(today().start));
}

#[test]
fn after_end_runs_after_the_restore() {
    let spec = with_after_end(daily());
    let mut state = active(today());
    let seen = settle(&spec, &mut state, today().end);
    assert_eq!(
        seen[..3],
        [
            Decision::Restore {
                occurrence: Some(today()),
                reason: RestoreReason::Ended
            },
            Decision::StartAfterEnd {
                occurrence: today(),
                run_name: "nightly-post-29684280".into()
            },
            Decision::Finish {
                occurrence: today()
            },
        ]
    );
    assert_eq!(seen[1].phase(), Some(WindowPhase::Restoring));
}

#[test]
fn restore_interrupted_by_a_crash_is_finished() {
    let spec = with_after_end(daily());
    let state = WindowState {
        phase: WindowPhase::Restoring,
        ..active(today())
    };
    // Still saved values: restore again (restore_action makes it idempotent).
    assert_eq!(
        decided(&spec, &state, ts("2026-06-10T03:00:01Z")),
        Decision::Restore {
            occurrence: Some(today()),
            reason: RestoreReason::Ended
        }
    );
    // Restored, afterEnd created, crash before Finish: Finish, no second run.
    let mut state = WindowState {
        has_saved: false,
        ..state
    };
    state
        .runs
        .insert(after_end_run_name(W, today().start), RunOutcome::Running);
    assert_eq!(
        decided(&spec, &state, ts("2026-06-10T03:00:02Z")),
        Decision::Finish {
            occurrence: today()
        }
    );
}

#[test]
fn saved_values_without_an_occurrence_are_restored() {
    let state = WindowState {
        has_saved: true,
        ..fresh()
    };
    assert_eq!(
        decided(&daily(), &state, ts("2026-06-10T01:00:00Z")),
        Decision::Restore {
            occurrence: None,
            reason: RestoreReason::Ended
        }
    );
}

// --- decide: preflight -------------------------------------------------------------------

fn pre_name() -> String {
    preflight_run_name(W, today().start)
}

fn with_run(mut state: WindowState, name: String, outcome: RunOutcome) -> WindowState {
    state.runs.insert(name, outcome);
    state
}

#[test]
fn preflight_starts_lead_time_before_the_start() {
    let spec = with_preflight(daily(), None, None);
    // Default lead time 10m.
    assert_eq!(
        decided(&spec, &fresh(), ts("2026-06-10T01:00:00Z")),
        Decision::Idle {
            requeue_at: Some(ts("2026-06-10T01:50:00Z"))
        }
    );
    let d = decided(&spec, &fresh(), ts("2026-06-10T01:50:00Z"));
    assert_eq!(
        d,
        Decision::StartPreflight {
            occurrence: today(),
            run_name: pre_name()
        }
    );
    assert_eq!(d.phase(), Some(WindowPhase::Preparing));
    // A custom lead time.
    let spec = with_preflight(daily(), Some("45m"), None);
    assert_eq!(
        decided(&spec, &fresh(), ts("2026-06-10T01:00:00Z")),
        Decision::Idle {
            requeue_at: Some(ts("2026-06-10T01:15:00Z"))
        }
    );
    assert!(matches!(
        decided(&spec, &fresh(), ts("2026-06-10T01:15:00Z")),
        Decision::StartPreflight { .. }
    ));
}

#[test]
fn preflight_success_activates_at_the_start() {
    let spec = with_preflight(daily(), None, None);
    let running = with_run(fresh(), pre_name(), RunOutcome::Running);
    let d = decided(&spec, &running, ts("2026-06-10T01:52:00Z"));
    assert_eq!(
        d,
        Decision::WaitForPreflight {
            occurrence: today(),
            run_name: pre_name(),
            requeue_at: today().start
        }
    );
    assert_eq!(d.phase(), Some(WindowPhase::Preparing));
    let done = with_run(fresh(), pre_name(), RunOutcome::Succeeded);
    let d = decided(&spec, &done, ts("2026-06-10T01:55:00Z"));
    assert_eq!(
        d,
        Decision::WaitForStart {
            occurrence: today(),
            requeue_at: today().start
        }
    );
    assert_eq!(d.phase(), Some(WindowPhase::Preparing));
    assert_eq!(
        decided(&spec, &done, today().start),
        Decision::Activate {
            occurrence: today(),
            late: false
        }
    );
}

#[test]
fn required_preflight_failure_skips_the_occurrence() {
    let spec = with_preflight(daily(), None, None);
    let mut state = with_run(fresh(), pre_name(), RunOutcome::Failed);
    let seen = settle(&spec, &mut state, ts("2026-06-10T01:56:00Z"));
    assert_eq!(
        seen,
        [
            Decision::SkipOccurrence {
                occurrence: today(),
                reason: SkipReason::PreflightFailed
            },
            // Nothing more until the next occurrence's preflight.
            Decision::Idle {
                requeue_at: Some(ts("2026-06-11T01:50:00Z"))
            },
        ]
    );
    assert_eq!(SkipReason::PreflightFailed.result(), "PreflightFailed");
    // At the start, the skipped occurrence is not activated.
    assert_eq!(
        decided(&spec, &state, today().start),
        Decision::Idle {
            requeue_at: Some(ts("2026-06-11T01:50:00Z"))
        }
    );
}

#[test]
fn not_required_preflight_failure_still_activates() {
    let spec = with_preflight(daily(), None, Some(false));
    let state = with_run(fresh(), pre_name(), RunOutcome::Failed);
    assert_eq!(
        decided(&spec, &state, ts("2026-06-10T01:56:00Z")),
        Decision::WaitForStart {
            occurrence: today(),
            requeue_at: today().start
        }
    );
    assert_eq!(
        decided(&spec, &state, today().start),
        Decision::Activate {
            occurrence: today(),
            late: false
        }
    );
    // Still running at the start: an optional run does not hold the window up.
    let state = with_run(fresh(), pre_name(), RunOutcome::Running);
    assert_eq!(
        decided(&spec, &state, today().start),
        Decision::Activate {
            occurrence: today(),
            late: false
        }
    );
}

#[test]
fn required_preflight_running_past_the_start_delays_activation() {
    let spec = with_preflight(daily(), None, None);
    let running = with_run(fresh(), pre_name(), RunOutcome::Running);
    assert_eq!(
        decided(&spec, &running, ts("2026-06-10T02:00:00Z")),
        Decision::WaitForPreflight {
            occurrence: today(),
            run_name: pre_name(),
            requeue_at: today().end
        }
    );
    // It finishes three minutes late: a late activation, not a missed start.
    let done = with_run(fresh(), pre_name(), RunOutcome::Succeeded);
    assert_eq!(
        decided(&spec, &done, ts("2026-06-10T02:03:00Z")),
        Decision::Activate {
            occurrence: today(),
            late: true
        }
    );
    // Still running at the end: skipped, recorded as a preflight failure.
    let mut state = running;
    let seen = settle(&spec, &mut state, today().end);
    assert_eq!(
        seen[0],
        Decision::SkipOccurrence {
            occurrence: today(),
            reason: SkipReason::PreflightUnfinished
        }
    );
    assert_eq!(SkipReason::PreflightUnfinished.result(), "PreflightFailed");
    assert_eq!(
        seen[1],
        Decision::Idle {
            requeue_at: Some(ts("2026-06-11T01:50:00Z"))
        }
    );
}

// --- decide: missed starts ---------------------------------------------------------------

#[test]
fn missed_start_skip_is_the_default() {
    let spec = daily();
    // Within the grace it is on time.
    assert_eq!(
        decided(&spec, &fresh(), today().start + MISSED_START_GRACE),
        Decision::Activate {
            occurrence: today(),
            late: false
        }
    );
    let mut state = fresh();
    let seen = settle(&spec, &mut state, today().start + secs(6));
    assert_eq!(
        seen,
        [
            Decision::SkipOccurrence {
                occurrence: today(),
                reason: SkipReason::MissedStart
            },
            Decision::Idle {
                requeue_at: Some(ts("2026-06-11T02:00:00Z"))
            },
        ]
    );
    assert_eq!(SkipReason::MissedStart.result(), "Skipped");
    // Explicit Skip behaves the same.
    let spec = with_missed(daily(), MissedStartPolicy::Skip, None);
    assert!(matches!(
        decided(&spec, &fresh(), today().start + mins(1)),
        Decision::SkipOccurrence {
            reason: SkipReason::MissedStart,
            ..
        }
    ));
}

#[test]
fn missed_start_within_starts_late_inside_and_skips_outside() {
    let spec = with_missed(daily(), MissedStartPolicy::StartIfWithin, Some("15m"));
    for (late_by, activates) in [(mins(10), true), (mins(15), true), (mins(16), false)] {
        let d = decided(&spec, &fresh(), today().start + late_by);
        if activates {
            assert_eq!(
                d,
                Decision::Activate {
                    occurrence: today(),
                    late: true
                },
                "{late_by}"
            );
        } else {
            assert_eq!(
                d,
                Decision::SkipOccurrence {
                    occurrence: today(),
                    reason: SkipReason::MissedStart
                },
                "{late_by}"
            );
        }
    }
}

#[test]
fn missed_start_within_runs_the_preflight_late() {
    let spec = with_preflight(
        with_missed(daily(), MissedStartPolicy::StartIfWithin, Some("15m")),
        None,
        None,
    );
    let at = today().start + mins(10);
    assert_eq!(
        decided(&spec, &fresh(), at),
        Decision::StartPreflight {
            occurrence: today(),
            run_name: pre_name()
        }
    );
    // The run exists, so the start is being handled: finishing after `within` still
    // activates.
    let done = with_run(fresh(), pre_name(), RunOutcome::Succeeded);
    assert_eq!(
        decided(&spec, &done, today().start + mins(25)),
        Decision::Activate {
            occurrence: today(),
            late: true
        }
    );
}

#[test]
fn window_created_during_an_occurrence_activates_late() {
    let spec = one_off("2026-12-06T02:00:00Z", "2026-12-06T04:00:00Z");
    let state = WindowState {
        created: Some(ts("2026-12-06T02:30:00Z")),
        ..WindowState::default()
    };
    assert_eq!(
        decided(&spec, &state, ts("2026-12-06T02:30:01Z")),
        Decision::Activate {
            occurrence: occ("2026-12-06T02:00:00Z", "2026-12-06T04:00:00Z"),
            late: true
        }
    );
}

#[test]
fn a_slow_but_running_operator_activates_late_instead_of_skipping() {
    let spec = one_off("2026-12-06T02:00:00Z", "2026-12-06T04:00:00Z");
    let open = occ("2026-12-06T02:00:00Z", "2026-12-06T04:00:00Z");
    let running = WindowState {
        created: Some(ts("2026-12-01T00:00:00Z")),
        watching_since: Some(ts("2026-12-06T01:00:00Z")),
        ..WindowState::default()
    };
    assert_eq!(
        decided(&spec, &running, ts("2026-12-06T02:00:30Z")),
        Decision::Activate {
            occurrence: open,
            late: true
        }
    );
    // Started after the start: the operator was down at it, so missedStart decides.
    let restarted = WindowState {
        watching_since: Some(ts("2026-12-06T02:00:20Z")),
        ..running
    };
    assert_eq!(
        decided(&spec, &restarted, ts("2026-12-06T02:00:30Z")),
        Decision::SkipOccurrence {
            occurrence: open,
            reason: SkipReason::MissedStart
        }
    );
}

#[test]
fn operator_down_across_the_end_restores_on_return() {
    let spec = daily();
    let mut state = active(today());
    // Back five hours after the end: restore at once, nothing else first.
    let seen = settle(&spec, &mut state, ts("2026-06-10T08:00:00Z"));
    assert_eq!(
        seen,
        [
            Decision::Restore {
                occurrence: Some(today()),
                reason: RestoreReason::Ended
            },
            Decision::Finish {
                occurrence: today()
            },
            Decision::Idle {
                requeue_at: Some(ts("2026-06-11T02:00:00Z"))
            },
        ]
    );
    // Back during the next occurrence: restore the old one, then missedStart decides the
    // new one.
    let mut state = active(today());
    let seen = settle(&spec, &mut state, ts("2026-06-11T02:10:00Z"));
    assert_eq!(
        seen[2],
        Decision::SkipOccurrence {
            occurrence: occ("2026-06-11T02:00:00Z", "2026-06-11T03:00:00Z"),
            reason: SkipReason::MissedStart
        }
    );
}

#[test]
fn preflight_done_but_operator_down_through_the_window_is_recorded() {
    let spec = with_preflight(daily(), None, None);
    let mut state = with_run(fresh(), pre_name(), RunOutcome::Succeeded);
    let seen = settle(&spec, &mut state, ts("2026-06-10T05:00:00Z"));
    assert_eq!(
        seen[0],
        Decision::SkipOccurrence {
            occurrence: today(),
            reason: SkipReason::MissedStart
        }
    );
    assert_eq!(
        seen[1],
        Decision::Idle {
            requeue_at: Some(ts("2026-06-11T01:50:00Z"))
        }
    );
}

// --- decide: suspend, delete, spec changes -----------------------------------------------

#[test]
fn suspend_while_active_restores_first() {
    let mut spec = with_after_end(daily());
    spec.suspend = Some(true);
    let mut state = active(today());
    let seen = settle(&spec, &mut state, ts("2026-06-10T02:20:00Z"));
    assert_eq!(
        seen,
        [
            Decision::Restore {
                occurrence: Some(today()),
                reason: RestoreReason::Suspended
            },
            Decision::StartAfterEnd {
                occurrence: today(),
                run_name: after_end_run_name(W, today().start)
            },
            Decision::Finish {
                occurrence: today()
            },
            Decision::Suspended,
        ]
    );
    assert_eq!(state.phase, WindowPhase::Suspended);
    assert_eq!(Decision::Suspended.requeue_at(), None);
    // Resumed while the occurrence is still open: it was handled, so nothing happens
    // until the next one.
    spec.suspend = None;
    assert_eq!(
        decided(&spec, &state, ts("2026-06-10T02:30:00Z")),
        Decision::Idle {
            requeue_at: Some(ts("2026-06-11T02:00:00Z"))
        }
    );
}

#[test]
fn resume_during_an_unhandled_occurrence_follows_missed_start() {
    let spec = daily();
    assert_eq!(
        decided(&spec, &fresh(), ts("2026-06-10T02:30:00Z")),
        Decision::SkipOccurrence {
            occurrence: today(),
            reason: SkipReason::MissedStart
        }
    );
    let mut suspended = daily();
    suspended.suspend = Some(true);
    assert_eq!(
        decided(&suspended, &fresh(), ts("2026-06-10T02:30:00Z")),
        Decision::Suspended
    );
}

#[test]
fn unsuspend_during_a_restore_finishes_the_restore() {
    let spec = daily();
    let state = WindowState {
        phase: WindowPhase::Restoring,
        ..active(today())
    };
    assert_eq!(
        decided(&spec, &state, ts("2026-06-10T02:20:00Z")),
        Decision::Restore {
            occurrence: Some(today()),
            reason: RestoreReason::Ended
        }
    );
    let state = WindowState {
        has_saved: false,
        ..state
    };
    assert_eq!(
        decided(&spec, &state, ts("2026-06-10T02:20:00Z")),
        Decision::Finish {
            occurrence: today()
        }
    );
}

#[test]
fn delete_while_active_restores_then_releases() {
    let spec = with_after_end(daily());
    let mut state = WindowState {
        deleting: true,
        ..active(today())
    };
    let seen = settle(&spec, &mut state, ts("2026-06-10T02:20:00Z"));
    assert_eq!(
        seen,
        [
            Decision::Restore {
                occurrence: Some(today()),
                reason: RestoreReason::Deleted
            },
            // No afterEnd for a window going away.
            Decision::Finish {
                occurrence: today()
            },
            Decision::Release,
        ]
    );
    assert_eq!(Decision::Release.phase(), None);
    let idle = WindowState {
        deleting: true,
        ..fresh()
    };
    assert_eq!(
        decided(&spec, &idle, ts("2026-06-10T01:00:00Z")),
        Decision::Release
    );
}

#[test]
fn extending_the_duration_during_a_window_moves_its_end() {
    let spec = recurring("0 2 * * *", "UTC", "3h");
    assert_eq!(
        decided(&spec, &active(today()), ts("2026-06-10T02:30:00Z")),
        Decision::StayActive {
            occurrence: today(),
            requeue_at: ts("2026-06-10T05:00:00Z")
        }
    );
    // A changed schedule keeps the end the running window was given.
    let spec = recurring("0 4 * * *", "UTC", "3h");
    assert_eq!(
        decided(&spec, &active(today()), ts("2026-06-10T02:30:00Z")),
        Decision::StayActive {
            occurrence: today(),
            requeue_at: today().end
        }
    );
}

#[test]
fn invalid_spec_during_a_window_still_restores_at_the_recorded_end() {
    let spec = recurring("0 2 * * *", "Mars/Olympus", "1h");
    assert_eq!(
        decided(&spec, &active(today()), ts("2026-06-10T02:30:00Z")),
        Decision::StayActive {
            occurrence: today(),
            requeue_at: today().end
        }
    );
    let mut state = active(today());
    let seen = settle(&spec, &mut state, today().end);
    assert_eq!(seen.len(), 3);
    assert!(matches!(
        seen[2],
        Decision::Invalid(SpecError::Schedule {
            field: "timeZone",
            ..
        })
    ));
    assert_eq!(seen[2].phase(), Some(WindowPhase::Invalid));
}

#[test]
fn one_off_runs_once_and_completes() {
    let spec = one_off("2026-12-06T02:00:00Z", "2026-12-06T04:00:00Z");
    let window = occ("2026-12-06T02:00:00Z", "2026-12-06T04:00:00Z");
    let mut state = fresh();
    assert_eq!(
        settle(&spec, &mut state, ts("2026-12-01T00:00:00Z")),
        [Decision::Idle {
            requeue_at: Some(window.start)
        }]
    );
    assert_eq!(
        settle(&spec, &mut state, window.start),
        [
            Decision::Activate {
                occurrence: window,
                late: false
            },
            Decision::StayActive {
                occurrence: window,
                requeue_at: window.end
            }
        ]
    );
    let seen = settle(&spec, &mut state, window.end);
    assert_eq!(seen.last(), Some(&Decision::Complete));
    assert_eq!(state.phase, WindowPhase::Completed);
    // Created after its end: nothing to do at all.
    assert_eq!(
        decided(&spec, &fresh(), ts("2026-12-07T00:00:00Z")),
        Decision::Complete
    );
}

/// The whole lifecycle of the Sydney window across the spring-forward day, with a
/// preflight and an afterEnd, walked through at the instants its timers name.
#[test]
fn sydney_window_full_cycle_across_spring_forward() {
    let spec = with_after_end(with_preflight(sydney(), Some("30m"), None));
    let window = occ("2026-10-03T16:00:00Z", "2026-10-03T18:00:00Z");
    let mut state = fresh();
    let mut now = ts("2026-09-20T00:00:00Z");
    let mut phases = Vec::new();
    let mut decisions = Vec::new();
    for _ in 0..10 {
        let seen = settle(&spec, &mut state, now);
        phases.push(state.phase);
        let wait = seen.last().unwrap().requeue_at().unwrap();
        decisions.extend(seen);
        // The preflight run succeeds before the controller wakes again (at the start).
        if let Some(outcome) = state.runs.get_mut(&preflight_run_name(W, window.start)) {
            *outcome = RunOutcome::Succeeded;
        }
        now = wait;
        if now > window.end {
            break;
        }
    }
    assert_eq!(
        phases,
        [
            WindowPhase::Scheduled,
            WindowPhase::Preparing,
            WindowPhase::Active,
            WindowPhase::Scheduled
        ]
    );
    assert!(decisions.contains(&Decision::StartPreflight {
        occurrence: window,
        run_name: "nightly-pre-29850720".into()
    }));
    assert!(decisions.contains(&Decision::WaitForPreflight {
        occurrence: window,
        run_name: "nightly-pre-29850720".into(),
        requeue_at: window.start
    }));
    assert!(decisions.contains(&Decision::Activate {
        occurrence: window,
        late: false
    }));
    assert!(decisions.contains(&Decision::Restore {
        occurrence: Some(window),
        reason: RestoreReason::Ended
    }));
    assert!(decisions.contains(&Decision::StartAfterEnd {
        occurrence: window,
        run_name: "nightly-post-29850720".into()
    }));
    // Next: the preflight for 2026-11-01 02:00 AEDT, 30 minutes before.
    assert_eq!(now, ts("2026-10-31T14:30:00Z"));
}

#[test]
fn phase_round_trips_through_status() {
    for phase in [
        WindowPhase::Scheduled,
        WindowPhase::Preparing,
        WindowPhase::Active,
        WindowPhase::Restoring,
        WindowPhase::Completed,
        WindowPhase::Suspended,
        WindowPhase::Invalid,
    ] {
        let written = serde_json::to_value(phase).unwrap();
        assert_eq!(written, phase.as_str());
        let read: WindowPhase = serde_json::from_value(written).unwrap();
        assert_eq!(WindowPhase::from_status(Some(read)), phase);
    }
    assert_eq!(WindowPhase::from_status(None), WindowPhase::Scheduled);
    let bogus: WindowPhase = serde_json::from_value(serde_json::json!("Bogus")).unwrap();
    assert_eq!(
        WindowPhase::from_status(Some(bogus)),
        WindowPhase::Scheduled
    );
}

// --- simulation: a window's whole life ------------------------------------------------------

/// Something that happens to the window between two reconciles.
#[derive(Clone, Copy, Debug)]
enum Event {
    /// The operator restarts: it rebuilds what it knows from the stored window.
    Restart,
    /// `suspend: true`.
    Suspend,
    /// `suspend` cleared.
    Resume,
    /// The window is deleted (its finalizer holds it until it has restored).
    Delete,
}

/// A daily window with a preflight and an afterEnd lived through four days, woken only at
/// the instants its decisions name and at the events: on time, restarted while active,
/// suspended while active, deleted while active. Every decision runs through [`checked`]
/// (purity, restart, [`changes_stay_inside_occurrences`]); on top, every occurrence activated
/// has its restore decided no later than its end.
#[test]
fn a_whole_life_keeps_every_change_inside_its_occurrence() {
    let mut spec = with_after_end(with_preflight(daily(), None, None));
    let day = |d: u8, time: &str| ts(&format!("2026-06-{d:02}T{time}Z"));
    let mut events = vec![
        (day(11, "02:30:00"), Event::Restart),
        (day(12, "02:20:00"), Event::Suspend),
        (day(12, "12:00:00"), Event::Resume),
        (day(13, "02:40:00"), Event::Delete),
    ];
    events.reverse();
    let mut state = WindowState {
        watching_since: Some(day(9, "12:00:00")),
        ..fresh()
    };
    let mut now = day(9, "12:00:00");
    let mut activated: Vec<(Occurrence, Timestamp)> = Vec::new();
    let mut restored: Vec<(Option<Occurrence>, Timestamp)> = Vec::new();
    let mut phases = Vec::new();
    for _ in 0..100 {
        let seen = settle(&spec, &mut state, now);
        for decision in &seen {
            match decision {
                Decision::Activate { occurrence, .. } => activated.push((*occurrence, now)),
                Decision::Restore { occurrence, .. } => restored.push((*occurrence, now)),
                _ => {}
            }
        }
        if phases.last() != Some(&state.phase) {
            phases.push(state.phase);
        }
        let last = seen.last().expect("a decision");
        if *last == Decision::Release {
            break;
        }
        // The runs it started finish before it is woken again.
        for outcome in state.runs.values_mut() {
            *outcome = RunOutcome::Succeeded;
        }
        let wake = last.requeue_at();
        match events.last().copied() {
            Some((at, event)) if wake.is_none_or(|wake| at <= wake) => {
                events.pop();
                now = at;
                match event {
                    Event::Restart => {
                        let input = Input {
                            spec: spec.clone(),
                            state: state.clone(),
                        };
                        state = restarted(&input).state;
                        state.watching_since = Some(at);
                    }
                    Event::Suspend => spec.suspend = Some(true),
                    Event::Resume => spec.suspend = None,
                    Event::Delete => state.deleting = true,
                }
            }
            _ => now = wake.expect("a wait with a wake-up time or an event to come"),
        }
    }
    assert!(state.deleting && !state.has_saved && state.activated.is_none());
    let opened: Vec<Occurrence> = activated.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        opened,
        [
            occ("2026-06-10T02:00:00Z", "2026-06-10T03:00:00Z"),
            occ("2026-06-11T02:00:00Z", "2026-06-11T03:00:00Z"),
            occ("2026-06-12T02:00:00Z", "2026-06-12T03:00:00Z"),
            occ("2026-06-13T02:00:00Z", "2026-06-13T03:00:00Z"),
        ]
    );
    for (occurrence, at) in &activated {
        assert_eq!(*at, occurrence.start, "activated on time");
        let restore = restored
            .iter()
            .find(|(o, _)| *o == Some(*occurrence))
            .unwrap_or_else(|| panic!("no restore decided for {occurrence:?}"));
        assert!(
            restore.1 >= occurrence.start && restore.1 <= occurrence.end,
            "{occurrence:?} restored at {}",
            restore.1
        );
    }
    // Suspended and deleted windows restore at once; the others at their end.
    let restored_at: Vec<Timestamp> = restored.iter().map(|(_, at)| *at).collect();
    assert_eq!(
        restored_at,
        [
            day(10, "03:00:00"),
            day(11, "03:00:00"),
            day(12, "02:20:00"),
            day(13, "02:40:00")
        ]
    );
    assert_eq!(
        phases[..6],
        [
            WindowPhase::Scheduled,
            WindowPhase::Preparing,
            WindowPhase::Active,
            WindowPhase::Scheduled,
            WindowPhase::Preparing,
            WindowPhase::Active,
        ]
    );
    assert!(phases.contains(&WindowPhase::Suspended), "{phases:?}");
}
