"""Throughput and latency of the pure decision core, `decide(RolloutInput, Observed, now)`.

All inputs are generated before any timing: random step lists, replica counts and
strategy settings; statuses reached by driving the real engine on a MemoryCluster for a
random number of decisions (first deploy, then a new template part of the way through
its canary, sometimes a revert, a third template or an action annotation); and random
observed readiness. Then each run times `decide` once on every input.

    .venv/bin/python benchmarks/engine_decisions.py [--inputs 20000] [--runs 5] [--seed 1]

Prints, per run and as the median across runs: decisions/second, and p50/p99/max latency
of one call in microseconds.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sluice.api.rollout import ACTIONS, RolloutStatus
from sluice.engine import Decision, Observed, RemoveAction, RolloutInput, TrafficObserved, decide
from sluice.engine.hashing import template_hash
from sluice.sim.memory import MemoryCluster

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import source_version

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Case:
    inp: RolloutInput
    observed: Observed
    now: datetime


# ---------------------------------------------------------------- random specs


def _template(name: str, version: int) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": name, "image": f"{name}:{version}"}]},
    }


def _duration(rng: random.Random) -> int | str | None:
    roll = rng.random()
    if roll < 0.08:
        return None  # hold until promoted
    if roll < 0.4:
        return rng.randint(0, 120)
    if roll < 0.75:
        return f"{rng.randint(1, 90)}s"
    if roll < 0.9:
        return f"{rng.randint(1, 10)}m"
    return f"{rng.randint(100, 900)}ms"


def random_steps(rng: random.Random) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    weight = 0
    for _ in range(rng.randint(0, 10)):
        if rng.random() < 0.55:
            weight = min(100, weight + rng.choice([0, 1, 5, 10, 20, 25, 33]))
            steps.append({"setWeight": weight})
        else:
            duration = _duration(rng)
            steps.append({"pause": {} if duration is None else {"duration": duration}})
    return steps


def random_spec(rng: random.Random, name: str, version: int) -> dict[str, Any]:
    return {
        "replicas": rng.choice([0, 1, 1, 2, 3, 5, 10, 20, 50, rng.randint(1, 200)]),
        "selector": {"matchLabels": {"app": name}},
        "template": _template(name, version),
        "strategy": {
            "canary": {
                "steps": random_steps(rng),
                "scaleDownDelaySeconds": rng.choice([0, 0, 5, 30, rng.randint(0, 600)]),
            }
        },
        "progressDeadlineSeconds": rng.choice([600, 30, rng.randint(1, 1200)]),
        "paused": rng.random() < 0.05,
    }


# ---------------------------------------------------------------- driving the engine


class Driver:
    """One Rollout on a MemoryCluster, moved along by the real engine on a simulated clock."""

    def __init__(self, rng: random.Random, name: str) -> None:
        self.rng = rng
        self.name = name
        self.cluster = MemoryCluster(ready_delay=rng.choice([0.5, 1.0, 2.0, 5.0, 30.0]))
        self.status = RolloutStatus()
        self.generation = 0
        self.t = 0.0
        self.action: str | None = None

    def step(self, spec: dict[str, Any]) -> Decision:
        inp = RolloutInput(self.name, "bench", self.generation, spec, self.status, self.action)
        decision = decide(inp, self.cluster.observe(self.t), EPOCH + timedelta(seconds=self.t))
        self.cluster.apply(decision.actions, self.t)
        self.status = decision.status
        if any(isinstance(a, RemoveAction) for a in decision.actions):
            self.action = None
        self._advance(decision)
        return decision

    def _advance(self, decision: Decision) -> None:
        """Next moment something happens (a timer, a pod Ready), or a random later one."""
        wakeups = [
            x
            for x in (
                self.t + decision.requeue_after if decision.requeue_after is not None else None,
                self.cluster.next_ready(self.t),
            )
            if x is not None
        ]
        if wakeups and self.rng.random() < 0.85:
            self.t = max(self.t, min(wakeups)) + self.rng.uniform(0, 0.01)
        else:
            self.t += self.rng.uniform(0, 20)


def make_case(rng: random.Random, index: int) -> Case:
    name = f"r{index}"
    spec = random_spec(rng, name, 1)
    driver = Driver(rng, name)
    driver.generation = 1
    for _ in range(rng.randint(0, 4)):  # first deploy (maybe not finished)
        driver.step(spec)

    stage = rng.random()
    if stage > 0.15:  # a new template, part of the way through its canary
        spec = {**spec, "template": _template(name, 2)}
        if rng.random() < 0.1:
            driver.cluster.broken_revisions.add(_revision(spec))
        driver.generation += 1
        for _ in range(rng.randint(0, 25)):
            if driver.action is None and rng.random() < 0.03:
                driver.action = rng.choice(ACTIONS)
            driver.step(spec)
        if rng.random() < 0.1:  # set back, or replaced by a third version
            version = rng.choice([1, 3])
            spec = {**spec, "template": _template(name, version)}
            driver.generation += 1
            for _ in range(rng.randint(0, 5)):
                driver.step(spec)

    if driver.action is None and rng.random() < 0.05:
        driver.action = rng.choice(ACTIONS)
    inp = RolloutInput(name, "bench", driver.generation, spec, driver.status, driver.action)
    observed = driver.cluster.observe(driver.t)
    if rng.random() < 0.5:  # random readiness, within what the slots have
        slots = {
            slot: replace(seen, ready=rng.randint(0, seen.pods)) if seen.exists else seen
            for slot, seen in observed.slots.items()
        }
        observed = replace(observed, slots=slots)
    if rng.random() < 0.05:  # the router's objects never written, or read back unverified
        observed = replace(observed, traffic=TrafficObserved())
    now = EPOCH + timedelta(seconds=driver.t + rng.uniform(0, 5))
    return Case(inp, observed, now)


def _revision(spec: dict[str, Any]) -> str:
    return template_hash(spec["template"])


def generate(count: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    return [make_case(rng, i) for i in range(count)]


def describe(cases: list[Case]) -> str:
    """The mix of states the inputs are in (phase of the status they carry)."""
    phases = Counter(c.inp.status.phase or "new" for c in cases)
    canary = sum(1 for c in cases if c.inp.status.canary_revision)
    actions = sum(1 for c in cases if c.inp.action)
    slots = Counter(sum(1 for s in c.observed.slots.values() if s.exists) for c in cases)
    mix = ", ".join(f"{k} {v}" for k, v in sorted(phases.items()))
    return (
        f"status phases: {mix}; mid-canary {canary}; with action annotation {actions}; "
        f"child Deployments 0/1/2: {slots[0]}/{slots[1]}/{slots[2]}"
    )


def outcomes(cases: list[Case]) -> str:
    """What the decisions do: how many act, change the status, post Events, set a timer."""
    acting = changed = timed = events = 0
    kinds: Counter[str] = Counter()
    for case in cases:
        decision = decide(case.inp, case.observed, case.now)
        acting += bool(decision.actions)
        changed += decision.status_changed
        timed += decision.requeue_after is not None
        events += bool(decision.events)
        kinds.update(type(a).__name__ for a in decision.actions)
    n = len(cases) or 1
    actions = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    return (
        f"decisions: {100 * acting / n:.0f} % with actions ({actions}), "
        f"{100 * changed / n:.0f} % change the status, {100 * events / n:.0f} % post Events, "
        f"{100 * timed / n:.0f} % set a timer"
    )


# ---------------------------------------------------------------- timing


@dataclass(frozen=True)
class RunResult:
    per_second: float
    per_cpu_second: float  # decisions per second of this process's CPU time: less noisy
    p50_us: float
    p99_us: float
    max_us: float
    mean_us: float


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def time_run(cases: list[Case]) -> RunResult:
    clock = time.perf_counter_ns
    latencies = [0] * len(cases)
    gc.collect()
    cpu_started = time.process_time()
    started = clock()
    for i, case in enumerate(cases):
        t0 = clock()
        decide(case.inp, case.observed, case.now)
        latencies[i] = clock() - t0
    wall = (clock() - started) / 1e9
    cpu = time.process_time() - cpu_started
    us = sorted(x / 1000 for x in latencies)
    return RunResult(
        per_second=len(cases) / wall,
        per_cpu_second=len(cases) / cpu,
        p50_us=percentile(us, 50),
        p99_us=percentile(us, 99),
        max_us=us[-1],
        mean_us=statistics.fmean(us),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", "-n", type=int, default=20000, help="inputs (default 20000)")
    parser.add_argument("--runs", "-k", type=int, default=5, help="timed runs (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the inputs")
    args = parser.parse_args(argv)

    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {_load()} at start"
    )
    print(f"sluice {source_version()}")
    started = time.perf_counter()
    cases = generate(args.inputs, args.seed)
    took = time.perf_counter() - started
    print(f"generated {len(cases)} inputs in {took:.1f} s (seed {args.seed})")
    print(describe(cases))

    print(outcomes(cases))  # one untimed pass, which is also the warm-up

    columns = ("decisions/s", "per CPU-s", "p50 us", "p99 us", "max us", "mean us")
    print(f"{'run':>6} " + " ".join(f"{c:>12}" for c in columns))
    results = []
    for run in range(1, args.runs + 1):
        results.append(time_run(cases))
        print(f"{run:>6} " + _row(results[-1]))

    median = RunResult(
        *(statistics.median(getattr(r, f) for r in results) for f in RunResult.__annotations__)
    )
    print(f"{'median':>6} " + _row(median))
    print(
        f"p99/p50 {median.p99_us / median.p50_us:.1f}; wall/CPU throughput "
        f"{median.per_second / median.per_cpu_second:.2f} (below 1: the CPU was shared); "
        f"load average {_load()} at end"
    )
    return 0


def _row(r: RunResult) -> str:
    return (
        f"{r.per_second:>12,.0f} {r.per_cpu_second:>12,.0f} {r.p50_us:>12.1f} "
        f"{r.p99_us:>12.1f} {r.max_us:>12.1f} {r.mean_us:>12.1f}"
    )


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
