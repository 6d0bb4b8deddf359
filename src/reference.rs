//! The field reference (`docs/reference.md`), rendered from the generated CRDs: the same
//! openAPIV3Schema the API server validates with and `kubectl explain` shows, so the page
//! cannot say something the CRDs do not. `runbook-operator docs` (`make docs`) writes it, and
//! `tests/crds.rs` fails when the committed page is stale.
//!
//! Condition types and reasons are not in the schemas: [`conditions_of`] lists them, naming
//! the constants the controllers write where such constants exist.

use std::fmt::Write as _;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition,
};
use serde_json::Value;

use crate::backup_policy::status as backup_status;
use crate::backup_policy::status::{BACKUP_FRESH, LAST_BACKUP_SUCCEEDED, SCHEDULE_MEETS_RPO};
use crate::blue_green::Phase as ReleasePhase;
use crate::blue_green::decide::{AbortReason, PromotionWait};
use crate::blue_green::observe::Stage;
use crate::blue_green::status as release_status;
use crate::conditions::{READY, REASON_INVALID_SPEC, RECONCILING, STALLED};
use crate::maintenance_window::WindowPhase;
use crate::maintenance_window::status::{
    ACTIVE, REASON_TARGET_NOT_FOUND, REASON_TARGETS_FOUND, REASON_WINDOW_OPEN, TARGETS_FOUND,
};
use crate::runbook_run::RunPhase;
use crate::runbook_run::status::{
    REASON_CANCELLED, REASON_PROGRESSING, REASON_RUNBOOK_NOT_FOUND, REASON_STEP_FAILED,
    REASON_SUCCEEDED, REASON_SUCCEEDED_WITH_FAILURES, REASON_TIMED_OUT, SUCCEEDED,
};
use crate::runtime::{REASON_FORBIDDEN, REASON_INTERNAL_ERROR};

#[cfg(test)]
mod tests;

/// One condition type a kind's controller writes, with every reason it writes it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionDoc {
    /// The condition type, e.g. `Ready`.
    pub type_: &'static str,
    /// What the condition says, in a sentence.
    pub meaning: &'static str,
    /// The reasons it is written with.
    pub reasons: Vec<ReasonDoc>,
}

/// One reason of a condition: with which status it is written, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReasonDoc {
    /// The status(es) the condition has with this reason: `True`, `False`, `Unknown`, or
    /// several separated by `/`.
    pub status: &'static str,
    /// The PascalCase reason.
    pub reason: &'static str,
    /// When the controller writes it.
    pub meaning: &'static str,
}

fn reason(status: &'static str, reason: &'static str, meaning: &'static str) -> ReasonDoc {
    ReasonDoc {
        status,
        reason,
        meaning,
    }
}

/// `Ready`, `Reconciling` and `Stalled` as every kind but RunbookRun writes them: from the
/// validity of the spec (`conditions::validity`), plus `Ready=False` for a refused request.
fn kstatus(ready: &'static str) -> Vec<ConditionDoc> {
    vec![
        ConditionDoc {
            type_: READY,
            meaning: ready,
            reasons: vec![
                reason("True", "Ready", "the spec is valid"),
                reason(
                    "False",
                    REASON_INVALID_SPEC,
                    "the spec cannot be acted on; the message names every problem and its field",
                ),
                forbidden(),
                internal_error("False"),
            ],
        },
        ConditionDoc {
            type_: RECONCILING,
            meaning: "True while the operator is working towards the spec",
            reasons: vec![
                reason("False", "Settled", "nothing to do"),
                reason(
                    "False",
                    REASON_INVALID_SPEC,
                    "waiting for the spec to be fixed",
                ),
            ],
        },
        ConditionDoc {
            type_: STALLED,
            meaning: "True when nothing more will happen until a person changes the spec",
            reasons: vec![
                reason("False", "Valid", "the spec is valid"),
                reason(
                    "True",
                    REASON_INVALID_SPEC,
                    "the spec cannot be acted on (same message as `Ready`)",
                ),
                internal_error("True"),
            ],
        },
    ]
}

