-- Ask Sluice to promote: it applies the annotation once and removes it.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["sluice.dev/action"] = "promote"
return obj
