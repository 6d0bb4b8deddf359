-- Argo CD actions of a Runbook (ops.runbook.dev/v1alpha1), in the argocd-cm sandbox.
-- run-now is enabled when the operator accepted the spec (phase Ready), no earlier request is
-- still waiting to be handled, and every parameter has a default (a run started by run-now
-- gets no parameter values).
local actions = {}
local enabled = obj.status ~= nil and obj.status.phase == "Ready"
  and obj.metadata.deletionTimestamp == nil
if enabled and obj.metadata.annotations ~= nil then
  local pending = obj.metadata.annotations["ops.runbook.dev/run-now"]
  if pending ~= nil and pending ~= "" and pending ~= obj.status.lastHandledRunNow then
    enabled = false
  end
end
if enabled and obj.spec ~= nil and obj.spec.params ~= nil then
  for _, param in ipairs(obj.spec.params) do
    if param.default == nil then
      enabled = false
    end
  end
end
actions["run-now"] = {
  ["disabled"] = not enabled,
  ["iconClass"] = "fa fa-fw fa-play",
  ["displayName"] = "Run now",
}
return actions
