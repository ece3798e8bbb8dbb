-- The Sluice actions Argo CD offers for a Rollout, each enabled only when it would do
-- something. All are off while an earlier action annotation is still unconsumed.
local status = obj.status or {}
local annotations = obj.metadata.annotations or {}
local pending = annotations["sluice.dev/action"] ~= nil
local aborted = status.abort ~= nil
local canary = status.canaryRevision ~= nil and status.canaryRevision ~= ""
local running = canary and not aborted
local held = status.userPaused == true
local actions = {}
actions["promote"] = {disabled = pending or not running}
actions["promote-full"] = {disabled = pending or not running}
actions["abort"] = {disabled = pending or not running}
actions["retry"] = {disabled = pending or not aborted}
actions["pause"] = {disabled = pending or not running or held}
actions["resume"] = {disabled = pending or not held}
actions["rollback-gradually"] = {disabled = pending or not running}
return actions
