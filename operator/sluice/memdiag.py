"""Memory diagnosis behind an environment variable, for the scale benchmark.

SLUICE_TRACEMALLOC=PATH traces allocations (tracemalloc, 1 frame) and rewrites PATH every
SLUICE_TRACEMALLOC_EVERY seconds (60) with the top allocation sites, the gc counts and
the sizes of the controller's cache. Tracing costs memory and CPU: never in production.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
import tracemalloc
from pathlib import Path
from typing import Any

from sluice import logs

log = logs.get("sluice.memdiag")


def start_from_env(controller: Any) -> asyncio.Task[None] | None:
    path = os.environ.get("SLUICE_TRACEMALLOC")
    if not path:
        return None
    if not tracemalloc.is_tracing():
        tracemalloc.start(1)
    every = float(os.environ.get("SLUICE_TRACEMALLOC_EVERY", "60"))
    log.warning("tracing allocations (diagnosis only)", path=path, every=every)
    return asyncio.create_task(_loop(Path(path), every, controller), name="sluice-memdiag")


def report(controller: Any, top: int = 40) -> str:
    snapshot = tracemalloc.take_snapshot()
    stats = snapshot.statistics("lineno")
    traced, peak = tracemalloc.get_traced_memory()
    cache = controller.cache
    children = sum(len(b) for b in cache.children.values())
    lines = [
        f"time {time.strftime('%H:%M:%S')} traced {traced / 2**20:.1f} MiB"
        f" peak {peak / 2**20:.1f} MiB",
        f"gc counts {gc.get_count()} objects {len(gc.get_objects())}",
        f"cache rollouts {len(cache.rollouts)} children {children} objects {len(cache.objects)}",
    ]
    lines += [f"{s.size / 2**20:8.2f} MiB {s.count:9d} {s.traceback}" for s in stats[:top]]
    by_file = snapshot.statistics("filename")
    lines.append("-- by file")
    lines += [f"{s.size / 2**20:8.2f} MiB {s.count:9d} {s.traceback}" for s in by_file[:top]]
    return "\n".join(lines) + "\n"


async def _loop(path: Path, every: float, controller: Any) -> None:
    while True:
        await asyncio.sleep(every)
        text = await asyncio.get_running_loop().run_in_executor(None, report, controller)
        path.write_text(text)