fn forbidden() -> ReasonDoc {
    reason(
        "False",
        REASON_FORBIDDEN,
        "the API server refused a request of the operator (403): its RBAC lacks a permission; retried with a backoff from 5s to 5 minutes",
    )
}

/// `Ready=False` / `Stalled=True` after a reconcile of the object panicked (an operator bug).
fn internal_error(status: &'static str) -> ReasonDoc {
    reason(
        status,
        REASON_INTERNAL_ERROR,
        "a reconcile of this object failed inside the operator (a panic, counted in `reconcile_panics_total`); other objects go on; retried every 5 minutes",
    )
}

fn condition<'a>(list: &'a mut [ConditionDoc], type_: &str) -> &'a mut ConditionDoc {
    list.iter_mut()
        .find(|c| c.type_ == type_)
        .expect("the condition is listed")
}

/// The condition types and reasons the controller of `kind` writes (e.g. `"Runbook"`), each
/// with its meaning; empty for a kind this operator does not know.
pub fn conditions_of(kind: &str) -> Vec<ConditionDoc> {
    match kind {
        "Runbook" => kstatus("True when the runbook is valid and can run"),
        "RunbookRun" => runbook_run_conditions(),
        "MaintenanceWindow" => {
            let mut list = kstatus("True when the window is valid and scheduled");
            let mut active = vec![reason(
                "True",
                REASON_WINDOW_OPEN,
                "the window's changes are in force; the message gives the end in the window's time zone",
            )];
            for phase in [
                WindowPhase::Scheduled,
                WindowPhase::Preparing,
                WindowPhase::Restoring,
                WindowPhase::Completed,
                WindowPhase::Suspended,
                WindowPhase::Invalid,
            ] {
                active.push(reason(
                    "False",
                    phase.as_str(),
                    "the reason is the window's phase; the message gives the next start, if any",
                ));
            }
            list.push(ConditionDoc {
                type_: ACTIVE,
                meaning: "True while the window's changes are in force",
                reasons: active,
            });
            list.push(ConditionDoc {
                type_: TARGETS_FOUND,
                meaning: "False when a target names no object (a warning: the window still runs for the other targets)",
                reasons: vec![
                    reason("True", REASON_TARGETS_FOUND, "every target names at least one object"),
                    reason(
                        "False",
                        REASON_TARGET_NOT_FOUND,
                        "the message names each `spec.targets[i]` that matches nothing",
                    ),
                ],
            });
            list
        }
        "BlueGreenRelease" => blue_green_conditions(),
        "BackupPolicy" => backup_policy_conditions(),
        _ => Vec::new(),
    }
}

