"""`sluice replay` against a real Prometheus holding an incident (backfilled with promtool).

One Prometheus per module holds an hour of data, 15 s apart, 5 to 4 hours in the past
(backfilled data must: see tests/support/prometheus.py). The timeline (T0 = first sample):

* canary ``c1``: 10 requests/s, all fast (p99 0.099 s); no errors until ``CHANGE``
  (T0+30m), then 10 % 5xx;
* stable ``s1``: 20 requests/s, no errors (the 5xx series is exported, as 0).

The shipped ``examples/simulate/errors.yaml`` judges errorRate (max 2 %) and p99 latency
every 30 s, three failures in a row abort. Replayed from CHANGE-10m with the canary's
labels, the measurement at CHANGE (the 1 m window has no errors yet) passes; CHANGE+30s,
+60s and +90s fail; so it would have aborted at CHANGE+90s.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from tests.support.prometheus import PrometheusServer, free_port, hours_ago

from sluice.cli.main import main
from sluice.engine.timefmt import fmt_seconds

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ERRORS = EXAMPLES / "simulate" / "errors.yaml"
STEP = 15
T0 = hours_ago(5, align_seconds=60)
END = T0 + timedelta(hours=1)
CHANGE = T0 + timedelta(minutes=30)

Schedule = Sequence[tuple[datetime, float]]  # (from this instant on, per second)


def _integral(schedule: Schedule, ts: int) -> float:
    total = 0.0
    for i, (since, rate) in enumerate(schedule):
        begin = int(since.timestamp())
        until = int(schedule[i + 1][0].timestamp()) if i + 1 < len(schedule) else ts
        total += rate * max(0, min(ts, until) - begin)
    return total


def _series(name: str, labels: Mapping[str, str], schedule: Schedule) -> list[str]:
    rendered = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    return [
        f"{name}{rendered} {_integral(schedule, ts)!r} {ts}"
        for ts in range(int(T0.timestamp()), int(END.timestamp()) + 1, STEP)
    ]


def openmetrics() -> str:
    lines = ["# HELP http_requests requests", "# TYPE http_requests counter"]
    c1 = {"sluice_dev_revision": "c1"}
    s1 = {"sluice_dev_revision": "s1"}
    lines += _series("http_requests_total", {**c1, "code": "200"}, [(T0, 10.0), (CHANGE, 9.0)])
    lines += _series("http_requests_total", {**c1, "code": "500"}, [(T0, 0.0), (CHANGE, 1.0)])
    lines += _series("http_requests_total", {**s1, "code": "200"}, [(T0, 20.0)])
    lines += _series("http_requests_total", {**s1, "code": "500"}, [(T0, 0.0)])
    lines += [
        "# HELP http_request_duration_seconds latency",
        "# TYPE http_request_duration_seconds histogram",
    ]
    for le in ("0.1", "0.5", "+Inf"):
        labels = {**c1, "le": le}
        lines += _series("http_request_duration_seconds_bucket", labels, [(T0, 10.0)])
    lines += _series("http_request_duration_seconds_count", c1, [(T0, 10.0)])
    lines += _series("http_request_duration_seconds_sum", c1, [(T0, 0.5)])
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    server = PrometheusServer(workdir=tmp_path_factory.mktemp("prometheus-replay"))
    server.backfill(openmetrics())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def replay(
    capsys: pytest.CaptureFixture[str], *args: str, json_out: bool = True
) -> tuple[int, dict[str, object] | str]:
    code = main(["replay", *args, *(["--json"] if json_out else [])])
    out = capsys.readouterr()
    if json_out and code != 3:
        return code, json.loads(out.out)
    return code, out.out + out.err


def t(moment: datetime) -> str:
    return fmt_seconds(moment)


def test_finds_the_abort_at_the_third_bad_interval(
    prom: PrometheusServer, capsys: pytest.CaptureFixture[str]
) -> None:
    start = CHANGE - timedelta(minutes=10)
    code, result = replay(
        capsys,
        str(ERRORS),
        "--prometheus",
        prom.url,
        "--from",
        t(start),
        "--to",
        t(CHANGE + timedelta(minutes=20)),
        "--canary-labels",
        "sluice_dev_revision=c1",
    )
    assert code == 1
    assert isinstance(result, dict)
    abort = result["abort"]
    assert isinstance(abort, dict)
    assert abort["at"] == t(CHANGE + timedelta(seconds=90))
    assert abort["offsetSeconds"] == 10 * 60 + 90
    assert abort["reason"] == "AnalysisFailed"
    assert abort["analysis"] == "spec.strategy.canary.analysis"
    assert "error-rate: 3 failed in a row (consecutiveFailureLimit 3)" in str(abort["message"])
    measured = result["measurements"]
    assert isinstance(measured, list)
    errors = [m for m in measured if m["metric"] == "error-rate"]
    # every 30 s from --from to the abort, interval by interval
    assert [m["at"] for m in errors] == [t(start + timedelta(seconds=30 * i)) for i in range(24)]
    assert {m["phase"] for m in errors[:21]} == {"Successful"}  # through CHANGE itself
    assert [m["phase"] for m in errors[21:]] == ["Failed"] * 3
    assert errors[-1]["value"] == pytest.approx(0.1, abs=0.005)
    assert 'sluice_dev_revision="c1"' in str(errors[0]["query"])
    latency = [m for m in measured if m["metric"] == "p99-latency"]
    assert {m["phase"] for m in latency} == {"Successful"}
    assert latency[0]["value"] == pytest.approx(0.099, abs=1e-6)


def test_a_quiet_window_would_not_abort(
    prom: PrometheusServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = replay(
        capsys,
        str(ERRORS),
        "--prometheus",
        prom.url,
        "--from",
        t(T0 + timedelta(minutes=5)),
        "--to",
        t(CHANGE - timedelta(minutes=1)),
        "--canary-labels",
        "sluice_dev_revision=c1",
        json_out=False,
    )
    assert code == 0, out
    assert isinstance(out, str)
    assert "would not have aborted" in out
    assert "✓ error-rate 0%" in out  # interval by interval on the terminal


def test_baseline_template_with_canary_and_stable_labels(
    prom: PrometheusServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Own PromQL with {{canary.revision}} and {{stable.revision}} (a baseline comparison),
    pointed at the incident's series; the template comes from another file (-f)."""
    rollout = tmp_path / "rollout.yaml"
    rollout.write_text(
        ERRORS.read_text()
        .split("---", 1)[1]
        .replace("templateName: http-health", "templateName: error-ratio-vs-stable")
    )
    code, result = replay(
        capsys,
        str(rollout),
        "-f",
        str(EXAMPLES / "analysis" / "baseline-template.yaml"),
        "--prometheus",
        prom.url,
        "--from",
        t(CHANGE - timedelta(minutes=2)),
        "--to",
        t(CHANGE + timedelta(minutes=10)),
        "--canary-labels",
        "sluice_dev_revision=c1",
        "--stable-labels",
        "sluice_dev_revision=s1",
    )
    assert code == 1
    assert isinstance(result, dict)
    abort = result["abort"]
    assert isinstance(abort, dict)
    # consecutiveFailureLimit 4 in that template: CHANGE+30s .. CHANGE+2m
    assert abort["at"] == t(CHANGE + timedelta(minutes=2))
    first = result["measurements"][0]  # type: ignore[index]
    assert 'sluice_dev_revision="c1"' in first["query"]
    # the baseline found the stable's series (without --stable-labels: no data)
    assert first["phase"] == "Successful" and "baseline=0 met" in first["message"]


