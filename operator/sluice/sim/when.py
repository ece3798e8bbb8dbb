"""Points in time as users write them on the command line."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sluice.api.duration import parse_duration
from sluice.engine.validate import InvalidSpec

_AGO = re.compile(r"^(?:now)?\s*-\s*(.+)$")


def parse_time(text: str, flag: str, now: datetime | None = None) -> datetime:
    """RFC 3339 (`2026-03-01T14:05:00Z`, a date, or an offset), Unix seconds, `now`, or
    `now-2h` / `-2h`; InvalidSpec naming `flag` otherwise. Naive times are UTC."""
    now = now or datetime.now(UTC)
    raw = text.strip()
    if raw == "now":
        return now
    ago = _AGO.match(raw)
    if ago:
        try:
            return now - timedelta(seconds=parse_duration(ago.group(1).strip()))
        except ValueError as exc:
            raise InvalidSpec(f"{flag}: {exc}") from None
    try:
        return datetime.fromtimestamp(float(raw), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidSpec(
            f"{flag}: {text!r} is not a time: use RFC 3339 (2026-03-01T14:05:00Z), Unix "
            "seconds, now, or now-2h"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
