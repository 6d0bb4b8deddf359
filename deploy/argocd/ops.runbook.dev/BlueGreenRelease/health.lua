-- Argo CD health of a BlueGreenRelease (ops.runbook.dev/v1alpha1).
-- Runs in the argocd-cm sandbox: Lua 5.1 without the string and math libraries.
-- Rolling, validating and switching are Progressing. A revision ready to switch that waits for
-- a person (the promote annotation) or for a maintenance window is Suspended. An aborted or
-- switched-back release is Degraded until a new template is released. Once the new revision
-- serves, the old slot's scale-down delay does not hold a sync: Healthy.
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
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local status = obj.status
local phase = status.phase
local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = because(stalled, "the spec cannot be acted on")
  return hs
end

local degraded = condition("Degraded")
if phase == "Degraded" or (degraded ~= nil and degraded.status == "True") then
  hs.status = "Degraded"
  hs.message = because(degraded, "the release stopped")
  return hs
end

local reconciling = condition("Reconciling")
if phase == "AwaitingPromotion" then
  hs.status = "Suspended"
  hs.message = say(reconciling, "waiting for promotion")
  return hs
end

if phase == "Healthy" or phase == "ScalingDown" then
  local serving = "revision " .. (status.activeRevision or "?") .. " serves from the "
    .. (status.activeSlot or "?") .. " slot"
  if status.replicas ~= nil then
    serving = serving .. " (" .. (status.readyReplicas or 0) .. "/" .. status.replicas .. " ready)"
  end
  if phase == "ScalingDown" and status.scaleDownAt ~= nil then
    serving = serving .. "; the other slot scales down at " .. status.scaleDownAt
  end
  hs.status = "Healthy"
  hs.message = serving
  return hs
end

hs.status = "Progressing"
if phase == nil then
  hs.message = "Waiting for the operator to start the release"
else
  hs.message = say(reconciling, phase)
end
return hs
