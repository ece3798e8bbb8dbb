"""Analysis semantics end to end: AnalysisExecutor + runstate against a real, backfilled Prometheus.

One Prometheus per module holds an hour of data, 15 s apart, that lies 5 to 4 hours in the
past (backfilled data must: see tests/support/prometheus.py). Counters grow piecewise
linearly, so every rate, ratio and quantile is known. The timeline (``T0`` = first sample):

* canary ``c1``: 10 requests/s; no errors until ``CHANGE`` (T0+20m), then 20 % 5xx. Its
  p99 latency is 0.0495 s until ``SLOW`` (T0+30m), then 0.99 s. Two circuit breakers
  (``circuit_breaker_open``) are open from ``BREAK`` (T0+25m) until ``MEND`` (T0+35m).
* stable ``s1``: 20 requests/s; no 5xx series at all until ``STABLE_CHANGE`` (T0+40m), then
  20 % 5xx; healthy latency; no circuit-breaker series at all.
* ``c2``: a breaker that flaps: open during the first 30 s of every minute.
* ``c0``: counters and histogram present but not moving (no traffic): ratios are 0/0 = NaN.
* ``gone``: no series at all.
* ``sluice_test_literal{value=...}``: one gauge per hostile label value (escaping).

Each test drives a run the way the executor's ``step`` does (``runstate.due`` ->
``executor.measure`` -> ``runstate.record``) with a clock that is moved by hand, so every
measurement asks Prometheus about a chosen instant of that hour.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from tests.support.prometheus import PrometheusServer, hours_ago

from sluice.analysis import runstate
from sluice.api.analysis import AnalysisRunSpec, AnalysisRunStatus, Measurement, MetricResult
from sluice.controller.analysis import AnalysisExecutor
from sluice.engine.timefmt import fmt
from sluice.metrics.prometheus import PrometheusProvider

STEP = 15  # seconds between backfilled samples
T0 = hours_ago(5, align_seconds=60)
END = T0 + timedelta(hours=1)
CHANGE = T0 + timedelta(minutes=20)  # canary c1: 20 % errors from here on
BREAK = T0 + timedelta(minutes=25)  # canary c1: two circuit breakers open ...
MEND = T0 + timedelta(minutes=35)  # ... until here
SLOW = T0 + timedelta(minutes=30)  # canary c1: p99 0.0495 s -> 0.99 s
STABLE_CHANGE = T0 + timedelta(minutes=40)  # stable s1: 20 % errors too

BUCKETS = ("0.05", "0.1", "0.25", "0.5", "1", "+Inf")
FAST = {"0.05": 1.0, "0.1": 1.0, "0.25": 1.0, "0.5": 1.0, "1": 1.0, "+Inf": 1.0}
HALF_SLOW = {"0.05": 0.5, "0.1": 0.5, "0.25": 0.5, "0.5": 0.5, "1": 1.0, "+Inf": 1.0}
P99_FAST = 0.05 * 0.99  # all requests in the first bucket: linear within it
P99_SLOW = 0.5 + 0.5 * (9.9 - 5) / 5  # rank 9.9 of 10 in (0.5, 1], which holds 5 of 10

HOSTILE_LITERALS = [  # label values present in the data, each gauge = index + 1
    'c1"} or vector(1) #',
    "back\\slash",
    "trailing\\",
    "two\nlines",
    "}{",
]

# ------------------------------------------------------------------ the data

Schedule = Sequence[tuple[datetime, float]]  # (from this instant on, per second)


def _integral(schedule: Schedule, ts: int) -> float:
    """A counter's value at ``ts``: the schedule's rates integrated from its first instant."""
    total = 0.0
    for i, (since, rate) in enumerate(schedule):
        begin = int(since.timestamp())
        until = int(schedule[i + 1][0].timestamp()) if i + 1 < len(schedule) else ts
        total += rate * max(0, min(ts, until) - begin)
    return total


def _labels(labels: Mapping[str, str]) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels.items()) + "}"


def _times(start: datetime = T0) -> range:
    return range(int(start.timestamp()), int(END.timestamp()) + 1, STEP)


def _num(value: float) -> str:
    return repr(float(value))


def _counters(
    revision: str, codes: Mapping[str, Schedule], base: Mapping[str, float] | None = None
) -> list[str]:
    """http_requests_total{sluice_dev_revision, code}; a series starts at its schedule."""
    lines = []
    for code, schedule in codes.items():
        rendered = _labels({"sluice_dev_revision": revision, "code": code})
        for ts in _times(schedule[0][0]):
            v = (base or {}).get(code, 0.0) + _integral(schedule, ts)
            lines.append(f"http_requests_total{rendered} {_num(v)} {ts}")
    return lines


def _histogram(
    revision: str, schedule: Sequence[tuple[datetime, float, Mapping[str, float]]]
) -> list[str]:
    """Buckets, count and sum of http_request_duration_seconds: (since, rps, share per le)."""
    lines = []
    for le in BUCKETS:
        rates = [(since, rps * shares[le]) for since, rps, shares in schedule]
        rendered = _labels({"sluice_dev_revision": revision, "le": le})
        for ts in _times():
            v = _integral(rates, ts)
            lines.append(f"http_request_duration_seconds_bucket{rendered} {_num(v)} {ts}")
    for suffix, per_request in (("count", 1.0), ("sum", 0.025)):
        rates = [(since, rps * per_request) for since, rps, _ in schedule]
        rendered = _labels({"sluice_dev_revision": revision})
        for ts in _times():
            v = _integral(rates, ts)
            lines.append(f"http_request_duration_seconds_{suffix}{rendered} {_num(v)} {ts}")
    return lines


def _gauge(name: str, labels: Mapping[str, str], value: Callable[[int], float]) -> list[str]:
    rendered = _labels(labels)
    return [f"{name}{rendered} {_num(value(ts))} {ts}" for ts in _times()]


def openmetrics() -> str:
    lines = ["# HELP http_requests requests", "# TYPE http_requests counter"]
    lines += _counters(
        "c1",
        {
            "200": [(T0, 10.0), (CHANGE, 8.0)],
            "500": [(T0, 0.0), (CHANGE, 2.0)],  # exported (as 0) from the start
        },
    )
    lines += _counters(
        "s1",
        {
            "200": [(T0, 20.0), (STABLE_CHANGE, 16.0)],
            "500": [(STABLE_CHANGE, 4.0)],  # no 5xx series before the first 5xx
        },
    )
    idle = [(T0, 0.0)]  # counters that were exported, and no longer move
    lines += _counters("c0", {"200": idle, "500": idle}, base={"200": 1000.0, "500": 5.0})

    lines += [
        "# HELP http_request_duration_seconds latency",
        "# TYPE http_request_duration_seconds histogram",
    ]
    lines += _histogram("c1", [(T0, 10.0, FAST), (SLOW, 10.0, HALF_SLOW)])
    lines += _histogram("s1", [(T0, 20.0, FAST)])
    lines += _histogram("c0", [(T0, 0.0, FAST)])

    t_break, t_mend, t0 = int(BREAK.timestamp()), int(MEND.timestamp()), int(T0.timestamp())
    lines += ["# HELP circuit_breaker_open open breakers", "# TYPE circuit_breaker_open gauge"]
    for breaker in ("db", "cache"):
        labels = {"sluice_dev_revision": "c1", "breaker": breaker}
        lines += _gauge("circuit_breaker_open", labels, lambda ts: float(t_break <= ts < t_mend))
    flap = {"sluice_dev_revision": "c2", "breaker": "db"}
    lines += _gauge("circuit_breaker_open", flap, lambda ts: float((ts - t0) % 60 < 30))

    lines += ["# HELP sluice_test_literal hostile values", "# TYPE sluice_test_literal gauge"]
    for i, value in enumerate(HOSTILE_LITERALS):
        lines += _gauge("sluice_test_literal", {"value": value}, lambda ts, i=i: float(i + 1))
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """One backfilled Prometheus for the whole module (each start costs a second or two)."""
    server = PrometheusServer(workdir=tmp_path_factory.mktemp("prometheus-analysis"))
    server.backfill(openmetrics())
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------ the driver


class Clock:
    """A clock moved by hand; the executor reads it for every measurement."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class NoKube:
    """Stands in for Kube: the executor only needs it for Secrets, and these tests use none."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the executor used the Kubernetes client ({name})")


ROLLOUT: dict[str, Any] = {
    "metadata": {"name": "web", "namespace": "ns", "labels": {"team": "payments"}},
    "status": {"stableRevision": "s1", "stableSlot": "a", "canary": {"slot": "b"}},
}


@dataclass
class Run:
    status: AnalysisRunStatus
    taken: list[tuple[datetime, str, Measurement]] = field(default_factory=list)

    def of(self, name: str) -> list[Measurement]:
        return [m for _, n, m in self.taken if n == name]

    def phases(self, name: str) -> list[str]:
        return [m.phase for m in self.of(name)]

    def times(self, name: str) -> list[datetime]:
        return [t for t, n, _ in self.taken if n == name]

    def result(self, name: str) -> MetricResult:
        return next(r for r in self.status.metric_results if r.name == name)


def drive(
    metrics: Sequence[dict[str, Any]],
    start: datetime,
    *,
    until: datetime | None = None,
    revision: str = "c1",
    args: Sequence[dict[str, Any]] = (),
    rollout: dict[str, Any] | None = None,
) -> Run:
    """Run an AnalysisRun from ``start`` as the executor's ``step`` would, moving the clock
    to each next measurement, until a verdict (or, for runs without an end, ``until``)."""
    spec = AnalysisRunSpec.model_validate(
        {
            "metrics": list(metrics),
            "args": list(args),
            "kind": "background",
            "revision": revision,
            "measurementRetention": 1000,
        }
    )
    clock = Clock(start)
    executor = AnalysisExecutor(
        NoKube(),  # type: ignore[arg-type]
        cache_lookup=lambda key: None,
        wake_rollout=lambda key: None,
        store=lambda body: None,
        clock=clock,
    )
    body = rollout or ROLLOUT

    async def go() -> Run:
        run = Run(runstate.start(spec, clock()))
        while run.status.phase not in runstate.TERMINAL:
            ready, wait = runstate.due(spec, run.status, clock())
            if not ready:
                assert wait is not None, "a Running run with nothing left to measure"
                clock.advance(wait)
                if until is not None and clock() > until:
                    break
                continue
            measured = await asyncio.gather(*(executor.measure(spec, m, body) for m in ready))
            for metric, measurement in zip(ready, measured, strict=True):
                run.taken.append((clock(), metric.name, measurement))
                run.status = runstate.record(spec, run.status, metric, measurement, clock())
            assert len(run.taken) < 500, "runaway run"
        for provider in executor.providers.values():
            inner = getattr(provider, "inner", provider)  # identical queries are shared
            assert isinstance(inner, PrometheusProvider)
            inner.close()
        return run

    return asyncio.run(go())


def metric(prom: PrometheusServer | str, name: str, **wire: Any) -> dict[str, Any]:
    """A metric as written in YAML (camelCase), asking ``prom`` (a server or an address)."""
    address = prom if isinstance(prom, str) else prom.url
    provider = {"address": address, "timeout": "5s", **wire.pop("prometheus", {})}
    body = {"name": name, "interval": "30s", "provider": {"prometheus": provider}, **wire}
    return {k: v for k, v in body.items() if v is not None}  # interval=None: measure once


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


ERROR_RATE_C1 = (
    '(sum(rate(http_requests_total{sluice_dev_revision="c1", code=~"5.."}[1m])) or vector(0))'
    ' / sum(rate(http_requests_total{sluice_dev_revision="c1"}[1m]))'
)


def ratio(revision: str) -> str:
    return ERROR_RATE_C1.replace('"c1"', f'"{revision}"')


# ------------------------------------------------------------------ errorRate


def test_error_rate_successful_while_healthy(prom: PrometheusServer) -> None:
    m = metric(prom, "error-rate", errorRate={"max": 0.05, "window": "1m"}, count=5)
    run = drive([m], CHANGE - minutes(5))
    assert run.status.phase == "Successful", run.status.message
    assert run.phases("error-rate") == ["Successful"] * 5
    assert [x.value for x in run.of("error-rate")] == ["0"] * 5
    assert run.times("error-rate") == [CHANGE - minutes(5) + seconds(30 * i) for i in range(5)]
    assert run.status.finished_at == fmt(CHANGE - minutes(3))
    assert "5/5 successful" in run.status.message
    delayed = drive([{**m, "initialDelay": "1m", "count": 2}], CHANGE - minutes(5))
    assert delayed.times("error-rate") == [CHANGE - minutes(4), CHANGE - minutes(3.5)]
    # The stable exports no 5xx series at all before its first error: a ratio of 0, not
    # "no data" (errorRate's `or vector(0)`).
    run = drive([m], STABLE_CHANGE - minutes(5), revision="s1")
    assert run.status.phase == "Successful"
    assert [x.value for x in run.of("error-rate")] == ["0"] * 5


def test_error_rate_fails_after_bad_for_two_minutes(prom: PrometheusServer) -> None:
    """interval 30s, consecutiveFailureLimit 4: healthy for 10 minutes, then 20 % errors
    from CHANGE; the 4th bad measurement in a row (CHANGE+2m) fails the run."""
    m = metric(
        prom,
        "error-rate",
        errorRate={"max": 0.05, "window": "1m"},
        consecutiveFailureLimit=4,
    )
    run = drive([m], CHANGE - minutes(10))
    assert run.status.phase == "Failed"
    # 21 healthy answers (CHANGE-10m through CHANGE: that window has no error yet) ...
    assert run.phases("error-rate") == ["Successful"] * 21 + ["Failed"] * 4
    # ... then the window takes in the errors: half a window, then all of it.
    assert [x.value for x in run.of("error-rate")[-4:]] == ["0.1", "0.2", "0.2", "0.2"]
    assert run.times("error-rate")[-1] == CHANGE + minutes(2)
    assert run.status.finished_at == fmt(CHANGE + minutes(2))
    result = run.result("error-rate")
    assert (result.phase, result.count, result.failed, result.consecutive_failed) == (
        "Failed",
        25,
        4,
        4,
    )
    assert result.next_at is None

    last = run.of("error-rate")[-1]
    assert last.query == ERROR_RATE_C1
    assert last.window == f"at {fmt(CHANGE + minutes(2))}"
    message = run.status.message
    assert message.startswith("error-rate: 4 failed in a row (consecutiveFailureLimit 4): ")
    assert "result=0.2" in message  # the value
    assert "`result <= 0.05`" in message  # the threshold
    assert f"`{ERROR_RATE_C1}`" in message  # the query, as sent
    assert f"at {fmt(CHANGE + minutes(2))}" in message  # the instant it asked about

    # A healthy measurement in between starts the count again: measured from CHANGE-1m
    # with consecutiveFailureLimit 5 it fails one interval later.
    m5 = {**m, "consecutiveFailureLimit": 5}
    run = drive([m5], CHANGE - minutes(1))
    assert run.phases("error-rate") == ["Successful"] * 3 + ["Failed"] * 5
    assert run.status.finished_at == fmt(CHANGE + minutes(2.5))


def test_failure_limit_counts_in_total_consecutive_limit_in_a_row(prom: PrometheusServer) -> None:
    """Breaker c2 flaps: every other measurement (30 s apart) is bad."""
    start = T0 + minutes(10)  # open: the first measurement is bad
    flap = {"circuitBreaker": {"max": 0}}
    in_a_row = metric(prom, "breaker", consecutiveFailureLimit=2, count=10, **flap)
    run = drive([in_a_row], start, revision="c2")
    assert run.phases("breaker") == ["Failed", "Successful"] * 5
    assert run.status.phase == "Successful"  # never 2 in a row; no total limit implied
    assert run.result("breaker").failed == 5
    assert "5/10 successful" in run.status.message

    in_total = metric(prom, "breaker", failureLimit=3, count=10, **flap)
    run = drive([in_total], start, revision="c2")
    assert run.phases("breaker") == ["Failed", "Successful"] * 3 + ["Failed"]
    assert run.status.phase == "Failed"
    assert "breaker: 4 failed (failureLimit 3): result=1 " in run.status.message
    assert run.status.finished_at == fmt(start + minutes(3))

    both = metric(prom, "breaker", failureLimit=3, consecutiveFailureLimit=2, **flap)
    assert drive([both], start, revision="c2").phases("breaker") == run.phases("breaker")

    # Default failureLimit (0): the first failure fails.
    strict = metric(prom, "breaker", count=10, **flap)
    run = drive([strict], start, revision="c2")
    assert run.phases("breaker") == ["Failed"]
    assert "1 failed (failureLimit 0)" in run.status.message

    # The steady breakers of c1 (2 open from BREAK) fail 2 in a row at once.
    run = drive([metric(prom, "breaker", consecutiveFailureLimit=2, **flap)], BREAK - minutes(1))
    assert run.phases("breaker") == ["Successful", "Successful", "Failed", "Failed"]
    assert run.status.finished_at == fmt(BREAK + seconds(30))


# ------------------------------------------------------------------ no data


def test_inconclusive_on_empty_result_and_nan(prom: PrometheusServer) -> None:
    m = metric(prom, "error-rate", errorRate={"max": 0.05}, inconclusiveLimit=2)
    # No series at all for the revision: errorRate is `vector(0) / <nothing>`, empty.
    run = drive([m], CHANGE, revision="gone")
    assert run.phases("error-rate") == ["Inconclusive"] * 3  # the 3rd is beyond the limit
    assert run.status.phase == "Inconclusive"
    assert run.result("error-rate").inconclusive == 3
    assert run.status.message.startswith(
        "error-rate: 3 inconclusive (inconclusiveLimit 2): no data (empty result); query `"
    )
    assert all(x.value == "" for x in run.of("error-rate"))

    # Counters that exist and do not move: 0 / 0 = NaN, no data too (never a success).
    run = drive([m], CHANGE, revision="c0")
    assert run.phases("error-rate") == ["Inconclusive"] * 3
    assert "no data (NaN)" in run.status.message
    assert run.of("error-rate")[0].value == "nan"

    # inconclusiveLimit 0 (the default): the first one decides.
    strict = metric(prom, "error-rate", errorRate={"max": 0.05})
    run = drive([strict], CHANGE, revision="c0")
    assert (run.status.phase, len(run.taken)) == ("Inconclusive", 1)


def test_empty_result_failure_and_success(prom: PrometheusServer) -> None:
    failure = metric(prom, "error-rate", errorRate={"max": 0.05}, emptyResult="failure")
    run = drive([failure], CHANGE, revision="gone")
    assert (run.status.phase, run.phases("error-rate")) == ("Failed", ["Failed"])
    assert "1 failed (failureLimit 0): no data (empty result)" in run.status.message
    run = drive([failure], CHANGE, revision="c0")  # NaN is no data as well
    assert run.status.phase == "Failed" and "no data (NaN)" in run.status.message

    success = metric(prom, "error-rate", errorRate={"max": 0.05}, emptyResult="success", count=3)
    run = drive([success], CHANGE, revision="gone")
    assert (run.status.phase, run.phases("error-rate")) == ("Successful", ["Successful"] * 3)


# ------------------------------------------------------------------ baseline


BASELINE = {"query": ratio("{{stable.revision}}")}
RELATIVE = "result <= baseline * 1.5 + 0.005"


def test_baseline_comparison_canary_against_stable(prom: PrometheusServer) -> None:
    """Healthy both; then only the canary bad (fails); then both equally bad (passes)."""
    m = metric(
        prom,
        "vs-stable",
        errorRate={"max": 0.05, "window": "1m"},
        baseline=BASELINE,
        successCondition=RELATIVE,  # replaces errorRate's own `result <= 0.05`
        interval="1m",
        failureLimit=20,
    )
    start, until = CHANGE - minutes(2), STABLE_CHANGE + minutes(5)
    run = drive([m], start, until=until)
    assert run.status.phase == "Running"  # 20 failures are within failureLimit 20
    expected = [
        "Successful" if t <= CHANGE or t > STABLE_CHANGE else "Failed"
        for t in run.times("vs-stable")
    ]
    assert run.phases("vs-stable") == expected
    assert expected.count("Failed") == 20 and len(expected) == 28
    taken = dict(zip(run.times("vs-stable"), run.of("vs-stable"), strict=True))
    only_canary = taken[CHANGE + minutes(5)]
    assert (only_canary.value, only_canary.baseline) == ("0.2", "0")
    assert only_canary.message.startswith(
        f"result=0.2 baseline=0 did not meet successCondition `{RELATIVE}`"
    )
    both = taken[STABLE_CHANGE + minutes(5)]
    assert (both.phase, both.value, both.baseline) == ("Successful", "0.2", "0.2")
    assert both.query == ERROR_RATE_C1

    # At that moment an absolute threshold fails while the comparison passes; the run
    # takes the worst verdict.
    absolute = metric(prom, "absolute", errorRate={"max": 0.05})
    relative = {**m, "failureLimit": 0, "count": 1}
    run = drive([absolute, relative], STABLE_CHANGE + minutes(5))
    assert run.result("absolute").phase == "Failed"
    assert run.result("vs-stable").phase == "Successful"
    assert run.status.phase == "Failed" and run.status.message.startswith("absolute: ")

    # Only the canary bad, default limits: the first comparison fails the run.
    run = drive([{**m, "failureLimit": 0}], CHANGE + minutes(5))
    assert run.status.phase == "Failed"
    assert "result=0.2 baseline=0 did not meet" in run.status.message


def test_baseline_without_data_is_inconclusive(prom: PrometheusServer) -> None:
    m = metric(
        prom,
        "vs-stable",
        prometheus={"query": ratio("{{canary.revision}}")},
        baseline=BASELINE,
        successCondition=RELATIVE,
    )
    rollout = {**ROLLOUT, "status": {**ROLLOUT["status"], "stableRevision": "gone"}}
    run = drive([m], CHANGE + minutes(5), rollout=rollout)
    assert run.status.phase == "Inconclusive"
    assert "baseline no data (empty result)" in run.status.message


# ------------------------------------------------------------------ range queries


def test_range_query_points_and_all_condition(prom: PrometheusServer) -> None:
    """A 5m window at a 30s step: 11 points (both ends), each judged by all()."""
    m = metric(
        prom,
        "ratio-5m",
        prometheus={
            "query": ratio("{{canary.revision}}"),
            "range": {"window": "5m", "step": "30s"},
        },
        successCondition="len(result) == 11 and all(result < 0.05)",
        interval="1m",
    )
    run = drive([m], CHANGE - minutes(3))
    assert run.phases("ratio-5m") == ["Successful"] * 4 + ["Failed"]
    ok, bad = run.of("ratio-5m")[-2], run.of("ratio-5m")[-1]
    assert ok.value == "[" + ", ".join(["0"] * 10) + ", …]"  # 11 points, 10 shown
    assert ok.window == f"{fmt(CHANGE - minutes(5))}..{fmt(CHANGE)} step 30s"
    # CHANGE+1m: 9 healthy points, then half a window of errors, then a whole one.
    assert bad.value == "[" + ", ".join(["0"] * 9 + ["0.1"]) + ", …]"  # the 11th: 0.2
    assert bad.window == f"{fmt(CHANGE - minutes(4))}..{fmt(CHANGE + minutes(1))} step 30s"
    assert f"did not meet successCondition `{m['successCondition']}`" in bad.message
    assert bad.window in run.status.message

    # A condition that asks one value of 11 points cannot be judged: an Error measurement
    # that says what to do (not a silent success or failure).
    scalar = {**m, "successCondition": "result < 0.05", "consecutiveErrorLimit": 0}
    run = drive([scalar], CHANGE)
    assert run.phases("ratio-5m") == ["Error"]
    assert "wrap it in all() or any()" in run.of("ratio-5m")[0].message

    # The same query at an instant sees the last point only.
    instant = metric(
        prom,
        "ratio",
        prometheus={"query": ratio("{{canary.revision}}")},
        successCondition="result < 0.05",
        interval="1m",
    )
    run = drive([instant], CHANGE - minutes(3))
    assert run.phases("ratio") == ["Successful"] * 4 + ["Failed"]
    assert run.of("ratio")[-1].value == "0.2"


def test_range_query_sees_what_an_instant_misses(prom: PrometheusServer) -> None:
    """c1's breakers were open from BREAK to MEND: a minute later an instant query says 0,
    a 5m range still holds the open ones, and any()/max() conditions can ask about them."""
    q = 'sum(circuit_breaker_open{sluice_dev_revision="{{canary.revision}}"}) or vector(0)'
    at = MEND + minutes(1)
    instant = metric(
        prom, "now", prometheus={"query": q}, successCondition="result == 0", interval=None
    )
    ranged = metric(
        prom,
        "lately",
        prometheus={"query": q, "range": {"window": "5m", "step": "1m"}},
        successCondition="all(result == 0)",
        interval=None,
    )
    worst = {**ranged, "name": "worst", "successCondition": "max(result) <= 1"}
    run = drive([instant, ranged, worst], at)
    assert run.result("now").phase == "Successful"
    assert run.result("lately").phase == "Failed"
    assert run.of("lately")[0].value == "[2, 2, 2, 2, 0, 0]"
    assert run.result("worst").phase == "Failed"
    assert "max(result) <= 1" in run.result("worst").message


# ------------------------------------------------------------------ latency, breakers


def test_latency_p99_from_the_histogram(prom: PrometheusServer) -> None:
    m = metric(
        prom,
        "p99",
        latency={"quantile": 0.99, "maxSeconds": 0.5, "window": "1m"},
        consecutiveFailureLimit=2,
    )
    run = drive([m], SLOW - minutes(3))
    measured = run.of("p99")
    assert run.phases("p99") == ["Successful"] * 7 + ["Failed"] * 2
    assert [float(x.value) for x in measured[:7]] == [pytest.approx(P99_FAST)] * 7
    assert 0.5 < float(measured[-2].value) < P99_SLOW  # half the window is slow
    assert float(measured[-1].value) == pytest.approx(P99_SLOW)
    assert measured[-1].query == (
        "histogram_quantile(0.99, sum by (le) "
        '(rate(http_request_duration_seconds_bucket{sluice_dev_revision="c1"}[1m])))'
    )
    assert run.status.phase == "Failed"
    assert run.status.finished_at == fmt(SLOW + minutes(1))
    assert "`result <= 0.5`" in run.status.message and "result=0.99" in run.status.message

    # The stable stays fast; an idle revision has no quantile (NaN); a missing one no data.
    assert drive([{**m, "count": 3}], SLOW, revision="s1").status.phase == "Successful"
    idle = drive([m], SLOW, revision="c0")
    assert idle.status.phase == "Inconclusive" and "no data (NaN)" in idle.status.message
    gone = drive([m], SLOW, revision="gone")
    assert gone.status.phase == "Inconclusive" and "no data (empty result)" in gone.status.message


def test_circuit_breaker_gauge_and_absent_series(prom: PrometheusServer) -> None:
    one = metric(prom, "breakers", circuitBreaker={"max": 1})
    run = drive([one], BREAK - minutes(1))
    assert run.phases("breakers") == ["Successful", "Successful", "Failed"]
    assert [x.value for x in run.of("breakers")] == ["0", "0", "2"]
    assert run.of("breakers")[-1].query == (
        'sum(circuit_breaker_open{sluice_dev_revision="c1"}) or vector(0)'
    )
    assert "result=2 did not meet successCondition `result <= 1.0`" in run.status.message

    # max 2 tolerates both; through the outage and after it.
    two = metric(prom, "breakers", circuitBreaker={"max": 2}, interval="1m", count=14)
    run = drive([two], BREAK - minutes(2))
    assert run.status.phase == "Successful"
    assert [x.value for x in run.of("breakers")] == ["0"] * 2 + ["2"] * 10 + ["0"] * 2

    # No circuit_breaker_open series at all (the stable, an unknown revision): 0, a success,
    # not "no data".
    for revision in ("s1", "gone"):
        run = drive([{**one, "count": 2}], BREAK + minutes(1), revision=revision)
        assert run.status.phase == "Successful", revision
        assert [x.value for x in run.of("breakers")] == ["0", "0"]


# ------------------------------------------------------------------ args


def test_args_literal_and_from_rollout_fields(prom: PrometheusServer) -> None:
    """{{args.NAME}} from a literal, a Rollout status field and a dotted label key."""
    q = (
        'sum(rate(http_requests_total{sluice_dev_revision="{{args.rev}}"}[{{args.window}}]))'
        " * {{args.scale}}"
    )
    m = metric(prom, "rps", prometheus={"query": q}, successCondition="result == 20", interval=None)
    m["consecutiveErrorLimit"] = 0  # no interval: an error would be retried at once
    rollout = {
        **ROLLOUT,
        "metadata": {**ROLLOUT["metadata"], "labels": {"app.kubernetes.io/part-of": "1"}},
    }
    args = [
        {"name": "rev", "valueFrom": {"fieldRef": {"fieldPath": "status.stableRevision"}}},
        {"name": "window", "value": "1m"},
        {
            "name": "scale",
            "valueFrom": {
                "fieldRef": {"fieldPath": "metadata.labels['app.kubernetes.io/part-of']"}
            },
        },
    ]
    run = drive([m], CHANGE, args=args, rollout=rollout)
    assert run.status.phase == "Successful", run.status.message
    sent = run.of("rps")[0]
    assert sent.query == 'sum(rate(http_requests_total{sluice_dev_revision="s1"}[1m])) * 1'
    assert sent.value == "20"

    # A field the Rollout does not have, or an arg without a value: an Error measurement
    # that names it (nothing is sent).
    missing = [*args[:2], {"name": "scale", "valueFrom": {"fieldRef": {"fieldPath": "spec.nope"}}}]
    run = drive([m], CHANGE, args=missing, rollout=rollout)
    assert run.phases("rps") == ["Error"]
    assert "fieldRef spec.nope: not found in the Rollout" in run.of("rps")[0].message
    run = drive([m], CHANGE, args=args[:2], rollout=rollout)
    assert run.phases("rps") == ["Error"]
    assert "{{args.scale}} has no value" in run.of("rps")[0].message


# ------------------------------------------------------------------ escaping


HOSTILE_ARG = 'c1"} or vector(1) #'


def test_hostile_revision_cannot_change_the_builtin_query(prom: PrometheusServer) -> None:
    """Unescaped, the revision would end the matcher and add `or vector(1)`; escaped it is
    one label value no series has: no data, Inconclusive, never a match of everything."""
    m = metric(prom, "error-rate", errorRate={"max": 0.05})
    run = drive([m], CHANGE + minutes(5), revision=HOSTILE_ARG)
    assert run.status.phase == "Inconclusive"
    sent = run.of("error-rate")[0]
    assert sent.message.startswith("no data (empty result)")
    assert 'sluice_dev_revision="c1\\"} or vector(1) #"' in sent.query
    assert sent.query == ERROR_RATE_C1.replace('"c1"', '"c1\\"} or vector(1) #"')


def test_hostile_args_stay_one_label_value(prom: PrometheusServer) -> None:
    q = 'http_requests_total{sluice_dev_revision="{{args.rev}}", code="200"}'
    m = metric(prom, "traffic", prometheus={"query": q}, successCondition="result >= 0")
    at = CHANGE + minutes(5)
    for value in (HOSTILE_ARG, "c1\\", "c1\\\\", "c1\nc1", 'c1"', "c1\r"):
        run = drive([m], at, args=[{"name": "rev", "value": value}])
        sent = run.of("traffic")[0]
        assert (run.status.phase, sent.phase) == ("Inconclusive", "Inconclusive"), value
        assert sent.message.startswith("no data (empty result)"), value
        assert "\n" not in sent.query and "\r" not in sent.query
        assert sent.query.count('"') == 4 + value.count('"')  # every quote inside is escaped

    # The control: pasted in raw, the first value makes the query "c1's series, or 1".
    raw = q.replace("{{args.rev}}", HOSTILE_ARG)

    async def ask() -> list[float]:
        async with PrometheusProvider(prom.url, timeout=5) as p:
            return (await p.query(raw, at)).values

    values = asyncio.run(ask())
    # (`#` comments out the rest: code="200" too, so both of c1's series come back, and 1.)
    ts = int(at.timestamp())
    c1_200, c1_500 = (_integral([(T0, a), (CHANGE, b)], ts) for a, b in ((10.0, 8.0), (0.0, 2.0)))
    assert sorted(values) == [1.0, c1_500, c1_200]

    # The same arg from a fieldRef (a Rollout label) is escaped the same way.
    rollout = {**ROLLOUT, "metadata": {**ROLLOUT["metadata"], "labels": {"team": HOSTILE_ARG}}}
    ref = [{"name": "rev", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}}]
    run = drive([m], at, args=ref, rollout=rollout)
    assert run.status.phase == "Inconclusive"
    assert run.of("traffic")[0].query == q.replace("{{args.rev}}", 'c1\\"} or vector(1) #')


def test_escaped_args_match_exactly_the_literal_value(prom: PrometheusServer) -> None:
    """Quotes, backslashes, newlines and braces survive as themselves: each value selects
    its own series (gauge = index + 1) and nothing else."""
    q = 'sluice_test_literal{value="{{args.v}}"}'
    for i, value in enumerate(HOSTILE_LITERALS):
        want = f"result == {i + 1}"
        m = metric(prom, "literal", prometheus={"query": q}, successCondition=want, interval=None)
        run = drive([m], T0 + minutes(10), args=[{"name": "v", "value": value}])
        assert run.status.phase == "Successful", (value, run.status.message)
        assert run.of("literal")[0].value == str(i + 1)


# ------------------------------------------------------------------ provider errors


def dead_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed at once: nothing listens there
    return f"http://127.0.0.1:{port}"


def test_provider_errors_beyond_consecutive_error_limit(prom: PrometheusServer) -> None:
    dead = dead_address()
    m = metric(
        dead,
        "error-rate",
        errorRate={"max": 0.05},
        consecutiveErrorLimit=2,
        onProviderError="pause",
        maxOutage="1m",  # pause holds (measuring on) until the outage is this long
    )
    start = CHANGE - minutes(5)
    run = drive([m], start)
    assert run.phases("error-rate") == ["Error"] * 3  # the 3rd is beyond limit and maxOutage
    assert run.status.phase == "Error"
    assert run.status.on_error == "pause"
    assert run.status.finished_at == fmt(start + minutes(1))  # retried at the interval
    result = run.result("error-rate")
    assert (result.error, result.consecutive_error, result.count) == (3, 3, 3)
    first = run.of("error-rate")[0]
    assert first.message.startswith(f"error: cannot reach Prometheus {dead}")
    assert first.query == ERROR_RATE_C1  # rendered before it was sent
    assert run.status.message.startswith(
        "error-rate: 3 provider errors in a row (consecutiveErrorLimit 2), down for 60s, "
        "longer than maxOutage 1m: error: cannot reach"
    )

    # The default onProviderError is abort, and consecutiveErrorLimit 4.
    default = {
        k: v
        for k, v in m.items()
        if k not in ("consecutiveErrorLimit", "onProviderError", "maxOutage")
    }
    run = drive([default], start)
    assert (run.status.phase, run.status.on_error, len(run.taken)) == ("Error", "abort", 5)

    # ignore: errors never decide; the run keeps measuring (until the test stops it).
    # Errors do not count towards `count` either.
    ignore = {**m, "onProviderError": "ignore", "count": 2}
    run = drive([ignore], start, until=start + minutes(5))
    assert run.status.phase == "Running" and run.status.on_error is None
    assert run.phases("error-rate") == ["Error"] * 11
    assert run.result("error-rate").next_at == fmt(start + minutes(5.5))

    # A healthy metric beside it is unaffected; the run's verdict is the failing one's.
    healthy = metric(prom, "healthy", errorRate={"max": 0.05}, count=2)
    run = drive([healthy, m], start)
    assert run.result("healthy").phase == "Successful"
    assert run.status.phase == "Error" and run.status.on_error == "pause"
