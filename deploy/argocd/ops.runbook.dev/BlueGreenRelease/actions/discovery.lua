-- Argo CD actions of a BlueGreenRelease (ops.runbook.dev/v1alpha1), in the argocd-cm sandbox.
-- Both actions name status.desiredRevision, the revision of the template the operator last
-- observed, so they are offered only while that is the current generation.
-- promote: the revision is ready and waits for the promote annotation (autoPromote: false);
--   not while it waits for a maintenance window, which no annotation can open.
-- abort: the release of the desired revision is open (newest history record, no result yet)
--   and not already aborted.
-- retry: the newest history record says the desired revision was Aborted or RolledBack, and
--   no retry of it is pending.
local actions = {}
local status = obj.status
local current = status ~= nil and status.desiredRevision ~= nil
  and obj.metadata.deletionTimestamp == nil
  and (obj.metadata.generation == nil or status.observedGeneration == obj.metadata.generation)

local function condition(kind)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local annotations = obj.metadata.annotations or {}

local canPromote = false
if current and status.phase == "AwaitingPromotion" then
  local reconciling = condition("Reconciling")
  if reconciling ~= nil and reconciling.status == "True"
    and (reconciling.reason == "PromotionRequired" or reconciling.reason == "PromoteNamesOtherRevision")
    and annotations["ops.runbook.dev/promote"] ~= status.desiredRevision then
    canPromote = true
  end
end

local canAbort = false
if current and status.history ~= nil and status.history[1] ~= nil then
  local newest = status.history[1]
  if newest.revision == status.desiredRevision and newest.result == nil
    and annotations["ops.runbook.dev/abort"] ~= status.desiredRevision then
    canAbort = true
  end
end

local canRetry = false
if current and status.history ~= nil and status.history[1] ~= nil then
  local newest = status.history[1]
  if newest.revision == status.desiredRevision
    and (newest.result == "Aborted" or newest.result == "RolledBack")
    and annotations["ops.runbook.dev/retry"] ~= status.desiredRevision then
    canRetry = true
  end
end

actions["promote"] = {
  ["disabled"] = not canPromote,
  ["iconClass"] = "fa fa-fw fa-forward",
  ["displayName"] = "Promote",
}
actions["abort"] = {
  ["disabled"] = not canAbort,
  ["iconClass"] = "fa fa-fw fa-ban",
  ["displayName"] = "Abort",
}
actions["retry"] = {
  ["disabled"] = not canRetry,
  ["iconClass"] = "fa fa-fw fa-redo",
  ["displayName"] = "Retry",
}
return actions
