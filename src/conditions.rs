//! Status conditions in the kstatus style: `Ready`, `Reconciling`, `Stalled`, plus kind-specific
//! types. Merging keeps `lastTransitionTime` unless the status flips, so a reconcile that
//! learns nothing new produces an identical list and writes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// `Ready`: the object is settled and healthy.
pub const READY: &str = "Ready";
/// `Reconciling`: work is in progress.
pub const RECONCILING: &str = "Reconciling";
/// `Stalled`: nothing more will happen until a person changes something.
pub const STALLED: &str = "Stalled";
/// Reason used when the spec cannot be acted on.
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";

/// Status of a condition, as Kubernetes spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `True`
    True,
    /// `False`
    False,
    /// `Unknown`
    Unknown,
}

impl Status {
    /// The string stored in `Condition.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

/// What a reconcile wants a condition to say; [`merge`] turns it into a stored `Condition`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// Condition type, e.g. `Ready`.
    pub type_: &'static str,
    /// True, False or Unknown.
    pub status: Status,
    /// A PascalCase reason.
    pub reason: String,
    /// A sentence for a person.
    pub message: String,
    /// The instant the condition took this status, when it is known exactly (a deadline that
    /// passed); otherwise a flip is stamped with the time of the reconcile that saw it.
    pub since: Option<Time>,
}

impl Desired {
    /// Builds a desired condition; the message is cut at
    /// [`crate::names::MAX_STATUS_TEXT`] bytes (with a marker), so a huge parameter or answer
    /// quoted in it never makes a status too large to store.
    pub fn new(
        type_: &'static str,
        status: Status,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let message: String = message.into();
        let message = match crate::names::truncate(&message, crate::names::MAX_STATUS_TEXT) {
            std::borrow::Cow::Borrowed(_) => message,
            std::borrow::Cow::Owned(cut) => cut,
        };
        Self {
            type_,
            status,
            reason: reason.into(),
            message,
            since: None,
        }
    }

    /// The same condition, stamped with the instant it took its status if it flips.
    pub fn since(mut self, at: Time) -> Self {
        self.since = Some(at);
        self
    }
}

/// Merges desired conditions into the existing list.
///
/// Conditions of types not named in `desired` are kept as they are, so kinds can own
/// additional types from other code paths. `lastTransitionTime` is carried over whenever the
/// status of a type does not change.
pub fn merge(
    existing: &[Condition],
    desired: &[Desired],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut merged: Vec<Condition> = existing
        .iter()
        .filter(|c| !desired.iter().any(|d| d.type_ == c.type_))
        .cloned()
        .collect();
    for want in desired {
        let previous = existing.iter().find(|c| c.type_ == want.type_);
        let last_transition_time = match previous {
            Some(prev) if prev.status == want.status.as_str() => prev.last_transition_time.clone(),
            _ => want.since.clone().unwrap_or_else(|| now.clone()),
        };
        merged.push(Condition {
            type_: want.type_.to_owned(),
            status: want.status.as_str().to_owned(),
            reason: want.reason.clone(),
            message: want.message.clone(),
            observed_generation: generation,
            last_transition_time,
        });
    }
    merged.sort_by(|a, b| {
        order(&a.type_)
            .cmp(&order(&b.type_))
            .then(a.type_.cmp(&b.type_))
    });
    merged
}

/// Keeps `Ready`, `Reconciling`, `Stalled` first so `kubectl describe` reads top-down.
fn order(type_: &str) -> u8 {
    match type_ {
        READY => 0,
        RECONCILING => 1,
        STALLED => 2,
        _ => 3,
    }
}

/// A status that carries a condition list.
pub trait HasConditions {
    /// The conditions.
    fn conditions(&self) -> &[Condition];
}

/// Implements [`HasConditions`] for status types with a `conditions` field.
#[macro_export]
macro_rules! has_conditions {
    ($($status:ty),+) => {
        $(impl $crate::conditions::HasConditions for $status {
            fn conditions(&self) -> &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition] {
                &self.conditions
            }
        })+
    };
}

/// A spec problem the API server could not catch: which field, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecProblem {
    /// JSON path of the field, e.g. `spec.schedule.cron`.
    pub field: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl SpecProblem {
    /// Builds a problem for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The kstatus triple for an object whose only job so far is to be valid: `Ready=True` when
/// there are no problems, otherwise `Ready=False` and `Stalled=True` with reason `InvalidSpec`
/// and every problem spelled out.
pub fn validity(problems: &[SpecProblem], ready_message: &str) -> Vec<Desired> {
    if problems.is_empty() {
        return vec![
            Desired::new(READY, Status::True, "Ready", ready_message),
            Desired::new(RECONCILING, Status::False, "Settled", "nothing to do"),
            Desired::new(STALLED, Status::False, "Valid", "the spec is valid"),
        ];
    }
    let message = problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    vec![
        Desired::new(READY, Status::False, REASON_INVALID_SPEC, message.clone()),
        Desired::new(
            RECONCILING,
            Status::False,
            REASON_INVALID_SPEC,
            "waiting for the spec to be fixed",
        ),
        Desired::new(STALLED, Status::True, REASON_INVALID_SPEC, message),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn keeps_transition_time_when_status_is_unchanged() {
        let first = merge(
            &[],
            &validity(&[], "ok"),
            Some(1),
            &at("2026-01-01T00:00:00Z"),
        );
        let again = merge(
            &first,
            &validity(&[], "ok"),
            Some(1),
            &at("2026-01-02T00:00:00Z"),
        );
        assert_eq!(first, again);
    }

    #[test]
    fn moves_transition_time_when_status_flips() {
        let first = merge(
            &[],
            &validity(&[], "ok"),
            Some(1),
            &at("2026-01-01T00:00:00Z"),
        );
        let bad = [SpecProblem::new(
            "spec.schedule.cron",
            "not a cron expression",
        )];
        let later = at("2026-01-02T00:00:00Z");
        let flipped = merge(&first, &validity(&bad, "ok"), Some(2), &later);
        let ready = flipped.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.last_transition_time, later);
        assert_eq!(ready.message, "spec.schedule.cron: not a cron expression");
        assert_eq!(ready.observed_generation, Some(2));
        // Reconciling stayed False, so its time did not move.
        let reconciling = flipped.iter().find(|c| c.type_ == RECONCILING).unwrap();
        assert_eq!(reconciling.last_transition_time, at("2026-01-01T00:00:00Z"));
    }

    #[test]
    fn keeps_conditions_it_was_not_asked_about() {
        let other = Condition {
            type_: "Active".into(),
            status: "True".into(),
            reason: "InWindow".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: at("2026-01-01T00:00:00Z"),
        };
        let merged = merge(
            std::slice::from_ref(&other),
            &validity(&[], "ok"),
            Some(1),
            &at("2026-01-03T00:00:00Z"),
        );
        assert_eq!(merged.len(), 4);
        assert_eq!(merged.last(), Some(&other));
        assert_eq!(merged[0].type_, READY);
    }
}
