"""Sluice: progressive canary delivery for Kubernetes."""

__version__ = "0.1.0"
