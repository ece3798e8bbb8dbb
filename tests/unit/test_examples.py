"""Every shipped example is valid: Rollouts by the operator's own rules, templates too."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sluice.api.analysis import AnalysisTemplateSpec
from sluice.cluster.analysis_runs import check
from sluice.engine.validate import parse_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DOCS = [
    (path, doc)
    for path in sorted(EXAMPLES.rglob("*.yaml"))
    for doc in yaml.safe_load_all(path.read_text())
    if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith("sluice.dev/")
]


@pytest.mark.parametrize(("path", "doc"), DOCS, ids=[f"{p.name}:{d['kind']}" for p, d in DOCS])
def test_example_is_valid(path: Path, doc: dict) -> None:  # type: ignore[type-arg]
    if doc["kind"] == "Rollout":
        parse_spec(doc["spec"])
    else:
        spec = AnalysisTemplateSpec.model_validate(doc["spec"])
        check(spec.metrics, {a.name: a for a in spec.args}, str(path), "background")


def test_there_are_examples_of_each_kind() -> None:
    kinds = {d["kind"] for _, d in DOCS}
    assert {"Rollout", "AnalysisTemplate", "ClusterAnalysisTemplate"} <= kinds
