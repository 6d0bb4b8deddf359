-- Argo CD health of a RunbookRun (ops.runbook.dev/v1alpha1).
-- Runs in the argocd-cm sandbox: Lua 5.1 without the string and math libraries.
-- A run is the record of one execution, like a Job: it progresses, then it either did its
-- work (Healthy, also when a step with onFailure: Continue failed) or did not (Degraded:
-- failed, cancelled, or could not start). A run waiting for a person's approval or for a
-- maintenance window is Suspended.
local hs = {}

local function condition(kind)
  if obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function say(c, fallback)
  if c == nil or c.message == nil or c.message == "" then
    return fallback
  end
  return c.message
end

local function because(c, fallback)
  if c ~= nil and c.reason ~= nil and c.reason ~= "" and c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return say(c, fallback)
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to start the run"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local phase = obj.status.phase
local succeeded = condition("Succeeded")
local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = because(stalled, "the run cannot start")
  return hs
end

if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = say(succeeded, "the run succeeded")
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = because(succeeded, "the run failed")
elseif phase == "Cancelled" then
  hs.status = "Degraded"
  hs.message = because(succeeded, "the run was cancelled")
elseif phase == "WaitingForApproval" then
  hs.status = "Suspended"
  hs.message = say(succeeded, "waiting for approval")
elseif phase == "WaitingForWindow" then
  hs.status = "Suspended"
  hs.message = say(succeeded, "waiting for a maintenance window")
elseif phase == "Running" then
  hs.status = "Progressing"
  if obj.status.currentStep ~= nil then
    hs.message = "step " .. obj.status.currentStep .. ": " .. say(succeeded, "running")
  else
    hs.message = say(succeeded, "running")
  end
elseif phase == nil or phase == "Pending" then
  hs.status = "Progressing"
  hs.message = "Waiting for the run to start"
else
  hs.status = "Progressing"
  hs.message = "phase " .. phase
end
return hs
