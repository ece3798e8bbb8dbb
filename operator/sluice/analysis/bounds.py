"""Limits on what is recorded in an AnalysisRun's status, so it can always be written.

The API server refuses an object above ~1.5 MB; a 100 KB argument copied into every
kept measurement's query and message would pass that and the status write would fail
forever. Recorded text is cut with a marker that says so; the verdict never depends on it.
"""

from __future__ import annotations

QUERY = 2048  # characters of a recorded query
MESSAGE = 2048  # of a measurement's or a verdict's message
VALUE = 1024  # of a recorded value
RUN_BUDGET = 512 * 1024  # bytes of measurements kept in one run, shared by its metrics
METRIC_FLOOR = 8 * 1024  # but each metric may keep at least this much


def clip(text: str, limit: int) -> str:
    """`text`, cut to about `limit` characters with a marker naming how much was cut."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    return f"{text[:limit]}…[{cut} more characters not recorded]"


def metric_budget(metrics: int) -> int:
    return max(METRIC_FLOOR, RUN_BUDGET // max(1, metrics))
