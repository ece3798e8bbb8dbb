"""Hostile analysis input, through the real executor: what ends up in AnalysisRun status
(and the log) when arguments are secret, huge, or placed where no escaping helps."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from tests.unit.executor_fakes import FakeKube, Harness, Recording, run_body

from sluice import logs
from sluice.api.analysis import AnalysisTemplateSpec, RolloutAnalysis
from sluice.cluster.analysis_runs import AnalysisInvalid, check, merge

SECRET = 'tok-3f9a"c\\0'  # a quote and a backslash: its escaped form must not leak either
QUERY = 'sum(rate(http_requests_total{token="{{args.token}}", rev="{{canary.revision}}"}[1m]))'


def metric(query: str = QUERY, **extra: Any) -> dict[str, Any]:
    return {
        "name": "errors",
        "interval": "30s",
        "provider": {"prometheus": {"address": "http://prometheus:9090", "query": query}},
        "successCondition": "result < 1",
        **extra,
    }


SECRET_ARG = {"name": "token", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}


def everything_recorded(kube: FakeKube, stderr: str) -> str:
    return json.dumps(kube.written) + stderr


@pytest.fixture
def json_logs() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure(json=True)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_secret_arg_is_sent_but_never_recorded_or_logged(
    capsys: pytest.CaptureFixture[str], json_logs: None
) -> None:
    kube = FakeKube({"creds": {"token": SECRET.encode()}})
    provider = Recording(value=5.0)  # fails: the verdict message quotes the query
    h = Harness(run_body([metric(count=2)], [SECRET_ARG]), kube, provider)
    status = asyncio.run(h.steps(3))
    assert status["phase"] == "Failed"
    # Prometheus was asked with the real value, escaped for the label string ...
    assert provider.sent[0] == QUERY.replace("{{args.token}}", 'tok-3f9a\\"c\\\\0').replace(
        "{{canary.revision}}", "c1"
    )
    # ... but the status records the Secret's name, wherever the query appears.
    recorded = status["metricResults"][0]["measurements"][0]
    assert recorded["query"] == provider.sent[0].replace(
        'tok-3f9a\\"c\\\\0', "<secret:creds/token>"
    )
    assert "<secret:creds/token>" in recorded["message"]
    assert "<secret:creds/token>" in status["message"]
    seen = everything_recorded(kube, capsys.readouterr().err)
    assert "analysis verdict" in seen  # the log line carrying the message was written
    for form in (SECRET, 'tok-3f9a\\"c\\\\0', "tok-3f9a"):
        assert form not in seen


def test_secret_in_a_provider_error_is_masked() -> None:
    kube = FakeKube({"creds": {"token": SECRET.encode()}})
    provider = Recording(error="bad_data: parse error in {query}")
    h = Harness(run_body([metric(consecutiveErrorLimit=0)], [SECRET_ARG]), kube, provider)
    status = asyncio.run(h.steps(2))
    assert status["phase"] == "Error"
    assert "tok-3f9a" not in json.dumps(kube.written)
    assert "<secret:creds/token>" in status["metricResults"][0]["measurements"][0]["message"]


def test_binary_secret_is_an_errored_measurement_with_a_verdict() -> None:
    """Not UTF-8: an Error measurement naming the key, counted against the error limit."""
    kube = FakeKube({"creds": {"token": b"\xff\xfe\x00binary"}})
    h = Harness(run_body([metric(consecutiveErrorLimit=2)], [SECRET_ARG]), kube, Recording())
    status = asyncio.run(h.steps(10))
    assert status["phase"] == "Error"
    result = status["metricResults"][0]
    assert result["consecutiveError"] == 3
    assert "Secret ns/creds key 'token' is not UTF-8 text" in result["measurements"][0]["message"]


def test_invalid_ipv6_address_is_an_errored_measurement_with_a_verdict() -> None:
    body = run_body([metric("sum(up)", consecutiveErrorLimit=1)])
    body["spec"]["metrics"][0]["provider"]["prometheus"]["address"] = "http://[::1"
    h = Harness(body, FakeKube({}), Recording())
    h.executor.provider_factory = h.executor._prometheus  # the real provider
    status = asyncio.run(h.steps(10))
    assert status["phase"] == "Error"
    assert (
        "is invalid: Invalid IPv6 URL" in status["metricResults"][0]["measurements"][0]["message"]
    )


def test_100kb_argument_is_recorded_cut_and_the_verdict_is_written() -> None:
    """Ten kept measurements of a 100 KB query would be > 1.5 MB: cut with a marker."""
    huge = "x" * 100_000
    args = [{"name": "team", "value": huge}]
    q = 'sum(rate(errors{team="{{args.team}}"}[1m]))'
    kube = FakeKube({})
    provider = Recording(value=0.0)
    h = Harness(run_body([metric(q, count=12)], args), kube, provider)
    status = asyncio.run(h.steps(13))
    assert status["phase"] == "Successful"
    assert kube.refused == 0
    assert huge in provider.sent[0]  # the query sent is whole
    recorded = status["metricResults"][0]["measurements"][-1]
    assert len(recorded["query"]) < 2200 and "more characters not recorded]" in recorded["query"]
    assert len(json.dumps(status)) < 200_000


def test_a_status_too_large_anyway_keeps_its_verdict() -> None:
    kube = FakeKube({}, max_bytes=9_000)  # too small for the measurement detail
    args = [{"name": "team", "value": "y" * 3000}]
    q = 'sum(rate(errors{team="{{args.team}}"}[1m]))'
    h = Harness(run_body([metric(q, count=1, interval=None)], args), kube, Recording(value=3.0))
    status = asyncio.run(h.steps(1))
    assert kube.refused >= 1
    assert status["phase"] == "Failed"
    assert status["metricResults"][0]["failed"] == 1


# ------------------------------------------------------------------ unquoted placeholders


def template(query: str, args: list[dict[str, Any]]) -> AnalysisTemplateSpec:
    return AnalysisTemplateSpec.model_validate({"metrics": [metric(query)], "args": args})


@pytest.mark.parametrize(
    ("query", "args", "named"),
    [
        ("sum(x) > {{args.n}}", [{"name": "n", "value": "1 or vector(1)"}], "{{args.n}}"),
        ("rate(x[{{args.w}}])", [{"name": "w", "value": "5m]) or vector(1"}], "{{args.w}}"),
        ("x > {{args.s}}", [SECRET_ARG | {"name": "s"}], "{{args.s}}"),
        ("{{rollout.name}}_total", [], "{{rollout.name}}"),
        ("x{a=~`{{args.n}}`}", [{"name": "n", "value": "a"}], "inside a raw"),
    ],
)
def test_placeholder_outside_a_string_is_invalid_naming_it(
    query: str, args: list[dict[str, Any]], named: str
) -> None:
    spec = template(query, args)
    with pytest.raises(AnalysisInvalid) as err:
        check(spec.metrics, {a.name: a for a in spec.args}, "t", "background")
    assert "metric errors: query:" in str(err.value) and named in str(err.value)


def test_numbers_and_durations_may_stand_outside_strings() -> None:
    args = [{"name": "n", "value": "0.05"}, {"name": "w", "value": "1h30m"}]
    spec = template('rate(x{a="}"}[{{args.w}}]) > {{args.n}}', args)
    check(spec.metrics, {a.name: a for a in spec.args}, "t", "background")


def test_field_ref_outside_a_string_is_checked_when_sent() -> None:
    """A fieldRef's value is only known at the measurement: refused there, not sent."""
    args = [{"name": "n", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    provider = Recording()
    h = Harness(
        run_body([metric("sum(x) > {{args.n}}", consecutiveErrorLimit=0)], args),
        FakeKube({}),
        provider,
    )
    status = asyncio.run(h.steps(2))
    assert provider.sent == []
    assert status["phase"] == "Error"
    assert "{{args.n}} stands outside a quoted string" in status["message"]


def test_single_quoted_strings_are_escaped_for_single_quotes() -> None:
    args = [{"name": "v", "value": "a'} or vector(1) #"}]
    provider = Recording()
    h = Harness(run_body([metric("x{a='{{args.v}}'}", count=1)], args), FakeKube({}), provider)
    asyncio.run(h.steps(1))
    assert provider.sent == ["x{a='a\\'} or vector(1) #'}"]


# ------------------------------------------------------------------ bounds


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("interval", "999999999999h", "longer than 24h"),
        ("initialDelay", "999999999999h", "longer than 24h"),
        ("interval", 10**15, "longer than 24h"),
        ("count", 10**12, "less than or equal to 10000"),
        ("consecutiveErrorLimit", 2**63, "less than or equal to 10000"),
        ("timeout", "1h", "longer than 300s"),
        ("range", {"window": "999999999h"}, "longer than 168h"),
        ("range", {"window": "5m", "step": "0ms"}, "shorter than 1s"),
        ("address", "file:///etc/passwd", "should match pattern"),
    ],
)
def test_unbounded_durations_and_counts_are_invalid(field: str, value: Any, says: str) -> None:
    m = metric("sum(up)")
    where = "spec.metrics.0."
    if field in ("timeout", "range", "address"):
        m["provider"]["prometheus"][field] = value
        where += "provider.prometheus."
    else:
        m[field] = value
    templates = {("t", False): {"spec": {"metrics": [m]}}}
    analysis = RolloutAnalysis.model_validate({"templates": [{"templateName": "t"}]})
    with pytest.raises(AnalysisInvalid) as err:
        merge(analysis, "spec.strategy.canary.analysis", templates, "background")
    assert f"AnalysisTemplate t: {where}{field}" in str(err.value)
    assert says in str(err.value)


