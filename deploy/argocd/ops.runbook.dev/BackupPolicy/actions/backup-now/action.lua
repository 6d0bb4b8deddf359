-- Starts one backup now: the operator runs one backup Job per distinct value of the
-- ops.runbook.dev/backup-now annotation (recorded in status.lastHandledBackupNow). The value
-- is the current time (UTC, to the second).
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["ops.runbook.dev/backup-now"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
