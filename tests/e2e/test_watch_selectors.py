"""The API server sends the operator only what is Sluice's: a Deployment the user owns in
the same namespace never reaches it (server-side label selectors), however often it
changes, while the Rollout's own children do. Services too: a user's Service that a Rollout
names (blue-green) is labelled sluice.dev/role=named when first read, so its changes arrive
by the watch, and the label goes again with the Rollout; any other Service never arrives."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Cluster, Operator, wait_for

pytestmark = pytest.mark.e2e


def reconciles(op: Operator) -> float:
    found = re.findall(r"^sluice_reconcile_total\{[^}]*\} (\S+)$", op.metrics(), re.M)
    return sum(float(x) for x in found)


def events(op: Operator, kind: str, origin: str) -> float:
    pattern = rf'^sluice_watch_events_total\{{kind="{kind}",origin="{origin}"\}} (\S+)$'
    found = re.search(pattern, op.metrics(), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_foreign_deployments_and_services_never_reach_the_operator(
    cluster: Cluster, operator: Operator
) -> None:
    cluster.kubectl("create", "deployment", "other", "--image=nginx:1.27", "--replicas=0")
    cluster.kubectl("create", "service", "clusterip", "other", "--tcp=80:80")
    cluster.apply_example("rollout-basic.yaml")
    wait_for("web Healthy", lambda: cluster.status().get("phase") == "Healthy", timeout=90)
    for replicas in (1, 0, 2):  # changes to the foreign objects: events the API server has
        cluster.kubectl("scale", "deployment", "other", f"--replicas={replicas}")
    cluster.kubectl("label", "service", "other", "team=shop")
    wait_for(
        "the foreign Deployment's pods",
        lambda: (
            cluster.kubectl("get", "deployment", "other", "-o", "jsonpath={.status.readyReplicas}")
            == "2"
        ),
        timeout=60,
    )
    assert events(operator, "Deployment", "owned") > 0, "the Rollout's Deployment was not seen"
    assert events(operator, "Service", "owned") > 0
    assert events(operator, "Deployment", "foreign") == 0
    assert events(operator, "Service", "foreign") == 0
    # ...and wakes no Rollout: an idle Healthy Rollout is not reconciled for it
    time.sleep(3)
    before = reconciles(operator)
    for team in ("a", "b", "c"):
        cluster.kubectl("label", "--overwrite", "service", "other", f"team={team}")
    time.sleep(3)
    assert reconciles(operator) == before


def labels(cluster: Cluster, name: str) -> dict[str, str]:
    body = cluster.get("service", name)
    assert body is not None, f"Service {name} is gone"
    return dict(body["metadata"].get("labels") or {})


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]},
    }


def blue_green(services: list[str]) -> list[dict[str, Any]]:
    docs = [service(name) for name in services]
    strategy = {"activeService": services[0], "previewService": services[1]}
    docs.append(
        {
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                },
                "strategy": {"blueGreen": strategy},
            },
        }
    )
    return docs


def test_blue_green_services_are_labelled_while_named_and_a_foreign_one_never_arrives(
    cluster: Cluster, operator: Operator
) -> None:
    cluster.kubectl("create", "service", "clusterip", "other", "--tcp=80:80")
    docs = blue_green(["web-active", "web-preview"])
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    wait_for("web Healthy", lambda: cluster.status().get("phase") == "Healthy", timeout=90)
    slot = "sluice.dev/slot"
    wait_for("active switched", lambda: cluster.selector("web-active").get(slot) == "a")
    for name in ("web-active", "web-preview"):
        assert labels(cluster, name) == {"sluice.dev/role": "named"}, name
        spec = (cluster.get("service", name) or {})["spec"]
        assert spec["selector"] == {"app": "web", slot: "a"}, "only the slot key is Sluice's"
    # Later changes of a named Service come by the watch (owned events), a foreign one's not.
    owned = events(operator, "Service", "owned")
    cluster.kubectl("label", "service", "web-active", "team=shop")
    for team in ("a", "b", "c"):
        cluster.kubectl("label", "--overwrite", "service", "other", f"team={team}")
    wait_for("the named Service's change", lambda: events(operator, "Service", "owned") > owned)
    # The preview renamed: the old one is let go (unlabelled), the new one taken.
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(service("web-next")))
    cluster.kubectl(
        "patch", "rollout", "web", "--type=merge",
        "-p", '{"spec":{"strategy":{"blueGreen":{"previewService":"web-next"}}}}',
    )  # fmt: skip
    wait_for("web-next labelled", lambda: labels(cluster, "web-next").get("sluice.dev/role"))
    wait_for("web-preview let go", lambda: "sluice.dev/role" not in labels(cluster, "web-preview"))
    cluster.kubectl("delete", "rollout", "web", "--wait=true", "--timeout=30s")
    for name in ("web-active", "web-next"):
        wait_for(f"{name} unlabelled", lambda n=name: "sluice.dev/role" not in labels(cluster, n))
    assert labels(cluster, "web-active") == {"team": "shop"}, "the user's labels are kept"
    assert events(operator, "Service", "foreign") == 0
