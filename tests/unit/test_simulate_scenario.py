"""Scenario files: series, readiness, actions; each mistake named by its field."""

from __future__ import annotations

import pytest

from sluice.engine.validate import InvalidSpec
from sluice.sim.scenario import Scenario, quantile_key


def test_defaults() -> None:
    s = Scenario.parse(None)
    assert s.ready_after == 2 and s.max_seconds == 4 * 3600 and s.canary_ready
    assert s.actions == [] and s.curves == {}
    assert s.delays == {"canary": 2, "stable": 2}


def test_series_shorthands_and_interpolation() -> None:
    s = Scenario.parse(
        {
            "canary": {
                "errorRate": 0.5,
                "circuitBreaker": [{"at": "1m", "value": 1}, {"at": "2m", "value": None}],
                "series": {
                    "x": {
                        "interpolation": "linear",
                        "points": [{"at": "2m", "value": 10}, {"at": 60, "value": 0}],
                    }
                },
            }
        }
    )
    rate = s.curve("canary", "errorRate")
    assert rate is not None and rate.at(0) == 0.5 and rate.at(1e9) == 0.5
    breaker = s.curve("canary", "circuitBreaker")
    assert breaker is not None
    assert (breaker.at(59), breaker.at(60), breaker.at(119), breaker.at(120)) == (None, 1, 1, None)
    x = s.curve("canary", "series", "x")  # points are sorted by time
    assert x is not None and (x.at(60), x.at(90), x.at(120), x.at(500)) == (0, 5, 10, 10)
    assert s.curve("stable", "errorRate") is None


def test_readiness_and_actions() -> None:
    s = Scenario.parse(
        {
            "readyAfter": "10s",
            "canary": {"readyAfter": "1m", "ready": False},
            "actions": [{"at": "5m", "action": "abort"}, {"at": 30, "action": "pause"}],
            "maxDuration": "1h",
        }
    )
    assert s.delays == {"canary": 60, "stable": 10} and not s.canary_ready
    assert s.actions == [(30, "pause"), (300, "abort")] and s.max_seconds == 3600
    assert not Scenario.parse({"canaryReady": False}).canary_ready  # the old spelling


def test_quantile_keys() -> None:
    assert [quantile_key(k) for k in ("p99", "p999", "p50", "0.95")] == [0.99, 0.999, 0.5, 0.95]
    for bad in ("p", "p100x", "1.5", "median"):
        with pytest.raises(ValueError):
            quantile_key(bad)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"canary": {"errorRat": 1}}, "scenario.canary.errorRat: Extra inputs are not permitted"),
        ({"nope": 1}, "scenario.nope: Extra inputs are not permitted"),
        ({"canary": {"errorRate": True}}, "scenario.canary.errorRate: True is not a series"),
        (
            {"canary": {"series": {"x": []}}},
            "scenario.canary.series.x: List should have at least 1",
        ),
        (
            {"actions": [{"at": "1m", "action": "yolo"}]},
            "scenario.actions[0].action: unknown action 'yolo'",
        ),
        ({"actions": [{"action": "abort"}]}, "scenario.actions[0].at: Field required"),
        ({"maxDuration": "-1"}, "scenario.maxDuration: invalid duration"),
        ("text", "scenario: expected a mapping, found str"),
    ],
)
def test_mistakes_name_the_field(data: object, message: str) -> None:
    with pytest.raises(InvalidSpec) as exc:
        Scenario.parse(data)
    assert message in str(exc.value)
