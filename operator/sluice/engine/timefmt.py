"""Timestamps in status: RFC 3339, UTC, millisecond precision (pauses of 1 s stay exact)."""

from __future__ import annotations

from datetime import UTC, datetime


def fmt(moment: datetime) -> str:
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def fmt_seconds(moment: datetime) -> str:
    """Seconds precision, as Kubernetes writes condition times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def since(text: str | None, now: datetime) -> float:
    """Seconds from `text` to `now`; 0 when unset."""
    return 0.0 if not text else (now - parse(text)).total_seconds()
