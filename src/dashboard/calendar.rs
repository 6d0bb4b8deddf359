//! The maintenance calendar: every window's occurrences in a month or a week, computed with
//! the controller's own schedule code (`WindowSettings`), drawn in the zone the viewer picks.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use kube::ResourceExt;
use serde::Serialize;

use crate::maintenance_window::MaintenanceWindow;
use crate::maintenance_window::decide::occurrences::{Occurrence, Times, WindowSettings};
use crate::maintenance_window::types::{MaintenanceWindowStatus, WindowInterval, WindowPhase};
use crate::schedule::parse_time_zone;
use crate::time::sub;

/// The zone the calendar is drawn in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Zone {
    /// Each window in its own `schedule.timeZone` (UTC when unset; a one-off window: UTC).
    Own,
    /// One IANA zone for every window (e.g. `UTC`, `Australia/Sydney`).
    Named(String),
}

/// Month (the weeks covering the month, Monday first) or the seven days from a date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    Month,
    Week,
}

/// What the viewer asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub span: Span,
    /// Any day of the month (Month), or the first day shown (Week).
    pub date: Date,
    pub zone: Zone,
}

/// One occurrence on one day (an occurrence that spans midnight appears on each day it
/// touches, with `continues`/`continued` set).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub window: String,
    /// The zone this entry is drawn in.
    pub time_zone: String,
    /// Start and end, in that zone, `HH:MM` (end `24:00` never appears: `00:00` next day).
    pub start_local: String,
    pub end_local: String,
    pub start: Timestamp,
    pub end: Timestamp,
    /// The occurrence is open at `now`.
    pub active: bool,
    /// How a past occurrence ended, when the status records it (`lastWindow` /
    /// `currentWindow` / history): Succeeded, Failed, Skipped, PreflightFailed, DriftRespected.
    pub result: Option<String>,
    /// The occurrence started on an earlier day / goes on past this day.
    pub continued: bool,
    pub continues: bool,
}

/// A zone's clock change on a day.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DstChange {
    pub time_zone: String,
    /// E.g. `+11:00 → +10:00`.
    pub change: String,
}

/// One day of the grid.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Day {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Day of the month, for the cell's label.
    pub day: i8,
    /// Whether the day is in the requested month (Month view's leading/trailing days: false).
    pub in_span: bool,
    /// Today in the drawing zone (Own: UTC).
    pub today: bool,
    /// Clock changes of the zones drawn on this day (the named zone, or in Own mode the
    /// zones of windows with an entry or a schedule in that zone).
    pub dst: Vec<DstChange>,
    pub entries: Vec<Entry>,
}

/// A window in the legend.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowLegend {
    pub name: String,
    /// `schedule.cron` or `one-off`.
    pub schedule: String,
    pub time_zone: String,
    pub duration: Option<String>,
    pub phase: String,
    /// A spec the schedule code refuses: why (the window has no entries then).
    pub problem: Option<String>,
}

/// The calendar page.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Calendar {
    /// `month` or `week`.
    pub span: String,
    /// The drawing zone: `own` or the IANA name.
    pub zone: String,
    /// E.g. `December 2026` or `7–13 December 2026`.
    pub title: String,
    /// The first day of the previous and next page (for the arrows).
    pub previous: String,
    pub next: String,
    /// Whole weeks, Monday first: 28–42 days for Month, 7 for Week.
    pub days: Vec<Day>,
    pub windows: Vec<WindowLegend>,
}

/// At most this many occurrences of one window are drawn on one page: a minutely window
/// still renders (with its first occurrences) instead of hanging the page.
pub const MAX_OCCURRENCES_PER_WINDOW: usize = 1_000;

