"""The judge's validation study: false alarms, misses and time to verdict, per method.

    .venv/bin/python -m benchmarks.judge.study            # 2000 canaries per scenario
    .venv/bin/python -m benchmarks.judge.study --runs 200 # a quick look

Seeded (`--seed`), so a run reproduces its table exactly. Takes ~1-2 min on 2 cores.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import numpy as np
from benchmarks.judge import methods
from benchmarks.judge.simulate import INTERVAL, INTERVALS, Scenario, Streams, generate, scenarios

Method = Callable[[Streams, str], methods.Outcome]


def _null_of(s: Scenario) -> Scenario:
    return Scenario("null", s.metric, False, canary_rps=s.canary_rps, baseline_rps=s.baseline_rps)


def study(runs: int, seed: int) -> list[dict[str, str]]:
    rows = []
    limits: dict[tuple[str, float, float], tuple[float, float, float]] = {}
    for i, sc in enumerate(scenarios()):
        rng = np.random.default_rng([seed, i])
        key = (sc.metric, sc.canary_rps, sc.baseline_rps)
        if key not in limits:  # calibrated on runs of their own, never the judged ones
            null = generate(_null_of(sc), runs, np.random.default_rng([seed, 1000 + i]))
            limits[key] = (
                methods.calibrated_limit(null, sc.metric),
                methods.calibrated_level(null, sc.metric),
                methods.calibrated_evidence_level(null, sc.metric),
            )
        limit, level, evidence = limits[key]
        streams = generate(sc, runs, rng)
        judged: list[tuple[str, Method]] = [
            ("threshold", methods.threshold),
            (
                "threshold, calibrated",
                partial(methods.threshold, limit=limit),
            ),
            ("Mann-Whitney, once at 10 min", methods.mann_whitney_once),
            ("Mann-Whitney, peeked every 10 s", methods.mann_whitney_peeked),
            (
                "Mann-Whitney, peeked, calibrated",
                partial(methods.mann_whitney_peeked, level=level),
            ),
            ("Sluice sequential", methods.sequential),
            ("Sluice sequential, calibrated", partial(methods.sequential, level=evidence)),
        ]
        for name, method in judged:
            failed, seconds = method(streams, sc.metric)
            rate = float(failed.mean())
            detect = seconds[failed]
            rows.append(
                {
                    "scenario": sc.name,
                    "metric": sc.metric,
                    "method": name,
                    "false alarms": "" if sc.regression else f"{rate:.1%}",
                    "misses": f"{1 - rate:.1%}" if sc.regression else "",
                    "median verdict (s)": f"{np.median(seconds):.0f}",
                    "median detect (s)": f"{np.median(detect):.0f}" if detect.size else "-",
                }
            )
    return rows


def table(rows: list[dict[str, str]]) -> str:
    heads = list(rows[0])
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(r[h] for h in heads) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="canaries per scenario")
    parser.add_argument("--seed", type=int, default=20261202)
    args = parser.parse_args()
    began = time.monotonic()
    rows = study(args.runs, args.seed)
    print(
        f"{args.runs} canaries per scenario, {INTERVALS} intervals of {INTERVAL:.0f} s, "
        f"alpha {methods.ALPHA}, seed {args.seed}"
    )
    print(table(rows))
    print(f"took {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
