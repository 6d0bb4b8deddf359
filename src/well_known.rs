//! Every label, annotation, finalizer and field-manager name the operator reads or writes, in
//! one place: the controllers, the kubectl plugin and the tests all import them from here.

/// Annotation that starts one run per distinct value.
pub const RUN_NOW: &str = "ops.runbook.dev/run-now";

/// Annotation the operator writes on a rotated Secret (`<run>/<step>`), so a rotation is
/// applied once per run step even if the operator dies between the write and recording it.
pub const ROTATED_BY: &str = "ops.runbook.dev/rotated-by";

/// Annotation where `kubectl apply` keeps the whole object as last applied: never read by the
/// operator, so dropped from every cached object.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Holds a deleted run until its finally steps have run.
pub const FINALLY_FINALIZER: &str = "ops.runbook.dev/finally";

/// Annotation that cancels a run.
pub const CANCEL: &str = "ops.runbook.dev/cancel";

/// Annotation that approves the approval step it names.
pub const APPROVE: &str = "ops.runbook.dev/approve";

/// Label naming the run's Runbook, set when the run starts (history and lastRun use it).
pub const RUNBOOK_LABEL: &str = "ops.runbook.dev/runbook";

/// Held while the window has values to restore, so deleting it restores first.
pub const RESTORE_FINALIZER: &str = "ops.runbook.dev/restore";

/// Label on the RunbookRuns a window starts, naming the window.
pub const WINDOW_LABEL: &str = "ops.runbook.dev/maintenance-window";

/// Label on every Job of a policy; its value is [`crate::names::POLICY_LABEL_VALUE`] of the policy name.
pub const POLICY_LABEL: &str = "ops.runbook.dev/backup-policy";

/// Label saying which role a Job plays: `backup`, `verify` or `prune` (see `backup_policy::Stage`).
pub const STAGE_LABEL: &str = "ops.runbook.dev/backup-stage";

/// Label on verify and prune Jobs: the name of the backup Job they belong to.
pub const BACKUP_LABEL: &str = "ops.runbook.dev/backup";

/// Annotation with the scheduled time a Job stands for (RFC 3339, UTC, whole seconds).
pub const SCHEDULED_TIME_ANNOTATION: &str = "ops.runbook.dev/scheduled-time";

/// Annotation on a policy asking for one backup per distinct token; also set on the on-demand
/// backup Job, with the token it answers.
pub const BACKUP_NOW: &str = "ops.runbook.dev/backup-now";

/// Label on the validation Runbooks and runs a release creates, naming the release.
pub const RELEASE_RUN_LABEL: &str = "ops.runbook.dev/blue-green-release";

/// The label key that tells the slots apart when `slotLabel` is not set.
pub const DEFAULT_SLOT_LABEL: &str = "ops.runbook.dev/slot";

/// Annotation on a slot Deployment and its pod template: the revision it was made from.
pub const REVISION_ANNOTATION: &str = "ops.runbook.dev/revision";

/// Annotation on the release: promote this revision (needed when `autoPromote` is false).
pub const PROMOTE_ANNOTATION: &str = "ops.runbook.dev/promote";

/// Annotation on the release: abort the release of this revision.
pub const ABORT_ANNOTATION: &str = "ops.runbook.dev/abort";

/// Label on slot Deployments and their pods naming the release (bounded to 63 characters by
/// `blue_green` release label values); together with the slot label it is the Deployment's selector.
pub const RELEASE_LABEL: &str = "ops.runbook.dev/release";

/// Label on a stack component's slot Deployments and their pods naming the component; part of
/// those Deployments' selectors.
pub const COMPONENT_LABEL: &str = "ops.runbook.dev/component";

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "runbook-operator";

/// Label on a step's Job: the run it belongs to.
pub const RUN_LABEL: &str = "ops.runbook.dev/run";

/// Label on a step's Job: the step that created it.
pub const STEP_LABEL: &str = "ops.runbook.dev/step";

/// Label on a step's Job: the attempt that created it.
pub const ATTEMPT_LABEL: &str = "ops.runbook.dev/attempt";

/// Annotation that rejects the approval step it names: the step fails with reason `Rejected`.
pub const REJECT: &str = "ops.runbook.dev/reject";

/// Annotation stamped at admission (the chart's MutatingAdmissionPolicy) on a new RunbookRun:
/// the username that created it. Whatever a client sends is overwritten.
pub const REQUESTED_BY: &str = "ops.runbook.dev/requested-by";

/// Annotation stamped with [`REQUESTED_BY`]: the creator's groups, comma-separated.
pub const REQUESTED_BY_GROUPS: &str = "ops.runbook.dev/requested-by-groups";

/// Annotation stamped at admission when [`APPROVE`] or [`REJECT`] is set or changed: the
/// username that set it.
pub const APPROVED_BY: &str = "ops.runbook.dev/approved-by";

/// Annotation stamped with [`APPROVED_BY`]: that user's groups, comma-separated.
pub const APPROVED_BY_GROUPS: &str = "ops.runbook.dev/approved-by-groups";

/// Label a Secret needs before a `rotateSecret` step may change it (value `"true"`).
pub const ROTATABLE_LABEL: &str = "ops.runbook.dev/rotatable";

/// Label on the Leases that are runs' concurrency locks (value `"true"`): the operator watches
/// only these.
pub const LOCK_LABEL: &str = "ops.runbook.dev/lock";

/// Annotation on a lock Lease: the resolved concurrency key it stands for.
pub const LOCK_KEY_ANNOTATION: &str = "ops.runbook.dev/lock-key";

/// Annotation that acknowledges a lifecycle event, stopping its escalations: on a RunbookRun
/// any value acknowledges the run's failure or pending approval; on a MaintenanceWindow,
/// BlueGreenRelease or BackupPolicy the value is the event id (`status.sentNotifications[].eventId`).
pub const ACKNOWLEDGED: &str = "ops.runbook.dev/acknowledged";

/// Label the Job controller puts on a Job's pods, naming the Job (how a job step finds the
/// pods whose termination messages become its outputs).
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// Annotation on a BlueGreenRelease: retry this aborted or rolled-back revision without a
/// template change (validation runs again). The operator removes it once the retry started.
pub const RETRY_ANNOTATION: &str = "ops.runbook.dev/retry";

/// Annotation on a BlueGreenRelease: promote this revision now, skipping the gates still ahead
/// of it (prePromotion, the promote annotation, autoPromoteAfter, postPromotion).
pub const PROMOTE_FULL_ANNOTATION: &str = "ops.runbook.dev/promote-full";

/// Annotation stamped at admission (the chart's MutatingAdmissionPolicy) when
/// [`PROMOTE_FULL_ANNOTATION`] is set or changed: the username that set it.
pub const PROMOTED_FULL_BY: &str = "ops.runbook.dev/promoted-full-by";
