-- Argo CD health check for the platform.runwhen.com kinds that the operator keeps in sync:
-- ClusterRunWhenConnection, RunWhenConnection, Workspace, Workflow and Persona.
--
--   Healthy      Ready=True, observed at the object's current generation
--   Degraded     Ready=False (or Synced=False) with a reason that needs a change to the object or
--                its credentials: InvalidSpec, AlreadyExists, NameTaken, Unauthorized
--   Suspended    reconciliation paused (annotation platform.runwhen.com/paused: "true")
--   Progressing  anything else: not reconciled yet, waiting for a connection or a workspace, retrying
local terminal = { InvalidSpec = true, AlreadyExists = true, NameTaken = true, Unauthorized = true }

local hs = { status = "Progressing", message = "Waiting for the operator" }

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

local annotations = (obj.metadata and obj.metadata.annotations) or {}
local paused = annotations["platform.runwhen.com/paused"]
if paused ~= nil and string.lower(string.match(paused, "^%s*(.-)%s*$")) == "true" then
  hs.status = "Suspended"
  hs.message = "Reconciliation paused by the annotation platform.runwhen.com/paused"
  return hs
end

local status = obj.status
if status == nil then
  return hs
end
local generation = obj.metadata.generation
local conditions = status.conditions or {}
local ready = condition(conditions, "Ready")
local synced = condition(conditions, "Synced")

if status.observedGeneration ~= nil and generation ~= nil and status.observedGeneration ~= generation then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

for _, c in ipairs({ ready, synced }) do
  if c ~= nil and c.status == "False" and terminal[c.reason] then
    hs.status = "Degraded"
    hs.message = describe(c)
    return hs
  end
end

if ready == nil then
  return hs
end
local observed = ready.observedGeneration or status.observedGeneration
if ready.status == "True" then
  if observed ~= nil and (generation == nil or observed == generation) then
    hs.status = "Healthy"
    hs.message = describe(ready)
  else
    hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  end
  return hs
end
hs.message = describe(ready)
return hs
