-- Argo CD actions of a RunbookRun (ops.runbook.dev/v1alpha1), in the argocd-cm sandbox.
-- approve / reject answer the approval step the run waits at now (status.currentStep while
-- status.phase is WaitingForApproval), through the same annotations as
-- `kubectl runbook approve|reject`. They are offered only while the run waits and the step is
-- not answered yet: an answer given earlier would not count. With the chart's admission
-- policies, the API server accepts the answer only from an identity holding the verb `approve`
-- on runbookruns (here: Argo CD's, or the user's with impersonation), and records who it was.
-- cancel sets ops.runbook.dev/cancel like `kubectl runbook cancel`: offered while the operator
-- reports an unfinished phase and no cancel is under way.
local actions = {}
local status = obj.status
local annotations = obj.metadata.annotations or {}
local waiting = status ~= nil and status.phase == "WaitingForApproval"
  and status.currentStep ~= nil and obj.metadata.deletionTimestamp == nil
local unanswered = waiting
  and annotations["ops.runbook.dev/approve"] ~= status.currentStep
  and annotations["ops.runbook.dev/reject"] ~= status.currentStep
local unfinished = status ~= nil and obj.metadata.deletionTimestamp == nil
  and (status.phase == "Pending" or status.phase == "WaitingForWindow"
    or status.phase == "Running" or status.phase == "WaitingForApproval")
  and annotations["ops.runbook.dev/cancel"] == nil

actions["approve"] = {
  ["disabled"] = not unanswered,
  ["iconClass"] = "fa fa-fw fa-check",
  ["displayName"] = "Approve the waiting step",
}
actions["reject"] = {
  ["disabled"] = not unanswered,
  ["iconClass"] = "fa fa-fw fa-times",
  ["displayName"] = "Reject the waiting step",
}
actions["cancel"] = {
  ["disabled"] = not unfinished,
  ["iconClass"] = "fa fa-fw fa-stop",
  ["displayName"] = "Cancel the run",
}
return actions
