"""The embedded metric source: the built-in triggers' queries answered from a scenario."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from sluice.analysis.template import builtin_values, render
from sluice.analysis.triggers import circuit_breaker, error_rate, latency
from sluice.api.analysis import CircuitBreaker, ErrorRate, Latency
from sluice.sim.metrics import Cast, EmbeddedProvider, shape
from sluice.sim.run import EPOCH
from sluice.sim.scenario import Scenario

# The new version "n1" runs in slot b, the previous "o1" in slot a.
VALUES = builtin_values("web", "shop", "n1", "o1", "b", "a")
CAST = Cast(
    names={
        "n1": "canary",
        "o1": "stable",
        "web-b": "canary",
        "web-a": "stable",
        "web-canary": "canary",
        "web-stable": "stable",
    },
    slots={"b": "canary", "a": "stable"},
)
SCENARIO = Scenario.parse(
    {
        "interpolation": "linear",
        "canary": {
            "errorRate": [{"at": 0, "value": 0.0}, {"at": "10m", "value": 0.1}],
            "latency": {"p99": 0.3, "p50": 0.05},
            "circuitBreaker": [{"at": "5m", "value": 2}],
            "series": {"custom": {"interpolation": "step", "points": [{"at": 0, "value": 7}]}},
        },
        "stable": {"errorRate": 0.01, "latency": 0.2},
    }
)


def ask(query: str, seconds: float, metric: str = "m") -> list[float]:
    provider = EmbeddedProvider(SCENARIO, metric, CAST, EPOCH)
    at = EPOCH + timedelta(seconds=seconds)
    return asyncio.run(provider.query(render(query, VALUES), at)).values


@pytest.mark.parametrize("preset", ["prometheus-client", "istio"])
def test_every_builtin_shape_is_recognised(preset: str) -> None:
    for question, kind in (
        (error_rate(ErrorRate(max=0.05, preset=preset)), "errorRate"),  # type: ignore[arg-type]
        (latency(Latency(max_seconds=1, preset=preset)), "latency"),  # type: ignore[arg-type]
        (circuit_breaker(CircuitBreaker(preset=preset)), "circuitBreaker"),  # type: ignore[arg-type]
    ):
        found = shape(render(question.query, VALUES))
        assert found.kind == kind
        assert CAST.version(found.matchers) == "canary"


def test_error_rate_by_version_and_time() -> None:
    query = error_rate(ErrorRate(max=0.05)).query
    assert ask(query, 0) == [0.0]
    assert ask(query, 300) == [pytest.approx(0.05)]  # linear between the points
    assert ask(query, 3600) == [pytest.approx(0.1)]  # the last value holds
    stable = query.replace("{{canary.revision}}", "{{stable.revision}}")
    assert ask(stable, 300) == [0.01]
    istio = error_rate(ErrorRate(max=0.05, preset="istio")).query
    assert ask(istio, 600) == [pytest.approx(0.1)]
    assert ask(istio.replace("canary.deployment", "stable.deployment"), 600) == [0.01]


def test_latency_by_quantile_and_the_any_quantile_series() -> None:
    assert ask(latency(Latency(max_seconds=1)).query, 10) == [0.3]
    assert ask(latency(Latency(max_seconds=1, quantile=0.5)).query, 10) == [0.05]
    assert ask(latency(Latency(max_seconds=1, quantile=0.9)).query, 10) == []  # not given
    stable = latency(Latency(max_seconds=1, quantile=0.9)).query.replace("canary.", "stable.")
    assert ask(stable, 10) == [0.2]  # one series for every quantile
    istio = latency(Latency(max_seconds=1, preset="istio")).query
    assert ask(istio, 10) == [0.3]  # seconds, whatever the histogram's unit


def test_circuit_breaker_absent_series_is_zero_like_or_vector_0() -> None:
    query = circuit_breaker(CircuitBreaker()).query
    assert ask(query, 0) == [0.0]  # before its first point: no series, `or vector(0)`
    assert ask(query, 301) == [2.0]
    assert ask(query.replace("canary.", "stable."), 301) == [0.0]
    pods = circuit_breaker(CircuitBreaker(preset="istio")).query  # pod=~"web-b-.*"
    assert ask(pods, 301) == [2.0]


def test_named_series_answer_any_query_and_missing_ones_have_no_data() -> None:
    assert ask('sum(rate(x{job="a"}[1m]))', 10, metric="custom") == [7.0]
    assert ask(error_rate(ErrorRate(max=0.05)).query, 10, metric="custom") == [7.0]
    assert ask('sum(rate(x{job="a"}[1m]))', 10, metric="other") == []
    quiet = Scenario.parse({})
    provider = EmbeddedProvider(quiet, "m", CAST, EPOCH)
    assert (
        asyncio.run(provider.query(render(error_rate(ErrorRate(max=1)).query, VALUES))).values == []
    )


def test_range_queries_give_every_point() -> None:
    provider = EmbeddedProvider(SCENARIO, "m", CAST, EPOCH)
    query = render(error_rate(ErrorRate(max=0.05)).query, VALUES)
    start = EPOCH + timedelta(minutes=4)
    result = asyncio.run(provider.query_range(query, start, start + timedelta(minutes=2), 60))
    assert result.kind == "matrix"
    assert result.values == [pytest.approx(v) for v in (0.04, 0.05, 0.06)]


def test_the_version_comes_from_label_values() -> None:
    assert CAST.version((("sluice_dev_revision", "=", "o1"),)) == "stable"
    assert CAST.version((("sluice_dev_slot", "=", "a"),)) == "stable"
    assert CAST.version((("job", "=", "a"),)) == "canary"  # not a slot label
    assert CAST.version((("service", "=", "web-stable"),)) == "stable"
    assert CAST.version((("pod", "=~", "web-a-.*"),)) == "stable"
    assert CAST.version((("pod", "=~", "[broken"),)) == "canary"
    # both named (e.g. a ratio of canary to stable): the canary's series
    both = (("sluice_dev_revision", "=", "o1"), ("x", "=", "n1"))
    assert CAST.version(both) == "canary"
    assert CAST.version(()) == "canary"
    assert shape('sum(x{a="q\\"uote"})').matchers == (("a", "=", 'q"uote'),)
