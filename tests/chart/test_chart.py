"""charts/sluice through the real Helm engine: lint --strict, and the rendered objects.

What a platform team installs: the Deployment's pods (probes, securityContext, leader
election flags), the PodDisruptionBudget, and RBAC that names every verb and resource.
"""

from __future__ import annotations

import filecmp
import json
import re
from typing import Any

import pytest

from tests.chart.render import (
    CHART,
    ROOT,
    notes,
    of_kind,
    one,
    permissions,
    render,
    scrape_job,
)

pytest.importorskip("helm_python")

COMBINATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "servicemonitor": {"metrics": {"serviceMonitor": {"enabled": True}}},
    "networkpolicy": {
        "networkPolicy": {"enabled": True, "metricsFrom": [{"namespaceSelector": {}}]},
        "alerts": {"enabled": True},
    },
    "single": {"replicaCount": 1, "leaderElection": {"enabled": False}},
    "monitoring": {
        "metrics": {
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "dashboard": {"enabled": True},
        }
    },
}

# What Sluice calls, per (apiGroup, resource): read from cluster/kube.py, controller/*,
# handlers.py, kopf's watches (list, watch) and the traffic routers.
WORKLOAD_RULES = {
    ("sluice.dev", "rollouts"): {"list", "watch", "patch"},
    ("sluice.dev", "rollouts/status"): {"update"},
    ("sluice.dev", "analysisruns"): {"get", "list", "watch", "create", "patch", "delete"},
    ("sluice.dev", "analysisruns/status"): {"update"},
    ("sluice.dev", "analysistemplates"): {"get"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "services"): {"get", "list", "watch", "create", "patch"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "delete"},
    ("", "events"): {"create"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "secrets"): {"get"},
    ("networking.k8s.io", "ingresses"): {
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
    },
    ("networking.istio.io", "virtualservices"): {"get", "list", "watch", "update"},
    ("networking.istio.io", "destinationrules"): {"get", "list", "watch", "update"},
    ("gateway.networking.k8s.io", "httproutes"): {"get", "list", "watch", "update"},
    ("split.smi-spec.io", "trafficsplits"): {
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
    },
}


def _grants(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


@pytest.mark.parametrize("combo", sorted(COMBINATIONS))
def test_lint_strict_passes(combo: str) -> None:
    import helm_python

    report = helm_python.lint(str(CHART), COMBINATIONS[combo], strict=True)
    assert report["errors"] == [], report["messages"]


@pytest.mark.parametrize("combo", sorted(COMBINATIONS))
def test_no_wildcards_anywhere_in_rbac(combo: str) -> None:
    objects = render(COMBINATIONS[combo])
    for _, _, group, resource, verb in permissions(objects):
        assert "*" not in (group, resource, verb)
    for binding in of_kind(objects, "ClusterRoleBinding") + of_kind(objects, "RoleBinding"):
        assert binding["roleRef"]["name"] not in ("cluster-admin", "admin", "edit")
        assert [s["kind"] for s in binding["subjects"]] == ["ServiceAccount"]


def test_cluster_mode_grants_exactly_the_calls_sluice_makes() -> None:
    objects = render()
    role = one(objects, "ClusterRole")
    grants = _grants(role)
    expected = {
        **WORKLOAD_RULES,
        ("sluice.dev", "clusteranalysistemplates"): {"get"},
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    }
    assert grants == expected
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "sluice", "namespace": "sluice-system"}
    ]


def test_lease_and_token_are_only_in_the_release_namespace_and_by_name() -> None:
    objects = render({"alerts": {"enabled": True}})
    self_role = next(r for r in of_kind(objects, "Role") if r["metadata"]["name"] == "sluice-self")
    assert self_role["metadata"]["namespace"] == "sluice-system"
    lease_rules = [r for r in self_role["rules"] if r["resources"] == ["leases"]]
    assert {frozenset(r["verbs"]): r.get("resourceNames") for r in lease_rules} == {
        frozenset({"create"}): None,
        frozenset({"get", "update"}): ["sluice-leader"],
    }
    secret_rules = [r for r in self_role["rules"] if r["resources"] == ["secrets"]]
    assert [(r["verbs"], r.get("resourceNames")) for r in secret_rules] == [
        (["get"], ["sluice-alert-token"])
    ]
    # no lease rights cluster-wide
    assert ("coordination.k8s.io", "leases") not in _grants(one(objects, "ClusterRole"))


