//! The maintenance calendar: every window's occurrences in a month or a week, computed with
//! the controller's own schedule code (`WindowSettings`), drawn in the zone the viewer picks.

use jiff::Timestamp;
use jiff::civil::Date;
use serde::Serialize;

use crate::maintenance_window::MaintenanceWindow;

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

/// The calendar for `request`, at `now`.
pub fn calendar(
    windows: &[MaintenanceWindow],
    request: &Request,
    now: Timestamp,
) -> Result<Calendar, String> {
    let _ = (windows, request, now);
    unimplemented!("contract: built by the calendar module")
}
