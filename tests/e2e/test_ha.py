"""Two operators, one Lease: exactly one acts, the other takes over, and never both.

Both run as the chart's ServiceAccount (its Roles applied for real), with the flags of the
chart's Deployment, short durations (lease 4 s, renew deadline 3 s, retry 1 s). The
rollout is examples/rollout-basic.yaml (20 % -> 5 s -> 50 % -> manual promote).
What the API server saw is recorded by history.History: every write by the field manager
"sluice" and every change of the Lease holder. Each operator also talks to the API server
through its own recording proxy (tests/support/apiproxy.py, forwarding with the
ServiceAccount's token), so every request is attributed to the replica that made it.
Each runs as the Pod of its name (POD_NAME): a Pod object that leader_pods.py makes Ready
with an IP, behind the chart's alerts Service, which must select only the leader's Pod.
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
import yaml

from tests.e2e.chart_identity import ChartIdentity
from tests.e2e.conftest import Cluster, Operator, wait_for
from tests.e2e.leader_pods import LeaderPods
from tests.e2e.test_canary import at_step, healthy_v1
from tests.e2e.writes import History
from tests.support.apiproxy import FaultProxy, Recorded

pytestmark = pytest.mark.e2e
pytest.importorskip("helm_python")

DURATIONS = {"leaseDurationSeconds": 4, "renewDeadlineSeconds": 3, "retryPeriodSeconds": 1}


IPS = {"op-a": "10.77.0.1", "op-b": "10.77.0.2"}  # each operator's Pod (and --leader-id)


class Pair:
    def __init__(self, cluster: Cluster, tmp: Path) -> None:
        self.namespace = cluster.namespace
        self.identity = ChartIdentity(
            cluster,
            tmp,
            {"leaderElection": {"enabled": True, **DURATIONS}, "alerts": {"enabled": True}},
        )
        account = yaml.safe_load(Path(self.identity.install()).read_text())
        token = account["users"][0]["user"]["token"]
        args = self.identity.deployment_args()
        self.lease = next(a.split("=", 1)[1] for a in args if a.startswith("--lease-name="))
        self.ops: dict[str, Operator] = {}
        self.proxies: dict[str, FaultProxy] = {}
        for name in IPS:
            proxy = FaultProxy(cluster.kubeconfig, token=token)  # the account's RBAC, recorded
            proxy.start()
            self.proxies[name] = proxy
            op = Operator(proxy.kubeconfig(), cluster.namespace, tmp / f"{name}.log")
            op.args = [*args, f"--leader-id={name}"]
            op.env = {"POD_NAME": name, "POD_NAMESPACE": cluster.namespace}
            self.ops[name] = op
        self.history = History(cluster.kubeconfig, cluster.namespace, self.lease)
        objects = self.identity.objects
        deployment = next(o for o in objects if o["kind"] == "Deployment")
        service = next(
            o
            for o in objects
            if o["kind"] == "Service" and o["metadata"]["name"].endswith("-alerts")
        )
        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(service))
        self.pods = LeaderPods(
            cluster.kubeconfig, cluster.namespace, service["metadata"]["name"], IPS
        )
        template = deployment["spec"]["template"]
        self.pods.create(template["metadata"]["labels"], template["spec"]["containers"][0]["ports"])
        self.pods.start()

    # ------------------------------------------------------------ per replica, by proxy

    def own(self, call: Recorded) -> bool:
        """A write of the Lease itself or of an operator's Pod (its leader label)."""
        leases = f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"
        pods = {f"/api/v1/namespaces/{self.namespace}/pods/{p}" for p in IPS}
        return call.path in (leases, f"{leases}/{self.lease}") or (
            call.method == "PATCH" and call.path in pods
        )

    def acquired(self, name: str) -> Recorded:
        """`name`'s first successful write of the Lease: when it took it."""
        lease = f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"
        return next(
            c
            for c in self.proxies[name].recorded
            if c.method in ("POST", "PUT")
            and c.path in (lease, f"{lease}/{self.lease}")
            and c.status in (200, 201)
        )

    def writes(self, name: str, start: float = 0.0, end: float = float("inf")) -> list[Recorded]:
        """`name`'s mutating requests that arrived in [start, end), but for its own()."""
        return [
            c
            for c in list(self.proxies[name].recorded)
            if c.mutating and start <= c.at < end and not self.own(c)
        ]

    def one_actor_at_a_time(self) -> float:
        """op-a wrote nothing after op-b took the Lease, op-b nothing before; both wrote
        at all (the record is not empty). Returns when op-b's takeover was answered."""
        took = self.acquired("op-b")
        assert self.writes("op-a", end=took.at), "op-a wrote nothing while it led"
        assert self.writes("op-a", start=took.at) == [], "op-a wrote after op-b took over"
        assert self.writes("op-b", end=took.at) == [], "op-b wrote before it took over"
        assert self.writes("op-b", start=took.at), "op-b wrote nothing as the leader"
        return took.answered

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
    p.pods.close()
    for op in p.ops.values():
        if op.proc and op.proc.poll() is None:
            op.proc.send_signal(signal.SIGCONT)
        op.stop()
    for proxy in p.proxies.values():
        proxy.stop()
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
    pair.pods.leader_only("op-a")  # so the alerts Service never sends it one

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
    # the new leader moves the label off the dead one's Pod; the Endpoints follow
    moved = pair.pods.leader_only("op-b", timeout=10)
    print(f"label and alerts Endpoints on op-b {moved - killed:.2f}s after the kill")
    finish(cluster)

    assert [h for _, h in pair.history.holders] == ["op-a", "op-b"]
    assert pair.leader_gauge("op-b") == 1
    # nothing wrote between the kill and the takeover, and op-b wrote after it
    assert pair.history.writes_between(killed + 0.2, took) == []
    assert pair.history.writes_between(took, time.monotonic())
    assert took - killed <= DURATIONS["leaseDurationSeconds"] + 2 * DURATIONS["retryPeriodSeconds"]
    assert pair.forbidden() == [], "the chart's RBAC lacks a permission"
    # per replica, from each one's own proxy
    answered = pair.one_actor_at_a_time()
    print(f"takeover by the proxies' record: {answered - killed:.2f}s after the kill")
    assert moved - took <= 2 * DURATIONS["retryPeriodSeconds"], "the label lagged the Lease"
    assert pair.pods.now() == (frozenset({"op-b"}), frozenset({IPS["op-b"]}))


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
    moved = pair.pods.leader_only("op-b", timeout=10)  # off the frozen one's Pod, too
    print(f"label and alerts Endpoints on op-b {moved - frozen:.2f}s after the freeze")
    assert moved - took <= 2 * DURATIONS["retryPeriodSeconds"], "the label lagged the Lease"
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
    # per replica, from each one's own proxy: the woken op-a wrote nothing at all
    answered = pair.one_actor_at_a_time()
    print(f"takeover by the proxies' record: {answered - frozen:.2f}s after the freeze")
    assert pair.pods.now() == (frozenset({"op-b"}), frozenset({IPS["op-b"]}))
