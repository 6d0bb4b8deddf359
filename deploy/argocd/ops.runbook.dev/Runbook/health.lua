-- Argo CD health of a Runbook (ops.runbook.dev/v1alpha1).
-- Runs in the argocd-cm sandbox: Lua 5.1 without the string and math libraries.
-- A Runbook is a definition: once the operator accepted its spec it is Healthy, whatever its
-- runs do (each run is a RunbookRun with its own health), so a sync never waits for a run.
-- A spec the operator cannot act on is Degraded.
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

local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = because(stalled, "the spec cannot be acted on")
  return hs
end

local ready = condition("Ready")
if ready == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to judge the spec"
  return hs
end
if ready.status ~= "True" or obj.status.phase == "Invalid" then
  hs.status = "Degraded"
  hs.message = because(ready, "the spec cannot be acted on")
  return hs
end

local notes = {}
local lastRun = obj.status.lastRun
if lastRun ~= nil then
  table.insert(notes, "last run " .. (lastRun.name or "?") .. ": " .. (lastRun.phase or "Pending"))
end
local schedule = nil
if obj.spec ~= nil then
  schedule = obj.spec.schedule
end
if schedule ~= nil and schedule.suspend == true then
  table.insert(notes, "schedule suspended")
elseif obj.status.nextScheduleTime ~= nil then
  table.insert(notes, "next scheduled run " .. obj.status.nextScheduleTime)
end
if #notes == 0 then
  table.insert(notes, ready.message or "the runbook is valid and can run")
end
hs.status = "Healthy"
hs.message = table.concat(notes, "; ")
return hs
