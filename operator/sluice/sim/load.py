"""Read a Rollout and its AnalysisTemplates from YAML files, checked as the operator would.

Every problem is an InvalidSpec whose message starts with the file and names the field:
the Rollout's spec with the operator's own messages (`parse_spec`), and each analysis
merged with its templates exactly as the reconciler does when it creates a run
(`cluster.analysis_runs.merge`), so a mistake that would stop a real rollout halfway
is reported before the simulation starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sluice.api.analysis import AnalysisTemplate, Metric, RolloutAnalysis
from sluice.api.judge import JudgeScore
from sluice.api.rollout import GROUP, VERSION, RolloutSpec
from sluice.api.webhooks import GATE_TYPES
from sluice.cluster.analysis_runs import AnalysisInvalid, analysis_for, judge_score_of, merge
from sluice.engine.validate import InvalidSpec, parse_spec

Body = dict[str, Any]
TemplateKey = tuple[str, bool]  # (name, cluster scope)
ROLLOUT_FIELDS = {"apiVersion", "kind", "metadata", "spec", "status"}


def _loc(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path.lstrip(".")


def read_yaml(path: Path) -> list[Any]:
    """The documents of a YAML file; InvalidSpec with the file (and line) when unreadable."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidSpec(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" (line {mark.line + 1}, column {mark.column + 1})"
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidSpec(f"{path}: not valid YAML{where}: {problem}") from None


@dataclass
class Loaded:
    path: Path
    rollout: Body
    spec: RolloutSpec
    templates: dict[TemplateKey, Body] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str((self.rollout.get("metadata") or {}).get("name") or "rollout")

    @property
    def namespace(self) -> str:
        return str((self.rollout.get("metadata") or {}).get("namespace") or "default")

    def analyses(self) -> list[tuple[str, int | None, RolloutAnalysis, str]]:
        """(kind, step, analysis, where) of every analysis the Rollout runs, in order."""
        canary = self.spec.strategy.canary
        found: list[tuple[str, int | None]] = [
            ("step", i) for i, step in enumerate(canary.steps) if step.analysis is not None
        ]
        if canary.analysis is not None:
            found.insert(0, ("background", None))
        bg = self.spec.strategy.blue_green
        if bg is not None and bg.pre_promotion_analysis is not None:
            found.append(("prePromotion", None))
        if self.spec.strategy.post_promotion() is not None:
            found.append(("postPromotion", None))
        out = []
        for kind, step in found:
            analysis, where = analysis_for(self.spec, kind, step)
            out.append((kind, step, analysis, where))
        return out

    def merged(self, kind: str, step: int | None) -> tuple[list[Metric], list[Any], int]:
        """The run's metrics, args and retention, as the reconciler merges them."""
        analysis, where = analysis_for(self.spec, kind, step)
        wanted = {(t.template_name, t.cluster_scope) for t in analysis.templates}
        templates: dict[TemplateKey, Body | None] = {ref: self.templates.get(ref) for ref in wanted}
        return merge(analysis, where, templates, kind)

    def judge_score(self, kind: str, step: int | None) -> JudgeScore | None:
        analysis, _ = analysis_for(self.spec, kind, step)
        keys = {(t.template_name, t.cluster_scope) for t in analysis.templates}
        return judge_score_of(analysis, {ref: self.templates.get(ref) for ref in keys})


def load(rollout_path: Path, extra: list[Path] | None = None) -> Loaded:
    """The one Rollout of `rollout_path`, with the AnalysisTemplates of all the files."""
    docs: list[tuple[Path, Any]] = [(rollout_path, d) for d in read_yaml(rollout_path)]
    for path in extra or []:
        docs += [(path, d) for d in read_yaml(path)]
    rollouts: list[Body] = []
    templates: dict[TemplateKey, Body] = {}
    seen: dict[TemplateKey, Path] = {}
    for path, doc in docs:
        if not isinstance(doc, dict):
            raise InvalidSpec(f"{path}: a document is a {type(doc).__name__}, not an object")
        kind = doc.get("kind")
        if kind == "Rollout" and path == rollout_path:
            rollouts.append(doc)
        elif kind in ("AnalysisTemplate", "ClusterAnalysisTemplate"):
            key = _template(path, doc)
            if key in seen:
                raise InvalidSpec(f"{path}: {kind} {key[0]} is defined twice (also in {seen[key]})")
            seen[key] = path
            templates[key] = doc
    if len(rollouts) != 1:
        raise InvalidSpec(f"{rollout_path}: expected one Rollout, found {len(rollouts)}")
    rollout = rollouts[0]
    name = (rollout.get("metadata") or {}).get("name") or "rollout"
    where = f"{rollout_path}: Rollout {name}"
    api = rollout.get("apiVersion", f"{GROUP}/{VERSION}")
    if api != f"{GROUP}/{VERSION}":
        raise InvalidSpec(f"{where}: apiVersion: {api!r} is not {GROUP}/{VERSION}")
    unknown = sorted(set(rollout) - ROLLOUT_FIELDS)
    if unknown:
        raise InvalidSpec(f"{where}: {', '.join(unknown)}: unknown field")
    if not isinstance(rollout.get("metadata") or {}, dict):
        raise InvalidSpec(f"{where}: metadata: expected an object")
    raw = rollout.get("spec")
    if not isinstance(raw, dict):
        raise InvalidSpec(f"{where}: spec: expected an object")
    try:
        spec = parse_spec(raw)
    except InvalidSpec as exc:
        raise InvalidSpec(f"{where}: {exc}") from None
    gates = [h.name for h in spec.strategy.canary.webhooks if h.type in GATE_TYPES]
    if gates:  # nothing answers them here; "allowed" would be a guess
        raise InvalidSpec(
            f"{where}: spec.strategy.canary.webhooks: {', '.join(gates)}: the simulator does "
            "not call webhook gates (remove them to simulate the rest)"
        )
    jobs = [i for i, step in enumerate(spec.strategy.canary.steps) if step.job is not None]
    if jobs:
        raise InvalidSpec(
            f"{where}: spec.strategy.canary.steps[{jobs[0]}].job: the simulator runs no Jobs"
        )
    loaded = Loaded(rollout_path, rollout, spec, templates)
    for kind, step, _, _ in loaded.analyses():
        try:
            loaded.merged(kind, step)
        except AnalysisInvalid as exc:
            raise InvalidSpec(f"{where}: {exc}") from None
    return loaded


def _template(path: Path, doc: Body) -> TemplateKey:
    kind = str(doc.get("kind"))
    name = (
        (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
    )
    if not name:
        raise InvalidSpec(f"{path}: {kind}: metadata.name is required")
    try:
        AnalysisTemplate.model_validate(doc)
    except ValidationError as exc:
        problems = [
            f"{_loc(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        ]
        raise InvalidSpec(f"{path}: {kind} {name}: {'; '.join(problems)}") from None
    return str(name), kind == "ClusterAnalysisTemplate"
