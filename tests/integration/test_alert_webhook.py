"""The alert webhook under hostile input, over real HTTP on 127.0.0.1, with the real
`Controller.record_alert` behind it (the API server's AnalysisRun endpoints stubbed)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.webhook import Hook, alert, body, webhook

from sluice import alerts

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def hook() -> Iterator[Hook]:
    with webhook() as h:
        yield h


def failed_runs(hook: Hook) -> list[dict[str, Any]]:
    return [r for r in hook.kube.runs.values() if (r.get("status") or {}).get("phase") == "Failed"]


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"not json", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
        (b'{"alerts": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001, "nested too deep"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[]", "`alerts` list"),
        (b'{"alerts": "x"}', "`alerts` list"),
        (json.dumps({"commonLabels": ["a"], "alerts": [alert()]}).encode(), "commonLabels"),
        (json.dumps({"commonLabels": {"a": {"b": 1}}, "alerts": [alert()]}).encode(), "strings"),
    ],
)
def test_a_malformed_body_is_400_with_a_reason_and_changes_nothing(
    hook: Hook, raw: bytes, says: str
) -> None:
    code, answer = hook.post(None, raw=raw)
    assert code == 400, answer
    assert says in answer["error"]
    assert hook.kube.runs == {}


def test_a_good_alert_after_hostile_ones_is_still_acted_on(hook: Hook) -> None:
    good = alert()
    hostile = [
        "not an object",
        {**alert(), "annotations": ["a", "list"]},
        {**alert(), "labels": ["a", "list"]},
        {**alert(), "labels": {"rollout": {"nested": 1}}},
        {**alert(), "fingerprint": {"x": 1}},
        {**alert(), "status": 7},
    ]
    weird_fingerprints = [{**alert(), "fingerprint": f} for f in ("../../Ω", "A" * 10_000, "")]
    code, answer = hook.post(body(*hostile, *weird_fingerprints, good))
    assert code == 400  # the malformed ones are named ...
    assert [r.split(":")[0] for r in answer["rejected"]] == [f"alerts[{i}]" for i in range(6)]
    assert "annotations must be an object" in answer["rejected"][1]
    # ... and the valid ones acted on: one failed run for the canary.
    assert len(answer["results"]) == 1
    assert answer["results"][0]["outcome"].startswith("recorded as failed AnalysisRun")
    runs = failed_runs(hook)
    assert [r["metadata"]["name"] for r in runs] == ["web-c1-0-alert-abort"]


def test_an_800kb_summary_is_cut_and_the_abort_recorded(hook: Hook) -> None:
    big = {**alert(), "annotations": {"summary": "s" * 800_000}}
    code, answer = hook.post(body(big))
    assert code == 200, answer
    (run,) = failed_runs(hook)
    message = run["status"]["metricResults"][0]["measurements"][0]["message"]
    assert "cut]" in message and len(message) < 5_000
    assert len(json.dumps(run)) < 20_000


def test_a_thousand_alerts_for_one_canary_make_one_run(hook: Hook) -> None:
    many = [{**alert(), "fingerprint": f"{i:016x}"} for i in range(1000)]
    code, answer = hook.post(body(*many))
    assert code == 200 and len(answer["results"]) == 1
    code, answer = hook.post(body(*many[:10]))  # Alertmanager repeats itself
    assert code == 200 and answer["results"][0]["outcome"].startswith("already recorded")
    assert len(hook.kube.runs) == 1 and len(failed_runs(hook)) == 1


def test_a_run_whose_status_write_failed_is_completed_on_the_next_alert(hook: Hook) -> None:
    """Created but without status (the write failed): the repeat writes it, not "already"."""
    hook.kube.runs["web-c1-0-alert-abort"] = {
        "metadata": {"name": "web-c1-0-alert-abort", "namespace": "ns", "resourceVersion": "1"},
        "spec": {},
    }
    code, answer = hook.post(body(alert()))
    assert code == 200 and answer["results"][0]["outcome"].startswith("recorded")
    assert len(failed_runs(hook)) == 1


def test_an_oversized_body_is_413(hook: Hook) -> None:
    code, _ = hook.post(None, raw=b'{"alerts": ["' + b"x" * (3 * 1024 * 1024) + b'"]}')
    assert code == 413
    assert hook.kube.runs == {}


def test_wrong_or_missing_tokens_are_401_compared_in_constant_time(
    hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = alerts.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(alerts.hmac, "compare_digest", spy)
    for token in (None, "", "wrong", "s3cret-token2", "S3CRET-TOKEN"):
        code, answer = hook.post(body(alert()), token=token)
        assert (code, answer) == (401, {"error": "unauthorized"}), token
    assert hook.kube.runs == {} and hook.recorded == []
    assert len(compared) == 5  # every refusal went through compare_digest


# ------------------------------------------------------------------ slow clients


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_slow_and_idle_clients_are_cut_off_and_connections_capped() -> None:
    """200 half-open connections (headers never finished, or nothing sent) against a
    server in its own process: its fds stay bounded by the cap, drop back after the idle
    timeout, and a real request is served again."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.webhook", str(port), "1.0", "64"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    socks: list[socket.socket] = []
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        base = _fds(proc.pid)
        for i in range(200):
            s = socket.create_connection(("127.0.0.1", port))
            if i % 2:
                s.sendall(b"POST /v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Le")
            socks.append(s)
        time.sleep(0.5)
        during = _fds(proc.pid)
        assert during <= base + 64 + 8, (base, during)
        time.sleep(2.0)  # past the idle timeout
        after = _fds(proc.pid)
        assert after <= base + 4, (base, during, after)
        hook = Hook(f"http://127.0.0.1:{port}", None)  # type: ignore[arg-type]
        code, _ = hook.post(body(alert(rollout="absent")))
        assert code == 200
        sys.stderr.write(f"webhook fds: idle {base}, 200 slow clients {during}, after {after}\n")
    finally:
        for s in socks:
            s.close()
        proc.kill()
        proc.wait()


def test_a_body_trickled_slowly_is_cut_off() -> None:
    """Headers complete, the body a byte at a time: answered 408 at the body deadline."""
    with webhook(idle_timeout=1.0, body_timeout=2.0) as hook:
        host, port = hook.url.removeprefix("http://").split(":")
        s = socket.create_connection((host, int(port)))
        s.sendall(
            b"POST /v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-token\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        s.settimeout(0.2)
        started = time.monotonic()
        answer = b""
        while time.monotonic() - started < 10 and b"\r\n" not in answer:
            try:
                chunk = s.recv(4096)
            except TimeoutError:
                s.sendall(b" ")
                continue
            if not chunk:
                break
            answer += chunk
        s.close()
        assert 2.0 <= time.monotonic() - started < 4.0
        assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
        assert hook.recorded == []
