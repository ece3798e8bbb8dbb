"""One queue of Rollout keys and one timer heap for all of them.

A key is processed by one worker at a time; an event that arrives meanwhile
marks it dirty and it is processed once more afterwards. Timed wake-ups
(pause ends, deadlines, scale-down delays) sit in a single heap served by a
single task, so a Healthy, idle Rollout costs nothing periodic.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._pending: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._heap: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._seq = 0
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def scheduled(self) -> int:
        return len(self._due)

    def add(self, key: K) -> None:
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._pending:
            self._pending.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: K, delay: float) -> None:
        due = time.monotonic() + max(delay, 0.0)
        if self._due.get(key, float("inf")) <= due:
            return  # an earlier wake-up is already set; it will reschedule
        self._due[key] = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, key))
        self._wake.set()

    def cancel_timer(self, key: K) -> None:
        """Drop the key's wake-up (its heap entry is skipped when it comes up)."""
        self._due.pop(key, None)

    def forget(self, key: K) -> None:
        self._due.pop(key, None)
        self._dirty.discard(key)

    async def get(self) -> K:
        key = await self._queue.get()
        self._pending.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    async def run_timers(self) -> None:
        """Move due keys into the queue; sleeps until the earliest one."""
        while True:
            now = time.monotonic()
            while self._heap and self._heap[0][0] <= now:
                due, _, key = heapq.heappop(self._heap)
                if self._due.get(key) == due:
                    del self._due[key]
                    self.add(key)
            timeout = self._heap[0][0] - now if self._heap else None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
