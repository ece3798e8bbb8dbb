"""Generate the CustomResourceDefinitions in `crds/` from the pydantic models.

Pydantic emits JSON Schema; Kubernetes wants a *structural* OpenAPI v3 schema:
no `$ref`, no `title`, `nullable` instead of `null` types, int-or-string spelled
the Kubernetes way. Defaults stay in pydantic (the operator applies them) so that
the API server never writes fields into objects a GitOps tool owns.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from sluice.api.analysis import AnalysisRun, AnalysisTemplate
from sluice.api.rollout import GROUP, VERSION, Rollout

_DROP = {"title", "default", "$defs"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **extra}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: _resolve(sub, defs) for name, sub in value.items()}
        else:
            out[key] = _resolve(value, defs)
    return _structural(out)


def _structural(node: dict[str, Any]) -> dict[str, Any]:
    """Rewrite one resolved node into the shapes the API server accepts."""
    branches = node.get("anyOf")
    if branches is not None:
        kept = [b for b in branches if b.get("type") != "null"]
        if node.get("x-kubernetes-int-or-string"):
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        elif len(kept) == 1:
            del node["anyOf"]
            node = {**kept[0], **node}
        else:
            node["anyOf"] = kept
    if node.get("x-kubernetes-preserve-unknown-fields"):
        node.pop("additionalProperties", None)
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node[bound], bool):
            node[plain] = node.pop(bound)  # JSON Schema 2020 -> OpenAPI 3.0 spelling
            node[bound] = True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if node.get("type") == "object" and node.get("additionalProperties") in (True, {}):
        node.pop("additionalProperties")
        node["x-kubernetes-preserve-unknown-fields"] = True
    if node.get("additionalProperties") is False:
        node.pop("additionalProperties")
    return node


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema: dict[str, Any] = _resolve(raw, raw.get("$defs", {}))
    schema.pop("required", None)  # apiVersion/kind/metadata are the server's business
    schema["properties"].pop("apiVersion")
    schema["properties"].pop("kind")
    schema["properties"].pop("metadata")
    schema["required"] = ["spec"]
    return schema


def rollout_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"rollouts.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": "Rollout",
                "listKind": "RolloutList",
                "plural": "rollouts",
                "singular": "rollout",
                # `ro` is Argo Rollouts'; both may live in one cluster.
                "shortNames": ["sro"],
                "categories": ["sluice", "all"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema(Rollout)},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": [
                        _column("Desired", "integer", ".spec.replicas"),
                        _column("Ready", "integer", ".status.readyReplicas"),
                        _column("Phase", "string", ".status.phase"),
                        _column("Step", "integer", ".status.currentStepIndex"),
                        _column("Weight", "integer", ".status.canaryWeight"),
                        _column("Message", "string", ".status.message", priority=1),
                        _column("Age", "date", ".metadata.creationTimestamp"),
                    ],
                }
            ],
        },
    }


def _column(name: str, kind: str, path: str, priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": kind, "jsonPath": path}
    if priority:
        column["priority"] = priority
    return column


def _simple_crd(
    kind: str,
    plural: str,
    model: type[BaseModel],
    scope: str,
    short: list[str],
    columns: list[dict[str, Any]],
    status: bool,
) -> dict[str, Any]:
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": openapi_schema(model)},
        "additionalPrinterColumns": columns,
    }
    if status:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short,
                "categories": ["sluice"],
            },
            "versions": [version],
        },
    }


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD manifest, for every kind Sluice serves."""
    age = _column("Age", "date", ".metadata.creationTimestamp")
    return {
        f"{GROUP}_rollouts.yaml": rollout_crd(),
        f"{GROUP}_analysistemplates.yaml": _simple_crd(
            "AnalysisTemplate",
            "analysistemplates",
            AnalysisTemplate,
            "Namespaced",
            ["sat"],
            [age],
            status=False,
        ),
        f"{GROUP}_clusteranalysistemplates.yaml": _simple_crd(
            "ClusterAnalysisTemplate",
            "clusteranalysistemplates",
            AnalysisTemplate,
            "Cluster",
            ["scat"],
            [age],
            status=False,
        ),
        f"{GROUP}_analysisruns.yaml": _simple_crd(
            "AnalysisRun",
            "analysisruns",
            AnalysisRun,
            "Namespaced",
            ["sar"],
            [
                _column("Phase", "string", ".status.phase"),
                _column("Kind", "string", ".spec.kind"),
                _column("Revision", "string", ".spec.revision"),
                _column("Message", "string", ".status.message", priority=1),
                age,
            ],
            status=True,
        ),
    }


def render(crd: dict[str, Any]) -> str:
    header = "# Generated from operator/sluice/api by `make crds`. Do not edit.\n"
    return header + yaml.safe_dump(crd, sort_keys=False, width=100)


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "crds")
    out.mkdir(parents=True, exist_ok=True)
    for name, crd in all_crds().items():
        (out / name).write_text(render(crd))
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
