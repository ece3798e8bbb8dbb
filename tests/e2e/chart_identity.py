"""The chart's RBAC applied for real, and a kubeconfig that is its ServiceAccount.

An operator run with that kubeconfig has exactly the rights the chart grants, so a
missing verb shows up as a 403 in its log and a failed test.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.conftest import Cluster, server_minor, wait_for

RBAC_KINDS = (
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "Secret",
)


def render_live(kubeconfig: str, values: dict[str, Any], name: str, namespace: str) -> list[Any]:
    """The chart as `helm install --dry-run=server` renders it: with the cluster's own
    API versions (.Capabilities), which an offline render does not know."""
    import helm_python

    from tests.chart.render import CHART

    with (
        helm_python.Config(kubeconfig_path=kubeconfig, namespace=namespace) as config,
        helm_python.Chart.load(str(CHART)) as chart,
    ):
        release = config.install(chart, name, values, namespace=namespace, dry_run="server")
    return [doc for doc in yaml.safe_load_all(release["manifest"]) if doc]


class ChartIdentity:
    """Install the RBAC part of a release watching `cluster.namespace`; undo it on close."""

    def __init__(self, cluster: Cluster, tmp: Path, values: dict[str, Any]) -> None:
        self.cluster = cluster
        self.release = cluster.namespace  # unique: cluster-scoped names do not collide
        self.objects = render_live(
            cluster.kubeconfig,
            {"watchNamespaces": [cluster.namespace], **values},
            self.release,
            cluster.namespace,
        )
        self.tmp = tmp
        self.cluster_scoped: list[str] = []

    def deployment_args(self) -> list[str]:
        """The `sluice run` flags of the chart's Deployment, minus those the test sets."""
        deploy = next(o for o in self.objects if o["kind"] == "Deployment")
        args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
        # (--alerts-port: the tests post alerts to the operator's one port)
        skip = ("--host=", "--port=", "--alerts-port=", "--namespace=", "--log-json")
        return [
            a.replace("$(POD_NAMESPACE)", self.cluster.namespace)
            for a in args
            if not a.startswith(skip)
        ]

    def install(self) -> str:
        """Apply the ServiceAccount, RBAC and Secret; return a kubeconfig of the account."""
        chosen = [o for o in self.objects if o["kind"] in RBAC_KINDS]
        self.cluster.kubectl(
            "apply",
            "-f",
            "-",
            stdin=json.dumps({"kind": "List", "apiVersion": "v1", "items": chosen}),
        )
        self.cluster_scoped = [
            f"{o['kind'].lower()}/{o['metadata']['name']}"
            for o in chosen
            if o["kind"].startswith("Cluster")
        ]
        account = next(o for o in chosen if o["kind"] == "ServiceAccount")["metadata"]["name"]
        if server_minor(self.cluster.kubeconfig) >= 24:  # no token Secrets: TokenRequest
            token = self.cluster.kubectl("create", "token", account, "--duration=2h").strip()
        else:
            token = self._secret_token(account)
        return self._kubeconfig(account, token)

    def _secret_token(self, account: str) -> str:
        secret = wait_for(
            "the ServiceAccount token",
            lambda: next(
                (
                    s
                    for s in json.loads(self.cluster.kubectl("get", "secrets", "-o", "json"))[
                        "items"
                    ]
                    if s["type"] == "kubernetes.io/service-account-token"
                    and s["metadata"]["annotations"].get("kubernetes.io/service-account.name")
                    == account
                    and s.get("data", {}).get("token")
                ),
                None,
            ),
        )
        return base64.b64decode(secret["data"]["token"]).decode()

    def _kubeconfig(self, account: str, token: str) -> str:
        admin = yaml.safe_load(Path(self.cluster.kubeconfig).read_text())
        server = admin["clusters"][0]["cluster"]
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": server}],
            "users": [{"name": account, "user": {"token": token}}],
            "contexts": [
                {
                    "name": "sa",
                    "context": {
                        "cluster": "c",
                        "user": account,
                        "namespace": self.cluster.namespace,
                    },
                }
            ],
            "current-context": "sa",
        }
        path = self.tmp / "sa-kubeconfig"
        path.write_text(yaml.safe_dump(config))
        return str(path)

    def close(self) -> None:
        for ref in self.cluster_scoped:
            subprocess.run(
                ["kubectl", "delete", ref, "--wait=false"],
                env={**os.environ, "KUBECONFIG": self.cluster.kubeconfig},
                capture_output=True,
            )
