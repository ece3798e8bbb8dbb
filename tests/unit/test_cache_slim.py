"""The watch cache keeps what decisions read, not the whole body."""

from __future__ import annotations

import json

from sluice.cluster.observe import observe
from sluice.controller.cache import LAST_APPLIED, Cache
from sluice.engine.types import TrafficObserved


def deployment() -> dict[str, object]:
    return {
        "kind": "Deployment",
        "metadata": {
            "name": "web-a",
            "namespace": "shop",
            "resourceVersion": "7",
            "generation": 3,
            "labels": {"sluice.dev/rollout": "web", "sluice.dev/slot": "a"},
            "annotations": {LAST_APPLIED: "{...}", "team": "shop"},
            "managedFields": [{"manager": "kube-controller-manager"}],
        },
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web"}]}}},
        "status": {
            "observedGeneration": 3,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": 1,
            "availableReplicas": 1,
            "conditions": [{"type": "Progressing", "message": "x" * 300}],
        },
    }


def test_a_child_deployment_is_cached_without_managed_fields_last_applied_or_conditions() -> None:
    cache = Cache()
    body = deployment()
    cache.put_child(body)
    kept = cache.children[("shop", "web")]["Deployment/web-a"]
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == {"team": "shop"}
    assert kept["status"] == {
        "observedGeneration": 3,
        "replicas": 2,
        "updatedReplicas": 2,
        "readyReplicas": 1,
    }
    assert kept["spec"] == body["spec"]  # the template: drift is judged on it
    assert "conditions" in body["status"], "the watch event's own body is left alone"


def test_the_slim_body_observes_like_the_whole_one() -> None:
    cache = Cache()
    cache.put_child(deployment())
    slim = cache.children[("shop", "web")]
    whole = {"Deployment/web-a": deployment()}
    assert observe("web", slim, TrafficObserved()) == observe("web", whole, TrafficObserved())


def test_cached_bodies_share_their_keys_and_short_values() -> None:
    cache = Cache()
    for name in ("web", "shop"):
        body = deployment()
        body["metadata"]["labels"] = {"sluice.dev/rollout": name, "sluice.dev/slot": "a"}
        cache.put_child(json.loads(json.dumps(body)))  # decoded apart, as watch events are
    web = cache.children[("shop", "web")]["Deployment/web-a"]
    shop = cache.children[("shop", "shop")]["Deployment/web-a"]
    web_keys = {k: k for k in web["status"]}
    assert all(k is web_keys[k] for k in shop["status"])  # one string object per key
    assert web["metadata"]["namespace"] is shop["metadata"]["namespace"]
    assert web["spec"] == deployment()["spec"]
