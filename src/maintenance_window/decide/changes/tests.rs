use super::*;
use crate::step::EnvVar;
use serde_json::json;

fn deployment(replicas: Option<i32>, env: Value) -> Workload {
    Workload::Deployment(Box::new(
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {
                    "containers": [{"name": "app", "image": "web", "env": env},
                                   {"name": "sidecar", "image": "proxy"}],
                    "initContainers": [{"name": "migrate", "image": "web"}]
                }}
            }
        }))
        .unwrap(),
    ))
}

fn cronjob(suspend: Option<bool>) -> Workload {
    Workload::CronJob(Box::new(
        serde_json::from_value(json!({
            "metadata": {"name": "report", "namespace": "shop"},
            "spec": {"schedule": "0 1 * * *", "suspend": suspend,
                     "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}
        }))
        .unwrap(),
    ))
}

fn target(kind: TargetKind) -> WindowTarget {
    WindowTarget {
        kind,
        name: Some("web".into()),
        selector: None,
        scale_to: None,
        env: None,
        container: None,
        suspend: None,
    }
}

fn maintenance_env() -> Option<Vec<EnvVar>> {
    Some(vec![
        EnvVar {
            name: "MAINTENANCE_MODE".into(),
            value: "true".into(),
        },
        EnvVar {
            name: "LOG_LEVEL".into(),
            value: "debug".into(),
        },
    ])
}

fn fields(saved: &[SavedValue]) -> Vec<(&str, Option<&str>, &str)> {
    saved
        .iter()
        .map(|s| (s.field.as_str(), s.prior.as_deref(), s.written.as_str()))
        .collect()
}

#[test]
fn records_replicas_and_env_of_the_chosen_container() {
    let web = deployment(Some(3), json!([{"name": "LOG_LEVEL", "value": "info"}]));
    let t = WindowTarget {
        scale_to: Some(0),
        env: maintenance_env(),
        container: Some("app".into()),
        ..target(TargetKind::Deployment)
    };
    let saved = activation_values(&t, &web).unwrap();
    assert_eq!(
        fields(&saved),
        vec![
            ("replicas", Some("3"), "0"),
            ("env[app].MAINTENANCE_MODE", None, "true"),
            ("env[app].LOG_LEVEL", Some("info"), "debug"),
        ]
    );
    assert!(
        saved
            .iter()
            .all(|s| s.target == "Deployment/web" && !s.applied)
    );
}

#[test]
fn env_without_container_covers_every_container_like_kubectl() {
    let web = deployment(Some(1), json!(null));
    let t = WindowTarget {
        env: Some(vec![EnvVar {
            name: "MAINTENANCE_MODE".into(),
            value: "true".into(),
        }]),
        ..target(TargetKind::Deployment)
    };
    let saved = activation_values(&t, &web).unwrap();
    assert_eq!(
        fields(&saved),
        vec![
            ("env[app].MAINTENANCE_MODE", None, "true"),
            ("env[sidecar].MAINTENANCE_MODE", None, "true"),
            ("initEnv[migrate].MAINTENANCE_MODE", None, "true"),
        ]
    );
}

#[test]
fn an_unknown_container_is_an_error_naming_it() {
    let web = deployment(Some(1), json!(null));
    let t = WindowTarget {
        env: maintenance_env(),
        container: Some("api".into()),
        ..target(TargetKind::Deployment)
    };
    let err = activation_values(&t, &web).unwrap_err().to_string();
    assert!(
        err.contains("Deployment/web") && err.contains("\"api\""),
        "{err}"
    );
}

#[test]
fn unset_replicas_count_as_one() {
    let web = deployment(None, json!(null));
    let t = WindowTarget {
        scale_to: Some(0),
        ..target(TargetKind::Deployment)
    };
    assert_eq!(
        fields(&activation_values(&t, &web).unwrap()),
        vec![("replicas", Some("1"), "0")]
    );
}

#[test]
fn cronjob_suspend_is_recorded_and_written() {
    let report = cronjob(None);
    let t = WindowTarget {
        suspend: Some(true),
        ..target(TargetKind::CronJob)
    };
    let saved = activation_values(&t, &report).unwrap();
    assert_eq!(fields(&saved), vec![("suspend", Some("false"), "true")]);
    let w = writes(&report, &[(&saved[0], Toward::Written)]).unwrap();
    assert_eq!(w.suspend, Some(true));
    assert_eq!(w.replicas, None);
}

#[test]
fn written_values_make_one_env_patch_and_a_scale() {
    let web = deployment(Some(3), json!([{"name": "LOG_LEVEL", "value": "info"}]));
    let t = WindowTarget {
        scale_to: Some(0),
        env: maintenance_env(),
        container: Some("app".into()),
        ..target(TargetKind::Deployment)
    };
    let saved = activation_values(&t, &web).unwrap();
    let entries: Vec<_> = saved.iter().map(|s| (s, Toward::Written)).collect();
    let w = writes(&web, &entries).unwrap();
    assert_eq!(w.replicas, Some(0));
    assert_eq!(
        w.env_patch.unwrap(),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "env": [
            {"name": "MAINTENANCE_MODE", "value": "true"},
            {"name": "LOG_LEVEL", "value": "debug"}
        ]}]}}}})
    );
}

