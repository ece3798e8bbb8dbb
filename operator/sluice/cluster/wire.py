"""Bodies as sent to the API server."""

from __future__ import annotations

from typing import Any


def strip_empty(value: Any) -> Any:
    """Drop None and "" recursively: some API servers store "" as null and then refuse it."""
    if isinstance(value, dict):
        return {k: strip_empty(v) for k, v in value.items() if v is not None and v != ""}
    if isinstance(value, list):
        return [strip_empty(v) for v in value]
    return value
