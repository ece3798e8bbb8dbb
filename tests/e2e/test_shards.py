"""Sharding on Kubernetes itself: each operator owns the Rollouts labelled for its instance.

Two operators in one namespace: `blue` (--instance blue) and the default one (Rollouts
without the label). Each acts on its own Rollouts only; relabelling a Rollout moves it
from one to the other, and the one it left stops acting on it at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import EXAMPLES, Cluster, Operator, wait_for

pytestmark = pytest.mark.e2e
LABEL = "sluice.dev/controller-instance"


@pytest.fixture
def blue(cluster: Cluster, tmp_path: Path) -> Iterator[Operator]:
    op = Operator(cluster.kubeconfig, cluster.namespace, tmp_path / "blue.log")
    op.args = ["--instance", "blue"]
    op.start()
    yield op
    op.stop()


def rollout(name: str, instance: str | None) -> dict[str, object]:
    body = yaml.safe_load((EXAMPLES / "rollout-basic.yaml").read_text())
    body["metadata"]["name"] = name
    body["spec"]["replicas"] = 2
    if instance:
        body["metadata"]["labels"] = {LABEL: instance}
    return dict(body)


def mentions(op: Operator, name: str) -> int:
    return sum(f'"rollout": "{name}"' in line for line in op.log.read_text().splitlines())


def test_each_shard_acts_on_its_own_rollouts_and_a_relabel_moves_one(
    cluster: Cluster, operator: Operator, blue: Operator
) -> None:
    for body in (rollout("plain", None), rollout("painted", "blue")):
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(body))
    for name in ("plain", "painted"):
        wait_for(f"{name} Healthy", lambda n=name: cluster.status(n).get("phase") == "Healthy")
    assert mentions(operator, "plain") and not mentions(operator, "painted")
    assert mentions(blue, "painted") and not mentions(blue, "plain")

    # Move `painted` to the default shard: blue lets go, the default one takes it on.
    cluster.kubectl("label", "rollout", "painted", f"{LABEL}-")
    blue_before = mentions(blue, "painted")
    cluster.set_image("nginx:1.28", name="painted")
    wait_for(
        "the default shard runs painted's canary",
        lambda: cluster.status("painted").get("currentStepIndex") == 1,
        timeout=60,
    )
    assert mentions(operator, "painted") > 0
    assert mentions(blue, "painted") == blue_before, "blue acted on a Rollout it let go"
