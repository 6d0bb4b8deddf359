//! Property tests over hostile input: every kind's `decide` (and its status builder where
//! that is cheap) and the RunbookRun step resolver, fed arbitrary specs (durations up to
//! overflow, long and non-ASCII strings, negative and huge counts) and clocks at the ends of
//! the timestamp range. The property is that nothing panics: a panic in a reconcile would
//! take a controller away from every namespace.

#[cfg(test)]
mod tests;
