-- Retries the aborted or rolled-back revision without a template change: sets
-- ops.runbook.dev/retry to status.desiredRevision. The operator reopens the release of that
-- revision (validation runs again) and removes the annotation, with an abort annotation naming
-- the same revision; a retry naming another revision is ignored.
if obj.status == nil or obj.status.desiredRevision == nil then
  error("the release has no desired revision yet; wait for the operator to report status", 0)
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["ops.runbook.dev/retry"] = obj.status.desiredRevision
return obj
