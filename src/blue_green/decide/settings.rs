//! The spec, parsed: what [`decide`](super::decide) needs from it, with defaults applied, and
//! every problem with it that the API server could not catch.

use jiff::SignedDuration;
use kube::ResourceExt;

use crate::blue_green::observe::Observed;
use crate::blue_green::types::{BlueGreenRelease, BlueGreenReleaseSpec};

use crate::conditions::SpecProblem;
use crate::duration::{Duration, DurationError};

/// How long the old slot keeps its replicas after the switch when `scaleDownDelay` is not set.
pub const DEFAULT_SCALE_DOWN_DELAY: SignedDuration = SignedDuration::from_secs(30);
/// How long an aborted slot keeps its replicas when `abortScaleDownDelay` is not set.
pub const DEFAULT_ABORT_SCALE_DOWN_DELAY: SignedDuration = SignedDuration::from_secs(30);
/// How long a new revision may take to become available when `progressDeadline` is not set.
pub const DEFAULT_PROGRESS_DEADLINE: SignedDuration = SignedDuration::from_mins(10);

/// The size a slot's Deployments are given, each component its own count
/// ([`Settings::count`](Settings::count)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// Each component's `replicas`.
    Full,
    /// `min(previewReplicas, replicas)` per component: the new slot until promotion (`Full`
    /// when `previewReplicas` is not set).
    Preview,
    /// `min(standbyReplicas, replicas)` per component: the old slot, warm for a rollback.
    Standby,
    /// No replicas.
    Zero,
}

/// Why a spec cannot be acted on. Each message names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// A duration string did not parse.
    #[error("{field}: {source}")]
    Duration {
        /// The field's path, e.g. `spec.strategy.scaleDownDelay`.
        field: &'static str,
        /// What the duration parser said.
        source: DurationError,
    },
    /// A count below zero (the schema normally prevents this).
    #[error("{field}: must be 0 or more, not {value}")]
    Negative {
        /// The field's path.
        field: &'static str,
        /// The value given.
        value: i32,
    },
    /// A progress deadline of no time would abort every release at once.
    #[error("spec.strategy.progressDeadline: must be longer than 0s")]
    ZeroDeadline,
    /// Neither form (or both) is given (the schema normally prevents this).
    #[error(
        "spec: set either template, replicas and services (one Deployment per slot) or components (a stack), not both"
    )]
    Form,
}

/// A spec parsed into what [`decide`](super::decide) needs, with defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Each unit's replicas (`spec.replicas`, or each component's), in declared order.
    pub replicas: Vec<i32>,
    /// `standbyReplicas` (default 0), at most the largest `replicas`: an HPA scaling the
    /// release below it must not make the spec invalid, so it is capped rather than rejected
    /// (and per component at most its replicas, [`Settings::count`]).
    pub standby: i32,
    /// `previewReplicas` (unset: the new slot runs at full size from the start).
    pub preview: Option<i32>,
    /// `autoPromote` (default true).
    pub auto_promote: bool,
    /// prePromotion has steps.
    pub has_pre: bool,
    /// postPromotion has steps.
    pub has_post: bool,
    /// A preview Service is named (by any component).
    pub has_preview: bool,
    /// Which units name a preview Service, in declared order.
    pub previews: Vec<bool>,
    /// `requiresMaintenanceWindow` is set.
    pub requires_window: bool,
    /// `scaleDownDelay` (default [`DEFAULT_SCALE_DOWN_DELAY`]).
    pub scale_down_delay: SignedDuration,
    /// `abortScaleDownDelay` (default [`DEFAULT_ABORT_SCALE_DOWN_DELAY`]).
    pub abort_scale_down_delay: SignedDuration,
    /// `progressDeadline` (default [`DEFAULT_PROGRESS_DEADLINE`]).
    pub progress_deadline: SignedDuration,
    /// `autoPromoteAfter`, if set.
    pub auto_promote_after: Option<SignedDuration>,
    /// `rollbackRequiresWindow` (default false).
    pub rollback_requires_window: bool,
}

/// Reads a duration field into a signed duration, naming the field on error.
fn signed(value: &Duration, field: &'static str) -> Result<SignedDuration, SpecError> {
    value
        .parse_signed()
        .map_err(|source| SpecError::Duration { field, source })
}

/// Reads an optional duration field with its default.
fn signed_or(
    value: Option<&Duration>,
    field: &'static str,
    default: SignedDuration,
) -> Result<SignedDuration, SpecError> {
    value.map_or(Ok(default), |value| signed(value, field))
}

