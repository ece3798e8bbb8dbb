"""The chart rendered by the real Helm engine (helm-python-sdk), as Kubernetes objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sluice"

Obj = dict[str, Any]


def render(
    values: dict[str, Any] | None = None, name: str = "sluice", namespace: str = "sluice-system"
) -> list[Obj]:
    """Every object of an install with `values`, in template order (NOTES.txt left out)."""
    import helm_python

    with helm_python.Chart.load(str(CHART)) as chart:
        out = chart.render(values or {}, name=name, namespace=namespace, is_install=True)
    objects: list[Obj] = []
    for path in sorted(out):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(out[path]) if doc)
    return objects


def notes(values: dict[str, Any] | None = None) -> str:
    import helm_python

    with helm_python.Chart.load(str(CHART)) as chart:
        out = chart.render(values or {}, name="sluice", namespace="sluice-system", is_install=True)
    return next(text for path, text in out.items() if path.endswith("NOTES.txt"))


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[Obj], kind: str) -> Obj:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def permissions(objects: list[Obj]) -> set[tuple[str, str, str, str, str]]:
    """(role kind, namespace, apiGroup, resource, verb) for every rule of every (Cluster)Role."""
    out: set[tuple[str, str, str, str, str]] = set()
    for role in objects:
        if role["kind"] not in ("Role", "ClusterRole"):
            continue
        ns = role["metadata"].get("namespace", "")
        for rule in role.get("rules", []):
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    for verb in rule.get("verbs", []):
                        out.add((role["kind"], ns, group, resource, verb))
    return out


def scrape_job(objects: list[Obj]) -> str:
    """The `job` label Prometheus Operator gives the targets of the release's ServiceMonitor:
    the scraped Service's name, or the value of its `jobLabel` label, then the endpoint's
    relabelings. Only the relabelings a chart would write are understood (a literal
    replacement into `job`); anything else fails here rather than guessing."""
    monitor = one(objects, "ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"].items()
    (service,) = [
        s for s in of_kind(objects, "Service") if wanted <= s["metadata"]["labels"].items()
    ]
    job = str(service["metadata"]["name"])
    if "jobLabel" in monitor["spec"]:
        job = str(service["metadata"]["labels"].get(monitor["spec"]["jobLabel"], job))
    (endpoint,) = monitor["spec"]["endpoints"]
    for rule in endpoint.get("relabelings", []):
        if rule.get("targetLabel") != "job":
            continue
        assert rule.get("action", "replace") == "replace" and not rule.get("sourceLabels"), rule
        job = str(rule["replacement"])
    return job
