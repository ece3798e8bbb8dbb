"""Hostile and careless input about the children, on a real API server with the operator.

Each class here once looped forever, spun, or silently broke a Rollout: broken pod
templates, names no Service can have, a foreign Deployment in a child's name, children
deleted or edited by hand, names colliding across Rollouts, an analysis naming a missing
template. Now each is refused with InvalidSpec naming the field (once, no spin), or
enforced with an Event saying so.
"""

from __future__ import annotations

import copy
import json
import re
import time
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import EXAMPLES, Cluster, Operator, wait_for

pytestmark = pytest.mark.e2e


def basic(name: str = "web", **spec: Any) -> dict[str, Any]:
    body = yaml.safe_load((EXAMPLES / "rollout-basic.yaml").read_text())
    body["metadata"]["name"] = name
    body["spec"]["replicas"] = 2
    body["spec"].update(spec)
    return dict(body)


def apply(cluster: Cluster, body: dict[str, Any]) -> None:
    cluster.kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(body))


def reconciles(operator: Operator) -> float:
    found = re.findall(r"^sluice_reconcile_total\{[^}]*\} ([0-9.e+]+)$", operator.metrics(), re.M)
    return sum(float(x) for x in found)


def invalid_once(cluster: Cluster, operator: Operator, name: str, field: str) -> str:
    """InvalidSpec naming `field`, one Event, and no reconcile loop."""

    def refused() -> bool:
        return cluster.condition("InvalidSpec", name).get("status") == "True"

    wait_for(f"InvalidSpec on {name}", refused, timeout=30)
    message = str(cluster.condition("InvalidSpec", name)["message"])
    assert field in message, message
    before = reconciles(operator)
    time.sleep(4)
    spun = reconciles(operator) - before
    assert spun <= 2, f"{spun} reconciles in 4 s for a refused spec: it spins"
    events = [e for e in cluster.events(name) if e["reason"] == "InvalidSpec"]
    assert len(events) == 1 and events[0]["type"] == "Warning", events
    return message


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda t: t.update(metadata="str"), "spec.template.metadata"),
        (lambda t: t["spec"].update(containers=[{}]), "containers[0].name"),
        (
            lambda t: t["spec"]["containers"][0].update(ports=[{"containerPort": "80"}]),
            "containers[0].ports[0].containerPort",
        ),
        (
            lambda t: t["metadata"]["labels"].update(big="x" * 450_000),
            "spec.template.metadata.labels",
        ),
        (
            lambda t: t["spec"]["containers"][0].update(resources={"limits": {"cpu": [1]}}),
            "spec.template",
        ),
    ],
    ids=["metadata-str", "empty-container", "port-type", "450KB-label", "quantity-type"],
)
def test_a_broken_pod_template_is_invalid_spec_once_and_touches_nothing(
    cluster: Cluster, operator: Operator, edit: Any, field: str
) -> None:
    body = basic()
    edit(body["spec"]["template"])
    # create, not apply: apply's last-applied annotation could not hold a 450 KB label
    cluster.kubectl("create", "--validate=false", "-f", "-", stdin=json.dumps(body))
    invalid_once(cluster, operator, "web", field)
    assert cluster.get("deployment", "web-a") is None


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("w" * 60, "spec.strategy.canary.stableService"),
        ("1web", "metadata.name"),
        ("web.v2", "metadata.name"),
    ],
    ids=["60-chars", "leading-digit", "dots"],
)
def test_a_name_no_service_can_have_is_refused(
    cluster: Cluster, operator: Operator, name: str, field: str
) -> None:
    apply(cluster, basic(name))
    invalid_once(cluster, operator, name, field)
    assert cluster.get("deployment", f"{name}-a") is None


def test_two_containers_on_one_port_and_dns_on_tcp_and_udp_are_served(
    cluster: Cluster, operator: Operator
) -> None:
    body = basic()
    containers = body["spec"]["template"]["spec"]["containers"]
    containers[0]["ports"] = [
        {"containerPort": 53, "protocol": "TCP"},
        {"containerPort": 53, "protocol": "UDP"},
    ]
    containers.append({"name": "sidecar", "image": "nginx:1.27", "ports": [{"containerPort": 53}]})
    apply(cluster, body)
    wait_for("Healthy", lambda: cluster.status().get("phase") == "Healthy", timeout=60)
    service = cluster.get("service", "web")
    assert service is not None
    ports = {(p["name"], p["port"], p["protocol"]) for p in service["spec"]["ports"]}
    assert ports == {("p53", 53, "TCP"), ("p53-udp", 53, "UDP")}


