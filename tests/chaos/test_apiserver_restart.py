"""The kube-apiserver stopped and started again (same flags) while Rollouts progress.

The operator is not restarted by the test: it must stay alive through the outage,
list again, resume its watches (an action set after the API server is back is applied)
and finish every round as its scenario says, with the same history invariants as the
kill test. The time from the API server answering again to the operator's next status
write is printed.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import kubernetes
import pytest
from kubernetes import watch

from tests.chaos.apiserver import find_apiserver
from tests.chaos.conftest import env_int
from tests.chaos.fleet import ACTION, SCENARIOS, Fleet
from tests.chaos.invariants import action_events, steps_per_round
from tests.chaos.recording import ChaosRecorder
from tests.e2e.conftest import Cluster, Operator

pytestmark = pytest.mark.e2e


def first_status_write(cluster: Cluster, timeout: float) -> float:
    """Watch the Rollouts from now on; when did a status first change? (0: never)"""
    client = kubernetes.config.new_client_from_config(config_file=cluster.kubeconfig)
    api = kubernetes.client.CustomObjectsApi(client)
    args = ("sluice.dev", "v1alpha1", cluster.namespace, "rollouts")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                listed = api.list_namespaced_custom_object(*args, _request_timeout=5)
                last = {i["metadata"]["name"]: i.get("status") for i in listed["items"]}
                for event in watch.Watch().stream(
                    api.list_namespaced_custom_object,
                    *args,
                    resource_version=listed["metadata"]["resourceVersion"],
                    timeout_seconds=5,
                    _request_timeout=10,
                ):
                    body = event["object"]
                    if body.get("status") != last.get(body["metadata"]["name"]):
                        return time.monotonic()
            except Exception:  # not quite back yet
                time.sleep(0.1)
        return 0.0
    finally:
        client.close()


def test_the_operator_rides_out_an_api_server_restart_mid_rollout(
    cluster: Cluster,
    router_crds: str,
    recorder: ChaosRecorder,
    operators: list[Operator],
    tmp_path: Path,
) -> None:
    apiserver = find_apiserver(cluster.kubeconfig)
    down_for = env_int("SLUICE_CHAOS_APISERVER_DOWN", 5)
    # An untimed pause reached before the outage and promoted after it: proof that the
    # Rollout watch came back (nothing else would wake the operator).
    fleet = Fleet(cluster, [SCENARIOS[0], SCENARIOS[1], SCENARIOS[2]])
    op = Operator(cluster.kubeconfig, cluster.namespace, tmp_path / "operator.log")
    operators.append(op)
    op.start()
    assert op.proc is not None
    pid = op.proc.pid
    fleet.create()
    fleet.wait_healthy()

    done = threading.Event()
    back: list[float] = []
    problems: list[str] = []
    written: list[float] = []

    def outage() -> None:
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not all(m.canary for m in fleet.members):
                time.sleep(0.2)  # every round's canary has started
            time.sleep(1)
            apiserver.stop()
            time.sleep(down_for)
            back.append(apiserver.start())
            written.append(first_status_write(cluster, timeout=120))
        except BaseException as exc:
            problems.append(repr(exc))
        finally:
            done.set()

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    try:
        fleet.run(until=done.is_set, timeout=300)
    finally:
        done.wait(timeout=240)
        fleet.close()
    assert not problems, problems
    assert back, "the API server did not come back"

    assert op.proc.poll() is None and op.proc.pid == pid, "the operator exited"
    recorder.dump(tmp_path / "history.jsonl")
    assert written and written[0], "no status written within 120s of the API server's return"
    resumed = written[0] - back[0]
    after = [t for t in fleet.acted_at if t > back[0]]
    assert after, "no action was set after the API server came back (nothing proved the watch)"
    # The restart leaves holes in any watch history (the new API server answers 410 to a
    # watch resumed from before it, and writes made until the list are not replayed), and
    # the fake kubelet's pods go unready for a while (the cluster, not Sluice, takes that
    # capacity away): what is checked here is what holes cannot hide.
    bad = list(fleet.wrong_outcomes())
    for m in fleet.members:
        events = cluster.events(m.name)
        bad += action_events(events, m.applied, kills=0)  # none may be missing either
        bad += steps_per_round(events, m.round)
        if (cluster.rollout(m.name)["metadata"].get("annotations") or {}).get(ACTION):
            bad.append(f"{m.name}: an action annotation was never removed")
    print(
        f"\napiserver restart: down {down_for}s, first status write {resumed:.1f}s after it "
        f"answered, {len(after)} actions applied after, {fleet.errors} failed polls, "
        f"watch gaps {recorder.gaps}, {len(bad)} wrong outcomes"
    )
    assert not bad, "\n".join(bad)
