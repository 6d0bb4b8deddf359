-- Starts one backup now: the operator runs one backup Job per distinct value of the
-- ops.runbook.dev/backup-now annotation (recorded in status.lastHandledBackupNow). The value
-- is the current time (UTC, to the second).
-- Argo CD's sandbox has no global os: its safe os (date and time only) comes from require,
-- as in Argo CD's own actions.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["ops.runbook.dev/backup-now"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
