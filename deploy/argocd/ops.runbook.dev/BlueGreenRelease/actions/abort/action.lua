-- Aborts the release in flight: sets ops.runbook.dev/abort to status.desiredRevision. Before
-- the switch the active slot is untouched; after it (postPromotion), traffic switches back.
-- The annotation names the revision, so it never aborts a later one.
if obj.status == nil or obj.status.desiredRevision == nil then
  error("the release has no desired revision yet; wait for the operator to report status", 0)
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["ops.runbook.dev/abort"] = obj.status.desiredRevision
return obj
