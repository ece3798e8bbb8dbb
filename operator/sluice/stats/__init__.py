"""Anytime-valid statistics for the canary judge: numpy/scipy in, evidence out.

Nothing here knows about Prometheus or Kubernetes. `counts` tests a ratio of error
rates, `histogram` tests latency distributions from bucket counts; both keep a compact
state that a caller persists between intervals and can be checked after every interval
without inflating the false-alarm rate (Ville's inequality on nonnegative supermartingales).
"""
