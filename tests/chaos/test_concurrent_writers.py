"""A second client patches the same Rollouts' annotations, labels and status in a loop.

While actions are applied by annotation, another writer keeps changing each Rollout
(an annotation, a label, `status.message`), so the operator's writes, made with the
resourceVersion it read, meet 409 Conflicts. Every `sluice.dev/action` must still be
applied exactly once, no step lost or repeated, every round ending as its scenario says;
the operator's own metrics must show it met conflicts (else nothing was tested).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import kubernetes
import pytest

from tests.chaos.conftest import violations
from tests.chaos.fleet import SCENARIOS, Fleet
from tests.chaos.recording import ChaosRecorder
from tests.e2e.conftest import Cluster, Operator

pytestmark = pytest.mark.e2e


def test_actions_apply_exactly_once_against_a_concurrent_writer(
    cluster: Cluster,
    router_crds: str,
    recorder: ChaosRecorder,
    operators: list[Operator],
    tmp_path: Path,
) -> None:
    # Every scenario with an action: promote, promote-full, abort (and promote then abort).
    chosen = [s for s in SCENARIOS if s.actions and not s.analysis][:4]
    fleet = Fleet(cluster, chosen)
    op = Operator(cluster.kubeconfig, cluster.namespace, tmp_path / "operator.log")
    operators.append(op)
    op.start()
    fleet.create()
    fleet.wait_healthy()

    stop = threading.Event()
    writes: list[int] = [0, 0]  # done, refused

    def writer() -> None:
        client = kubernetes.config.new_client_from_config(config_file=cluster.kubeconfig)
        api = kubernetes.client.CustomObjectsApi(client)
        args = ("sluice.dev", "v1alpha1", cluster.namespace, "rollouts")
        tick = 0
        try:
            while not stop.is_set():
                tick += 1
                for m in fleet.members:
                    meta = {"annotations": {"chaos-tick": str(tick)}, "labels": {"tick": str(tick)}}
                    try:
                        api.patch_namespaced_custom_object(*args, m.name, {"metadata": meta})
                        api.patch_namespaced_custom_object_status(
                            *args, m.name, {"status": {"message": f"second writer {tick}"}}
                        )
                        writes[0] += 2
                    except kubernetes.client.exceptions.ApiException:
                        writes[1] += 1
                stop.wait(0.15)
        finally:
            client.close()

    thread = threading.Thread(target=writer, daemon=True)
    rounds = 2
    thread.start()
    try:
        fleet.run(until=lambda: all(m.round >= rounds for m in fleet.members), timeout=240)
    finally:
        stop.set()
        thread.join(timeout=30)
        fleet.close()

    conflicts = re.search(r'sluice_reconcile_total\{result="conflict"\} (\S+)', op.metrics())
    recorder.dump(tmp_path / "history.jsonl")
    bad = violations(fleet, recorder, kills=0)
    print(
        f"\nconcurrent writer: {writes[0]} writes ({writes[1]} refused), operator conflicts "
        f"{conflicts.group(1) if conflicts else 0}, "
        f"{sum(len(m.applied) for m in fleet.members)} actions, {len(bad)} wrong outcomes"
    )
    assert not bad, "\n".join(bad)
    assert conflicts and float(conflicts.group(1)) > 0, (
        "the writer never made the operator conflict"
    )
    assert op.proc is not None and op.proc.poll() is None