fn runbook_run_conditions() -> Vec<ConditionDoc> {
    let running = [
        RunPhase::Pending.as_str(),
        RunPhase::WaitingForWindow.as_str(),
        RunPhase::Running.as_str(),
        RunPhase::WaitingForApproval.as_str(),
    ];
    let mut ready = Vec::new();
    let mut reconciling = Vec::new();
    let mut succeeded = Vec::new();
    for p in running {
        ready.push(reason(
            "True",
            p,
            "the run is not finished; the reason is its phase",
        ));
        reconciling.push(reason(
            "True",
            p,
            "the run is not finished; the reason is its phase",
        ));
        succeeded.push(reason(
            "Unknown",
            p,
            "the run is not finished; the reason is its phase (for WaitingForWindow the message names the window selector)",
        ));
    }
    for p in [
        RunPhase::Succeeded.as_str(),
        RunPhase::Failed.as_str(),
        RunPhase::Cancelled.as_str(),
    ] {
        reconciling.push(reason(
            "False",
            p,
            "the run is finished; the reason is its phase",
        ));
    }
    let outcomes = [
        reason("True", REASON_SUCCEEDED, "every step succeeded"),
        reason(
            "True",
            REASON_SUCCEEDED_WITH_FAILURES,
            "the run succeeded, but steps with `onFailure: Continue` failed (the message names them)",
        ),
        reason(
            "False",
            REASON_STEP_FAILED,
            "a step with `onFailure: Abort` failed (the message names it)",
        ),
        reason(
            "False",
            REASON_TIMED_OUT,
            "a step with `onFailure: Abort` ran past its timeout",
        ),
        reason(
            "False",
            REASON_CANCELLED,
            "the run was cancelled (annotation `ops.runbook.dev/cancel` or deletion); finally steps ran",
        ),
        reason(
            "False",
            REASON_RUNBOOK_NOT_FOUND,
            "the run could not start: its Runbook does not exist (it is not retried)",
        ),
        reason(
            "False",
            REASON_INVALID_SPEC,
            "the run could not start: a parameter is unknown or has no value (it is not retried)",
        ),
    ];
    for outcome in &outcomes {
        ready.push(ReasonDoc {
            meaning: "the run is finished; the reason is the `Succeeded` reason (True only if the run succeeded)",
            ..outcome.clone()
        });
    }
    ready.push(forbidden());
    ready.push(internal_error("False"));
    succeeded.extend(outcomes);
    vec![
        ConditionDoc {
            type_: READY,
            meaning: "True while the run is going or after it succeeded; False once it ended otherwise",
            reasons: ready,
        },
        ConditionDoc {
            type_: RECONCILING,
            meaning: "True until the run is finished",
            reasons: reconciling,
        },
        ConditionDoc {
            type_: STALLED,
            meaning: "True when the run could not start (a run is an immutable record: create a new one)",
            reasons: vec![
                reason("False", REASON_PROGRESSING, "the run could start"),
                reason(
                    "True",
                    REASON_RUNBOOK_NOT_FOUND,
                    "its Runbook does not exist",
                ),
                reason(
                    "True",
                    REASON_INVALID_SPEC,
                    "a parameter is unknown or has no value",
                ),
                internal_error("True"),
            ],
        },
        ConditionDoc {
            type_: SUCCEEDED,
            meaning: "Unknown while the run is going, then True or False: how the run ended",
            reasons: succeeded,
        },
    ]
}

