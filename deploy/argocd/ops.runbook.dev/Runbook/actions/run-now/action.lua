-- Starts one run of the Runbook: the operator starts a run per distinct value of the
-- ops.runbook.dev/run-now annotation (recorded in status.lastHandledRunNow). The value is the
-- current time (UTC, to the second). The annotation is not in Git, so the Application shows no
-- drift and a self-heal does not remove it.
-- Argo CD's sandbox has no global os: its safe os (date and time only) comes from require,
-- as in Argo CD's own actions.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["ops.runbook.dev/run-now"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
