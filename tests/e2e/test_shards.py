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
    # Each shard's children carry its label: the other shard's watches never bring them.
    assert shards_of_children(cluster, "painted") == {"blue"}
    assert shards_of_children(cluster, "plain") == {None}

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
    # The default shard took painted's children over (relabelled, none made twice) ...
    assert shards_of_children(cluster, "painted") == {None}
    deployments = json.loads(
        cluster.kubectl("get", "deployments", "-l", "sluice.dev/rollout=painted", "-o", "json")
    )["items"]
    assert sorted(d["metadata"]["name"] for d in deployments) == ["painted-a", "painted-b"]
    cluster.action("promote-full", name="painted")
    wait_for("painted promoted by the default shard", lambda: healthy_at(cluster, "painted"))
    assert not [c for c in cluster.status("painted").get("conditions", []) if
                c.get("type") == "InvalidSpec" and c.get("status") == "True"]  # fmt: skip

    # ... and the other way: plain moves to blue, which runs its next canary.
    cluster.kubectl("label", "rollout", "plain", f"{LABEL}=blue")
    cluster.set_image("nginx:1.28", name="plain")
    wait_for(
        "blue runs plain's canary", lambda: cluster.status("plain").get("currentStepIndex") == 1
    )
    cluster.action("promote-full", name="plain")
    wait_for("blue promotes plain", lambda: healthy_at(cluster, "plain"), timeout=90)
    assert shards_of_children(cluster, "plain") == {"blue"}
    assert mentions(blue, "plain") > 0


def shards_of_children(cluster: Cluster, name: str) -> set[str | None]:
    """The shard labels on a Rollout's Deployments, Services and AnalysisRuns."""
    found = set()
    for kind in ("deployments", "services", "analysisruns"):
        out = cluster.kubectl("get", kind, "-l", f"sluice.dev/rollout={name}", "-o", "json")
        for item in json.loads(out)["items"]:
            found.add((item["metadata"].get("labels") or {}).get(LABEL))
    return found


def healthy_at(cluster: Cluster, name: str) -> bool:
    status = cluster.status(name)
    return (
        status.get("phase") == "Healthy"
        and "nginx:1.28" in json.dumps(cluster.get("rollout", name) or {})
        and not status.get("canaryRevision")
    )
