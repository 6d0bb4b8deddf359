-- Rejects the approval step the run waits at: sets ops.runbook.dev/reject to status.currentStep;
-- the step fails with reason Rejected. Refused unless the run waits for approval now.
if obj.status == nil or obj.status.phase ~= "WaitingForApproval" or obj.status.currentStep == nil then
  error("the run is not waiting for approval; an answer counts only while it shows WaitingForApproval", 0)
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["ops.runbook.dev/reject"] = obj.status.currentStep
return obj
