-- Argo CD health check for the platform.runwhen.com kinds that the operator keeps in sync:
-- ClusterRunWhenConnection, RunWhenConnection, Workspace, Workflow and Persona. It runs in Argo CD's
-- restricted Lua VM (no string library: resource.customizations.useOpenLibs is not needed).
--
--   Suspended    reconciliation paused (annotation platform.runwhen.com/paused: "true")
--   Progressing  not observed at the object's current generation yet (just applied, or changed),
--                being deleted, or Reconciling=True (creating, waiting, retrying)
--   Degraded     Stalled=True: a state that needs a change to the object or its credentials
--                (InvalidSpec, AlreadyExists, NameTaken, Unauthorized, ...: the reason says which)
--   Healthy      Ready=True, observed at the object's current generation
local hs = { status = "Progressing", message = "Waiting for the operator" }
local paused_values = { ["true"] = true, ["True"] = true, ["TRUE"] = true }

local function condition(conditions, kind)
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.reason or ""
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local metadata = obj.metadata or {}
local annotations = metadata.annotations or {}
if paused_values[annotations["platform.runwhen.com/paused"] or ""] then
  hs.status = "Suspended"
  hs.message = "Reconciliation paused by the annotation platform.runwhen.com/paused"
  return hs
end
if metadata.deletionTimestamp ~= nil then
  hs.message = "Being deleted"
  return hs
end

local status = obj.status
if status == nil then
  return hs
end
local generation = metadata.generation
if status.observedGeneration == nil or (generation ~= nil and status.observedGeneration ~= generation) then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local conditions = status.conditions or {}
local stalled = condition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end
local reconciling = condition(conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = describe(reconciling)
  return hs
end
local ready = condition(conditions, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end
if ready ~= nil then
  hs.message = describe(ready)
end
return hs