def test_a_run_beyond_the_bounds_already_stored_gets_an_error_verdict() -> None:
    """A run made before the bounds existed: not silently skipped, an Error that pauses."""
    body = run_body([metric("sum(up)")])
    body["spec"]["metrics"][0]["interval"] = "999999999999h"
    h = Harness(body, FakeKube({}), Recording())
    status = asyncio.run(h.steps(1))
    assert (status["phase"], status["onError"]) == ("Error", "pause")
    assert "spec.metrics.0.interval" in status["message"]
    assert "longer than 24h" in status["message"]
    assert h.provider.sent == []


def test_secret_in_the_url_of_a_connection_error_is_masked() -> None:
    """requests quotes the URL it asked for, the query URL-encoded in it."""
    kube = FakeKube({"creds": {"token": SECRET.encode()}})
    body = run_body([metric(consecutiveErrorLimit=0)], [SECRET_ARG])
    body["spec"]["metrics"][0]["provider"]["prometheus"]["address"] = "http://127.0.0.1:1"
    h = Harness(body, kube, Recording())
    h.executor.provider_factory = h.executor._prometheus  # the real provider and client
    status = asyncio.run(h.steps(2))
    message = status["metricResults"][0]["measurements"][0]["message"]
    assert "Max retries exceeded with url: /api/v1/query?query=" in message
    assert "%3Csecret%3Acreds%2Ftoken%3E" not in message and "<secret:creds/token>" in message
    assert "tok-3f9a" not in json.dumps(kube.written)
