"""How long one reconcile waited for the API server, so that its own time can be told apart.

A reconcile's duration is mostly API round trips on a busy cluster; what Sluice itself
spends (deciding, building manifests, the event loop's other work in between) is that
duration minus the time at least one of its calls was in flight. Calls made side by side
(gather) overlap, so the wait is the union of their intervals, not their sum.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Wait:
    total: float = 0.0
    depth: int = 0
    since: float = 0.0

    def enter(self, now: float) -> None:
        if self.depth == 0:
            self.since = now
        self.depth += 1

    def leave(self, now: float) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.total += now - self.since


CURRENT: contextvars.ContextVar[Wait | None] = contextvars.ContextVar("api_wait", default=None)


def begin() -> Wait:
    """Start counting for the reconcile about to run in this task (and tasks it makes)."""
    wait = Wait()
    CURRENT.set(wait)
    return wait


@contextmanager
def calling() -> Iterator[None]:
    """Around one API call: counted toward the reconcile it is made for, if any."""
    wait = CURRENT.get()
    if wait is None:
        yield
        return
    wait.enter(time.perf_counter())
    try:
        yield
    finally:
        wait.leave(time.perf_counter())