fn blue_green_conditions() -> Vec<ConditionDoc> {
    let mut list = kstatus("True when the release's spec is valid");
    let reconciling = condition(&mut list, RECONCILING);
    reconciling.meaning = "True while a revision is in flight or waits for promotion";
    for phase in ReleasePhase::ALL {
        match phase {
            ReleasePhase::Healthy | ReleasePhase::Invalid => {}
            ReleasePhase::Degraded => reconciling.reasons.push(reason(
                "False",
                phase.as_str(),
                "the release stopped; see the `Degraded` condition",
            )),
            _ => reconciling.reasons.push(reason(
                "True",
                phase.as_str(),
                "a revision is in flight; the reason is the release's phase",
            )),
        }
    }
    for wait in [
        PromotionWait::Manual,
        PromotionWait::OtherRevision {
            named: String::new(),
        },
        PromotionWait::MaintenanceWindow,
        PromotionWait::Scheduled {
            at: jiff::Timestamp::UNIX_EPOCH,
        },
    ] {
        let meaning = match wait {
            PromotionWait::Manual => {
                "`autoPromote` is false: waiting for the annotation `ops.runbook.dev/promote: <revision>`"
            }
            PromotionWait::OtherRevision { .. } => {
                "the promote annotation names another revision than the desired one; it is ignored"
            }
            PromotionWait::MaintenanceWindow => {
                "the new slot is ready; promotion waits for a matching MaintenanceWindow to be Active"
            }
            PromotionWait::Scheduled { .. } => {
                "`autoPromoteAfter` is set: the revision is promoted automatically at the time the message names, or earlier with the promote annotation"
            }
        };
        reconciling
            .reasons
            .push(reason("True", wait.reason(), meaning));
    }
    list.push(ConditionDoc {
        type_: release_status::AVAILABLE,
        meaning: "True when the active slot's Deployment is available",
        reasons: vec![
            reason(
                "True",
                release_status::REASON_SLOT_AVAILABLE,
                "the active slot is available (the message gives its ready replicas)",
            ),
            reason(
                "False",
                release_status::REASON_SLOT_NOT_AVAILABLE,
                "the active slot is not available",
            ),
            reason(
                "False",
                release_status::REASON_NO_ACTIVE_SLOT,
                "no slot serves yet",
            ),
        ],
    });
    list.push(ConditionDoc {
        type_: release_status::TRAFFIC_SWITCHED,
        meaning: "True when the active Service's endpoints are only ready pods of the active slot",
        reasons: vec![
            reason(
                "True",
                release_status::REASON_ENDPOINTS_CONVERGED,
                "the endpoints are only ready pods of the active slot",
            ),
            reason(
                "False",
                release_status::REASON_ENDPOINTS_CONVERGING,
                "waiting for the endpoints to be only ready pods of the active slot",
            ),
            reason(
                "False",
                release_status::REASON_NO_ACTIVE_SLOT,
                "no slot serves yet",
            ),
        ],
    });
    let mut degraded = vec![reason(
        "False",
        release_status::REASON_HEALTHY,
        "nothing failed",
    )];
    for abort in [
        AbortReason::ByHand,
        AbortReason::ValidationFailed {
            stage: Stage::Pre,
            message: String::new(),
        },
        AbortReason::ValidationFailed {
            stage: Stage::Post,
            message: String::new(),
        },
        AbortReason::ProgressDeadline {
            deadline: jiff::Timestamp::UNIX_EPOCH,
        },
        AbortReason::SwitchRefused {
            component: String::new(),
            service: String::new(),
            message: String::new(),
        },
    ] {
        let meaning = match &abort {
            AbortReason::ByHand => "the annotation `ops.runbook.dev/abort` names the revision",
            AbortReason::ValidationFailed {
                stage: Stage::Pre, ..
            } => "a `prePromotion` step failed",
            AbortReason::ValidationFailed {
                stage: Stage::Post, ..
            } => "a `postPromotion` step failed; traffic is switched back",
            AbortReason::ProgressDeadline { .. } => {
                "the new slot was not available by its progress deadline"
            }
            AbortReason::SwitchRefused { .. } => {
                "a component's active Service refused the switch; the Services already switched were switched back"
            }
        };
        degraded.push(reason("True", abort.reason(), meaning));
    }
    degraded.push(reason(
        "True",
        release_status::REASON_NO_READY_PODS,
        "the slot the selector should point to has no ready pods; the selector is left as it is",
    ));
    degraded.push(reason(
        "True",
        release_status::REASON_ABORTED,
        "the revision was not promoted and no earlier reason is known; change the template to try again",
    ));
    list.push(ConditionDoc {
        type_: release_status::DEGRADED,
        meaning: "True when a release stopped; keeps the reason until a new template is released",
        reasons: degraded,
    });
    list
}

