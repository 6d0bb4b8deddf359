//! Golden tests: every name the operator derived before the naming rules were gathered here is
//! derived byte for byte the same by [`bound`]. The `legacy` module holds the former functions
//! verbatim (as they stood in `runbook/triggers.rs`, `maintenance_window/lifecycle.rs`,
//! `runbook_run/actions.rs`, `backup_policy/plan.rs` and `blue_green/release.rs`), so an
//! upgraded operator finds the Jobs and runs its predecessor created.

use super::*;

mod legacy {
    use super::super::{fnv32 as fnv, fnv64 as fnv1a64};

    // runbook/triggers.rs
    pub fn triggers_bounded(name: &str) -> String {
        if name.len() <= 253 {
            return name.to_owned();
        }
        let hash = fnv(name);
        format!("{}-{hash:08x}", &name[..243])
    }

    // maintenance_window/lifecycle.rs
    pub fn lifecycle_bounded(name: String) -> String {
        const MAX_NAME: usize = 253;
        if name.len() <= MAX_NAME {
            return name;
        }
        let hash = fnv(&name);
        let keep = &name[..MAX_NAME - 9];
        format!("{}-{hash:08x}", keep.trim_end_matches(['-', '.']))
    }

    // runbook_run/actions.rs
    pub fn job_name(run: &str, step: &str, attempt: i32) -> String {
        let full = format!("{run}-{step}-{attempt}");
        if full.len() <= 63 {
            return full;
        }
        let hash = fnv(&full);
        let keep = 63 - 9;
        format!("{}-{hash:08x}", full[..keep].trim_end_matches('-'))
    }

    // backup_policy/plan.rs
    const MAX_LABEL_VALUE: usize = 63;
    const MAX_BACKUP_JOB_NAME: usize = 52;
    const HASH_SUFFIX_LEN: usize = 9;
    fn prefix(text: &str, max: usize) -> &str {
        let mut end = max.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        &text[..end]
    }
    fn hash8(text: &str) -> String {
        format!("{:08x}", fnv(text))
    }
    pub fn label_value(policy: &str) -> String {
        if policy.len() <= MAX_LABEL_VALUE {
            return policy.to_owned();
        }
        let head = prefix(policy, MAX_LABEL_VALUE - HASH_SUFFIX_LEN).trim_end_matches(['-', '.']);
        format!("{head}-{}", hash8(policy))
    }
    pub fn backup_job_name(policy: &str, suffix: &str) -> String {
        if policy.len() + suffix.len() <= MAX_BACKUP_JOB_NAME {
            return format!("{policy}{suffix}");
        }
        let room = MAX_BACKUP_JOB_NAME.saturating_sub(suffix.len() + HASH_SUFFIX_LEN);
        let head = prefix(policy, room).trim_end_matches(['-', '.']);
        format!("{head}-{}{suffix}", hash8(policy))
    }

    // blue_green/release.rs
    pub fn release_bounded(text: &str, max: usize) -> String {
        if text.len() <= max {
            return text.to_owned();
        }
        let hash = format!("{:016x}", fnv1a64(text.as_bytes()));
        let keep = text.get(..max - 11).unwrap_or(text);
        format!("{}-{}", keep.trim_end_matches(['-', '.', '_']), &hash[..10])
    }
}

/// Names of every length around each limit, with `-` and `.` placed at and around each cut
/// point, plus multi-byte characters straddling the cuts.
fn corpus() -> Vec<String> {
    let mut texts = vec![String::new(), "a".into(), "web".into(), "db.prod".into()];
    for len in (1..=300).chain([400, 600]) {
        let plain: String = "abcdefghijklmnopqrstuvwxyz0123456789"
            .chars()
            .cycle()
            .take(len)
            .collect();
        texts.push(plain.clone());
        for cut in [
            9usize, 10, 11, 43, 44, 45, 53, 54, 55, 63, 64, 242, 243, 244, 245,
        ] {
            for mark in ["-", ".", "--", "-.", ".-", "_"] {
                // The mark ending just before the cut, and starting at it.
                for start in [cut.saturating_sub(mark.len()), cut] {
                    if start + mark.len() <= len {
                        let mut marked = plain.clone();
                        marked.replace_range(start..start + mark.len(), mark);
                        texts.push(marked);
                    }
                }
            }
        }
    }
    texts
}

