"""Command lines: `sluice` (the operator and tools) and `kubectl-sluice` (a kubectl plugin)."""