fn backup_policy_conditions() -> Vec<ConditionDoc> {
    let mut list = kstatus("True when the policy is valid");
    let reconciling = condition(&mut list, RECONCILING);
    reconciling.meaning = "True while a backup, verify or prune Job of the policy runs";
    reconciling.reasons.push(reason(
        "True",
        backup_status::REASON_BACKUP_RUNNING,
        "a Job of the policy runs (the message names it)",
    ));
    list.push(ConditionDoc {
        type_: BACKUP_FRESH,
        meaning: "Only with `spec.rpo`: whether the newest successful (or, with `verify`, verified) backup finished less than `rpo` ago",
        reasons: vec![
            reason("True", backup_status::REASON_WITHIN_RPO, "the newest backup is fresh; the message says until when"),
            reason(
                "False",
                backup_status::REASON_RPO_VIOLATED,
                "the newest backup finished more than `rpo` ago, or there was none within `rpo` of the policy's creation",
            ),
            reason(
                "Unknown",
                backup_status::REASON_AWAITING_FIRST_BACKUP,
                "no backup yet, and the policy is younger than `rpo`",
            ),
        ],
    });
    list.push(ConditionDoc {
        type_: LAST_BACKUP_SUCCEEDED,
        meaning: "How the newest finished backup ended (absent before the first one)",
        reasons: vec![
            reason(
                "True",
                backup_status::REASON_SUCCEEDED,
                "the backup Job succeeded (no `verify`)",
            ),
            reason(
                "True",
                backup_status::REASON_VERIFIED,
                "the backup Job succeeded and passed verification",
            ),
            reason(
                "False",
                backup_status::REASON_BACKUP_FAILED,
                "the backup Job failed",
            ),
            reason(
                "False",
                backup_status::REASON_VERIFICATION_FAILED,
                "the backup Job succeeded but its verification failed",
            ),
            reason(
                "False",
                backup_status::REASON_JOB_REJECTED,
                "the API server rejected the backup or verify Job the template makes",
            ),
        ],
    });
    list.push(ConditionDoc {
        type_: SCHEDULE_MEETS_RPO,
        meaning: "Only with `spec.rpo` and `spec.schedule`: whether the schedule can keep backups fresh (checked over the next 400 scheduled times or a year)",
        reasons: vec![
            reason(
                "True",
                backup_status::REASON_ACHIEVABLE,
                "`rpo` is at least the longest gap between scheduled times",
            ),
            reason(
                "False",
                backup_status::REASON_RPO_SHORTER_THAN_SCHEDULE,
                "`rpo` is shorter than the longest gap between scheduled times, so `BackupFresh` turns False before the next backup",
            ),
            reason(
                "False",
                backup_status::REASON_NO_UPCOMING_BACKUPS,
                "the schedule has fewer than two upcoming times",
            ),
        ],
    });
    list
}

/// Renders the Markdown reference of `crds`: per kind, its names, printer columns, every
/// field under `spec` and `status` (type, required, default, validation, description) and
/// its conditions ([`conditions_of`]).
pub fn render(crds: &[CustomResourceDefinition]) -> String {
    let mut out = String::new();
    out.push_str("# API reference\n\n");
    out.push_str(
        "<!-- Generated by `runbook-operator docs` (`make docs`) from the CRDs; do not edit. -->\n\n",
    );
    out.push_str(
        "This page is generated by `runbook-operator docs` (`make docs`, which `make crds` runs \
         too) from the CustomResourceDefinitions in `crds/`: the same schemas the API server \
         validates with and `kubectl explain` shows. Do not edit it by hand; a test fails when \
         it differs from the CRDs. The design behind these fields is explained in \
         [design notes](api.md).\n\n",
    );
    for crd in crds {
        let kind = &crd.spec.names.kind;
        let _ = writeln!(out, "- [{kind}](#{})", kind.to_lowercase());
    }
    out.push('\n');
    for crd in crds {
        render_kind(&mut out, crd);
    }
    out
}

