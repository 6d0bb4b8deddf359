//! Deterministic, bounded names and label values.
//!
//! A restarted operator finds the Jobs and runs it created by recomputing their names, so every
//! name here must stay the same forever for the same input: a change would start a duplicate of
//! work already in flight. The golden tests in `names/tests.rs` pin each rule's output.
//!
//! There is one cutting helper, [`bound`]; the places that need a bounded name differ only in
//! the [`Bound`] they pass (how long, how much is kept, which hash, what is trimmed), and those
//! rules are the constants and constructors below.

use std::borrow::Cow;

/// Longest object name Kubernetes accepts for most kinds (a DNS subdomain).
pub const MAX_NAME: usize = 253;
/// Longest label value (and DNS label) Kubernetes accepts.
pub const MAX_LABEL_VALUE: usize = 63;

/// The name of the Lease that is the lock of a resolved concurrency `key` (in the run's
/// namespace): `runbook-lock-` and the sixteen hex digits of [`fnv64`] of the key. Every run
/// asking for the same key, from any Runbook and any replica, computes the same name.
pub fn lock_lease(key: &str) -> String {
    format!("runbook-lock-{:016x}", fnv64(key.as_bytes()))
}

/// 32-bit FNV-1a: tiny, well known and stable across Rust releases and processes (unlike
/// `std`'s hasher, which is seeded per process).
pub fn fnv32(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// 64-bit FNV-1a, for the blue-green revision hash and release names.
pub fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// [`fnv32`] as eight lowercase hex digits.
pub fn hash8(text: &str) -> String {
    format!("{:08x}", fnv32(text))
}

/// The hash appended to a name that was cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    /// Eight hex digits of [`fnv32`].
    Fnv32,
    /// The first ten hex digits of [`fnv64`].
    Fnv64Short,
}

impl Hash {
    fn of(self, text: &str) -> String {
        match self {
            Hash::Fnv32 => hash8(text),
            Hash::Fnv64Short => format!("{:016x}", fnv64(text.as_bytes()))[..10].to_owned(),
        }
    }
}

/// How a name is bounded: a text longer than `max` bytes keeps its first `keep` bytes (on a
/// character boundary), loses any trailing `trim` characters, and gets `-` and a hash of the
/// whole text appended, so two long texts with the same beginning still differ.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    /// Longest text returned unchanged.
    pub max: usize,
    /// Bytes kept of a longer text, before the hash.
    pub keep: usize,
    /// The hash appended.
    pub hash: Hash,
    /// Characters removed from the end of the kept part (so the name never has `-.` or `--`).
    pub trim: &'static [char],
}

impl Bound {
    /// A bound of `max` bytes with an [`Hash::Fnv32`] suffix that fills it exactly.
    pub const fn fnv32(max: usize, trim: &'static [char]) -> Self {
        Self {
            max,
            keep: max.saturating_sub(9),
            hash: Hash::Fnv32,
            trim,
        }
    }
}

/// Names of runs a Runbook starts (run-now and scheduled): at most [`MAX_NAME`], kept part
/// not trimmed.
pub const RUNBOOK_RUN_NAME: Bound = Bound {
    max: MAX_NAME,
    keep: MAX_NAME - 10,
    hash: Hash::Fnv32,
    trim: &[],
};

/// Names of runs a MaintenanceWindow starts (`beforeStart`, `afterEnd`).
pub const WINDOW_RUN_NAME: Bound = Bound::fnv32(MAX_NAME, &['-', '.']);

/// Names of the Jobs a `job` step creates: a DNS label, since the Job controller copies the
/// name into the `job-name` label of its pods.
pub const STEP_JOB_NAME: Bound = Bound::fnv32(MAX_LABEL_VALUE, &['-']);

/// Label values made from a BackupPolicy name.
pub const POLICY_LABEL_VALUE: Bound = Bound::fnv32(MAX_LABEL_VALUE, &['-', '.']);

/// A blue-green bound of `max` bytes: a ten-digit [`Hash::Fnv64Short`] suffix.
pub const fn release(max: usize) -> Bound {
    Bound {
        max,
        keep: max.saturating_sub(11),
        hash: Hash::Fnv64Short,
        trim: &['-', '.', '_'],
    }
}

