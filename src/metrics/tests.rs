use super::*;

#[test]
fn renders_counts_per_controller() {
    let m = Metrics::default();
    m.observe_reconcile(
        "runbook",
        Duration::from_millis(3),
        ReconcileResult::Success,
    );
    m.observe_reconcile("runbook", Duration::from_millis(5), ReconcileResult::Error);
    m.count_reconcile_error("runbook", "forbidden");
    m.count_write("runbook", "status");
    let text = m.render();
    assert!(
        text.contains("runbook_operator_reconciles_total{controller=\"runbook\"} 2"),
        "{text}"
    );
    assert!(
        text.contains(
            "runbook_operator_reconcile_errors_total{controller=\"runbook\",error=\"forbidden\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "runbook_operator_api_writes_total{controller=\"runbook\",write=\"status\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "runbook_operator_reconcile_duration_seconds_count{controller=\"runbook\"} 2"
        ),
        "{text}"
    );
}

#[test]
fn renders_backup_age_and_rpo_at_scrape_time() {
    let m = Metrics::default();
    assert!(!m.render().contains("backup_age_seconds"));
    let an_hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    m.backups.install(Box::new(move || {
        vec![
            BackupFreshness {
                labels: PolicyLabels {
                    namespace: "shop".into(),
                    policy: "nightly".into(),
                },
                newest_good: Some(an_hour_ago),
                rpo: Some(Duration::from_secs(26 * 3600)),
            },
            BackupFreshness {
                labels: PolicyLabels {
                    namespace: "shop".into(),
                    policy: "new".into(),
                },
                newest_good: None,
                rpo: None,
            },
        ]
    }));
    let text = m.render();
    let age_line = text
        .lines()
        .find(|l| l.starts_with("runbook_operator_backup_age_seconds{"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(age_line.contains("policy=\"nightly\""), "{age_line}");
    let age: f64 = age_line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{age_line}"));
    assert!((3599.0..3700.0).contains(&age), "{age_line}");
    assert!(
        !text.contains("policy=\"new\""),
        "no backup, no series: {text}"
    );
    assert!(
        text.contains(
            "runbook_operator_backup_rpo_seconds{namespace=\"shop\",policy=\"nightly\"} 93600"
        ),
        "{text}"
    );
}

fn value_of(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn classifies_reconcile_results_by_action() {
    let ok = |a: Action| Ok::<_, std::fmt::Error>(a);
    assert_eq!(
        ReconcileResult::of(&ok(Action::await_change())),
        ReconcileResult::Success
    );
    assert_eq!(
        ReconcileResult::of(&ok(Action::requeue(Duration::from_secs(5)))),
        ReconcileResult::RequeueAfter
    );
    // A zero timer is still a timer.
    assert_eq!(
        ReconcileResult::of(&ok(Action::requeue(Duration::ZERO))),
        ReconcileResult::RequeueAfter
    );
    assert_eq!(
        ReconcileResult::of(&Err::<Action, _>(std::fmt::Error)),
        ReconcileResult::Error
    );
    let m = Metrics::default();
    m.observe_reconcile("run", Duration::ZERO, ReconcileResult::Success);
    m.observe_reconcile("run", Duration::ZERO, ReconcileResult::RequeueAfter);
    m.observe_reconcile("run", Duration::ZERO, ReconcileResult::RequeueAfter);
    m.observe_reconcile("run", Duration::ZERO, ReconcileResult::Error);
    let text = m.render();
    for (result, n) in [("success", 1.0), ("requeue_after", 2.0), ("error", 1.0)] {
        let series =
            format!("runbook_operator_reconcile_total{{controller=\"run\",result=\"{result}\"}}");
        assert_eq!(value_of(&text, &series), Some(n), "{series} in {text}");
    }
    assert_eq!(
        value_of(
            &text,
            "runbook_operator_reconciles_total{controller=\"run\"}"
        ),
        Some(4.0)
    );
}

#[test]
fn queue_depth_counts_each_waiting_object_once() {
    let m = Metrics::default();
    let depth = |m: &Metrics, c: &str| {
        value_of(
            &m.render(),
            &format!("runbook_operator_workqueue_depth{{controller=\"{c}\"}}"),
        )
    };
    m.enqueued("run", "shop", "a");
    m.enqueued("run", "shop", "a");
    m.enqueued("run", "shop", "b");
    m.enqueued("run", "other", "a");
    m.enqueued("window", "shop", "a");
    assert_eq!(depth(&m, "run"), Some(3.0));
    assert_eq!(depth(&m, "window"), Some(1.0));
    m.dequeued("run", "shop", "a");
    assert_eq!(depth(&m, "run"), Some(2.0));
    // A reconcile of an object that was never waiting (a timer) changes nothing.
    m.dequeued("run", "shop", "zzz");
    assert_eq!(depth(&m, "run"), Some(2.0));
    m.dequeued("run", "shop", "b");
    m.dequeued("run", "other", "a");
    assert_eq!(depth(&m, "run"), Some(0.0));
    assert_eq!(depth(&m, "window"), Some(1.0));
}

#[test]
fn active_workers_follow_the_guards() {
    let m = Arc::new(Metrics::default());
    let series = "runbook_operator_active_workers{controller=\"run\"}";
    let first = m.working("run");
    let second = m.working("run");
    assert_eq!(value_of(&m.render(), series), Some(2.0));
    drop(first);
    assert_eq!(value_of(&m.render(), series), Some(1.0));
    drop(second);
    assert_eq!(value_of(&m.render(), series), Some(0.0));
}

#[test]
fn scrape_time_gauges_read_every_installed_source() {
    let m = Metrics::default();
    let text = m.render();
    assert!(!text.contains("maintenance_window_active"), "{text}");
    assert!(!text.contains("release_degraded"), "{text}");
    let window = |ns: &str, name: &str| WindowLabels {
        namespace: ns.into(),
        window: name.into(),
    };
    let release = |ns: &str, name: &str| ReleaseLabels {
        namespace: ns.into(),
        release: name.into(),
    };
    // One controller set per namespace, each with its own cache.
    m.objects
        .install_windows(Box::new(move || vec![(window("a", "nightly"), true)]));
    m.objects.install_windows(Box::new(move || {
        vec![
            (window("b", "nightly"), false),
            (window("b", "weekend"), true),
        ]
    }));
    m.objects
        .install_releases(Box::new(move || vec![(release("a", "web"), true)]));
    m.objects
        .install_releases(Box::new(move || vec![(release("b", "web"), false)]));
    let policy = |ns: &str| BackupFreshness {
        labels: PolicyLabels {
            namespace: ns.into(),
            policy: "nightly".into(),
        },
        newest_good: None,
        rpo: Some(Duration::from_secs(60)),
    };
    m.backups.install(Box::new(move || vec![policy("a")]));
    m.backups.install(Box::new(move || vec![policy("b")]));
    let text = m.render();
    for (series, v) in [
        (
            "runbook_operator_maintenance_window_active{namespace=\"a\",window=\"nightly\"}",
            1.0,
        ),
        (
            "runbook_operator_maintenance_window_active{namespace=\"b\",window=\"nightly\"}",
            0.0,
        ),
        (
            "runbook_operator_maintenance_window_active{namespace=\"b\",window=\"weekend\"}",
            1.0,
        ),
        (
            "runbook_operator_release_degraded{namespace=\"a\",release=\"web\"}",
            1.0,
        ),
        (
            "runbook_operator_release_degraded{namespace=\"b\",release=\"web\"}",
            0.0,
        ),
        (
            "runbook_operator_backup_rpo_seconds{namespace=\"a\",policy=\"nightly\"}",
            60.0,
        ),
        (
            "runbook_operator_backup_rpo_seconds{namespace=\"b\",policy=\"nightly\"}",
            60.0,
        ),
    ] {
        assert_eq!(value_of(&text, series), Some(v), "{series} in {text}");
    }
    assert_eq!(
        text.matches("# TYPE runbook_operator_maintenance_window_active gauge")
            .count(),
        1,
        "{text}"
    );
}

#[test]
fn a_series_two_sources_report_is_written_once() {
    let m = Metrics::default();
    let row = || {
        vec![(
            WindowLabels {
                namespace: "a".into(),
                window: "w".into(),
            },
            true,
        )]
    };
    m.objects.install_windows(Box::new(row));
    m.objects.install_windows(Box::new(row));
    let text = m.render();
    assert_eq!(
        text.matches("runbook_operator_maintenance_window_active{")
            .count(),
        1,
        "{text}"
    );
}

#[test]
fn renders_domain_counters_and_build_info() {
    let m = Metrics::default();
    m.count_run("shop", Some("deploy"), "Succeeded");
    m.count_run("shop", Some("deploy"), "Failed");
    m.count_run("shop", Some("deploy"), "Failed");
    m.observe_step("scale", "Succeeded", Duration::from_millis(1500));
    m.count_restore_failures("shop", "nightly", 0);
    m.count_restore_failures("shop", "weekend", 2);
    m.observe_switch("shop", "web", "Switched", Some(Duration::from_millis(800)));
    m.observe_switch("shop", "web", "RolledBack", None);
    let text = m.render();
    for (series, v) in [
        (
            "runbook_operator_runs_total{namespace=\"shop\",runbook=\"deploy\",result=\"Failed\"}",
            2.0,
        ),
        (
            "runbook_operator_runs_total{namespace=\"shop\",runbook=\"deploy\",result=\"Succeeded\"}",
            1.0,
        ),
        (
            "runbook_operator_step_duration_seconds_count{type=\"scale\",result=\"Succeeded\"}",
            1.0,
        ),
        (
            "runbook_operator_step_duration_seconds_sum{type=\"scale\",result=\"Succeeded\"}",
            1.5,
        ),
        (
            "runbook_operator_window_restore_failures_total{namespace=\"shop\",window=\"weekend\"}",
            2.0,
        ),
        (
            "runbook_operator_release_switches_total{namespace=\"shop\",release=\"web\",result=\"Switched\"}",
            1.0,
        ),
        (
            "runbook_operator_release_switches_total{namespace=\"shop\",release=\"web\",result=\"RolledBack\"}",
            1.0,
        ),
        (
            "runbook_operator_release_switch_duration_seconds_count{result=\"Switched\"}",
            1.0,
        ),
    ] {
        assert_eq!(value_of(&text, series), Some(v), "{series} in {text}");
    }
    // No failure, no series; no latency known, no observation.
    assert!(!text.contains("window=\"nightly\""), "{text}");
    assert!(
        !text.contains("release_switch_duration_seconds_count{result=\"RolledBack\"}"),
        "{text}"
    );
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value_of(
            &text,
            &format!("runbook_operator_build_info{{version=\"{version}\"}}")
        ),
        Some(1.0),
        "{text}"
    );
}

#[test]
fn counters_carry_their_metadata_under_the_sample_name() {
    let m = Metrics::default();
    m.count_run("shop", Some("deploy"), "Failed");
    m.observe_step("sleep", "Succeeded", Duration::from_secs(1));
    let text = m.render();
    assert!(
        text.contains("# HELP runbook_operator_runs_total RunbookRuns"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE runbook_operator_runs_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE runbook_operator_step_duration_seconds histogram\n"),
        "{text}"
    );
    assert!(!text.contains("# EOF"), "{text}");
    assert!(text.ends_with('\n'), "{text}");
}

#[test]
fn series_of_deleted_objects_go_once_the_caches_have_listed() {
    let m = Metrics::default();
    let runbooks = Arc::new(Mutex::new(vec![("shop".to_owned(), "deploy".to_owned())]));
    let listed = runbooks.clone();
    m.runbooks
        .install(Box::new(move || listed.lock().unwrap().clone()));
    let window = WindowLabels {
        namespace: "shop".into(),
        window: "nightly".into(),
    };
    let windows = Arc::new(Mutex::new(vec![(window.clone(), false)]));
    let listed = windows.clone();
    m.objects
        .install_windows(Box::new(move || listed.lock().unwrap().clone()));
    let release = ReleaseLabels {
        namespace: "shop".into(),
        release: "web".into(),
    };
    let releases = Arc::new(Mutex::new(vec![(release.clone(), false)]));
    let listed = releases.clone();
    m.objects
        .install_releases(Box::new(move || listed.lock().unwrap().clone()));
    m.count_run("shop", Some("deploy"), "Succeeded");
    m.count_run("shop", Some("gone"), "Succeeded");
    // A run naming a Runbook nobody created counts without the made-up name.
    m.count_run("shop", None, "Failed");
    m.count_restore_failures("shop", "nightly", 2);
    m.observe_switch("shop", "web", "Switched", None);
    let runs =
        "runbook_operator_runs_total{namespace=\"shop\",runbook=\"gone\",result=\"Succeeded\"} 1";
    // Not ready: an empty or partial cache is no evidence of a deletion.
    assert!(m.render().contains(runs));
    m.ready.set(1);
    let text = m.render();
    assert!(!text.contains(runs), "{text}");
    for kept in [
        "runbook_operator_runs_total{namespace=\"shop\",runbook=\"deploy\",result=\"Succeeded\"} 1",
        "runbook_operator_runs_total{namespace=\"shop\",runbook=\"\",result=\"Failed\"} 1",
        "runbook_operator_window_restore_failures_total{namespace=\"shop\",window=\"nightly\"} 2",
        "runbook_operator_release_switches_total{namespace=\"shop\",release=\"web\",result=\"Switched\"} 1",
    ] {
        assert!(text.contains(kept), "{kept} missing:\n{text}");
    }
    runbooks.lock().unwrap().clear();
    windows.lock().unwrap().clear();
    releases.lock().unwrap().clear();
    let text = m.render();
    for gone in [
        "runbook=\"deploy\"",
        "window=\"nightly\"",
        "release=\"web\"",
    ] {
        assert!(!text.contains(gone), "{gone} still there:\n{text}");
    }
    assert!(text.contains("runbook=\"\""), "{text}");
}