def test_a_foreign_deployment_in_a_childs_name_is_named_never_adopted(
    cluster: Cluster, operator: Operator
) -> None:
    foreign = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web-a"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "other"}},
            "template": {
                "metadata": {"labels": {"app": "other"}},
                "spec": {"containers": [{"name": "o", "image": "busybox:1.36"}]},
            },
        },
    }
    apply(cluster, foreign)
    before = cluster.get("deployment", "web-a")
    assert before is not None
    apply(cluster, basic())
    message = invalid_once(cluster, operator, "web", "web-a")
    assert "not owned by Rollout web" in message
    after = cluster.get("deployment", "web-a")
    assert after is not None and after["spec"] == before["spec"]
    assert not after["metadata"].get("ownerReferences")

    cluster.kubectl("delete", "deployment", "web-a")  # the owner clears the way
    wait_for(
        "Healthy once the name is free", lambda: cluster.status().get("phase") == "Healthy", 60
    )


def test_children_deleted_or_edited_by_hand_are_restored_with_an_event(
    cluster: Cluster, operator: Operator
) -> None:
    apply(cluster, basic())
    wait_for("Healthy", lambda: cluster.status().get("phase") == "Healthy", timeout=60)
    image = cluster.get("deployment", "web-a")["spec"]["template"]["spec"]["containers"][0]["image"]

    cluster.kubectl("delete", "service", "web")
    wait_for("the root Service back", lambda: cluster.get("service", "web") is not None, 20)

    patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "evil/x"}]
    cluster.kubectl("patch", "deployment", "web-a", "--type", "json", "-p", json.dumps(patch))

    def reverted() -> bool:
        body = cluster.get("deployment", "web-a") or {}
        return bool(body) and body["spec"]["template"]["spec"]["containers"][0]["image"] == image

    wait_for("the image written back", reverted, timeout=20)
    # the Event follows the write back by a few hundred milliseconds
    wait_for(
        "a DriftReverted Event",
        lambda: any(e["reason"] == "DriftReverted" for e in cluster.events()),
        timeout=10,
    )
    drift = [e for e in cluster.events() if e["reason"] == "DriftReverted"]
    assert drift and "evil/x" in drift[0]["message"] and drift[0]["type"] == "Warning"


def test_a_child_name_taken_by_another_rollout_is_a_named_problem_not_a_theft(
    cluster: Cluster, operator: Operator
) -> None:
    apply(cluster, basic("sqv-canary"))
    wait_for("sqv-canary Healthy", lambda: cluster.status("sqv-canary").get("phase") == "Healthy")
    theirs = copy.deepcopy(cluster.get("service", "sqv-canary"))
    apply(cluster, basic("sqv"))

    def named() -> bool:
        return "Rollout sqv-canary" in str(cluster.status("sqv").get("message"))

    wait_for("sqv names the collision", named, timeout=30)
    warned = [e for e in cluster.events("sqv") if e["reason"] == "TrafficRouterProblem"]
    assert warned and "Service sqv-canary" in warned[0]["message"]
    now = cluster.get("service", "sqv-canary")
    assert now is not None and theirs is not None
    assert now["spec"]["selector"] == theirs["spec"]["selector"]  # not stolen
    assert now["metadata"]["ownerReferences"] == theirs["metadata"]["ownerReferences"]


def test_an_analysis_naming_a_missing_template_deploys_nothing(
    cluster: Cluster, operator: Operator
) -> None:
    apply(cluster, basic())
    wait_for("Healthy", lambda: cluster.status().get("phase") == "Healthy", timeout=60)
    body = cluster.rollout()
    body["spec"]["strategy"]["canary"]["analysis"] = {
        "templates": [{"templateName": "does-not-exist"}]
    }
    body["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"
    apply(cluster, {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    invalid_once(cluster, operator, "web", "does-not-exist")
    assert cluster.get("deployment", "web-b") is None  # the new template was not deployed
    assert cluster.replicas("web-a") == (2, 2)
