//! Turning spec problems into kstatus conditions and an Event, the part of status every kind
//! shares. Pure: the clock is an argument.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::events::EventType;

use crate::conditions::{self, READY, SpecProblem};

/// An Event to publish because something a person cares about changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Normal or Warning.
    pub type_: EventType,
    /// PascalCase reason.
    pub reason: &'static str,
    /// The message.
    pub message: String,
}

/// The outcome of judging a spec: merged conditions, and an Event if readiness flipped.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// Whether the spec is usable.
    pub valid: bool,
    /// The object's conditions after the merge.
    pub conditions: Vec<Condition>,
    /// An Event to publish, only when `Ready` changes.
    pub note: Option<Note>,
}

/// Judges a spec from its problems.
pub fn judge(
    existing: &[Condition],
    problems: &[SpecProblem],
    generation: Option<i64>,
    now: &Time,
    ready_message: &str,
) -> Verdict {
    let desired = conditions::validity(problems, ready_message);
    let merged = conditions::merge(existing, &desired, generation, now);
    let was = existing.iter().find(|c| c.type_ == READY);
    let is = merged.iter().find(|c| c.type_ == READY);
    let changed = match (was, is) {
        (Some(a), Some(b)) => a.status != b.status || a.message != b.message,
        (None, Some(_)) => true,
        _ => false,
    };
    let valid = problems.is_empty();
    let note = changed.then(|| {
        if valid {
            Note {
                type_: EventType::Normal,
                reason: "Ready",
                message: ready_message.to_owned(),
            }
        } else {
            Note {
                type_: EventType::Warning,
                reason: conditions::REASON_INVALID_SPEC,
                message: problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            }
        }
    });
    Verdict {
        valid,
        conditions: merged,
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn first_judgement_announces_itself() {
        let v = judge(
            &[],
            &[],
            Some(1),
            &at("2026-01-01T00:00:00Z"),
            "ready to run",
        );
        assert!(v.valid);
        assert_eq!(v.note.unwrap().reason, "Ready");
    }

    #[test]
    fn unchanged_judgement_is_silent() {
        let first = judge(&[], &[], Some(1), &at("2026-01-01T00:00:00Z"), "ok");
        let again = judge(
            &first.conditions,
            &[],
            Some(1),
            &at("2026-01-05T00:00:00Z"),
            "ok",
        );
        assert_eq!(again.note, None);
        assert_eq!(again.conditions, first.conditions);
    }

    #[test]
    fn invalid_spec_warns_with_the_field() {
        let first = judge(&[], &[], Some(1), &at("2026-01-01T00:00:00Z"), "ok");
        let bad = [SpecProblem::new(
            "spec.schedule.timeZone",
            "\"Mars/Base\" is not an IANA time zone",
        )];
        let v = judge(
            &first.conditions,
            &bad,
            Some(2),
            &at("2026-01-02T00:00:00Z"),
            "ok",
        );
        assert!(!v.valid);
        let note = v.note.unwrap();
        assert_eq!(note.type_, EventType::Warning);
        assert_eq!(note.reason, "InvalidSpec");
        assert!(note.message.starts_with("spec.schedule.timeZone: "));
    }
}
