"""The API server sends the operator only what is Sluice's: a Deployment or Service the
user owns in the same namespace never reaches it (server-side label selectors), however
often it changes, while the Rollout's own children do."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import Cluster, Operator, wait_for

pytestmark = pytest.mark.e2e


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
