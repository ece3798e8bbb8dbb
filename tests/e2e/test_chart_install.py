"""The chart, rendered with the cluster's own capabilities, is accepted object by object.

Server-side dry run: the API server validates and admits each object (schema, RBAC
escalation checks, defaults) without keeping it. On v1.20 the PodDisruptionBudget comes
out as policy/v1beta1, the only version that server has.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.chart_identity import render_live
from tests.e2e.conftest import Cluster

pytestmark = pytest.mark.e2e
pytest.importorskip("helm_python")

COMBINATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["NS"]},
    "alerts-networkpolicy": {
        "alerts": {"enabled": True},
        "networkPolicy": {"enabled": True, "metricsFrom": [{"namespaceSelector": {}}]},
    },
    "single": {"replicaCount": 1, "leaderElection": {"enabled": False}},
}


def _dry_run(cluster: Cluster, obj: dict[str, Any]) -> str:
    return cluster.kubectl(
        "apply", "--dry-run=server", "-o", "name", "-f", "-", stdin=json.dumps(obj), check=False
    )


@pytest.mark.parametrize("combo", sorted(COMBINATIONS))
def test_every_rendered_object_is_accepted(cluster: Cluster, combo: str) -> None:
    values = json.loads(json.dumps(COMBINATIONS[combo]).replace('"NS"', f'"{cluster.namespace}"'))
    objects = render_live(cluster.kubeconfig, values, cluster.namespace, cluster.namespace)
    kinds = sorted(o["kind"] for o in objects)
    assert "Deployment" in kinds and "ServiceAccount" in kinds
    failures = {}
    for obj in objects:
        out = _dry_run(cluster, obj)
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if f"{obj['kind'].lower()}" not in out.lower() or "error" in out.lower():
            failures[name] = out.strip()
    assert failures == {}


def test_pdb_is_v1beta1_on_this_server(cluster: Cluster) -> None:
    objects = render_live(cluster.kubeconfig, {}, cluster.namespace, cluster.namespace)
    (pdb,) = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    served = cluster.kubectl("api-versions")
    expected = "policy/v1" if "policy/v1\n" in served else "policy/v1beta1"
    assert pdb["apiVersion"] == expected


def test_helm_install_and_uninstall_for_real(cluster: Cluster) -> None:
    """A real `helm install` into the namespace (CRDs already there), then uninstall."""
    import helm_python

    from tests.chart.render import CHART

    release = cluster.namespace
    with (
        helm_python.Config(kubeconfig_path=cluster.kubeconfig, namespace=release) as config,
        helm_python.Chart.load(str(CHART)) as chart,
    ):
        summary = config.install(chart, release, {"alerts": {"enabled": True}}, namespace=release)
        assert summary["status"] == "deployed"
        try:
            deploy = cluster.get("deployment", f"{release}-sluice")
            assert deploy is not None and deploy["spec"]["replicas"] == 2
            pdb = cluster.get("poddisruptionbudget", f"{release}-sluice")
            assert pdb is not None
            role = cluster.get("role", f"{release}-sluice-self")
            assert role is not None
            token = cluster.get("secret", f"{release}-sluice-alert-token")
            assert token is not None and token["data"]["token"]
            # an upgrade keeps the generated token (Alertmanager is configured with it)
            config.upgrade(chart, release, {"alerts": {"enabled": True}}, namespace=release)
            again = cluster.get("secret", f"{release}-sluice-alert-token")
            assert again is not None and again["data"]["token"] == token["data"]["token"]
        finally:
            config.uninstall(release, wait=None)
    assert cluster.get("deployment", f"{release}-sluice") is None
