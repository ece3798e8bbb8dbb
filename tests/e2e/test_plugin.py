"""`kubectl sluice` against a real API server and a real operator, as a user runs it.

examples/rollout-basic.yaml: setWeight 20 -> pause 5s -> setWeight 50 -> pause (until
promoted).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Cluster, Operator, wait_for
from tests.e2e.test_analysis import Stage
from tests.e2e.test_canary import at_step, healthy_v1

pytestmark = pytest.mark.e2e
PLUGIN = str(Path(sys.executable).parent / "kubectl-sluice")


def plugin(cluster: Cluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PLUGIN, *args, "-n", cluster.namespace, "--kubeconfig", cluster.kubeconfig],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "120"},
    )


class Background:
    """A plugin command whose output is collected while the test goes on."""

    def __init__(self, cluster: Cluster, *args: str) -> None:
        self.proc = subprocess.Popen(
            [PLUGIN, *args, "-n", cluster.namespace, "--kubeconfig", cluster.kubeconfig],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "COLUMNS": "120"},
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def weights(text: str) -> list[int]:
    """The canary weight of every frame, in order, read from the bar's legend."""
    return [int(w) for w in re.findall(r"canary (\d+)% / stable", text)]


def test_watch_shows_the_weight_move_and_status_gates(cluster: Cluster, operator: Operator) -> None:
    healthy_v1(cluster)
    stable = cluster.status()["stableRevision"]
    watch = Background(cluster, "get", "rollout", "web", "--watch")
    gate: Background | None = None
    try:
        wait_for("the first frame", lambda: weights(watch.text) == [0], timeout=20)
        out = plugin(cluster, "set", "image", "web", "web=nginx:1.28")
        assert out.returncode == 0, out.stderr
        assert "image updated (web=nginx:1.28)" in out.stdout
        # at once after the change, as CI runs it: the new generation is not Healthy yet
        gate = Background(cluster, "status", "web", "--watch", "--timeout", "2m")
        at_step(cluster, 3, "Paused", 50, timeout=60)
        wait_for("a frame at 50 %", lambda: 50 in weights(watch.text), timeout=10)
        seen = weights(watch.text)
        assert seen.index(20) < seen.index(50), seen  # the view moved 0 -> 20 -> 50
        text = watch.text
        # the bar: 20 of 40 cells at 50 %; the current step marked; both revisions with pods
        assert "█" * 20 + "░" * 20 + " canary 50% / stable 50%" in text
        assert re.search(r"▶\s+3\s+pause \(until promoted\)", text), text[-3000:]
        assert re.search(r"✓\s+1\s+pause 5s", text)
        canary = cluster.status()["canaryRevision"]
        assert re.search(rf"canary\s+b\s+{canary}\s+5\s+5", text), text[-3000:]
        assert re.search(rf"stable\s+a\s+{stable}\s+5\s+5", text)
        assert "Traffic  Service/web (share of pods)" in text
        assert "RolloutStarted" in text and "StepReached" in text  # the Events table
        assert gate.proc.poll() is None, "status --watch must wait while paused"

        out = plugin(cluster, "promote", "web")
        assert out.stdout.strip() == f"rollout {cluster.namespace}/web: promote requested"
        assert gate.proc.wait(timeout=60) == 0, gate.text
        assert gate.lines[-1].startswith("web: Healthy"), gate.lines
        assert any("Paused step 3 weight 50%" in line for line in gate.lines)
    finally:
        watch.stop()
        if gate is not None:
            gate.stop()

    # undo mid-canary: the template back to the stable one reverts at once
    promoted = cluster.status()["stableRevision"]
    assert plugin(cluster, "set", "image", "web", "web=nginx:1.29").returncode == 0
    at_step(cluster, 1, "Paused", 20, timeout=60)
    out = plugin(cluster, "undo", "web")
    assert out.returncode == 0, out.stderr
    assert (
        out.stdout.strip()
        == f"rollout {cluster.namespace}/web: template set back to revision {promoted}"
    )
    wait_for(
        "back to the stable without a new canary",
        lambda: (
            cluster.status().get("phase") == "Healthy"
            and not cluster.status().get("canaryRevision")
        ),
        timeout=30,
    )
    assert cluster.status()["stableRevision"] == promoted
    image = cluster.rollout()["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "nginx:1.28"

    # abort: status exits 1 (Degraded) at once
    assert plugin(cluster, "set", "image", "web", "web=nginx:1.30").returncode == 0
    at_step(cluster, 1, "Paused", 20, timeout=60)
    assert plugin(cluster, "abort", "web").returncode == 0
    out = plugin(cluster, "status", "web", "--watch", "--timeout", "30s")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Degraded" in out.stdout.splitlines()[-1]
    out = plugin(cluster, "get", "rollout", "web")
    assert "Aborted: UserAbort" in out.stdout or "Aborted:" in out.stdout, out.stdout


def test_restart_and_list(cluster: Cluster, operator: Operator) -> None:
    healthy_v1(cluster)
    stable = cluster.status()["stableRevision"]
    out = plugin(cluster, "restart", "web")
    assert out.returncode == 0 and "restarted at" in out.stdout
    annotations = cluster.rollout()["spec"]["template"]["metadata"]["annotations"]
    assert "sluice.dev/restartedAt" in annotations
    at_step(cluster, 3, "Paused", 50, timeout=60)  # the same image, as a new canary
    assert cluster.status()["canaryRevision"] != stable
    out = plugin(cluster, "list")
    assert out.returncode == 0
    row = next(line for line in out.stdout.splitlines() if line.split()[:1] == ["web"])
    assert row.split()[1:4] == ["Paused", "3/4", "50%"], row


def test_errors_are_one_line(cluster: Cluster, tmp_path: Path) -> None:
    out = plugin(cluster, "get", "rollout", "nothere")
    assert (out.returncode, out.stdout) == (3, "")
    assert out.stderr == f'error: rollout "nothere" not found in namespace "{cluster.namespace}"\n'

    bad = tmp_path / "kubeconfig"
    text = Path(cluster.kubeconfig).read_text()
    bad.write_text(re.sub(r"server: \S+", "server: https://127.0.0.1:1", text))
    started = time.monotonic()
    proc = subprocess.run(
        [PLUGIN, "status", "web", "--kubeconfig", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3 and proc.stdout == ""
    assert proc.stderr == (
        "error: cannot reach the Kubernetes API server https://127.0.0.1:1: "
        "[Errno 111] Connection refused\n"
    )
    assert time.monotonic() - started < 45  # one try (no retry loop); the machine is shared

    proc = subprocess.run(
        [PLUGIN, "--context", "nope", "list", "--kubeconfig", cluster.kubeconfig],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3 and proc.stderr.startswith('error: context "nope" not found')
    assert len(proc.stderr.splitlines()) == 1


def test_watch_on_a_terminal_redraws_in_place(cluster: Cluster, operator: Operator) -> None:
    """In a real terminal (tmux): one view, updated where it is, not a scroll of frames."""
    import shutil
    import uuid

    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    healthy_v1(cluster)
    socket = f"sluice-e2e-{uuid.uuid4().hex[:6]}"  # our own tmux server
    tmux = ["tmux", "-L", socket]
    where = f"-n {cluster.namespace} --kubeconfig {cluster.kubeconfig}"
    command = f"{PLUGIN} get rollout web --watch {where}"
    subprocess.run(
        [*tmux, "new-session", "-d", "-x", "120", "-y", "50", command], check=True, timeout=10
    )
    try:

        def screen() -> str:
            out = subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True)
            return out.stdout

        wait_for("the view", lambda: "canary 0% / stable 100%" in screen(), timeout=30)
        cluster.set_image("nginx:1.28")
        wait_for("20 % in place", lambda: "canary 20% / stable 80%" in screen(), timeout=60)
        at_step(cluster, 3, "Paused", 50, timeout=60)
        wait_for("50 % in place", lambda: "canary 50% / stable 50%" in screen(), timeout=10)
        shown = screen()
        assert shown.count(f"Rollout {cluster.namespace}/web") == 1, shown  # redrawn, not added
        assert "canary 20%" not in shown and "Paused" in shown
        assert re.search(r"▶\s+3\s+pause \(until promoted\)", shown), shown
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=10)


def test_watch_shows_the_running_analysis_against_its_thresholds(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Real Prometheus and demo app (examples/analysis): the view shows the background run
    while it measures, each metric's last value beside its limit, then the failure."""
    stage = Stage(cluster, tmp_path, [])
    # held at 50 % until the errors come (the example's 12 s pause can pass first)
    stage.rollout["spec"]["strategy"]["canary"]["steps"] = [{"setWeight": 50}, {"pause": {}}]
    watch: Background | None = None
    try:
        stage.start_canary()
        watch = Background(cluster, "get", "rollout", "shop", "--watch")
        run = f"shop-{stage.revisions[1]}-1-bg"
        running = re.compile(rf"Analysis {run} \(\w+\): Running")
        # a measured row: metric, phase, a number, the limit as the template states it
        number = r"(\d+(?:\.\d+)?(?:e-?\d+)?)"
        measured = re.compile(rf"error-rate\s+\w+\s+{number}\s+error rate <= 0\.05")
        wait_for(
            "the running analysis with a measured error rate",
            lambda: running.search(watch.text) is not None and measured.search(watch.text),
            timeout=60,
        )
        assert float(measured.findall(watch.text)[0]) <= 0.05  # healthy so far
        assert re.search(r"p99-latency\s+\w+\s+\S+\s+p99 <= 0\.1s", watch.text), watch.text[-3000:]
        assert "circuit breakers <= 0" in watch.text

        stage.canary.set(error_rate=0.2)
        failed = re.compile(rf"Analysis {run} \(\w+\): Failed")
        wait_for("the failed run in the view", lambda: failed.search(watch.text), timeout=90)
        wait_for("the abort in the view", lambda: "Aborted: AnalysisFailed" in watch.text)
        frame = watch.text[watch.text.rindex(f"Rollout {cluster.namespace}/shop") :]
        row = re.search(r"error-rate\s+Failed\s+(\S+)\s+error rate <= 0\.05", frame)
        assert row is not None, frame
        assert float(row.group(1)) > 0.05, row.group(0)  # the value that failed it, shown
    except BaseException:
        sys.stderr.write((watch.text if watch else "")[-6000:])
        raise
    finally:
        if watch is not None:
            watch.stop()
        stage.close()
