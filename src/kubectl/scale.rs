//! `kubectl scale`: the replica count a scale step asks for.

/// The replica count a scale step asks for: `replicas` when given (an absolute count wins
/// over a delta), else `current` changed by `by`, else `current`. Never below 0, and the
/// arithmetic saturates rather than wrapping.
pub fn scale_target(current: i32, replicas: Option<i32>, by: Option<i32>) -> i32 {
    match (replicas, by) {
        (Some(count), _) => count,
        (None, Some(delta)) => current.saturating_add(delta),
        (None, None) => current,
    }
    .max(0)
}
