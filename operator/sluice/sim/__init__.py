"""An in-memory cluster executing engine actions: for tests, benchmarks, `sluice simulate`."""