/// The calendar for `request`, at `now`.
pub fn calendar(
    windows: &[MaintenanceWindow],
    request: &Request,
    now: Timestamp,
) -> Result<Calendar, String> {
    let drawing = match &request.zone {
        Zone::Own => None,
        Zone::Named(name) => Some((name.clone(), zone_named(name)?)),
    };
    let (first, count, in_span) = grid(request);
    let dates: Vec<Date> = (0..count)
        .filter_map(|i| first.checked_add(days(i)).ok())
        .collect();
    // Today where the grid is drawn; in Own mode every window has its own zone, so UTC.
    let today_zone = drawing.as_ref().map_or(TimeZone::UTC, |(_, tz)| tz.clone());
    let today = now.to_zoned(today_zone).date();
    let mut grid_days: Vec<Day> = dates
        .iter()
        .map(|date| Day {
            date: date.to_string(),
            day: date.day(),
            in_span: in_span(*date),
            today: *date == today,
            dst: Vec::new(),
            entries: Vec::new(),
        })
        .collect();

    let mut sorted: Vec<&MaintenanceWindow> = windows.iter().collect();
    sorted.sort_by_key(|w| w.name_any());
    let mut legend = Vec::with_capacity(sorted.len());
    // Zones whose clock changes are marked: the named zone, or each drawn window's own.
    let mut dst_zones: Vec<(String, TimeZone)> = drawing.iter().cloned().collect();
    for window in sorted {
        let (item, settings) = legend_item(window);
        let own = own_zone(window);
        legend.push(item);
        let Some(settings) = settings else {
            continue;
        };
        let (zone_name, tz) = match &drawing {
            Some(named) => named.clone(),
            None => own.clone(),
        };
        if drawing.is_none() && !dst_zones.iter().any(|(name, _)| *name == zone_name) {
            dst_zones.push((zone_name.clone(), tz.clone()));
        }
        let bounds = day_bounds(&dates, &tz);
        let (Some(range_start), Some(range_end)) = (bounds.first(), bounds.last()) else {
            continue;
        };
        let status = window.status.as_ref();
        for occurrence in occurrences_between(&settings, range_start.0, range_end.1) {
            let (active, result) = marks(status, &occurrence, now);
            for (index, (day_start, day_end)) in bounds.iter().enumerate() {
                if occurrence.end <= *day_start || occurrence.start >= *day_end {
                    continue;
                }
                grid_days[index].entries.push(Entry {
                    window: window.name_any(),
                    time_zone: zone_name.clone(),
                    start_local: hh_mm(occurrence.start, &tz),
                    end_local: hh_mm(occurrence.end, &tz),
                    start: occurrence.start,
                    end: occurrence.end,
                    active,
                    result: result.clone(),
                    continued: occurrence.start < *day_start,
                    continues: occurrence.end > *day_end,
                });
            }
        }
    }
    dst_zones.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, tz) in &dst_zones {
        for (index, date) in dates.iter().enumerate() {
            if let Some(change) = dst_change(*date, tz) {
                grid_days[index].dst.push(DstChange {
                    time_zone: name.clone(),
                    change,
                });
            }
        }
    }
    for day in &mut grid_days {
        day.entries
            .sort_by(|a, b| (a.start, &a.window).cmp(&(b.start, &b.window)));
    }
    let (previous, next) = arrows(request);
    Ok(Calendar {
        span: match request.span {
            Span::Month => "month",
            Span::Week => "week",
        }
        .to_owned(),
        zone: drawing.map_or_else(|| "own".to_owned(), |(name, _)| name),
        title: title(request, &dates),
        previous: previous.to_string(),
        next: next.to_string(),
        days: grid_days,
        windows: legend,
    })
}

/// A drawing zone by IANA name, with an error that says what to write instead.
fn zone_named(name: &str) -> Result<TimeZone, String> {
    if name.trim().is_empty() {
        return Err(format!("zone {name:?}: {UNKNOWN_ZONE}"));
    }
    parse_time_zone(name).map_err(|_| format!("zone {name:?}: {UNKNOWN_ZONE}"))
}

const UNKNOWN_ZONE: &str = "unknown time zone; use an IANA name such as UTC or Australia/Sydney";

fn days(n: usize) -> jiff::Span {
    jiff::Span::new().days(i64::try_from(n).unwrap_or(i64::MAX))
}

