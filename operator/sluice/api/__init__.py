"""The Sluice API: pydantic models that are the single source of the CRDs."""
