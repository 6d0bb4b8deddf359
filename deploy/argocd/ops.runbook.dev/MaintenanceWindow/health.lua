-- Argo CD health of a MaintenanceWindow (ops.runbook.dev/v1alpha1).
-- Runs in the argocd-cm sandbox: Lua 5.1 without the string and math libraries.
-- A window that waits for, prepares, holds or restores its occurrence is doing its job:
-- Healthy, so a sync never waits for a window. Degraded means a person must act: the spec
-- cannot be scheduled, or the API server refused a change or a restore (until the next
-- occurrence ends well). spec.suspend: true is Suspended.
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

local function because(c, fallback)
  if c == nil or c.message == nil or c.message == "" then
    return fallback
  end
  if c.reason ~= nil and c.reason ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.message
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

local phase = obj.status.phase
local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = because(stalled, "the window cannot be scheduled")
  return hs
end
if phase == "Invalid" then
  hs.status = "Degraded"
  hs.message = "the window cannot be scheduled; see its Events"
  return hs
end

local current = obj.status.currentWindow
if current ~= nil and current.result == "Failed" then
  hs.status = "Degraded"
  hs.message = "the window open since " .. (current.start or "?")
    .. " could not make every change: the API server refused one (see the ChangeFailed Event)"
  return hs
end
local last = obj.status.lastWindow
if last ~= nil and last.result == "Failed" then
  hs.status = "Degraded"
  hs.message = "the window " .. (last.start or "?") .. " - " .. (last["end"] or "?")
    .. " failed: a change or a restore was refused; check its targets (see the RestoreFailed"
    .. " and ChangeFailed Events)"
  return hs
end

if phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: no window opens"
  return hs
end
if phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to schedule the window"
  return hs
end

local notes = {}
local active = condition("Active")
if phase == "Completed" then
  table.insert(notes, "Completed: the one-off window is over")
elseif active ~= nil and active.message ~= nil and active.message ~= "" then
  table.insert(notes, phase .. ": " .. active.message)
else
  table.insert(notes, phase)
end
if last ~= nil and last.result ~= nil and last.result ~= "Succeeded" then
  table.insert(notes, "last window " .. (last.start or "?") .. ": " .. last.result)
end
local found = condition("TargetsFound")
if found ~= nil and found.status == "False" then
  table.insert(notes, "warning: " .. because(found, "a target names no object"))
end
hs.status = "Healthy"
hs.message = table.concat(notes, "; ")
return hs
