-- Approves the approval step the run waits at: sets ops.runbook.dev/approve to status.currentStep;
-- the step succeeds. Refused unless the run waits for approval now.
if obj.status == nil or obj.status.phase ~= "WaitingForApproval" or obj.status.currentStep == nil then
  error("the run is not waiting for approval; an answer counts only while it shows WaitingForApproval", 0)
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["ops.runbook.dev/approve"] = obj.status.currentStep
return obj
