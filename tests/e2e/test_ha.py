"""Two operators, one Lease: exactly one acts, the other takes over, and never both.

Both run as the chart's ServiceAccount (its Roles applied for real), with the flags of the
chart's Deployment, short durations (lease 4 s, renew deadline 3 s, retry 1 s). The
rollout is examples/rollout-basic.yaml (20 % -> 5 s -> 50 % -> manual promote).
What the API server saw is recorded by history.History: every write by the field manager
"sluice" and every change of the Lease holder.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.chart_identity import ChartIdentity
from tests.e2e.conftest import Cluster, Operator, wait_for
from tests.e2e.test_canary import at_step, healthy_v1
from tests.e2e.writes import History

pytestmark = pytest.mark.e2e
pytest.importorskip("helm_python")

DURATIONS = {"leaseDurationSeconds": 4, "renewDeadlineSeconds": 3, "retryPeriodSeconds": 1}


class Pair:
    def __init__(self, cluster: Cluster, tmp: Path) -> None:
        self.identity = ChartIdentity(
            cluster, tmp, {"leaderElection": {"enabled": True, **DURATIONS}}
        )
        kubeconfig = self.identity.install()
        args = self.identity.deployment_args()
        self.lease = next(a.split("=", 1)[1] for a in args if a.startswith("--lease-name="))
        self.ops = {}
        for name in ("op-a", "op-b"):
            op = Operator(kubeconfig, cluster.namespace, tmp / f"{name}.log")
            op.args = [*args, f"--leader-id={name}"]
            self.ops[name] = op
        self.history = History(cluster.kubeconfig, cluster.namespace, self.lease)

    def leader_gauge(self, name: str) -> float:
        match = re.search(r"^sluice_leader (\S+)$", self.ops[name].metrics(), re.M)
        assert match, "no sluice_leader gauge"
        return float(match.group(1))

    def forbidden(self) -> list[str]:
        return [
            line
            for op in self.ops.values()
            for line in op.log.read_text().splitlines()
            if "403" in line and "Forbidden" in line
        ]


@pytest.fixture
def pair(cluster: Cluster, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pair]:
    p = Pair(cluster, tmp_path)
    p.history.start()
    p.ops["op-a"].start()
    wait_for("op-a leads", lambda: p.history.holder() == "op-a", timeout=20)
    p.ops["op-b"].start()
    yield p
    p.history.close()
    for op in p.ops.values():
        if op.proc and op.proc.poll() is None:
            op.proc.send_signal(signal.SIGCONT)
        op.stop()
    p.identity.close()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for name, op in p.ops.items():
            print(f"\n--- {name} log ---\n{op.log.read_text()[-8000:]}")


def _post_alert(op: Operator) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{op.port}/v1/alerts", data=b"{}", method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def finish(cluster: Cluster, promoted: bool = False) -> None:
    """From wherever the rollout is: to the manual pause at 50 %, promote, Completed."""
    if not promoted:
        at_step(cluster, 3, "Paused", 50, timeout=40)
        assert cluster.replicas("web-b") == (5, 5)
        cluster.action("promote")
    wait_for("Completed", lambda: cluster.condition("Completed").get("status") == "True")
    st = cluster.status()
    assert st["phase"] == "Healthy" and st["stableSlot"] == "b"
    assert cluster.replicas("web-b") == (10, 10)
    assert cluster.selector("web")["sluice.dev/slot"] == "b"
    wait_for("previous scaled to zero", lambda: cluster.replicas("web-a")[0] == 0, timeout=20)


def test_standby_takes_over_from_a_killed_leader(cluster: Cluster, pair: Pair) -> None:
    a, b = pair.ops["op-a"], pair.ops["op-b"]
    healthy_v1(cluster)
    assert pair.leader_gauge("op-a") == 1 and pair.leader_gauge("op-b") == 0
    b_log = b.log.read_text()
    assert "standing by" in b_log and "sluice started" not in b_log
    assert _post_alert(b) == 503  # the standby takes no alert: Alertmanager retries

    seed = int(os.environ.get("SLUICE_HA_SEED", time.time()))
    delay = random.Random(seed).uniform(0.5, 6.0)  # anywhere from step 0 to the 5 s pause
    cluster.set_image("nginx:1.28")
    time.sleep(delay)
    assert a.proc is not None and a.proc.poll() is None and pair.history.holder() == "op-a"
    killed = time.monotonic()
    a.kill()
    wait_for("op-b takes the Lease", lambda: pair.history.holder() == "op-b", timeout=20)
    took = pair.history.became("op-b")
    assert took is not None and took > killed
    print(f"\nkill at +{delay:.2f}s (seed {seed}): takeover in {took - killed:.2f}s")
    finish(cluster)

    assert [h for _, h in pair.history.holders] == ["op-a", "op-b"]
    assert pair.leader_gauge("op-b") == 1
    # nothing wrote between the kill and the takeover, and op-b wrote after it
    assert pair.history.writes_between(killed + 0.2, took) == []
    assert pair.history.writes_between(took, time.monotonic())
    assert took - killed <= DURATIONS["leaseDurationSeconds"] + 2 * DURATIONS["retryPeriodSeconds"]
    assert pair.forbidden() == [], "the chart's RBAC lacks a permission"


def test_a_frozen_leader_does_not_write_when_it_wakes(cluster: Cluster, pair: Pair) -> None:
    a, b = pair.ops["op-a"], pair.ops["op-b"]
    assert a.proc is not None and b.proc is not None
    healthy_v1(cluster)
    cluster.set_image("nginx:1.28")
    at_step(cluster, 1, "Paused", 20)  # op-a holds a 5 s pause timer: due while frozen
    assert a.proc.poll() is None and pair.history.holder() == "op-a", "op-a lost it already"
    frozen = time.monotonic()
    a.proc.send_signal(signal.SIGSTOP)
    wait_for("op-b takes the Lease", lambda: pair.history.holder() == "op-b", timeout=20)
    took = pair.history.became("op-b")
    assert took is not None and took > frozen
    print(f"\nfreeze: takeover in {took - frozen:.2f}s")
    at_step(cluster, 3, "Paused", 50, timeout=30)  # op-b moved the rollout on

    # Wake op-a while op-b is frozen: any write by "sluice" in that window is op-a's.
    # A promote waits for it: an op-a that still acted would take it at once.
    b.proc.send_signal(signal.SIGSTOP)
    cluster.action("promote")
    woke = time.monotonic()
    a.proc.send_signal(signal.SIGCONT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        a.proc.wait(timeout=DURATIONS["renewDeadlineSeconds"])  # it notices and exits
    exited = time.monotonic()
    time.sleep(0.3)
    b.proc.send_signal(signal.SIGCONT)
    assert pair.history.writes_between(woke, exited + 0.3) == [], "the woken leader wrote"
    assert a.proc.poll() == 1, "the woken leader did not stop"
    assert "leadership lost" in a.log.read_text()
    assert exited - woke < 1.5 * DURATIONS["renewDeadlineSeconds"]

    finish(cluster, promoted=True)  # op-b, thawed, takes the promote
    assert [h for _, h in pair.history.holders] == ["op-a", "op-b"]
    assert pair.leader_gauge("op-b") == 1
    assert pair.forbidden() == [], "the chart's RBAC lacks a permission"
