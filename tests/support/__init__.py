"""Test support: real external programs the integration tests run (Prometheus)."""
