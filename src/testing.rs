//! Test utilities shared by every kind's `decide` tests: the checks each simulated step runs.
//!
//! A kind's simulation (`Sim`) drives its pure `decide` the way the controller does, carrying
//! out each decision on a model of the cluster. Before it acts, it asks [`checked`] for the
//! decision, which also proves on that very input that:
//! - `decide` is pure: the same input and clock give the same decision;
//! - a restarted operator decides the same: the input rebuilt from what the API server stores
//!   (`restart`, usually a JSON round trip of the object) gives the same decision;
//! - the kind's safety invariant holds (no traffic to a slot without ready pods, no second
//!   backup Job for one scheduled time, no change outside a window...).

use std::fmt::Debug;

use jiff::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How one kind's decision is checked.
pub struct Checks<'a, I, D> {
    /// The kind's pure decision.
    pub decide: &'a dyn Fn(&I, Timestamp) -> D,
    /// The input as a restarted operator rebuilds it from what the API server stores.
    pub restart: &'a dyn Fn(&I) -> I,
    /// The kind's safety invariant: `Err` names what the decision would break.
    pub invariant: &'a dyn Fn(&I, &D) -> Result<(), String>,
}

/// The decision for `input` at `now`, after checking purity, restart-idempotence and the
/// invariant on it (panics, naming which, when one fails).
pub fn checked<I, D>(checks: &Checks<'_, I, D>, input: &I, now: Timestamp) -> D
where
    D: PartialEq + Debug,
{
    let decision = (checks.decide)(input, now);
    assert_eq!(
        (checks.decide)(input, now),
        decision,
        "decide is not pure: the same input and clock gave another decision"
    );
    let restarted = (checks.restart)(input);
    assert_eq!(
        (checks.decide)(&restarted, now),
        decision,
        "a restarted operator (its input rebuilt from what the API server stores) decides differently"
    );
    if let Err(broken) = (checks.invariant)(input, &decision) {
        panic!("{decision:?} breaks the invariant: {broken}");
    }
    decision
}

/// `value` as the API server would give it back: serialized to JSON and read again.
pub fn json_round_trip<T: Serialize + DeserializeOwned>(value: &T) -> T {
    serde_json::to_value(value)
        .and_then(serde_json::from_value)
        .expect("a stored object reads back")
}

/// No invariant beyond purity and restart-idempotence.
pub fn no_invariant<I, D>(_: &I, _: &D) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(input: &u32, now: Timestamp) -> bool {
        now.as_second() > i64::from(*input)
    }

    #[test]
    fn a_pure_decision_passes() {
        let checks = Checks {
            decide: &decide,
            restart: &json_round_trip,
            invariant: &no_invariant,
        };
        assert!(checked(&checks, &3, Timestamp::from_second(4).unwrap()));
    }

    #[test]
    #[should_panic(expected = "breaks the invariant: too late")]
    fn a_broken_invariant_fails() {
        let checks = Checks {
            decide: &decide,
            restart: &json_round_trip,
            invariant: &|_: &u32, d: &bool| if *d { Err("too late".into()) } else { Ok(()) },
        };
        checked(&checks, &3, Timestamp::from_second(4).unwrap());
    }

    #[test]
    #[should_panic(expected = "decides differently")]
    fn a_decision_that_depends_on_unstored_state_fails() {
        let checks = Checks {
            decide: &decide,
            // A restart that loses the input (as if it were kept only in memory).
            restart: &|_: &u32| 100,
            invariant: &no_invariant,
        };
        checked(&checks, &3, Timestamp::from_second(4).unwrap());
    }
}
