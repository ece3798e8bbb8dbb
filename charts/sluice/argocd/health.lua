-- Argo CD health of a sluice.dev Rollout, from what Sluice wrote to .status.
-- Progressing until Sluice has seen this generation; then its phase decides:
-- Healthy -> Healthy, Paused -> Suspended (a manual step or a hold), Degraded or an
-- invalid spec -> Degraded, anything else -> Progressing.
local health = {status = "Progressing", message = "Waiting for Sluice to report a status"}
local status = obj.status
if status == nil then
  return health
end
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  health.message = "Sluice has not observed generation " .. tostring(generation) .. " yet"
  return health
end
local message = status.message or ""
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "InvalidSpec" and condition.status == "True" then
      health.status = "Degraded"
      health.message = "Invalid spec: " .. (condition.message or message)
      return health
    end
  end
end
local phase = status.phase
if phase == "Healthy" then
  health.status = "Healthy"
elseif phase == "Degraded" then
  health.status = "Degraded"
  if status.abort ~= nil and message == "" then
    message = "Aborted: " .. (status.abort.reason or "") .. " " .. (status.abort.message or "")
  end
elseif phase == "Paused" then
  health.status = "Suspended"
elseif phase ~= "Progressing" then
  message = "Unknown phase " .. tostring(phase) .. ". " .. message
end
if message ~= "" then
  health.message = message
else
  health.message = phase or ""
end
return health
