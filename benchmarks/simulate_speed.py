"""How fast `sluice simulate --instant` is: a 20-step rollout, 3 metrics every 30 s, 4 hours.

The Rollout has 20 steps (10 weights, 5 % to 100 %, each followed by a 24-minute pause:
4 simulated hours) and a background analysis of three built-in triggers (errorRate,
p99 latency, circuitBreaker) measured every 30 s from the first weight to the promotion:
about 1,440 measurements and 500 engine decisions. The scenario is healthy, so the run
goes all the way to the promotion.

    .venv/bin/python benchmarks/simulate_speed.py [--runs 5]

Prints each run and the median, for two measurements:

* in-process: `sluice.sim.run.simulate()` on the loaded files (what `--instant` spends
  after start-up);
* command: the whole `sluice simulate ROLLOUT --scenario S --instant --json` as a new
  process (interpreter start-up and imports included), wall time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from sluice.sim.load import load, read_yaml
from sluice.sim.run import Scenario, simulate

ROOT = Path(__file__).resolve().parents[1]
PROVIDER = {"prometheus": {"address": "http://prometheus.monitoring:9090"}}


def rollout() -> list[dict[str, object]]:
    steps: list[dict[str, object]] = []
    for weight in (5, 10, 20, 30, 40, 50, 60, 70, 85, 100):
        steps += [{"setWeight": weight}, {"pause": {"duration": "24m"}}]
    metrics = [
        {"name": "error-rate", "errorRate": {"max": 0.02}},
        {"name": "p99-latency", "latency": {"quantile": 0.99, "maxSeconds": 0.5}},
        {"name": "circuit-breakers", "circuitBreaker": {"max": 0}},
    ]
    for metric in metrics:
        metric.update(provider=PROVIDER, interval="30s", consecutiveFailureLimit=3)
    template = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "health"},
        "spec": {"metrics": metrics},
    }
    body = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "bench"},
        "spec": {
            "replicas": 20,
            "selector": {"matchLabels": {"app": "bench"}},
            "template": {
                "metadata": {"labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "app", "image": "bench:2"}]},
            },
            "strategy": {
                "canary": {
                    "analysis": {"templates": [{"templateName": "health"}]},
                    "steps": steps,
                }
            },
        },
    }
    return [template, body]


SCENARIO = {
    "readyAfter": "15s",
    "maxDuration": "5h",
    "interpolation": "linear",
    "canary": {
        "errorRate": [
            {"at": 0, "value": 0.002},
            {"at": "2h", "value": 0.006},
            {"at": "4h", "value": 0.003},
        ],
        "latency": {"p99": [{"at": 0, "value": 0.2}, {"at": "3h", "value": 0.3}]},
        "circuitBreaker": 0,
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, load {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        rollout_file, scenario_file = Path(tmp) / "rollout.yaml", Path(tmp) / "scenario.yaml"
        rollout_file.write_text(yaml.safe_dump_all(rollout()))
        scenario_file.write_text(yaml.safe_dump(SCENARIO))
        loaded = load(rollout_file)
        scenario = Scenario.parse(read_yaml(scenario_file)[0])

        inside: list[float] = []
        for i in range(args.runs):
            began = time.perf_counter()
            result = simulate(loaded, scenario)
            inside.append(time.perf_counter() - began)
            print(
                f"in-process run {i + 1}: {inside[-1]:.3f} s  ({result.verdict} after "
                f"{result.seconds / 3600:.2f} simulated h, {len(result.measurements)} "
                f"measurements, {result.decisions} decisions)"
            )
        assert result.verdict == "promoted", result.message
        assert result.seconds >= 4 * 3600 and len(result.measurements) >= 1400

        sluice = Path(sys.executable).with_name("sluice")
        command = [str(sluice), "simulate", str(rollout_file), "--scenario", str(scenario_file)]
        command += ["--instant", "--json"]
        whole: list[float] = []
        for i in range(args.runs):
            began = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            whole.append(time.perf_counter() - began)
            print(f"command run {i + 1}: {whole[-1]:.3f} s (exit {done.returncode})")
            assert done.returncode == 0, done.stderr[-2000:]
    print(f"median in-process: {statistics.median(inside):.3f} s")
    print(f"median command (start-up included): {statistics.median(whole):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