fn render_kind(out: &mut String, crd: &CustomResourceDefinition) {
    let names = &crd.spec.names;
    let _ = writeln!(out, "## {}\n", names.kind);
    for version in &crd.spec.versions {
        let schema = version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
            .unwrap_or(Value::Null);
        if let Some(description) = schema.get("description").and_then(Value::as_str) {
            let _ = writeln!(out, "{}\n", description.trim());
        }
        let _ = writeln!(
            out,
            "| Property | Value |\n|---|---|\n| API version | `{}/{}` |\n| kind | `{}` |\n| scope | {} |\n| plural, singular | `{}`, `{}` |\n| short names | {} |\n| categories | {} |\n",
            crd.spec.group,
            version.name,
            names.kind,
            crd.spec.scope,
            names.plural,
            names.singular.as_deref().unwrap_or_default(),
            code_list(names.short_names.as_deref().unwrap_or_default()),
            code_list(names.categories.as_deref().unwrap_or_default()),
        );

        let _ = writeln!(out, "### Printer columns\n");
        out.push_str("What `kubectl get` shows; columns marked *wide* only with `-o wide`.\n\n");
        out.push_str("| Column | JSONPath | Type | Description |\n|---|---|---|---|\n");
        for column in version.additional_printer_columns.as_deref().unwrap_or(&[]) {
            render_column(out, column);
        }
        out.push('\n');

        let _ = writeln!(out, "### Fields\n");
        out.push_str(
            "| Field | Type | Required | Default | Validation | Description |\n|---|---|---|---|---|---|\n",
        );
        let required = required_of(&schema);
        for top in ["spec", "status"] {
            if let Some(child) = schema.get("properties").and_then(|p| p.get(top)) {
                walk(out, top, child, required.contains(&top));
            }
        }
        out.push('\n');
    }

    let conditions = conditions_of(&names.kind);
    if !conditions.is_empty() {
        let _ = writeln!(out, "### Conditions\n");
        out.push_str(
            "`status.conditions` holds these types (each with `observedGeneration`; \
             `lastTransitionTime` changes only when the status flips).\n\n",
        );
        out.push_str("| Type | Status | Reason | Meaning |\n|---|---|---|---|\n");
        for condition in &conditions {
            let _ = writeln!(
                out,
                "| `{}` | | | {} |",
                condition.type_,
                cell(condition.meaning)
            );
            for r in &condition.reasons {
                let _ = writeln!(
                    out,
                    "| | {} | `{}` | {} |",
                    r.status,
                    r.reason,
                    cell(r.meaning)
                );
            }
        }
        out.push('\n');
    }
}

fn render_column(out: &mut String, column: &CustomResourceColumnDefinition) {
    let wide = if column.priority.unwrap_or(0) > 0 {
        " (*wide*)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "| {}{} | `{}` | {} | {} |",
        column.name.to_uppercase(),
        wide,
        column.json_path.replace('|', "\\|"),
        column.type_,
        cell(column.description.as_deref().unwrap_or_default()),
    );
}

fn code_list(items: &[String]) -> String {
    if items.is_empty() {
        return "none".to_owned();
    }
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn required_of(schema: &Value) -> Vec<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn preserves_unknown(schema: &Value) -> bool {
    schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
}

/// Writes the row of the field at `path`, then the rows of its fields, recursively.
fn walk(out: &mut String, path: &str, schema: &Value, required: bool) {
    let mut description = schema
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_owned();
    let mut validation = constraints(schema);
    let items = schema.get("items");
    if let Some(items) = items {
        let item_description = items.get("description").and_then(Value::as_str);
        if let Some(item) = item_description.filter(|d| !d.trim().is_empty() && *d != description) {
            description = join_text(&description, &format!("Each item: {}", item.trim()));
        }
        for c in constraints(items) {
            validation.push(format!("each item: {c}"));
        }
    }
    let opaque = preserves_unknown(schema) || items.is_some_and(preserves_unknown);
    if opaque {
        description = join_text(
            &description,
            "Any fields are kept (`x-kubernetes-preserve-unknown-fields`): the API server does not check them here, and this page does not list them.",
        );
    }
    let default = schema
        .get("default")
        .map(|d| format!("`{}`", d.to_string().replace('|', "\\|")))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "| `{path}` | {} | {} | {default} | {} | {} |",
        type_of(schema),
        if required { "yes" } else { "no" },
        validation
            .iter()
            .map(|v| cell(v))
            .collect::<Vec<_>>()
            .join("<br>"),
        cell(&description),
    );
    if opaque {
        return;
    }
    // The fields of this object, of each item of this array, or of each value of this map.
    let (prefix, object) = match (items, schema.get("additionalProperties")) {
        (Some(items), _) => (format!("{path}[]"), items),
        (None, Some(values)) if values.is_object() => (format!("{path}.*"), values),
        _ => (path.to_owned(), schema),
    };
    if prefix != path && object.get("items").is_some() {
        // An array of arrays (or a map of arrays): the inner array gets its own row.
        walk(out, &prefix, object, false);
        return;
    }
    let required = required_of(object);
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        for (key, child) in properties {
            walk(
                out,
                &format!("{prefix}.{key}"),
                child,
                required.contains(&key.as_str()),
            );
        }
    }
}