/// The grid's first day, its length, and which days belong to the requested span.
fn grid(request: &Request) -> (Date, usize, Box<dyn Fn(Date) -> bool>) {
    match request.span {
        Span::Week => (request.date, 7, Box::new(|_| true)),
        Span::Month => {
            let first = request.date.first_of_month();
            let last = request.date.last_of_month();
            let lead = usize::try_from(first.weekday().to_monday_zero_offset()).unwrap_or(0);
            let trail = usize::try_from(6 - last.weekday().to_monday_zero_offset()).unwrap_or(0);
            let start = first.checked_sub(days(lead)).unwrap_or(first);
            let count = lead + usize::try_from(last.day()).unwrap_or(28) + trail;
            let (year, month) = (first.year(), first.month());
            (
                start,
                count,
                Box::new(move |d: Date| d.year() == year && d.month() == month),
            )
        }
    }
}

/// The first day of the previous and the next page.
fn arrows(request: &Request) -> (Date, Date) {
    match request.span {
        Span::Week => (
            request.date.checked_sub(days(7)).unwrap_or(request.date),
            request.date.checked_add(days(7)).unwrap_or(request.date),
        ),
        Span::Month => {
            let first = request.date.first_of_month();
            let month = jiff::Span::new().months(1);
            (
                first.checked_sub(month).unwrap_or(first),
                first.checked_add(month).unwrap_or(first),
            )
        }
    }
}

/// `December 2026`, or for a week `7–13 December 2026`, `28 September – 4 October 2026`,
/// `28 December 2026 – 3 January 2027`.
fn title(request: &Request, dates: &[Date]) -> String {
    match (request.span, dates.first(), dates.last()) {
        (Span::Week, Some(first), Some(last)) => {
            if first.year() != last.year() {
                format!(
                    "{} – {}",
                    first.strftime("%-d %B %Y"),
                    last.strftime("%-d %B %Y")
                )
            } else if first.month() != last.month() {
                format!(
                    "{} – {}",
                    first.strftime("%-d %B"),
                    last.strftime("%-d %B %Y")
                )
            } else {
                format!("{}–{}", first.day(), last.strftime("%-d %B %Y"))
            }
        }
        _ => request.date.strftime("%B %Y").to_string(),
    }
}

/// A window's own zone: `schedule.timeZone`, UTC when unset, for a one-off, or when the name
/// does not parse (the window then has a problem and no entries).
fn own_zone(window: &MaintenanceWindow) -> (String, TimeZone) {
    let name = window
        .spec
        .schedule
        .as_ref()
        .and_then(|s| s.time_zone.as_deref())
        .filter(|z| !z.is_empty());
    match name.map(|n| (n, parse_time_zone(n))) {
        Some((n, Ok(tz))) => (n.to_owned(), tz),
        _ => ("UTC".to_owned(), TimeZone::UTC),
    }
}

/// The window's legend line, and its settings when it has occurrences to draw: a spec the
/// schedule code refuses, a suspended window and one the controller marks Invalid have none.
fn legend_item(window: &MaintenanceWindow) -> (WindowLegend, Option<WindowSettings>) {
    let spec = &window.spec;
    let phase = WindowPhase::from_status(window.status.as_ref().and_then(|s| s.phase));
    let schedule = spec.schedule.as_ref();
    let parsed = WindowSettings::from_spec(spec);
    let problem = match &parsed {
        Err(err) => Some(err.to_string()),
        Ok(settings) if settings.suspended => {
            Some("suspended (spec.suspend is true): no occurrence opens until it is unset".into())
        }
        Ok(_) if phase == WindowPhase::Invalid => Some(invalid_reason(window)),
        Ok(_) => None,
    };
    let duration = match (schedule, &spec.start, &spec.end) {
        (Some(s), _, _) => Some(s.duration.to_string()),
        (None, Some(start), Some(end)) if end.0 > start.0 => {
            Some(crate::plugin::human_duration(end.0.duration_since(start.0)))
        }
        _ => None,
    };
    let item = WindowLegend {
        name: window.name_any(),
        schedule: schedule.map_or_else(|| "one-off".to_owned(), |s| s.cron.clone()),
        time_zone: own_zone(window).0,
        duration,
        phase: phase.as_str().to_owned(),
        problem: problem.clone(),
    };
    (item, parsed.ok().filter(|_| problem.is_none()))
}

