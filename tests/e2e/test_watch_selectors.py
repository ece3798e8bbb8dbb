"""The API server sends the operator only what is Sluice's: a Deployment the user owns in
the same namespace never reaches it (server-side label selectors), however often it
changes, while the Rollout's own children do. Services are watched whole (a blue-green
Rollout's Services are the user's): a foreign one arrives but is neither kept nor acted on."""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.conftest import Cluster, Operator, wait_for

pytestmark = pytest.mark.e2e


def reconciles(op: Operator) -> float:
    found = re.findall(r"^sluice_reconcile_total\{[^}]*\} (\S+)$", op.metrics(), re.M)
    return sum(float(x) for x in found)


def events(op: Operator, kind: str, origin: str) -> float:
    pattern = rf'^sluice_watch_events_total\{{kind="{kind}",origin="{origin}"\}} (\S+)$'
    found = re.search(pattern, op.metrics(), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_foreign_deployments_never_reach_the_operator_and_foreign_services_are_dropped(
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
    assert events(operator, "Service", "foreign") > 0  # watched whole, by design
    # ...and wakes no Rollout: an idle Healthy Rollout is not reconciled for it
    time.sleep(3)
    before = reconciles(operator)
    for team in ("a", "b", "c"):
        cluster.kubectl("label", "--overwrite", "service", "other", f"team={team}")
    time.sleep(3)
    assert reconciles(operator) == before