def test_without_labels_the_template_revision_has_no_data(
    prom: PrometheusServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Rollout's own revision was never recorded: inconclusive, so it would only have
    paused (exit 2), never aborted."""
    code, result = replay(
        capsys,
        str(ERRORS),
        "--prometheus",
        prom.url,
        "--from",
        t(CHANGE),
        "--to",
        t(CHANGE + timedelta(minutes=5)),
    )
    assert code == 2
    assert isinstance(result, dict)
    assert result["abort"] is None
    verdicts = result["verdicts"]
    assert isinstance(verdicts, list) and verdicts
    assert verdicts[0]["reason"] == "AnalysisInconclusive"
    assert "no data" in verdicts[0]["message"]


def test_hostile_label_values_stay_one_label_value(
    prom: PrometheusServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, result = replay(
        capsys,
        str(ERRORS),
        "--prometheus",
        prom.url,
        "--from",
        t(CHANGE + timedelta(minutes=5)),
        "--to",
        t(CHANGE + timedelta(minutes=8)),
        "--canary-labels",
        'sluice_dev_revision=c1"} or vector(1) #',
    )
    assert code == 2  # no such series: no data, not an injected vector(1)
    assert isinstance(result, dict)
    query = result["measurements"][0]["query"]  # type: ignore[index]
    assert 'sluice_dev_revision="c1\\"} or vector(1) #"' in query


def test_invalid_input_exits_3(prom: PrometheusServer, capsys: pytest.CaptureFixture[str]) -> None:
    window = ["--from", t(CHANGE), "--to", t(CHANGE - timedelta(minutes=1))]
    code, out = replay(capsys, str(ERRORS), "--prometheus", prom.url, *window, json_out=False)
    assert code == 3 and "--to" in str(out)
    unreachable = f"http://127.0.0.1:{free_port()}"
    window = ["--from", t(CHANGE), "--to", t(CHANGE + timedelta(minutes=1))]
    code, out = replay(capsys, str(ERRORS), "--prometheus", unreachable, *window)
    assert code == 3 and "cannot reach Prometheus" in str(out)
    code, out = replay(
        capsys, str(ERRORS), "--prometheus", prom.url, *window, "--canary-labels", "no-op"
    )
    assert code == 3 and "--canary-labels" in str(out)
    code, out = replay(
        capsys, str(ERRORS), "--prometheus", prom.url, "--from", "yesterday", json_out=False
    )
    assert code == 3 and "--from" in str(out)


def test_simulate_against_the_real_prometheus(
    prom: PrometheusServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sluice simulate --prometheus`: the same incident as the canary's metrics, the
    template change placed 5 minutes before it (--start)."""
    code = main(
        [
            "simulate",
            str(ERRORS),
            "--instant",
            "--json",
            "--prometheus",
            prom.url,
            "--start",
            t(CHANGE - timedelta(minutes=5)),
            "--canary-labels",
            "sluice_dev_revision=c1",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 1 and result["verdict"] == "aborted", result["message"]
    # pods Ready at 2 s, measured every 30 s from there: 302 s passes (the 1 m window
    # holds no error yet), 332, 362 and 392 fail
    assert result["seconds"] == 392
    errors = [
        (m["t"], m["phase"])
        for f in result["timeline"]
        for m in f["measurements"]
        if m["metric"] == "error-rate"
    ]
    assert errors[-4:] == [(302, "Successful"), (332, "Failed"), (362, "Failed"), (392, "Failed")]
    assert result["warnings"] == []