def test_namespaced_mode_uses_roles_in_each_namespace_only() -> None:
    objects = render(COMBINATIONS["namespaced"])
    roles = {r["metadata"]["namespace"]: r for r in of_kind(objects, "Role")}
    assert set(roles) == {"team-a", "team-b", "sluice-system"}
    for ns in ("team-a", "team-b"):
        assert _grants(roles[ns]) == WORKLOAD_RULES
        binding = next(
            b
            for b in of_kind(objects, "RoleBinding")
            if b["metadata"]["namespace"] == ns and b["roleRef"]["kind"] == "Role"
        )
        assert binding["subjects"][0]["namespace"] == "sluice-system"
    # the only cluster-scoped grant: reading ClusterAnalysisTemplates
    cluster_roles = of_kind(objects, "ClusterRole")
    assert [_grants(r) for r in cluster_roles] == [
        {("sluice.dev", "clusteranalysistemplates"): {"get"}}
    ]
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    # switching that off too leaves no cluster-scoped RBAC at all
    strict = render({**COMBINATIONS["namespaced"], "rbac": {"clusterAnalysisTemplates": False}})
    assert of_kind(strict, "ClusterRole") == [] and of_kind(strict, "ClusterRoleBinding") == []


def test_routers_and_secrets_can_be_turned_off() -> None:
    objects = render(
        {
            "rbac": {
                "analysisSecrets": False,
                "trafficRouters": {
                    "ingress": False,
                    "istio": False,
                    "gatewayApi": False,
                    "smi": False,
                },
            }
        }
    )
    grants = _grants(one(objects, "ClusterRole"))
    assert ("", "secrets") not in grants
    assert not {g for g, _ in grants} & {
        "networking.k8s.io",
        "networking.istio.io",
        "gateway.networking.k8s.io",
        "split.smi-spec.io",
    }
    assert grants[("apps", "deployments")] == WORKLOAD_RULES[("apps", "deployments")]


