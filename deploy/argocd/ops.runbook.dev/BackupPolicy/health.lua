-- Argo CD health of a BackupPolicy (ops.runbook.dev/v1alpha1).
-- Runs in the argocd-cm sandbox: Lua 5.1 without the string and math libraries.
-- A policy waiting for its next time or running a backup is Healthy: a sync never waits for
-- a backup. Degraded means data is at risk: with spec.rpo, no good backup is younger than the
-- RPO (BackupFresh=False); without spec.rpo, the newest backup failed. A failed backup while
-- the RPO still holds is Healthy with a warning: the next scheduled time retries it.
-- spec.schedule.suspend: true is Suspended (unless the RPO is violated).
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
  hs.message = because(stalled, "the policy cannot be scheduled")
  return hs
end
if phase == "Invalid" then
  hs.status = "Degraded"
  hs.message = "the policy cannot be scheduled; see its Events"
  return hs
end

local fresh = condition("BackupFresh")
local last = condition("LastBackupSucceeded")
if fresh ~= nil and fresh.status == "False" then
  hs.status = "Degraded"
  hs.message = because(fresh, "RPOViolated: no good backup is younger than spec.rpo")
  return hs
end
if fresh == nil and last ~= nil and last.status == "False" then
  hs.status = "Degraded"
  hs.message = because(last, "the newest backup failed")
  return hs
end
if phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to schedule the policy"
  return hs
end

local notes = {}
if phase == "Suspended" then
  table.insert(notes, "scheduled backups are suspended (spec.schedule.suspend); backup-now still runs")
elseif phase == "Running" then
  local reconciling = condition("Reconciling")
  if reconciling ~= nil and reconciling.status == "True" and reconciling.message ~= nil then
    table.insert(notes, reconciling.message)
  else
    table.insert(notes, "a backup runs")
  end
end
if fresh ~= nil and fresh.message ~= nil and fresh.message ~= "" then
  table.insert(notes, fresh.message)
end
if last ~= nil and last.status == "False" then
  table.insert(notes, "warning: " .. because(last, "the newest backup failed"))
end
local meets = condition("ScheduleMeetsRPO")
if meets ~= nil and meets.status == "False" then
  table.insert(notes, "warning: " .. because(meets, "spec.rpo is shorter than the gaps of the schedule"))
end
if #notes == 0 then
  if obj.status.nextScheduleTime ~= nil then
    table.insert(notes, "next backup " .. obj.status.nextScheduleTime)
  else
    table.insert(notes, phase)
  end
end
if phase == "Suspended" then
  hs.status = "Suspended"
else
  hs.status = "Healthy"
end
hs.message = table.concat(notes, "; ")
return hs
