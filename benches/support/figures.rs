//! The figures table of the windows, releases and backups benchmarks. (`runs` prints its own, with
//! medians over rounds, so these items are unused there.)
#![allow(dead_code)]

use super::{Snapshot, is_write, percentile, sorted};

/// One row's content.
pub enum Cell {
    /// A section heading.
    Heading,
    /// Samples: count, p50, p99, max.
    Dist(Vec<f64>),
    /// One value (None: not measured).
    Value(Option<f64>),
}

/// One row of the figures table.
pub struct Row {
    label: String,
    cell: Cell,
    unit: &'static str,
    note: String,
}

/// The figures table the windows, releases and backups benchmarks print: distributions as n, p50,
/// p99 and max; single values; headings.
#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
}

impl Table {
    /// The two rows that back an interval's operator-write count with independent sources:
    /// the operator's own `api_writes` metric (with its reconciles, of all controllers and of
    /// `controller`), and every client's writes to ops.runbook.dev by the API server's count.
    pub fn write_checks(&mut self, d: &Snapshot, controller: &str) {
        self.value(
            "  operator api_writes metric",
            Some(d.op_sum("write ")),
            "writes",
            format!(
                "reconciles: {} ({controller}: {})",
                num(d.op_sum("reconcile ")),
                num(d.op_sum(&format!("reconcile {controller}")))
            ),
        );
        self.value(
            "  all clients: writes to ops.runbook.dev",
            Some(d.api_sum(|verb, what| is_write(verb) && what.starts_with("ops.runbook.dev/"))),
            "writes",
            format!(
                "apiserver_request_total; operator GET+LIST in the interval: {}",
                num(d.flow("get") + d.flow("list"))
            ),
        );
    }

    /// Adds a section heading.
    pub fn heading(&mut self, text: impl Into<String>) {
        self.rows.push(Row {
            label: text.into(),
            cell: Cell::Heading,
            unit: "",
            note: String::new(),
        });
    }

    /// Adds a distribution of `samples`.
    pub fn dist(
        &mut self,
        label: impl Into<String>,
        samples: Vec<f64>,
        unit: &'static str,
        note: impl Into<String>,
    ) {
        self.rows.push(Row {
            label: label.into(),
            cell: Cell::Dist(sorted(samples)),
            unit,
            note: note.into(),
        });
    }

    /// Adds one value (`None`: not measured).
    pub fn value(
        &mut self,
        label: impl Into<String>,
        value: Option<f64>,
        unit: &'static str,
        note: impl Into<String>,
    ) {
        self.rows.push(Row {
            label: label.into(),
            cell: Cell::Value(value),
            unit,
            note: note.into(),
        });
    }

    /// Prints the table to standard output.
    pub fn print(&self) {
        println!(
            "{:<58} {:>5} {:>9} {:>9} {:>9} {:<6}  note",
            "figure", "n", "p50|value", "p99", "max", "unit"
        );
        println!("{}", "-".repeat(124));
        let opt = |v: Option<f64>| v.map_or("-".to_owned(), num);
        for row in &self.rows {
            match &row.cell {
                Cell::Heading => println!("{}", row.label),
                Cell::Dist(v) => println!(
                    "{:<58} {:>5} {:>9} {:>9} {:>9} {:<6}  {}",
                    row.label,
                    v.len(),
                    opt(percentile(v, 0.5)),
                    opt(percentile(v, 0.99)),
                    opt(percentile(v, 1.0)),
                    row.unit,
                    row.note
                ),
                Cell::Value(v) => println!(
                    "{:<58} {:>5} {:>9} {:>9} {:>9} {:<6}  {}",
                    row.label,
                    "",
                    v.map_or("n/a".to_owned(), num),
                    "",
                    "",
                    row.unit,
                    row.note
                ),
            }
        }
    }
}

/// A figure for the table: `support::num`, but zero is "0".
pub fn num(v: f64) -> String {
    if v == 0.0 {
        "0".to_owned()
    } else {
        super::num(v)
    }
}