/// Why the controller marks a window Invalid: its Stalled (or Ready) condition's message.
fn invalid_reason(window: &MaintenanceWindow) -> String {
    let conditions = window
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    [crate::conditions::STALLED, crate::conditions::READY]
        .iter()
        .find_map(|t| {
            conditions
                .iter()
                .find(|c| c.type_ == *t && !c.message.is_empty())
        })
        .map_or_else(
            || "the controller marks the spec Invalid (see its conditions)".to_owned(),
            |c| c.message.clone(),
        )
}

/// Each date's start and end (the next date's start) in `tz`, as instants.
fn day_bounds(dates: &[Date], tz: &TimeZone) -> Vec<(Timestamp, Timestamp)> {
    dates
        .iter()
        .filter_map(|date| {
            let start = day_start(*date, tz)?;
            let end = day_start(date.checked_add(days(1)).ok()?, tz)?;
            Some((start, end))
        })
        .collect()
}

/// The instant `date` begins in `tz` (a midnight skipped by a clock change: the first instant
/// after it, as jiff's `compatible` rule gives).
fn day_start(date: Date, tz: &TimeZone) -> Option<Timestamp> {
    date.to_zoned(tz.clone()).ok().map(|z| z.timestamp())
}

/// The occurrences touching `[from, to)`, from the controller's schedule code: walked from
/// `from - duration` (so an occurrence that began before `from` and is still open is included)
/// until a start at or after `to`, at most [`MAX_OCCURRENCES_PER_WINDOW`].
pub(crate) fn occurrences_between(
    settings: &WindowSettings,
    from: Timestamp,
    to: Timestamp,
) -> Vec<Occurrence> {
    let duration = match &settings.times {
        Times::Recurring { duration, .. } => *duration,
        Times::OneOff(one) => one.end.duration_since(one.start),
    };
    let mut found = Vec::new();
    let mut after = sub(from, duration);
    while found.len() < MAX_OCCURRENCES_PER_WINDOW {
        let Some(occurrence) = settings.next(after) else {
            break;
        };
        if occurrence.start >= to {
            break;
        }
        after = occurrence.start;
        if occurrence.end > from {
            found.push(occurrence);
        }
    }
    found
}

/// Whether the occurrence is open and how it ended, from the clock and the window's status
/// (`currentWindow` is the occurrence in force, `lastWindow` the one before).
fn marks(
    status: Option<&MaintenanceWindowStatus>,
    occurrence: &Occurrence,
    now: Timestamp,
) -> (bool, Option<String>) {
    let same = |interval: &Option<WindowInterval>| {
        interval
            .as_ref()
            .filter(|i| i.start.0 == occurrence.start)
            .cloned()
    };
    let current = status.and_then(|s| same(&s.current_window));
    let last = status.and_then(|s| same(&s.last_window));
    let active = occurrence.contains(now)
        || current
            .as_ref()
            .is_some_and(|c| c.result.is_none() && now < c.end.0.max(occurrence.end));
    let result = current
        .and_then(|c| c.result)
        .or_else(|| last.and_then(|l| l.result));
    (active, result)
}

/// `HH:MM` of `at` in `tz`.
fn hh_mm(at: Timestamp, tz: &TimeZone) -> String {
    at.to_zoned(tz.clone()).strftime("%H:%M").to_string()
}

/// The clock change of `tz` on `date`, `+11:00 → +10:00`: its offset at the day's start
/// differs from its offset at the next day's start.
fn dst_change(date: Date, tz: &TimeZone) -> Option<String> {
    let start = day_start(date, tz)?;
    let end = day_start(date.checked_add(days(1)).ok()?, tz)?;
    let (before, after) = (tz.to_offset(start), tz.to_offset(end));
    (before != after).then(|| format!("{} → {}", offset_text(before), offset_text(after)))
}

/// An offset as `+11:00` / `-03:30` (seconds, which no current zone uses, are dropped).
fn offset_text(offset: jiff::tz::Offset) -> String {
    let seconds = offset.seconds();
    let sign = if seconds < 0 { '-' } else { '+' };
    let abs = seconds.unsigned_abs();
    format!("{sign}{:02}:{:02}", abs / 3600, abs / 60 % 60)
}

#[cfg(test)]
mod tests;
