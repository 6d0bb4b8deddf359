//! The one way Events leave the operator: a bounded queue drained by a fixed number of
//! workers. A burst of Events (a thousand runs finishing at once, an API server too slow to
//! take them) then costs at most [`QUEUE`] queued Events of memory and [`WORKERS`] requests
//! in flight; what does not fit is dropped and counted in `events_dropped_total`, never
//! waited for: Events are best-effort, and a reconcile never waits on one.

use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder};
use tokio::sync::mpsc;
use tracing::warn;

use crate::metrics::Metrics;

/// Events waiting to be published, at most; more are dropped and counted.
pub const QUEUE: usize = 1024;

/// Events written to the API server at once.
pub const WORKERS: usize = 4;

/// Longest Event note the Events API accepts (events.k8s.io/v1 `note`), in bytes: a longer
/// one is refused as a whole, so it is cut to fit ([`truncate_note`]).
pub const NOTE_LIMIT: usize = 1024;

/// When an Event (events.k8s.io/v1) was last seen: its series' last observation, else its
/// time, else the deprecated last timestamp, else its creation.
pub fn last_seen(event: &k8s_openapi::api::events::v1::Event) -> Option<jiff::Timestamp> {
    event
        .series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.deprecated_last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// `note` cut to at most [`NOTE_LIMIT`] bytes on a character boundary, ending in
/// [`crate::names::TRUNCATED_MARKER`] when it was cut (the same cut as status text).
pub fn truncate_note(note: String) -> String {
    match crate::names::truncate(&note, NOTE_LIMIT) {
        std::borrow::Cow::Borrowed(_) => note,
        std::borrow::Cow::Owned(cut) => cut,
    }
}

type Queued = (Event, ObjectReference);

/// Publishes Events through a bounded queue (see the module documentation). Cheap to clone:
/// clones share the queue and its workers.
#[derive(Clone)]
pub struct Publisher {
    recorder: Recorder,
    metrics: Arc<Metrics>,
    // Started on the first Event, so a Context can be built outside a Tokio runtime.
    queue: Arc<OnceLock<mpsc::Sender<Queued>>>,
}

impl Publisher {
    /// A publisher writing with `recorder`, counting drops in `metrics`.
    pub fn new(recorder: Recorder, metrics: Arc<Metrics>) -> Self {
        Self {
            recorder,
            metrics,
            queue: Arc::default(),
        }
    }

    /// Queues `event` about `regarding`, its note cut to [`NOTE_LIMIT`]; drops it (and counts
    /// it) when the queue is full. Must be called inside a Tokio runtime.
    pub fn send(&self, mut event: Event, regarding: ObjectReference) {
        event.note = event.note.map(truncate_note);
        let queue = self.queue.get_or_init(|| self.start());
        if let Err(err) = queue.try_send((event, regarding)) {
            let reason = match &err {
                mpsc::error::TrySendError::Full((event, _))
                | mpsc::error::TrySendError::Closed((event, _)) => event.reason.clone(),
            };
            self.metrics.events_dropped.inc();
            warn!(
                reason,
                "dropped an Event: {QUEUE} are already waiting to be published"
            );
        }
    }

    fn start(&self) -> mpsc::Sender<Queued> {
        let (tx, rx) = mpsc::channel::<Queued>(QUEUE);
        let recorder = self.recorder.clone();
        let queued = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        tokio::spawn(
            queued.for_each_concurrent(WORKERS, move |(event, regarding)| {
                let recorder = recorder.clone();
                async move {
                    if let Err(err) = recorder.publish(&event, &regarding).await {
                        warn!(%err, reason = event.reason, "could not publish an Event");
                    }
                }
            }),
        );
        tx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_note_is_kept_whole() {
        let note = "x".repeat(NOTE_LIMIT);
        assert_eq!(truncate_note(note.clone()), note);
        assert_eq!(truncate_note(String::new()), "");
    }

    #[test]
    fn a_long_note_is_cut_to_the_limit_with_a_marker() {
        let cut = truncate_note("x".repeat(NOTE_LIMIT + 1));
        assert!(cut.len() <= NOTE_LIMIT, "{}", cut.len());
        assert!(cut.ends_with(crate::names::TRUNCATED_MARKER));
        assert!(cut.starts_with("xxx"));
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // Multi-byte characters straddle every possible cut point.
        for pad in 0..4 {
            let note = format!("{}{}", "a".repeat(pad), "é✓😀".repeat(400));
            let cut = truncate_note(note);
            assert!(cut.len() <= NOTE_LIMIT);
            assert!(cut.ends_with(crate::names::TRUNCATED_MARKER), "{cut}");
        }
    }

    fn event(reason: &str) -> Event {
        Event {
            type_: kube::runtime::events::EventType::Normal,
            reason: reason.into(),
            note: Some("n".repeat(2 * NOTE_LIMIT)),
            action: reason.into(),
            secondary: None,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_drops_and_counts() {
        // On a current-thread runtime the workers cannot run before this test yields: the
        // queue takes exactly QUEUE Events, the rest are dropped, and no request is sent.
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("a URL"));
        let client = kube::Client::try_from(config).expect("a client");
        let metrics = Arc::new(Metrics::default());
        let publisher = Publisher::new(Recorder::new(client, "test".into()), metrics.clone());
        for _ in 0..QUEUE + 10 {
            publisher.send(event("Burst"), ObjectReference::default());
        }
        assert_eq!(metrics.events_dropped.get(), 10);
        assert!(
            metrics
                .render()
                .contains("runbook_operator_events_dropped_total 10")
        );
    }
}