/// `text` if it fits `rule.max`, else its first `rule.keep` bytes (cut on a character
/// boundary, trailing `rule.trim` characters removed), `-` and the hash of the whole text.
pub fn bound(text: &str, rule: Bound) -> Cow<'_, str> {
    if text.len() <= rule.max {
        return Cow::Borrowed(text);
    }
    let kept = prefix(text, rule.keep).trim_end_matches(rule.trim);
    Cow::Owned(format!("{kept}-{}", rule.hash.of(text)))
}

/// `<base><suffix>` within `max` bytes: the suffix is always kept whole and `base` is bounded
/// (hashed on its own) to leave room for it.
pub fn bound_with_suffix(base: &str, suffix: &str, max: usize) -> String {
    let room = max.saturating_sub(suffix.len());
    format!("{}{suffix}", bound(base, Bound::fnv32(room, &['-', '.'])))
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub fn prefix(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Whether `name` is a DNS-1123 label (a namespace's name): lowercase letters, digits and
/// '-', starting and ending with a letter or digit, at most 63.
pub fn is_dns_label(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= MAX_LABEL_VALUE
        && name.chars().all(|c| alnum(c) || c == '-')
        && name.starts_with(alnum)
        && name.ends_with(alnum)
}

/// Whether `name` is a DNS-1123 subdomain (most object names, a ServiceAccount's included):
/// DNS labels joined by '.', at most 253 in all.
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= MAX_NAME && name.split('.').all(is_dns_label)
}

/// Whether `text` is a valid label value: at most 63 characters, empty or beginning and
/// ending with a letter or digit, with only letters, digits, `-`, `_` and `.` between.
pub fn is_label_value(text: &str) -> bool {
    let edge = |c: char| c.is_ascii_alphanumeric();
    text.is_empty()
        || (text.len() <= MAX_LABEL_VALUE
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && text.starts_with(edge)
            && text.ends_with(edge))
}

/// The label value that stands for `name` (an object name, e.g. a Runbook's on its runs):
/// `name` itself when it is a valid label value, otherwise its first 54 bytes (characters a
/// label value may not hold replaced by `-`, separators trimmed from both ends), `-` and the
/// [`hash8`] of the whole name: at most 63, and two long names with the same beginning still
/// differ. A DNS name gets the same value as [`POLICY_LABEL_VALUE`] gives it, so the labels
/// already on BackupPolicy Jobs keep matching.
pub fn label_value(name: &str) -> Cow<'_, str> {
    if is_label_value(name) {
        return Cow::Borrowed(name);
    }
    let cleaned: String = prefix(name, MAX_LABEL_VALUE - 9)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let separators = ['-', '_', '.'];
    let kept = cleaned
        .trim_start_matches(separators)
        .trim_end_matches(separators);
    let hash = hash8(name);
    Cow::Owned(if kept.is_empty() {
        hash
    } else {
        format!("{kept}-{hash}")
    })
}

/// Longest message the operator writes into a status field (a step's message or output, a
/// condition's message), in bytes: a huge parameter or response never makes a status too
/// large for etcd.
pub const MAX_STATUS_TEXT: usize = 1024;

/// What ends a text [`truncate`] cut.
pub const TRUNCATED_MARKER: &str = "… (truncated)";

/// `text` if it is at most `max` bytes, otherwise its longest prefix that leaves room for
/// [`TRUNCATED_MARKER`] (cut on a character boundary), then the marker: at most `max` bytes,
/// and cutting a cut text again changes nothing.
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let kept = prefix(text, max.saturating_sub(TRUNCATED_MARKER.len()));
    Cow::Owned(format!("{kept}{TRUNCATED_MARKER}"))
}

/// Whether `key` is a valid label key: an optional DNS-subdomain prefix and `/`, then a name
/// of at most 63 characters (letters, digits, `-`, `_`, `.`; a letter or digit at both ends).
pub fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

#[cfg(test)]
mod tests;
