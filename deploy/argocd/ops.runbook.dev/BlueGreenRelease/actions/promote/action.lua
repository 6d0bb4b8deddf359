-- Promotes the revision waiting in the idle slot: sets ops.runbook.dev/promote to
-- status.desiredRevision. The operator acts only on the revision named, so a promote
-- requested for one revision never promotes a later one.
if obj.status == nil or obj.status.desiredRevision == nil then
  error("the release has no desired revision yet; wait for the operator to report status", 0)
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["ops.runbook.dev/promote"] = obj.status.desiredRevision
return obj