fn during_window() -> (Workload, Vec<SavedValue>) {
    let before = deployment(Some(3), json!([{"name": "LOG_LEVEL", "value": "info"}]));
    let t = WindowTarget {
        scale_to: Some(0),
        env: maintenance_env(),
        container: Some("app".into()),
        ..target(TargetKind::Deployment)
    };
    let saved = activation_values(&t, &before).unwrap();
    let during = deployment(
        Some(0),
        json!([{"name": "LOG_LEVEL", "value": "debug"}, {"name": "MAINTENANCE_MODE", "value": "true"}]),
    );
    (during, saved)
}

#[test]
fn restore_puts_back_values_and_removes_added_vars() {
    let (during, saved) = during_window();
    let entries: Vec<_> = saved.iter().collect();
    let restore = restoration(&during, &entries, OnDrift::Respect).unwrap();
    assert!(restore.drift.is_empty());
    assert_eq!(restore.writes.replicas, Some(3));
    let patch = restore.writes.env_patch.unwrap().to_string();
    assert!(
        patch.contains(r#"{"$patch":"delete","name":"MAINTENANCE_MODE"}"#),
        "{patch}"
    );
    assert!(
        patch.contains(r#""name":"LOG_LEVEL","value":"info""#),
        "{patch}"
    );
}

#[test]
fn restore_of_what_is_already_back_sends_nothing() {
    let (_, saved) = during_window();
    let back = deployment(Some(3), json!([{"name": "LOG_LEVEL", "value": "info"}]));
    let entries: Vec<_> = saved.iter().collect();
    let restore = restoration(&back, &entries, OnDrift::Revert).unwrap();
    assert!(restore.writes.is_empty(), "{restore:?}");
    assert!(restore.drift.is_empty());
}

#[test]
fn a_manual_scale_up_is_respected_or_reverted() {
    let (_, saved) = during_window();
    let scaled_up = deployment(
        Some(5),
        json!([{"name": "LOG_LEVEL", "value": "debug"}, {"name": "MAINTENANCE_MODE", "value": "true"}]),
    );
    let entries: Vec<_> = saved.iter().collect();
    let respect = restoration(&scaled_up, &entries, OnDrift::Respect).unwrap();
    assert_eq!(respect.writes.replicas, None);
    assert!(respect.writes.env_patch.is_some());
    assert_eq!(respect.drift.len(), 1);
    let d = &respect.drift[0];
    assert!(d.kept && d.field == "replicas" && d.found.as_deref() == Some("5"));
    assert!(d.describe().contains("kept it"), "{}", d.describe());

    let revert = restoration(&scaled_up, &entries, OnDrift::Revert).unwrap();
    assert_eq!(revert.writes.replicas, Some(3));
    assert_eq!(revert.drift.len(), 1);
    assert!(!revert.drift[0].kept);
}

#[test]
fn a_var_read_from_a_secret_is_put_back_as_that_source() {
    let from_secret = json!([{"name": "LOG_LEVEL", "valueFrom": {"secretKeyRef": {"name": "cfg", "key": "level"}}}]);
    let before = deployment(Some(1), from_secret.clone());
    let t = WindowTarget {
        env: Some(vec![EnvVar {
            name: "LOG_LEVEL".into(),
            value: "debug".into(),
        }]),
        container: Some("app".into()),
        ..target(TargetKind::Deployment)
    };
    let saved = activation_values(&t, &before).unwrap();
    assert_eq!(saved[0].prior, None);
    assert!(saved[0].prior_value_from.is_some());
    let during = deployment(Some(1), json!([{"name": "LOG_LEVEL", "value": "debug"}]));
    let restore = restoration(&during, &[&saved[0]], OnDrift::Respect).unwrap();
    let patch = restore.writes.env_patch.unwrap().to_string();
    assert!(
        patch.contains(r#""secretKeyRef":{"key":"level","name":"cfg"}"#),
        "{patch}"
    );
    // Once back, nothing more is sent.
    let back = restoration(&before, &[&saved[0]], OnDrift::Revert).unwrap();
    assert!(back.writes.is_empty());
}

#[test]
fn a_hand_edited_saved_value_is_an_error_not_a_panic() {
    let web = deployment(Some(1), json!(null));
    let saved = SavedValue {
        target: "Deployment/web".into(),
        field: "replicas".into(),
        prior: Some("lots".into()),
        prior_value_from: None,
        written: "0".into(),
        applied: true,
    };
    let err = restoration(&web, &[&saved], OnDrift::Revert).unwrap_err();
    assert!(matches!(err, Error::BadSavedValue { .. }), "{err}");
    let unknown = SavedValue {
        field: "image".into(),
        ..saved
    };
    assert!(matches!(
        writes(&web, &[(&unknown, Toward::Written)]).unwrap_err(),
        Error::UnknownField { .. }
    ));
}

#[test]
fn env_fields_round_trip() {
    assert_eq!(parse_env_field("env[app].A_B"), Some((false, "app", "A_B")));
    assert_eq!(parse_env_field("initEnv[m].X"), Some((true, "m", "X")));
    assert_eq!(parse_env_field("replicas"), None);
    assert_eq!(env_field(true, "m", "X"), "initEnv[m].X");
}

// --- restore_action ----------------------------------------------------------------------

fn saved(prior: Option<&str>, written: &str) -> SavedValue {
    SavedValue {
        target: "Deployment/worker".into(),
        field: "replicas".into(),
        prior: prior.map(str::to_owned),
        prior_value_from: None,
        written: written.into(),
        applied: true,
    }
}

#[test]
fn restore_untouched_value_writes_the_prior_back() {
    let s = saved(Some("3"), "0");
    for policy in [OnDrift::Respect, OnDrift::Revert] {
        assert_eq!(
            restore_action(&s, Some("0"), policy),
            RestoreAction::Write("3".into())
        );
    }
}

#[test]
fn restore_an_added_env_var_removes_it() {
    let s = saved(None, "true");
    for policy in [OnDrift::Respect, OnDrift::Revert] {
        assert_eq!(
            restore_action(&s, Some("true"), policy),
            RestoreAction::Remove
        );
        // Already gone.
        assert_eq!(restore_action(&s, None, policy), RestoreAction::Nothing);
    }
}

#[test]
fn restore_already_at_prior_does_nothing() {
    let s = saved(Some("3"), "0");
    for policy in [OnDrift::Respect, OnDrift::Revert] {
        assert_eq!(
            restore_action(&s, Some("3"), policy),
            RestoreAction::Nothing
        );
    }
    // The window wrote what was already there.
    let same = saved(Some("false"), "false");
    assert_eq!(
        restore_action(&same, Some("false"), OnDrift::Respect),
        RestoreAction::Nothing
    );
}

#[test]
fn restore_drift_respect_keeps_and_revert_writes() {
    // Someone scaled up to 5 during an incident.
    let s = saved(Some("3"), "0");
    assert_eq!(
        restore_action(&s, Some("5"), OnDrift::Respect),
        RestoreAction::KeepDrifted {
            current: Some("5".into())
        }
    );
    assert_eq!(
        restore_action(&s, Some("5"), OnDrift::Revert),
        RestoreAction::Write("3".into())
    );
    // Someone removed an env var the window replaced.
    let env = saved(Some("false"), "true");
    assert_eq!(
        restore_action(&env, None, OnDrift::Respect),
        RestoreAction::KeepDrifted { current: None }
    );
    assert_eq!(
        restore_action(&env, None, OnDrift::Revert),
        RestoreAction::Write("false".into())
    );
    // Someone changed an env var the window added.
    let added = saved(None, "true");
    assert_eq!(
        restore_action(&added, Some("maybe"), OnDrift::Respect),
        RestoreAction::KeepDrifted {
            current: Some("maybe".into())
        }
    );
    assert_eq!(
        restore_action(&added, Some("maybe"), OnDrift::Revert),
        RestoreAction::Remove
    );
}
