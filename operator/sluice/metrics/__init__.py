"""Metric providers, one file each, behind the protocol in base."""
