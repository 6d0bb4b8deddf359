//! Outputs a step reports about itself, beyond the journal's own bookkeeping: a Job's
//! termination messages (what its containers wrote to `terminationMessagePath`), parsed into
//! `key=value` outputs that later steps read as `{{ steps.<name>.outputs.<key> }}` and `when`
//! reads as `steps.<name>.outputs.<key>`. Pure: the pods are read by the act room.
//!
//! A message is either one JSON object of scalars (`{"healthy": true, "lag": 3}`) or
//! `key=value` lines (blank lines and lines starting with `#` ignored). The bounds keep the
//! journal small whatever a container writes: at most [`MAX_KEYS`] keys per step, a message
//! read up to [`MAX_MESSAGE`] bytes (Kubernetes' own cap), values cut at [`MAX_VALUE`] bytes.
//! Keys the journal uses for its own bookkeeping ([`RESERVED`]) are refused, so a message
//! can never rewrite the record the operator relies on after a restart.

use std::collections::BTreeMap;

use super::approval::{REFUSED, WAITING_SINCE};

/// Most keys one step records from termination messages.
pub const MAX_KEYS: usize = 32;
/// Most bytes of one termination message read (Kubernetes caps them at 4096 per container).
pub const MAX_MESSAGE: usize = 4096;
/// Longest value recorded, in bytes; longer values are cut (on a character boundary).
pub const MAX_VALUE: usize = 1024;
/// Most notes about a step's messages kept in its journal message.
const MAX_NOTES: usize = 5;

/// Output keys the journal writes itself, for any step: a termination message or an http
/// capture may not use them (the journal is what a restarted operator trusts). Keep in step
/// with every `outputs.insert` of `src/runbook_run/act`, `status` and the notify sinks.
pub const RESERVED: &[&str] = &[
    // every step (status room)
    "attemptStartedAt",
    "retryAt",
    "reason",
    // http, notify, patch
    "sent",
    "httpStatus",
    "body",
    "bodyTruncated",
    "messageId",
    "smtpReply",
    "dedupKey",
    // job, backup
    "jobName",
    "backupRequest",
    "backupJob",
    // approval
    WAITING_SINCE,
    REFUSED,
    "decision",
    "approvedAt",
    "approvedBy",
    "approverGroups",
    // scale, restart, setEnv, rollback, deletePods, rotateSecret
    "previousReplicas",
    "replicas",
    "restartedAt",
    "restartPatched",
    "priorsRecorded",
    "replicaSet",
    "fromRevision",
    "toRevision",
    "pods",
    "rotated",
];

/// Whether `key` is one the journal writes itself ([`RESERVED`]).
pub fn reserved(key: &str) -> bool {
    RESERVED.contains(&key)
}

/// Whether `key` may name an output: `^[A-Za-z_][A-Za-z0-9_]{0,62}$`, so it reads in CEL as
/// `steps.x.outputs.key` and in a template as `{{ steps.x.outputs.key }}`.
pub fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    key.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `text` cut to at most `limit` bytes on a character boundary; whether it was cut.
pub fn cut(text: &str, limit: usize) -> (&str, bool) {
    if text.len() <= limit {
        return (text, false);
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

/// The outputs of one step's termination messages, and what was refused or cut.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Key to value, in the order the messages gave them (first wins).
    pub outputs: Vec<(String, String)>,
    /// What was ignored and why, for the step's message.
    pub notes: Vec<String>,
}

impl Parsed {
    /// The notes as one sentence for the step's message (at most [`MAX_NOTES`], then a
    /// count), or `None` when there is nothing to say.
    pub fn summary(&self) -> Option<String> {
        if self.notes.is_empty() {
            return None;
        }
        let mut text = self
            .notes
            .iter()
            .take(MAX_NOTES)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if self.notes.len() > MAX_NOTES {
            text.push_str(&format!("; and {} more", self.notes.len() - MAX_NOTES));
        }
        Some(text)
    }

    /// Adds one key and value from container `container`, under the rules of the module.
    fn add(&mut self, container: &str, key: &str, value: &str) {
        if !valid_key(key) {
            self.notes.push(format!(
                "container {container}: key {:?} ignored (keys are letters, digits and _, at most 63, not starting with a digit)",
                cut(key, 64).0
            ));
            return;
        }
        if reserved(key) {
            self.notes.push(format!(
                "container {container}: key {key} ignored (the journal's own output)"
            ));
            return;
        }
        let (value, was_cut) = cut(value, MAX_VALUE);
        if let Some((_, first)) = self.outputs.iter().find(|(k, _)| k == key) {
            if first != value {
                self.notes.push(format!(
                    "container {container}: key {key} given again with another value; the first ({:?}) is kept",
                    cut(first, 64).0
                ));
            }
            return;
        }
        if self.outputs.len() >= MAX_KEYS {
            self.notes.push(format!(
                "container {container}: key {key} ignored (at most {MAX_KEYS} outputs)"
            ));
            return;
        }
        if was_cut {
            self.notes.push(format!(
                "container {container}: value of {key} cut to {MAX_VALUE} bytes"
            ));
        }
        self.outputs.push((key.to_owned(), value.to_owned()));
    }

    /// Parses one container's termination message into this step's outputs.
    pub fn message(&mut self, container: &str, message: &str) {
        let (message, was_cut) = cut(message, MAX_MESSAGE);
        if was_cut {
            self.notes.push(format!(
                "container {container}: termination message read up to {MAX_MESSAGE} bytes"
            ));
        }
        let trimmed = message.trim();
        if trimmed.starts_with('{') {
            self.json(container, trimmed);
            return;
        }
        for (number, line) in message.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once('=') {
                Some((key, value)) => self.add(container, key.trim(), value.trim()),
                None => self.notes.push(format!(
                    "container {container}: line {} of the termination message is not key=value: {:?}",
                    number + 1,
                    cut(line, 64).0
                )),
            }
        }
    }

    fn json(&mut self, container: &str, text: &str) {
        let object = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(object)) => object,
            Ok(_) | Err(_) => {
                self.notes.push(format!(
                    "container {container}: the termination message starts with {{ but is not one JSON object"
                ));
                return;
            }
        };
        // serde_json keeps object keys sorted: the order of the recorded outputs is the keys'.
        for (key, value) in &object {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Null
                | serde_json::Value::Array(_)
                | serde_json::Value::Object(_) => {
                    self.notes.push(format!(
                        "container {container}: key {:?} ignored (only strings, numbers and booleans are outputs)",
                        cut(key, 64).0
                    ));
                    continue;
                }
            };
            self.add(container, key, &text);
        }
    }
}

/// Parses the termination messages of a step's containers, in container order (the first
/// value of a key given twice wins).
pub fn parse(messages: &[(String, String)]) -> Parsed {
    let mut parsed = Parsed::default();
    for (container, message) in messages {
        parsed.message(container, message);
    }
    parsed
}

/// Records `parsed` in a job step's journal outputs: outputs an earlier attempt's messages
/// left (any key not [`RESERVED`]) are dropped first, so the entry shows this attempt's.
pub fn record(outputs: &mut BTreeMap<String, String>, parsed: &Parsed) {
    outputs.retain(|key, _| reserved(key));
    for (key, value) in &parsed.outputs {
        outputs.insert(key.clone(), value.clone());
    }
}

#[cfg(test)]
mod tests;
