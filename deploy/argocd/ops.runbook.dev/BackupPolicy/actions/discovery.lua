-- Argo CD actions of a BackupPolicy (ops.runbook.dev/v1alpha1), in the argocd-cm sandbox.
-- backup-now is enabled when the policy is valid, no backup, verify or prune Job runs (phase
-- Running) and no earlier request is still waiting. It stays enabled while scheduled backups
-- are suspended: on-demand backups still run then.
local actions = {}
local status = obj.status
local enabled = status ~= nil and obj.metadata.deletionTimestamp == nil
  and (status.phase == "Scheduled" or status.phase == "Suspended")
if enabled and obj.metadata.annotations ~= nil then
  local pending = obj.metadata.annotations["ops.runbook.dev/backup-now"]
  if pending ~= nil and pending ~= "" and pending ~= status.lastHandledBackupNow then
    enabled = false
  end
end
actions["backup-now"] = {
  ["disabled"] = not enabled,
  ["iconClass"] = "fa fa-fw fa-database",
  ["displayName"] = "Back up now",
}
return actions
