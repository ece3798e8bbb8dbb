"""--canary-labels / --stable-labels, and the times replay and simulate take."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sluice.analysis.template import builtin_values, render
from sluice.analysis.triggers import question
from sluice.api.analysis import Metric
from sluice.engine.validate import InvalidSpec
from sluice.sim.relabel import Relabel, parse_labels
from sluice.sim.when import parse_time

PROVIDER = {"prometheus": {"address": "http://p"}}


def rendered(metric: Metric, relabel: Relabel) -> tuple[str, str | None]:
    changed, args = relabel.apply([metric], [])
    values = builtin_values("web", "ns", "n1", "o1", "b", "a")
    values.update({f"args.{a.name}": a.value or "" for a in args})
    q = question(changed[0])
    return render(q.query, values), render(q.baseline, values) if q.baseline else None


def test_parse_labels() -> None:
    assert parse_labels("a=b, c!=d,e=~f.*,g!~'h'", "--x") == [
        ("a", "=", "b"),
        ("c", "!=", "d"),
        ("e", "=~", "f.*"),
        ("g", "!~", "h"),
    ]
    assert parse_labels('v="x,\\"y", w=z', "--x") == [("v", "=", 'x,"y'), ("w", "=", "z")]
    for bad in ("", "=x", "a", "1a=b", "a=b,,c"):
        with pytest.raises(InvalidSpec, match="--x"):
            parse_labels(bad, "--x")


def test_builtin_selectors_become_the_canary_labels() -> None:
    relabel = Relabel(canary=parse_labels("sluice_dev_revision=abc,env=prod", "--c"))
    error = Metric.model_validate({"name": "e", "provider": PROVIDER, "errorRate": {"max": 0.1}})
    query, _ = rendered(error, relabel)
    assert query == (
        '(sum(rate(http_requests_total{sluice_dev_revision="abc", env="prod", code=~"5.."}'
        '[1m])) or vector(0)) / sum(rate(http_requests_total{sluice_dev_revision="abc", '
        'env="prod"}[1m]))'
    )
    istio = Metric.model_validate(
        {"name": "b", "provider": PROVIDER, "circuitBreaker": {"preset": "istio"}}
    )
    assert rendered(istio, relabel)[0] == (
        'sum(envoy_cluster_outlier_detection_ejections_active{sluice_dev_revision="abc", '
        'env="prod"}) or vector(0)'
    )
    own = Metric.model_validate(
        {
            "name": "l",
            "provider": PROVIDER,
            "latency": {"maxSeconds": 1, "selector": 'app="x", rev="{{canary.revision}}"'},
        }
    )
    assert (
        'rate(http_request_duration_seconds_bucket{app="x", sluice_dev_revision="abc", env="prod"}'
        in rendered(own, relabel)[0]
    )
    assert rendered(error, Relabel())[0].count('sluice_dev_revision="n1"') == 2  # untouched


def test_own_queries_and_baselines_by_placeholder_role() -> None:
    metric = Metric.model_validate(
        {
            "name": "vs",
            "provider": {
                "prometheus": {
                    "address": "http://p",
                    "query": 'sum(x{rev="{{canary.revision}}", job="api"})',
                }
            },
            "baseline": {"query": 'sum(x{pod=~"{{stable.deployment}}-.*"})'},
            "successCondition": "result <= baseline",
        }
    )
    relabel = Relabel(
        canary=parse_labels("version=v42", "--c"),
        stable=parse_labels('version=v41"} or vector(1)', "--s"),
    )
    query, baseline = rendered(metric, relabel)
    assert query == 'sum(x{version="v42", job="api"})'
    assert baseline == 'sum(x{version="v41\\"} or vector(1)"})'  # one escaped label value
    only_canary = Relabel(canary=parse_labels("version=v42", "--c"))
    assert rendered(metric, only_canary)[1] == 'sum(x{pod=~"web-a-.*"})'


def test_parse_time() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_time("now", "--to", now) == now
    assert parse_time("now-2h", "--from", now) == now - timedelta(hours=2)
    assert parse_time("-90m", "--from", now) == now - timedelta(minutes=90)
    assert parse_time("2026-03-01T10:00:00Z", "--from", now) == now - timedelta(hours=2)
    assert parse_time("2026-03-01T11:00:00+01:00", "--from", now) == now - timedelta(hours=2)
    assert parse_time("2026-03-01 10:00", "--from", now) == now - timedelta(hours=2)
    assert parse_time(str(int(now.timestamp())), "--from", now) == now
    for bad in ("yesterday", "now-2x", "2026-13-01"):
        with pytest.raises(InvalidSpec, match="--from"):
            parse_time(bad, "--from", now)