def test_track_secrets_grants_secrets_and_sets_the_flag_together() -> None:
    default = render()
    args = one(default, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--track-secrets" not in args
    assert _grants(one(default, "ClusterRole"))[("", "secrets")] == {"get"}
    objects = render({"rbac": {"trackSecrets": True}})
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--track-secrets" in args
    grants = _grants(one(objects, "ClusterRole"))
    assert grants[("", "secrets")] == {"get", "list", "watch", "create", "patch", "delete"}


def test_deployment_pods_are_locked_down_and_probed() -> None:
    deploy = one(render(), "Deployment")
    spec = deploy["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "sluice"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8080}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["image"] == "sluice:0.1.0"
    assert "/" not in container["image"].split(":")[0], "no registry host in the default image"
    spread = pod["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} >= {"kubernetes.io/hostname"}
    for c in spread:
        assert c["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]


def test_the_alerts_service_selects_only_the_leader_pod() -> None:
    """The leader labels its own Pod (leader_label.py); the Service selects the label, so a
    standby (503) gets no alert. Without election nothing labels a pod: no such key."""
    from sluice.leader_label import LEADER

    def alerts_selector(values: dict[str, Any]) -> dict[str, str]:
        objects = render({"alerts": {"enabled": True}, **values})
        service = next(
            s for s in of_kind(objects, "Service") if s["metadata"]["name"] == "sluice-alerts"
        )
        return dict(service["spec"]["selector"])

    pod_labels = one(render(), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert alerts_selector({}) == {**pod_labels, LEADER: "true"}
    assert alerts_selector(COMBINATIONS["single"]) == pod_labels
    metrics = next(
        s for s in of_kind(render(), "Service") if s["metadata"]["name"] == "sluice-metrics"
    )
    assert LEADER not in metrics["spec"]["selector"]  # every replica is scraped


@pytest.mark.parametrize("combo", ["defaults", "namespaced"])
def test_leader_pod_label_rights_are_get_and_patch_in_the_release_namespace(combo: str) -> None:
    objects = render(COMBINATIONS[combo])
    pod_grants = [
        (kind, namespace, verb)
        for kind, namespace, group, resource, verb in permissions(objects)
        if (group, resource) == ("", "pods")
    ]
    assert sorted(pod_grants) == [
        ("Role", "sluice-system", "get"),
        ("Role", "sluice-system", "patch"),
    ]
    role = next(r for r in of_kind(objects, "Role") if r["metadata"]["name"] == "sluice-leader-pod")
    binding = next(
        b for b in of_kind(objects, "RoleBinding") if b["metadata"]["name"] == "sluice-leader-pod"
    )
    assert "resourceNames" not in role["rules"][0]  # pods are named at random
    assert binding["roleRef"]["name"] == "sluice-leader-pod"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "sluice", "namespace": "sluice-system"}
    ]
    # without election no pod is labelled: no rights on pods at all
    single = render(COMBINATIONS["single"])
    assert not [p for p in permissions(single) if (p[2], p[3]) == ("", "pods")]


def test_two_replicas_elect_a_leader_on_the_release_lease() -> None:
    container = one(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert "--leader-elect" in args
    assert "--lease-name=sluice-leader" in args
    assert "--lease-namespace=$(POD_NAMESPACE)" in args
    assert {e["name"] for e in container["env"]} >= {"POD_NAME", "POD_NAMESPACE"}
    for flag in ("--lease-duration=", "--renew-deadline=", "--retry-period="):
        assert any(a.startswith(flag) for a in args), flag
    # the operator's own CLI accepts every flag the chart passes
    from sluice.cli.main import parser

    parsed = parser().parse_args(["run", *[a.replace("$(POD_NAMESPACE)", "ns") for a in args]])
    assert parsed.leader_elect is True and parsed.lease_name == "sluice-leader"
    assert parsed.renew_deadline < parsed.lease_duration


def test_more_than_one_replica_without_leader_election_is_refused() -> None:
    import helm_python

    with pytest.raises(helm_python.HelmRenderError, match="leaderElection"):
        render({"replicaCount": 2, "leaderElection": {"enabled": False}})
    with pytest.raises(helm_python.HelmRenderError, match="renewDeadlineSeconds"):
        render({"leaderElection": {"renewDeadlineSeconds": 15, "leaseDurationSeconds": 15}})
    single = one(render(COMBINATIONS["single"]), "Deployment")
    assert single["spec"]["replicas"] == 1
    assert "--leader-elect" not in single["spec"]["template"]["spec"]["containers"][0]["args"]


def test_pdb_follows_the_cluster_api_version() -> None:
    objects = render()
    pdb = one(objects, "PodDisruptionBudget")
    # offline, Helm's default capabilities include policy/v1
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["maxUnavailable"] == 1
    selector = one(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    forced = one(
        render({"podDisruptionBudget": {"apiVersion": "policy/v1beta1"}}), "PodDisruptionBudget"
    )
    assert forced["apiVersion"] == "policy/v1beta1"
    assert of_kind(render(COMBINATIONS["single"]), "PodDisruptionBudget") == []


def test_metrics_service_and_optional_servicemonitor() -> None:
    objects = render()
    assert of_kind(objects, "ServiceMonitor") == []
    (service,) = [
        s for s in of_kind(objects, "Service") if s["metadata"]["name"] == "sluice-metrics"
    ]
    deploy = one(objects, "Deployment")
    assert service["spec"]["selector"] == deploy["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    monitor = one(render(COMBINATIONS["servicemonitor"]), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )


def dashboard_of(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        c
        for c in of_kind(objects, "ConfigMap")
        if c["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]


def queries(objects: list[dict[str, Any]]) -> list[str]:
    """Every PromQL expression of the release's rules and dashboard panels."""
    rule = one(objects, "PrometheusRule")
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    (config,) = dashboard_of(objects)
    board = json.loads(config["data"]["sluice.json"])
    return exprs + [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def test_rules_and_dashboard_are_installed_only_when_switched_on() -> None:
    import yaml

    off = render(COMBINATIONS["servicemonitor"])
    assert of_kind(off, "PrometheusRule") == [] and dashboard_of(off) == []
    on = render(COMBINATIONS["monitoring"])
    rule = one(on, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == "sluice-system"
    shipped = yaml.safe_load((CHART / "rules" / "sluice-rules.yaml").read_text())
    assert rule["spec"] == shipped["spec"]  # the default job is the file's own
    (config,) = dashboard_of(on)
    assert config["metadata"]["namespace"] == "sluice-system"
    shipped_board = json.loads((CHART / "dashboards" / "sluice.json").read_text())
    assert json.loads(config["data"]["sluice.json"]) == shipped_board
    # each switch alone
    only_rule = render({"metrics": {"prometheusRule": {"enabled": True}}})
    assert len(of_kind(only_rule, "PrometheusRule")) == 1 and dashboard_of(only_rule) == []
    only_board = render({"metrics": {"dashboard": {"enabled": True}}})
    assert of_kind(only_board, "PrometheusRule") == [] and len(dashboard_of(only_board)) == 1


def test_rules_and_panels_select_the_job_the_servicemonitor_scrapes() -> None:
    # the Service is <fullname>-metrics: without the relabeling that would be the job
    monitoring = COMBINATIONS["monitoring"]["metrics"]
    for name, values, expected in (
        ("sluice", {"metrics": monitoring}, "sluice"),
        ("ops", {"metrics": {**monitoring, "job": "sluice-ops"}}, "sluice-ops"),
        ("team-b", {"fullnameOverride": "canary", "metrics": monitoring}, "sluice"),
    ):
        objects = render(values, name=name)
        job = scrape_job(objects)
        assert job == expected
        selected = [m for q in queries(objects) for m in re.findall(r'job="([^"]*)"', q)]
        assert selected and set(selected) == {job}, (name, selected)
        # the operator's own series are job-scoped: another release's do not count
        down = next(q for q in queries(objects) if q.startswith("absent(up"))
        assert f'job="{job}"' in down


def test_every_alert_has_a_runbook_entry() -> None:
    rule = one(render(COMBINATIONS["monitoring"]), "PrometheusRule")
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    sections = re.findall(r"^## (\S+)$", runbook, re.M)
    assert alerts and set(alerts) <= set(sections), set(alerts) - set(sections)
    for alert in alerts:  # what it means, what to look at, what to do
        entry = runbook.split(f"## {alert}\n", 1)[1].split("\n## ", 1)[0]
        assert all(part in entry for part in ("**Means:**", "**Look at:**", "**Do:**")), alert


def test_rule_labels_and_dashboard_namespace_and_labels() -> None:
    objects = render(
        {
            "metrics": {
                "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
                "dashboard": {
                    "enabled": True,
                    "namespace": "grafana",
                    "labels": {"team": "ops"},
                    "annotations": {"grafana_folder": "Sluice"},
                },
            }
        }
    )
    assert one(objects, "PrometheusRule")["metadata"]["labels"]["release"] == "prom"
    (config,) = dashboard_of(objects)
    assert config["metadata"]["namespace"] == "grafana"
    assert config["metadata"]["labels"]["team"] == "ops"
    assert config["metadata"]["annotations"] == {"grafana_folder": "Sluice"}


def test_alert_webhook_service_token_and_flag() -> None:
    objects = render(COMBINATIONS["networkpolicy"])
    secret = one(objects, "Secret")
    assert secret["metadata"]["name"] == "sluice-alert-token"
    assert len(secret["data"]["token"]) >= 40
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--alert-token-secret=$(POD_NAMESPACE)/sluice-alert-token/token" in args
    names = {s["metadata"]["name"] for s in of_kind(objects, "Service")}
    assert names == {"sluice-metrics", "sluice-alerts"}
    policy = one(objects, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"][0]["from"] == [{"namespaceSelector": {}}]
    # the webhook has its own port: the metrics rule does not open it, its rule does
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--alerts-port=8081" in args
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": 8080,
        "alerts": 8081,
    }
    assert [p["port"] for p in policy["spec"]["ingress"][0]["ports"]] == ["http"]
    assert [p["port"] for p in policy["spec"]["ingress"][1]["ports"]] == ["alerts"]
    assert "from" not in policy["spec"]["ingress"][1]  # alertsFrom empty: any peer
    alerts_service = next(
        s for s in of_kind(objects, "Service") if s["metadata"]["name"] == "sluice-alerts"
    )
    assert alerts_service["spec"]["ports"][0]["targetPort"] == "alerts"
    only_am = render(
        {
            "alerts": {"enabled": True},
            "networkPolicy": {
                "enabled": True,
                "metricsFrom": [{"podSelector": {"matchLabels": {"app": "prometheus"}}}],
                "alertsFrom": [{"podSelector": {"matchLabels": {"app": "alertmanager"}}}],
            },
        }
    )
    rules = one(only_am, "NetworkPolicy")["spec"]["ingress"]
    assert rules[1]["from"] == [{"podSelector": {"matchLabels": {"app": "alertmanager"}}}]
    # an existing Secret: none created, the flag names it
    existing = render({"alerts": {"enabled": True, "token": {"existingSecret": "mine"}}})
    assert of_kind(existing, "Secret") == []
    args = one(existing, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--alert-token-secret=$(POD_NAMESPACE)/mine/token" in args
    assert of_kind(render(), "Secret") == [] and of_kind(render(), "NetworkPolicy") == []


def test_schema_refuses_unknown_and_wrong_values() -> None:
    import helm_python

    for bad in (
        {"replicas": 2},
        {"replicaCount": 0},
        {"watchNamespaces": ["Not_A_Name"]},
        {"metrics": {"job": 'x"} or vector(1) #'}},  # lands in PromQL selectors
        {"metrics": {"dashboard": {"namespace": "Not_A_Name"}}},
    ):
        with pytest.raises(helm_python.HelmValuesError):
            render(bad)


def test_notes_name_the_lease_and_mode() -> None:
    assert "sluice-system/sluice-leader" in notes()
    assert "team-a" in notes(COMBINATIONS["namespaced"])


def test_chart_crds_are_the_generated_crds() -> None:
    top = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    chart = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert chart == top, "charts/sluice/crds/ differs from crds/: run `make crds`"
    _, mismatch, errors = filecmp.cmpfiles(ROOT / "crds", CHART / "crds", top, shallow=False)
    assert mismatch == [] and errors == [], (
        f"stale in the chart: {mismatch + errors}; run `make crds`"
    )


def test_static_install_yaml_is_the_rendered_chart() -> None:
    import subprocess
    import sys

    import yaml

    out = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "render.py"), "install"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == (ROOT / "deploy" / "install.yaml").read_text(), "run `make deploy`"
    docs = [d for d in yaml.safe_load_all(out) if d]
    kinds = [d["kind"] for d in docs]
    assert kinds[0] == "Namespace" and kinds.count("CustomResourceDefinition") == 4
    assert kinds.index("ServiceAccount") < kinds.index("Deployment")
    assert {(d["kind"], d["metadata"]["name"]) for d in docs if "metadata" in d} >= {
        (o["kind"], o["metadata"]["name"]) for o in render()
    }


def test_readme_documents_every_value() -> None:
    import yaml

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()

    def keys(d: dict[str, Any], prefix: str = "") -> list[str]:
        out = []
        for k, v in d.items():
            if f"`{prefix}{k}`" in readme:
                out.append(prefix + k)
            elif isinstance(v, dict) and v:
                out.extend(keys(v, f"{prefix}{k}."))
            else:
                out.append(prefix + k)
        return out

    missing = [k for k in keys(values) if f"| `{k}` |" not in readme]
    assert missing == [], f"values not in the chart README's table: {missing}"
