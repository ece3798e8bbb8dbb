-- Ask Sluice to walk the canary's weight back down step by step (not an instant abort).
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["sluice.dev/action"] = "rollback-gradually"
return obj