impl Settings {
    /// Parses a spec; fails on durations that do not parse, negative counts and a zero
    /// progress deadline. (Template, Services and steps are checked by [`problems`].)
    pub fn from_spec(spec: &BlueGreenReleaseSpec) -> Result<Self, SpecError> {
        let units = spec.units();
        let both = !spec.components.is_empty()
            && (spec.template.is_some() || spec.services.is_some() || spec.replicas.is_some());
        if units.is_empty() || both {
            return Err(SpecError::Form);
        }
        for unit in &units {
            if unit.replicas < 0 {
                return Err(SpecError::Negative {
                    field: if unit.name.is_some() {
                        "spec.components[].replicas"
                    } else {
                        "spec.replicas"
                    },
                    value: unit.replicas,
                });
            }
        }
        let replicas: Vec<i32> = units.iter().map(|unit| unit.replicas).collect();
        let largest = replicas.iter().copied().max().unwrap_or(0);
        let default = Default::default();
        let strategy = spec.strategy.as_ref().unwrap_or(&default);
        let standby = strategy.standby_replicas.unwrap_or(0);
        if standby < 0 {
            return Err(SpecError::Negative {
                field: "spec.strategy.standbyReplicas",
                value: standby,
            });
        }
        let progress_deadline = signed_or(
            strategy.progress_deadline.as_ref(),
            "spec.strategy.progressDeadline",
            DEFAULT_PROGRESS_DEADLINE,
        )?;
        if !progress_deadline.is_positive() {
            return Err(SpecError::ZeroDeadline);
        }
        let preview = strategy.preview_replicas;
        if let Some(value) = preview.filter(|p| *p < 0) {
            return Err(SpecError::Negative {
                field: "spec.strategy.previewReplicas",
                value,
            });
        }
        Ok(Self {
            has_preview: units.iter().any(|unit| unit.services.preview.is_some()),
            previews: units
                .iter()
                .map(|unit| unit.services.preview.is_some())
                .collect(),
            replicas,
            standby: standby.min(largest),
            preview,
            auto_promote: strategy.auto_promote.unwrap_or(true),
            has_pre: !strategy.pre_promotion.is_empty(),
            has_post: !strategy.post_promotion.is_empty(),
            requires_window: spec.requires_maintenance_window.is_some(),
            scale_down_delay: signed_or(
                strategy.scale_down_delay.as_ref(),
                "spec.strategy.scaleDownDelay",
                DEFAULT_SCALE_DOWN_DELAY,
            )?,
            abort_scale_down_delay: signed_or(
                strategy.abort_scale_down_delay.as_ref(),
                "spec.strategy.abortScaleDownDelay",
                DEFAULT_ABORT_SCALE_DOWN_DELAY,
            )?,
            progress_deadline,
            auto_promote_after: strategy
                .auto_promote_after
                .as_ref()
                .map(|value| signed(value, "spec.strategy.autoPromoteAfter"))
                .transpose()?,
            rollback_requires_window: strategy.rollback_requires_window.unwrap_or(false),
        })
    }
}

impl Settings {
    /// How many units (components) the release holds.
    pub fn units(&self) -> usize {
        self.replicas.len()
    }

    /// The replica count of `size` for unit `index`.
    pub fn count(&self, size: Size, index: usize) -> i32 {
        let full = self.replicas.get(index).copied().unwrap_or(0);
        match size {
            Size::Full => full,
            Size::Preview => self.preview.map_or(full, |preview| preview.min(full)),
            Size::Standby => self.standby.min(full),
            Size::Zero => 0,
        }
    }

    /// Every unit wants 0 replicas: there is nothing to serve, so an empty Service is right.
    pub fn all_zero(&self) -> bool {
        self.replicas.iter().all(|r| *r == 0)
    }
}

/// Every problem with the spec that the API server could not catch: the template, the steps,
/// what [`Settings::from_spec`] refuses, and Services that are missing or whose selectors the
/// template's labels do not satisfy.
pub fn problems(bgr: &BlueGreenRelease, observed: &Observed) -> Vec<SpecProblem> {
    let spec = &bgr.spec;
    let mut problems = crate::notifications::problems(
        &spec.notifications,
        &super::lifecycle::EVENTS,
        "spec.notifications",
    );
    for unit in spec.units() {
        if let Err(err) = unit.template.decode() {
            problems.push(SpecProblem::new(unit.field("template"), err.to_string()));
        }
    }
    for component in &spec.components {
        if !crate::names::is_dns_label(&component.name) {
            problems.push(SpecProblem::new(
                "spec.components[].name",
                format!(
                    "{:?} is not a DNS label; use lowercase letters, digits and '-'",
                    component.name
                ),
            ));
        }
    }

    if let Some(strategy) = &spec.strategy {
        problems.extend(crate::step::validate_step_lists(&[
            ("spec.strategy.prePromotion", &strategy.pre_promotion),
            ("spec.strategy.postPromotion", &strategy.post_promotion),
        ]));
    }
    if let Err(err) = Settings::from_spec(spec) {
        let text = err.to_string();
        let (field, message) = text.split_once(": ").unwrap_or(("spec", text.as_str()));
        problems.push(SpecProblem::new(field, message));
    }
    let namespace = bgr.namespace().unwrap_or_default();
    for (field, service) in &observed.missing_services {
        problems.push(SpecProblem::new(
            field.clone(),
            format!(
                "Service {service:?} does not exist in namespace {namespace:?}; the release switches an existing Service's selector, so create the Service first"
            ),
        ));
    }
    for (labels, field, service, key, value) in &observed.unmatched_selectors {
        problems.push(SpecProblem::new(
            labels.clone(),
            format!(
                "the selector of Service {service:?} ({field}) needs the label {key}={value}, which the template's labels lack; add it to {labels} or remove it from the Service's selector"
            ),
        ));
    }
    problems
}
