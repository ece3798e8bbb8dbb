"""The judge against a real Prometheus: a heavier latency tail with the same p50.

Backfilled (4-5 hours ago, see tests/support/prometheus.py) 20 minutes of
`http_request_duration_seconds` for a canary `c1` and its stable `s1`, 10 requests/s
each, scraped every 15 s, with random (seeded) bucket increments. Both have the same
median (half of the requests below 0.1 s); the canary sends 4 % of its requests to
1-2.5 s where the stable sends 1 %. The judge, fed with the real answers to
`increase(..._bucket{le=...}[30s])` every 30 s, fails the canary; a p50 threshold metric
(the built-in latency trigger) passes every one of its measurements.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import pytest
from tests.support.prometheus import PrometheusServer, hours_ago

from sluice.analysis import sequential
from sluice.analysis.measure import measure
from sluice.analysis.template import builtin_values
from sluice.api.analysis import Metric
from sluice.api.judge import JudgeMetric, JudgeResult
from sluice.metrics.prometheus import PrometheusProvider

STEP = 15
T0 = hours_ago(5, align_seconds=60)
END = T0 + timedelta(minutes=20)
BOUNDS = ("0.05", "0.1", "0.25", "0.5", "1.0", "2.5")  # as the Python client writes them
STABLE = [0.2, 0.3, 0.3, 0.15, 0.04, 0.01, 0.0]
CANARY = [0.2, 0.3, 0.26, 0.14, 0.06, 0.04, 0.0]  # same p50 (0.1 s), heavier tail
VALUES = builtin_values("web", "ns", "c1", "s1", "b", "a")


def _histogram(revision: str, shares: list[float], rng: np.random.Generator) -> list[str]:
    ts = range(int(T0.timestamp()), int(END.timestamp()) + 1, STEP)
    per_step = [rng.multinomial(rng.poisson(10 * STEP), shares) for _ in ts]
    cumulative = np.cumsum(np.cumsum(np.asarray(per_step), axis=0), axis=1)  # over time, le
    lines = []
    for i, le in enumerate((*BOUNDS, "+Inf")):
        labels = f'{{sluice_dev_revision="{revision}",le="{le}"}}'
        lines += [
            f"http_request_duration_seconds_bucket{labels} {cumulative[k, i]} {t}"
            for k, t in enumerate(ts)
        ]
    count = f'{{sluice_dev_revision="{revision}"}}'
    lines += [
        f"http_request_duration_seconds_count{count} {cumulative[k, -1]} {t}"
        for k, t in enumerate(ts)
    ]
    return lines


def openmetrics() -> str:
    rng = np.random.default_rng(41)
    lines = ["# HELP http_request_duration_seconds latency"]
    lines += ["# TYPE http_request_duration_seconds histogram"]
    lines += _histogram("c1", CANARY, rng) + _histogram("s1", STABLE, rng)
    return "\n".join([*lines, "# EOF"]) + "\n"


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    server = PrometheusServer(workdir=tmp_path_factory.mktemp("prometheus-judge"))
    server.backfill(openmetrics())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_the_judge_fails_a_heavier_tail_that_a_p50_threshold_passes(
    prom: PrometheusServer,
) -> None:
    judge = JudgeMetric.model_validate(
        {"latency": {"buckets": [float(b) for b in BOUNDS]}, "maxDuration": "15m"}
    )
    p50 = Metric.model_validate(
        {
            "name": "p50",
            "provider": {"prometheus": {"address": prom.url}},
            "latency": {"quantile": 0.5, "maxSeconds": 0.15, "window": "1m"},
        }
    )
    provider = PrometheusProvider(prom.url, timeout=5)

    async def run() -> tuple[list[str], list[str], JudgeResult]:
        state, verdicts, thresholds = None, [], []
        for k in range(1, 31):  # every 30 s for 15 minutes, from T0 + 2 min
            at = T0 + timedelta(seconds=90 + 30 * k)

            ask = sequential.ask_with(provider, VALUES, at)
            state, result = await sequential.observe(judge, state, 30, ask)
            verdicts.append(result.verdict)
            taken = await measure(p50, _values, _provider, lambda at=at: at)
            thresholds.append(taken.phase)
            if result.final:
                break
        return verdicts, thresholds, result

    async def _values() -> dict[str, str]:
        return VALUES

    async def _provider() -> PrometheusProvider:
        return provider

    try:
        verdicts, thresholds, result = asyncio.run(run())
    finally:
        provider.close()
    print(f"after {len(verdicts)} measurements: {result.message()}")
    assert verdicts[-1] == "Fail", result.message()
    assert set(verdicts[:-1]) <= {"Inconclusive"}
    assert set(thresholds) == {"Successful"}, thresholds
    p50_shift, p99_shift = result.quantiles
    assert p50_shift.lower is not None and p50_shift.upper is not None
    assert p50_shift.lower <= 0 <= p50_shift.upper  # no evidence of a p50 shift
    assert p99_shift.canary is not None and p99_shift.baseline is not None
    assert p99_shift.canary > p99_shift.baseline
    assert result.bound in (0.5, 1.0) and result.canary_n >= 100
