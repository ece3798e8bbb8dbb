"""deploy/install.yaml is accepted by a real API server, object by object.

Every object is applied server-side with dryRun=All (validated, admitted, never
stored), so a field the server refuses fails here and not at a user's install. The
namespaced objects go to the test's namespace (the manifest's own does not exist here;
its Namespace object is dry-run too). An API server without policy/v1 (v1.20) gets the
PodDisruptionBudget as policy/v1beta1, whose schema the chart's PDB also fits; the
test prints when it does so.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import ROOT, Cluster

pytestmark = pytest.mark.e2e
MANIFEST = ROOT / "deploy" / "install.yaml"


def dry_run(cluster: Cluster, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "apply", "--server-side", "--force-conflicts", "--dry-run=server",
         "--field-manager=sluice-e2e-dry-run", "-f", "-"],
        input=json.dumps(obj),
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": cluster.kubeconfig},
        timeout=60,
    )  # fmt: skip


def test_every_object_of_install_yaml_is_accepted_by_the_api_server(cluster: Cluster) -> None:
    objects = [o for o in yaml.safe_load_all(MANIFEST.read_text()) if o]
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "CustomResourceDefinition", "Deployment", "ClusterRole"} <= kinds
    versions = set(cluster.kubectl("api-versions").split())
    refused = []
    for obj in objects:
        if obj["kind"] == "PodDisruptionBudget" and "policy/v1" not in versions:
            print(f"this API server has no policy/v1: {obj['metadata']['name']} as policy/v1beta1")
            obj = {**obj, "apiVersion": "policy/v1beta1"}
        if "namespace" in obj["metadata"]:
            obj = {**obj, "metadata": {**obj["metadata"], "namespace": cluster.namespace}}
        proc = dry_run(cluster, obj)
        if proc.returncode != 0:
            refused.append(f"{obj['kind']}/{obj['metadata']['name']}: {proc.stderr.strip()}")
    assert not refused, "refused by the API server:\n" + "\n".join(refused)
