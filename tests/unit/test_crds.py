"""crds/ is generated from the models: it must not drift, and every field is explained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sluice.api.crd import all_crds, render

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_crds_match_the_models() -> None:
    for name, crd in all_crds().items():
        on_disk = (CRDS / name).read_text()
        assert on_disk == render(crd), f"crds/{name} drifted from the models: run `make crds`"


def test_no_stray_crd_files() -> None:
    assert sorted(p.name for p in CRDS.glob("*.yaml")) == sorted(all_crds())


def _walk(node: dict[str, Any], path: str) -> list[str]:
    missing = []
    for name, sub in (node.get("properties") or {}).items():
        where = f"{path}.{name}"
        if not sub.get("description"):
            missing.append(where)
        missing += _walk(sub, where)
        if "items" in sub:
            missing += _walk(sub["items"], where + "[]")
    return missing


def test_every_field_has_a_description() -> None:
    for crd in all_crds().values():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert _walk(schema, "") == []


def test_schema_is_structural_enough_for_the_api_server() -> None:
    text = "".join(render(c) for c in all_crds().values())
    for forbidden in ("$ref", "title:", "const:", "type: 'null'", "x-kubernetes-validations"):
        assert forbidden not in text
    crd = yaml.safe_load(render(all_crds()["sluice.dev_rollouts.yaml"]))
    version = crd["spec"]["versions"][0]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    assert "ro" not in crd["spec"]["names"]["shortNames"]  # Argo Rollouts' short name
    steps = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["strategy"]
    step = steps["properties"]["canary"]["properties"]["steps"]["items"]
    kinds = [
        {"required": [kind]}
        for kind in ("setWeight", "pause", "analysis", "setCanaryScale", "setHeaderRoute", "job")
    ]
    assert step["oneOf"] == kinds
    assert step["properties"]["setWeight"]["maximum"] == 100
