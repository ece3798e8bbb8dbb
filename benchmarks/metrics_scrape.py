"""What one /metrics scrape costs the operator at N Rollouts.

In-process: the operator's real registry (sluice.telemetry) is filled through the
functions the reconciler and the analysis executor call, as N Rollouts that each ran one
canary would leave it (phases, Events posted, per-Rollout gauges, one verdict and value
per analysis metric); then /metrics is served by the operator's own HTTP server
(sluice.server) and scraped by curl, a process of its own as Prometheus is. Printed:

- series: samples in one exposition (all of them, process and histogram ones too);
- bytes of one exposition;
- build CPU: CPU seconds of one generate_latest (median of --runs);
- loop lateness: how late a 5 ms timer on the serving event loop fired, at worst, while
  one scrape was served (median of --runs scrapes); a reconcile waits as long;
- forget: the time forget_rollout takes for one deleted Rollout (median of --runs).

    .venv/bin/python benchmarks/metrics_scrape.py [--rollouts 10000] [--metrics 1] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

from prometheus_client import generate_latest  # noqa: E402

from sluice import server  # noqa: E402
from sluice import telemetry as M  # noqa: E402
from sluice.api.analysis import AnalysisRunStatus  # noqa: E402

TICK = 0.005
# Where a fleet's Rollouts are, per 100 (most idle and Healthy), and what they last posted.
MIX = (("Healthy", 90), ("Progressing", 5), ("Paused", 3), ("Degraded", 2))
PROMOTED = tuple(
    (reason, "Normal")
    for reason in ("RolloutStarted", "AnalysisStarted", "StepReached", "Completed", "ScaledDown")
)
ABORTED = (("RolloutStarted", "Normal"), ("AnalysisStarted", "Normal"),
           ("Aborted", "Warning"), ("Degraded", "Warning"))  # fmt: skip
VERDICT = {"Healthy": "Successful", "Progressing": "Running", "Paused": "Running",
           "Degraded": "Failed"}  # fmt: skip


def phase_of(i: int) -> str:
    slot = i % 100
    for phase, share in MIX:
        if slot < share:
            return phase
        slot -= share
    raise AssertionError(i)


def run_status(phase: str, metrics: int) -> AnalysisRunStatus:
    results = [
        {
            "name": f"check-{k}",
            "phase": phase,
            "measurements": [{"phase": "Successful", "value": "0.01", "startedAt": "t"}],
        }
        for k in range(metrics)
    ]
    return AnalysisRunStatus.model_validate({"phase": phase, "metricResults": results})


def fill(rollouts: int, metrics: int) -> list[tuple[str, str]]:
    """The registry as the operator leaves it after each Rollout ran one canary."""
    keys = []
    running, statuses = run_status("Running", metrics), {}
    for i in range(rollouts):
        key = (f"team-{i % 100}", f"app-{i}")
        phase = phase_of(i)
        M.set_rollout(*key, "Progressing", 50, 0)  # the canary, then where it ended
        M.record_analysis(*key, running, [object()])
        for reason, kind in ABORTED if phase == "Degraded" else PROMOTED:
            M.count_event(*key, reason, kind)
        verdict = VERDICT[phase]
        status = statuses.setdefault(verdict, run_status(verdict, metrics))
        M.record_analysis(*key, status, [object()])
        canary = phase in ("Progressing", "Paused")
        M.set_rollout(*key, phase, 50 if canary else 0, 1 if canary else None)
        keys.append(key)
    return keys


def series() -> int:
    return sum(len(family.samples) for family in M.REGISTRY.collect())


def build_cpu(runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.process_time()
        generate_latest(M.REGISTRY)
        times.append(time.process_time() - start)
    return statistics.median(times)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def lateness(runs: int) -> tuple[float, float]:
    """Median over scrapes of the worst lateness of a timer on the loop, and of the scrape's
    wall time (seconds)."""
    port = free_port()
    runner = await server.serve(server.app(lambda: True), "127.0.0.1", port)
    url = f"http://127.0.0.1:{port}/metrics"
    worst: list[float] = []
    walls: list[float] = []
    try:
        for _ in range(runs):
            late = [0.0]
            done = asyncio.Event()

            async def tick(late: list[float] = late, done: asyncio.Event = done) -> None:
                while not done.is_set():
                    due = time.perf_counter() + TICK
                    await asyncio.sleep(TICK)
                    late[0] = max(late[0], time.perf_counter() - due)

            ticker = asyncio.create_task(tick())
            await asyncio.sleep(0.05)
            start = time.perf_counter()
            curl = await asyncio.create_subprocess_exec(
                "curl", "-sf", "-o", os.devnull, "--max-time", "60", url
            )
            code = await curl.wait()
            walls.append(time.perf_counter() - start)
            done.set()
            await ticker
            if code != 0:
                raise SystemExit(f"curl failed: {code}")
            worst.append(late[0])
    finally:
        await runner.cleanup()
    return statistics.median(worst), statistics.median(walls)


def forget(keys: list[tuple[str, str]], runs: int) -> float:
    times = []
    for key in keys[-runs:]:
        start = time.perf_counter()
        M.forget_rollout(*key)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=10_000)
    parser.add_argument("--metrics", type=int, default=1, help="analysis metrics per Rollout")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(f"commit {commit or '?'}, load average {os.getloadavg()[0]:.2f}")
    start = time.perf_counter()
    keys = fill(args.rollouts, args.metrics)
    print(f"filled {args.rollouts} Rollouts in {time.perf_counter() - start:.1f} s")
    size = len(generate_latest(M.REGISTRY))
    print(f"series {series()}")
    print(f"bytes {size} ({size / 1e6:.2f} MB)")
    print(f"build cpu {build_cpu(args.runs):.3f} s")
    late, wall = asyncio.run(lateness(args.runs))
    print(f"loop lateness {late * 1000:.1f} ms (scrape wall {wall:.3f} s)")
    print(f"forget {forget(keys, args.runs) * 1000:.3f} ms")


if __name__ == "__main__":
    main()