/// Unicode-edged texts: a multi-byte character straddling each cut point. The legacy functions
/// that sliced by byte index panicked on these (or, for releases, returned a name longer than
/// the limit); names the API server accepts are ASCII, so no stored object has one.
fn unicode_corpus() -> Vec<String> {
    let mut texts = Vec::new();
    for len in [60, 63, 64, 70, 250, 253, 254, 300] {
        for at in [40, 41, 42, 43, 51, 52, 53, 54, 241, 242, 243, 244] {
            if at + 2 < len {
                let mut text = "x".repeat(len);
                text.replace_range(at..at + 2, "é");
                texts.push(text);
            }
        }
    }
    texts
}

fn legacy_ok<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Option<T> {
    std::panic::catch_unwind(f).ok()
}

#[test]
fn corpus_has_the_edges() {
    let texts = corpus();
    assert!(texts.len() > 2_000, "{}", texts.len());
    assert!(texts.iter().any(|t| t.len() == 63 && t.ends_with('-')));
    assert!(texts.iter().any(|t| t.len() > 253 && t.contains('.')));
}

#[test]
fn runbook_run_names_are_unchanged() {
    for text in corpus() {
        assert_eq!(
            bound(&text, RUNBOOK_RUN_NAME),
            legacy::triggers_bounded(&text),
            "{text:?}"
        );
    }
}

#[test]
fn window_run_names_are_unchanged() {
    for text in corpus() {
        assert_eq!(
            bound(&text, WINDOW_RUN_NAME),
            legacy::lifecycle_bounded(text.clone()),
            "{text:?}"
        );
    }
}

#[test]
fn step_job_names_are_unchanged() {
    for text in corpus() {
        for (step, attempt) in [("scale", 1), ("backup-db", 12), ("s", 3)] {
            let full = format!("{text}-{step}-{attempt}");
            assert_eq!(
                bound(&full, STEP_JOB_NAME),
                legacy::job_name(&text, step, attempt),
                "{text:?}"
            );
        }
    }
}

#[test]
fn policy_labels_and_backup_job_names_are_unchanged() {
    for text in corpus() {
        assert_eq!(
            bound(&text, POLICY_LABEL_VALUE),
            legacy::label_value(&text),
            "{text:?}"
        );
        for suffix in ["-29512345", "-now-0a1b2c3d", "-1"] {
            assert_eq!(
                bound_with_suffix(&text, suffix, 52),
                legacy::backup_job_name(&text, suffix),
                "{text:?}{suffix}"
            );
        }
    }
}

#[test]
fn release_names_are_unchanged() {
    for text in corpus() {
        for max in [MAX_LABEL_VALUE, MAX_NAME - 6] {
            assert_eq!(
                bound(&text, release(max)),
                legacy::release_bounded(&text, max),
                "{text:?}"
            );
        }
    }
}

#[test]
fn unicode_edges_match_wherever_the_legacy_rule_gave_a_valid_name() {
    type Legacy = fn(&str) -> String;
    let rules: [(Bound, Legacy); 4] = [
        (RUNBOOK_RUN_NAME, |t| legacy::triggers_bounded(t)),
        (WINDOW_RUN_NAME, |t| legacy::lifecycle_bounded(t.to_owned())),
        (POLICY_LABEL_VALUE, |t| legacy::label_value(t)),
        (release(MAX_LABEL_VALUE), |t| {
            legacy::release_bounded(t, MAX_LABEL_VALUE)
        }),
    ];
    let mut compared = 0;
    for text in unicode_corpus() {
        for (rule, old) in rules {
            let new = bound(&text, rule);
            assert!(new.len() <= rule.max, "{text:?} -> {new:?}");
            let t = text.clone();
            if let Some(old) = legacy_ok(move || old(&t))
                && old.len() <= rule.max
            {
                assert_eq!(new, old, "{text:?}");
                compared += 1;
            }
        }
    }
    assert!(compared > 20, "{compared}");
}