fn join_text(first: &str, second: &str) -> String {
    if first.is_empty() {
        second.to_owned()
    } else {
        format!("{first}\n\n{second}")
    }
}

/// The type as `kubectl explain` would name it: `string`, `integer (int32)`, `[]object`,
/// `map[string]string`, `int-or-string`.
fn type_of(schema: &Value) -> String {
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return "int-or-string".to_owned();
    }
    let base = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("any")
        .to_owned();
    let with_format = match schema.get("format").and_then(Value::as_str) {
        Some(format) => format!("{base} ({format})"),
        None => base.clone(),
    };
    if let Some(items) = schema.get("items") {
        return format!("[]{}", type_of(items));
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        return format!("map[string]{}", type_of(values));
    }
    with_format
}

/// Enum values, pattern, bounds, list semantics and CEL rules of one schema node.
fn constraints(schema: &Value) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values
            .iter()
            .map(|v| match v {
                Value::String(s) => format!("`{s}`"),
                other => format!("`{other}`"),
            })
            .collect();
        found.push(format!("one of {}", values.join(", ")));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        found.push(format!("pattern `{pattern}`"));
    }
    for (key, label) in [
        ("minimum", "minimum"),
        ("maximum", "maximum"),
        ("exclusiveMinimum", "exclusive minimum"),
        ("exclusiveMaximum", "exclusive maximum"),
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
        ("minProperties", "min properties"),
        ("maxProperties", "max properties"),
    ] {
        if let Some(n) = schema.get(key).filter(|v| v.is_number()) {
            found.push(format!("{label} {}", number(n)));
        }
    }
    if let Some(list_type) = schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        let keys = schema
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|k| {
                k.iter()
                    .filter_map(Value::as_str)
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|k| !k.is_empty())
            .map(|k| format!(" keyed by {k}"))
            .unwrap_or_default();
        found.push(format!("list type `{list_type}`{keys}"));
    }
    for rule in schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = rule.get("rule").and_then(Value::as_str).unwrap_or_default();
        match rule.get("message").and_then(Value::as_str) {
            Some(message) => found.push(format!("rule `{text}`: {message}")),
            None => found.push(format!("rule `{text}`")),
        }
    }
    found
}

/// A JSON number as written in a schema, without the `.0` a whole float carries.
fn number(n: &Value) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => n.to_string(),
    }
}

/// Text made safe for one Markdown table cell: `|` escaped, `<` and `>` outside code spans
/// escaped (so `<name>` is not taken for HTML), the lines of a paragraph joined (doc comments
/// wrap at 100 columns), and paragraph breaks and list items kept as `<br>`.
fn cell(text: &str) -> String {
    let mut out = String::new();
    let mut blank = false;
    for line in text.trim().lines().map(str::trim) {
        if line.is_empty() {
            blank = true;
            continue;
        }
        if !out.is_empty() {
            out.push_str(match (blank, list_item(line)) {
                (true, _) => "<br><br>",
                (false, true) => "<br>",
                (false, false) => " ",
            });
        }
        blank = false;
        for (i, part) in line.split('`').enumerate() {
            if i > 0 {
                out.push('`');
            }
            let part = if i % 2 == 1 {
                part.to_owned()
            } else {
                part.replace('<', "&lt;").replace('>', "&gt;")
            };
            out.push_str(&part.replace('|', "\\|"));
        }
    }
    out
}

/// Whether a line starts a Markdown list item (`- `, `* `, `1. `).
fn list_item(line: &str) -> bool {
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    line.starts_with("- ")
        || line.starts_with("* ")
        || (digits > 0 && line[digits..].starts_with(". "))
}
