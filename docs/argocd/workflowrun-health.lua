-- Argo CD health check for platform.runwhen.com/WorkflowRun (one run of a workflow). It runs in Argo
-- CD's restricted Lua VM (no string library: resource.customizations.useOpenLibs is not needed).
--
--   Healthy      condition Complete=True (phase Completed or CompletedWithErrors)
--   Degraded     condition Failed=True (phase Failed or Canceled)
--   Suspended    reconciliation paused (annotation platform.runwhen.com/paused: "true")
--   Progressing  not triggered yet, queued or running
local hs = { status = "Progressing", message = "Waiting for the run to be triggered" }

local function describe(c, fallback)
  local text = c.reason or fallback
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local status = obj.status or {}
for _, c in ipairs(status.conditions or {}) do
  if c.type == "Failed" and c.status == "True" then
    hs.status = "Degraded"
    hs.message = describe(c, "Failed")
    return hs
  end
end
for _, c in ipairs(status.conditions or {}) do
  if c.type == "Complete" and c.status == "True" then
    hs.status = "Healthy"
    hs.message = describe(c, "Complete")
    return hs
  end
end

local paused_values = { ["true"] = true, ["True"] = true, ["TRUE"] = true }
local annotations = (obj.metadata and obj.metadata.annotations) or {}
if paused_values[annotations["platform.runwhen.com/paused"] or ""] then
  hs.status = "Suspended"
  hs.message = "Reconciliation paused by the annotation platform.runwhen.com/paused"
  return hs
end

if status.phase ~= nil then
  hs.message = "Run is " .. status.phase
  if status.message ~= nil and status.message ~= "" then
    hs.message = hs.message .. ": " .. status.message
  end
end
return hs
