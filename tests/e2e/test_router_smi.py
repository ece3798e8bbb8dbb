"""The SMI router against a real API server with the real TrafficSplit CRD (v1alpha4 only).

Each test makes a Rollout `web` (trafficRouting.smi) and its Services, calls the router
directly and reads the TrafficSplit back with kubectl.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from sluice.routers.base import RouterProblem
from sluice.routers.smi import SMIRouter
from tests.e2e.conftest import EXAMPLES, Cluster, Operator, wait_for
from tests.e2e.provider_driver import (
    apply_yaml,
    context,
    kube,
    plan,
    rollout,
    run,
    services,
    user_view,
)

pytestmark = pytest.mark.e2e

TS = "trafficsplits.split.smi-spec.io"


def split_of(cluster: Cluster, name: str) -> dict[str, Any]:
    body = cluster.get(TS, name)
    assert body is not None, f"TrafficSplit {name} missing"
    return body


def weights(cluster: Cluster, name: str) -> list[tuple[str, Any]]:
    return [(b["service"], b["weight"]) for b in split_of(cluster, name)["spec"]["backends"]]


def setup(cluster: Cluster, smi: dict[str, Any], max_weight: int = 100) -> SMIRouter:
    rollout(cluster, {"maxTrafficWeight": max_weight, "smi": smi})
    services(cluster)
    return SMIRouter(kube(cluster))


def test_the_split_carries_each_plan(cluster: Cluster, router_crds: str) -> None:
    router = setup(cluster, {"trafficSplitName": "web-split", "rootService": "web-apex"})
    for weight in (0, 5, 25, 50, 100):
        run(router.apply(context(cluster, router), plan(weight)))
        assert weights(cluster, "web-split") == [
            ("web-stable", 100 - weight),
            ("web-canary", weight),
        ]
        seen = router.verify(context(cluster, router), plan(weight))
        assert seen.verified and seen.problem is None, seen

    body = split_of(cluster, "web-split")
    assert body["apiVersion"] == "split.smi-spec.io/v1alpha4"  # the one version served
    assert body["spec"]["service"] == "web-apex"
    meta = body["metadata"]
    assert meta["labels"] == {"sluice.dev/rollout": "web", "sluice.dev/role": "traffic-split"}
    owners = [(o["kind"], o["name"], o["uid"]) for o in meta["ownerReferences"]]
    assert owners == [("Rollout", "web", cluster.rollout()["metadata"]["uid"])]
    # What the live object already carries is not written again.
    run(router.apply(context(cluster, router), plan(100)))
    assert split_of(cluster, "web-split")["metadata"]["resourceVersion"] == meta["resourceVersion"]

    # Renamed: the old split would keep splitting the apex, so it goes.
    rollout(cluster, {"smi": {"trafficSplitName": "web-split-2", "rootService": "web-apex"}})
    run(router.apply(context(cluster, router), plan(25)))
    assert cluster.get(TS, "web-split") is None
    assert weights(cluster, "web-split-2") == [("web-stable", 75), ("web-canary", 25)]


def test_weights_out_of_1000_a_hand_edit_and_release(cluster: Cluster, router_crds: str) -> None:
    router = setup(cluster, {}, max_weight=1000)  # name and apex default to the Rollout's
    run(router.apply(context(cluster, router), plan(5)))
    assert weights(cluster, "web") == [("web-stable", 950), ("web-canary", 50)]
    assert split_of(cluster, "web")["spec"]["service"] == "web"
    stale = context(cluster, router)
    assert router.verify(stale, plan(5)).verified

    edit = '[{"op": "replace", "path": "/spec/backends/1/weight", "value": 500}]'
    cluster.kubectl("patch", TS, "web", "--type", "json", "-p", edit)
    seen = router.verify(context(cluster, router), plan(5))
    assert not seen.verified and seen.problem is None
    assert seen.detail == (
        "TrafficSplit web: spec.backends weights are web-stable=950, web-canary=500, "
        "want web-stable=950, web-canary=50"
    )

    with pytest.raises(ApiException) as refused:  # an update from an outdated read
        run(router.apply(stale, plan(25)))
    assert refused.value.status == 409
    assert weights(cluster, "web")[1] == ("web-canary", 500)

    run(router.apply(context(cluster, router), plan(5)))
    assert weights(cluster, "web") == [("web-stable", 950), ("web-canary", 50)]
    assert router.verify(context(cluster, router), plan(5)).verified

    run(router.release(context(cluster, router)))
    assert weights(cluster, "web") == [("web-stable", 1000), ("web-canary", 0)]
    assert router.verify(context(cluster, router), plan(0)).verified
    assert not router.verify(context(cluster, router), plan(5)).verified


def test_a_split_of_that_name_not_owned_is_refused_and_left_alone(
    cluster: Cluster, router_crds: str
) -> None:
    router = setup(cluster, {"trafficSplitName": "shop"})
    foreign = {
        "apiVersion": "split.smi-spec.io/v1alpha4",
        "kind": "TrafficSplit",
        "metadata": {"name": "shop"},
        "spec": {"service": "shop", "backends": [{"service": "shop-v1", "weight": 100}]},
    }
    apply_yaml(cluster, yaml.safe_dump(foreign))
    before = user_view(cluster, TS, "shop")
    expected = (
        "TrafficSplit shop exists and is not owned by Rollout web (metadata.ownerReferences); "
        "Sluice will not take it over: delete it or set "
        "spec.strategy.canary.trafficRouting.smi.trafficSplitName to another name"
    )
    with pytest.raises(RouterProblem) as problem:
        run(router.apply(context(cluster, router), plan(5)))
    assert str(problem.value) == expected
    # Unlabelled, it is not in the cache: verify sees no TrafficSplit of the Rollout's.
    assert not router.verify(context(cluster, router), plan(5)).verified
    assert run(router.release(context(cluster, router))) == []
    assert user_view(cluster, TS, "shop") == before


def test_the_split_goes_with_the_rollout(cluster: Cluster, router_crds: str) -> None:
    router = setup(cluster, {})
    run(router.apply(context(cluster, router), plan(5)))
    assert cluster.get(TS, "web") is not None
    cluster.kubectl("delete", "rollout.sluice.dev", "web", "--wait=false")
    wait_for("the TrafficSplit garbage-collected", lambda: cluster.get(TS, "web") is None)


def test_the_operator_runs_the_example_through_the_split(
    cluster: Cluster, operator: Operator, router_crds: str
) -> None:
    """examples/routers/smi.yaml with the real operator, at 4 replicas: 95/5 in the
    TrafficSplit at the first pause, 100/0 after an abort."""
    docs = list(yaml.safe_load_all((EXAMPLES / "routers" / "smi.yaml").read_text()))
    docs[0]["spec"]["replicas"] = 4
    apply_yaml(cluster, yaml.safe_dump_all(docs))
    wait_for("first revision Healthy", lambda: cluster.status().get("phase") == "Healthy")

    cluster.set_image("nginx:1.28")
    wait_for(
        "the pause at 5 %",
        lambda: (
            (cluster.status().get("currentStepIndex"), cluster.status().get("phase"))
            == (2, "Paused")
        ),
    )
    assert weights(cluster, "web") == [("web-stable", 95), ("web-canary", 5)]
    assert split_of(cluster, "web")["spec"]["service"] == "web"
    assert cluster.replicas("web-b") == (1, 1)

    cluster.action("abort")
    wait_for("Degraded", lambda: cluster.status().get("phase") == "Degraded")
    wait_for(
        "all weight back on the stable",
        lambda: weights(cluster, "web") == [("web-stable", 100), ("web-canary", 0)],
    )
    assert cluster.selector("web-stable")["sluice.dev/slot"] == "a"  # the old version
