"""Prometheus queries per second of a fleet's analyses, with and without sharing identical ones.

In-process: the operator's real AnalysisExecutor (its queue and timers, measure(), the
PrometheusProvider over HTTP, the shared query layer) runs N background AnalysisRuns
against a real local Prometheus (Debian's, scraping itself every second). Only the
Kubernetes API is a stand-in (status writes kept in memory): N AnalysisRuns, not N
Rollouts with their Deployments.

The fleet shares a few templates, as one using a template with the same arguments does:
60 % ask an error ratio, 30 % a p99 latency (the same text for all of them), 10 % a query
naming their own Rollout (never shared). Runs start spread over the first interval, as
Rollouts of a fleet do; then the queries Prometheus served (its own
``prometheus_http_requests_total`` on /api/v1/query) are counted for ``--intervals``
intervals. Modes alternate run by run; the medians are printed.

    .venv/bin/python benchmarks/query_dedup.py [--runs 3] [--analyses 1000] [--interval 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.support.prometheus import PrometheusServer  # noqa: E402

from provenance import source_version  # noqa: E402
from sluice import logs  # noqa: E402
from sluice.api.analysis import AnalysisRunSpec  # noqa: E402
from sluice.controller.analysis import AnalysisExecutor  # noqa: E402

QUERIES = {
    "error-ratio": (
        'sum(rate(prometheus_http_requests_total{code=~"5.."}[1m]))'
        " / sum(rate(prometheus_http_requests_total[1m])) or vector(0)"
    ),
    "p99-latency": (
        "histogram_quantile(0.99, sum by (le) "
        "(rate(prometheus_http_request_duration_seconds_bucket[1m]))) or vector(0)"
    ),
    "own-rollout": 'sum(rate(prometheus_http_requests_total{handler="/{{rollout.name}}"}[1m]))'
    " or vector(0)",
}
MIX = (("error-ratio", 0.6), ("p99-latency", 0.3), ("own-rollout", 0.1))


class MemoryKube:
    """The status writes of the executor, kept in memory (the only stand-in)."""

    async def replace_status(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        return {
            **body,
            "metadata": {**meta, "resourceVersion": str(int(meta["resourceVersion"]) + 1)},
        }


def run_body(name: str, template: str, address: str, interval: int) -> dict[str, Any]:
    metric = {
        "name": template,
        "provider": {
            "prometheus": {"address": address, "timeout": "10s", "query": QUERIES[template]}
        },
        "successCondition": "result >= 0 or isNaN(result)",
        "interval": f"{interval}s",
    }
    spec = AnalysisRunSpec.model_validate(
        {"metrics": [metric], "kind": "background", "revision": "c1"}
    )
    return {
        "metadata": {"name": name, "namespace": "fleet", "resourceVersion": "1"},
        "spec": spec.model_dump(by_alias=True, exclude_none=True),
    }


def rollout_body(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "fleet"},
        "status": {"stableRevision": "s1", "stableSlot": "a", "canary": {"slot": "b"}},
    }


def served_queries(server: PrometheusServer) -> float:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    pattern = r'^prometheus_http_requests_total\{[^}]*handler="/api/v1/query"[^}]*\} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.M))


@dataclass(frozen=True)
class Result:
    sent_per_s: float  # requests Prometheus served on /api/v1/query, per second
    measured_per_s: float  # measurements taken, per second
    errors: int  # Error measurements in the counted window


async def one_run(
    server: PrometheusServer, args: argparse.Namespace, window: float, seed: int
) -> Result:
    rng = random.Random(seed)
    bodies: dict[str, dict[str, Any]] = {}
    rollouts: dict[str, dict[str, Any]] = {}
    for i in range(args.analyses):
        roll, acc = rng.random(), 0.0
        template = MIX[-1][0]
        for name, share in MIX:
            acc += share
            if roll < acc:
                template = name
                break
        rollouts[f"r{i}"] = rollout_body(f"r{i}")
        bodies[f"r{i}-bg"] = run_body(f"r{i}-bg", template, server.url, args.interval)

    measured = errors = 0

    def store(body: dict[str, Any]) -> None:
        bodies[body["metadata"]["name"]] = body

    executor = AnalysisExecutor(
        MemoryKube(),  # type: ignore[arg-type]
        cache_lookup=lambda key: (bodies[key[2]], rollouts[key[1]]),
        wake_rollout=lambda key: None,
        store=store,
        query_window=window,
    )
    take = executor.measure

    async def counted(spec: Any, metric: Any, rollout: Any) -> Any:
        nonlocal measured, errors
        measurement = await take(spec, metric, rollout)
        measured += 1
        errors += measurement.phase == "Error"
        return measurement

    executor.measure = counted  # type: ignore[method-assign]
    executor.start()
    try:
        for name in bodies:  # started spread over one interval, as a fleet's Rollouts are
            executor.queue.add_after(
                ("fleet", name.removesuffix("-bg"), name), rng.uniform(0, args.interval)
            )
        await asyncio.sleep(args.interval + 1)
        before, measured, errors = served_queries(server), 0, 0
        started = time.monotonic()
        await asyncio.sleep(args.interval * args.intervals)
        took = time.monotonic() - started
        sent = served_queries(server) - before  # /metrics itself is another handler
    finally:
        await executor.stop()
    return Result(sent_per_s=sent / took, measured_per_s=measured / took, errors=errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each mode (default 3)")
    parser.add_argument("--analyses", type=int, default=1000, help="AnalysisRuns (default 1000)")
    parser.add_argument("--interval", type=int, default=10, help="metric interval, s (10)")
    parser.add_argument("--intervals", type=int, default=2, help="intervals counted (2)")
    parser.add_argument("--window", type=float, default=1.0, help="sharing window, s (1)")
    args = parser.parse_args(argv)
    logs.configure("WARNING")

    print(f"{os.cpu_count()} CPUs, load average {_load()} at start; sluice {source_version()}")
    print(
        f"in-process: the real AnalysisExecutor and PrometheusProvider against a real local "
        f"Prometheus; {args.analyses} AnalysisRuns (not Rollouts), interval {args.interval}s, "
        f"mix {', '.join(f'{n} {int(s * 100)} %' for n, s in MIX)}; counted over "
        f"{args.intervals} intervals after a {args.interval}s spread start"
    )
    with tempfile.TemporaryDirectory(prefix="sluice-bench-dedup-") as tmp:
        server = PrometheusServer(workdir=Path(tmp), scrape_interval="1s")
        server.targets = [("prometheus", f"127.0.0.1:{server.port}", {})]
        server._write_config()
        with server:
            time.sleep(8)  # the first scrapes (targets apply on the first 5 s tick)
            results: dict[str, list[Result]] = {"shared": [], "direct": []}
            print(f"{'run':>4} {'mode':>8} {'queries/s':>10} {'measured/s':>11} {'errors':>7}")
            for run in range(1, args.runs + 1):
                for mode, window in (("shared", args.window), ("direct", 0.0)):
                    limit = 3 * args.interval * (args.intervals + 1) + 300  # stops by itself
                    result = asyncio.run(
                        asyncio.wait_for(one_run(server, args, window, seed=run), limit)
                    )
                    results[mode].append(result)
                    print(
                        f"{run:>4} {mode:>8} {result.sent_per_s:>10.1f} "
                        f"{result.measured_per_s:>11.1f} {result.errors:>7}"
                    )
    medians = {m: statistics.median(r.sent_per_s for r in rs) for m, rs in results.items()}
    measured = {m: statistics.median(r.measured_per_s for r in rs) for m, rs in results.items()}
    print(
        f"median queries/s sent: with sharing {medians['shared']:.1f}, without "
        f"{medians['direct']:.1f} ({medians['direct'] / max(medians['shared'], 1e-9):.0f}x fewer); "
        f"measurements/s {measured['shared']:.1f} / {measured['direct']:.1f} (queries per "
        f"measurement {medians['shared'] / max(measured['shared'], 1e-9):.2f} / "
        f"{medians['direct'] / max(measured['direct'], 1e-9):.2f}: the direct mode falls "
        "behind when Prometheus cannot answer them all in time); "
        f"load average {_load()} at end"
    )
    return 0


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
