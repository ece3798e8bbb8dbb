"""Analysis: query templates, built-in triggers, conditions, limits and verdicts (pure)."""
