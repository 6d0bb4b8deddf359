-- Cancels the run: sets ops.runbook.dev/cancel, as `kubectl runbook cancel` does; the current
-- step stops and the finally steps still run. The value is the current time (UTC, to the
-- second); the operator acts on the annotation being there. Refused once the run finished or
-- while a cancel is already under way.
local os = require("os")
local phase = obj.status ~= nil and obj.status.phase or nil
if phase == "Succeeded" or phase == "Failed" or phase == "Cancelled" then
  error("the run already finished (" .. phase .. "); there is nothing to cancel", 0)
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
if obj.metadata.annotations["ops.runbook.dev/cancel"] ~= nil then
  error("the run is already being cancelled (annotation ops.runbook.dev/cancel is set); it stops after its finally steps", 0)
end
obj.metadata.annotations["ops.runbook.dev/cancel"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