#[test]
fn pinned_examples() {
    // Literal values: a change to the hash or the cut shows here even if the legacy copies
    // above were edited along with it.
    let long = "a".repeat(70);
    assert_eq!(fnv32(""), 0x811c_9dc5);
    assert_eq!(fnv32("a"), 0xe40c_292c);
    assert_eq!(fnv64(b"foobar"), 0x8594_4171_f739_67e8);
    assert_eq!(bound("web", STEP_JOB_NAME), "web");
    assert_eq!(
        bound(&long, STEP_JOB_NAME),
        format!("{}-{}", "a".repeat(54), hash8(&long))
    );
    assert_eq!(bound(&long, POLICY_LABEL_VALUE).len(), 63);
    assert_eq!(bound(&long, release(63)).len(), 63);
    assert_eq!(bound_with_suffix("db", "-29512345", 52), "db-29512345");
}

#[test]
fn dns_labels_and_subdomains() {
    assert!(is_dns_label("shop-1"));
    for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"a".repeat(64)] {
        assert!(!is_dns_label(bad), "{bad:?}");
    }
    assert!(is_dns_subdomain("runbook-runner"));
    assert!(is_dns_subdomain("a.b-c.d"));
    for bad in [
        "",
        "a..b",
        ".a",
        "a.",
        "a.-b",
        &format!("{}.a", "a".repeat(63)).repeat(4),
    ] {
        assert!(!is_dns_subdomain(bad), "{bad:?}");
    }
}

#[test]
fn label_values_of_long_names_are_bounded_and_distinct() {
    assert_eq!(label_value("deploy"), "deploy");
    let name63 = "a".repeat(63);
    assert_eq!(label_value(&name63), name63);
    for len in [64, 100, 253] {
        let name = format!("{}x", "r.b-".repeat(len / 4))
            .chars()
            .take(len)
            .collect::<String>();
        let value = label_value(&name);
        assert!(value.len() <= MAX_LABEL_VALUE, "{value}");
        assert!(is_label_value(&value), "{value:?} from a {len}-char name");
        // The same rule as the BackupPolicy label, so existing Jobs keep matching.
        if is_dns_subdomain(&name) {
            assert_eq!(value, bound(&name, POLICY_LABEL_VALUE));
        }
    }
    let a = format!("{}-a", "x".repeat(70));
    let b = format!("{}-b", "x".repeat(70));
    assert_ne!(label_value(&a), label_value(&b));
    for odd in ["x/status", "ä", "/", "-a-", "a b"] {
        assert!(is_label_value(&label_value(odd)), "{odd:?}");
    }
}

#[test]
fn label_keys() {
    for good in ["app", "app.kubernetes.io/name", "a_b.c-d", "x/y"] {
        assert!(is_label_key(good), "{good:?}");
    }
    for bad in [
        "",
        "a,b",
        "a=b",
        "a/b/c",
        "/a",
        "A_/x",
        "a b",
        &"k".repeat(64),
    ] {
        assert!(!is_label_key(bad), "{bad:?}");
    }
    for bad in ["a,b", "a=b", "x)", "-a", &"v".repeat(64)] {
        assert!(!is_label_value(bad), "{bad:?}");
    }
}

#[test]
fn truncation_is_bounded_idempotent_and_on_a_char_boundary() {
    assert_eq!(truncate("short", 10), "short");
    let long = "é".repeat(2000);
    let cut = truncate(&long, MAX_STATUS_TEXT);
    assert!(cut.len() <= MAX_STATUS_TEXT);
    assert!(cut.ends_with(TRUNCATED_MARKER));
    assert_eq!(truncate(&cut, MAX_STATUS_TEXT), cut);
    assert!(truncate("abc", 1).len() <= TRUNCATED_MARKER.len());
}

#[test]
fn lock_lease_names_are_pinned() {
    assert_eq!(
        lock_lease("deployment/api"),
        format!("runbook-lock-{:016x}", fnv64(b"deployment/api"))
    );
    assert_eq!(
        lock_lease("deployment/api"),
        "runbook-lock-cf64df44d3ba9971"
    );
    assert!(is_dns_label(&lock_lease(&"k".repeat(1024))));
    assert_ne!(lock_lease("deployment/api"), lock_lease("deployment/web"));
}
