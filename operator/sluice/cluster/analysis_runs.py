"""AnalysisRun manifests: templates and inline metrics merged, arguments checked, once.

Everything that can be wrong with an analysis (a missing template, an argument
without a value, a placeholder nobody fills, a condition that does not parse, a
step analysis that would never end) is found here, before the run exists, and
reported as InvalidSpec by the engine.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from sluice.analysis.expr import ExprError, compile_condition
from sluice.analysis.template import BUILTINS, bare_number_or_duration, placeholders, unquoted
from sluice.analysis.triggers import question
from sluice.api.analysis import (
    AnalysisRunSpec,
    AnalysisTemplateSpec,
    Arg,
    Metric,
    RolloutAnalysis,
)
from sluice.api.duration import parse_duration
from sluice.api.judge import JudgeScore
from sluice.api.rollout import GROUP, VERSION, RolloutSpec
from sluice.cluster import labels as L
from sluice.cluster.children import owner_reference

Body = dict[str, Any]


class AnalysisInvalid(ValueError):
    """The analysis cannot run; the message names the field."""


def analysis_for(spec: RolloutSpec, kind: str, step: int | None) -> tuple[RolloutAnalysis, str]:
    canary, bg = spec.strategy.canary, spec.strategy.blue_green
    if bg is not None and kind in ("prePromotion", "postPromotion"):
        found = bg.pre_promotion_analysis if kind == "prePromotion" else bg.post_promotion_analysis
        where = f"spec.strategy.blueGreen.{kind}Analysis"
    elif kind == "step" and step is not None:
        found = canary.steps[step].analysis
        where = f"spec.strategy.canary.steps[{step}].analysis"
    elif kind == "background":
        found, where = canary.analysis, "spec.strategy.canary.analysis"
    else:
        found, where = canary.post_promotion_analysis, "spec.strategy.canary.postPromotionAnalysis"
    if found is None:
        raise AnalysisInvalid(f"{where}: not set")
    return found, where


def merge(
    analysis: RolloutAnalysis,
    where: str,
    templates: dict[tuple[str, bool], Body | None],
    kind: str,
) -> tuple[list[Metric], list[Arg], int]:
    """Metrics, arguments (template defaults overridden by the Rollout's) and retention."""
    metrics: list[Metric] = []
    args: dict[str, Arg] = {}
    retention = 10
    for i, ref in enumerate(analysis.templates):
        body = templates.get((ref.template_name, ref.cluster_scope))
        what = "ClusterAnalysisTemplate" if ref.cluster_scope else "AnalysisTemplate"
        if body is None:
            raise AnalysisInvalid(f"{where}.templates[{i}]: {what} {ref.template_name!r} not found")
        try:
            tspec = AnalysisTemplateSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
            raise AnalysisInvalid(
                f"{what} {ref.template_name}: spec.{field}: {first['msg']}"
            ) from None
        metrics += tspec.metrics
        for arg in tspec.args:
            args.setdefault(arg.name, arg)
        retention = max(retention, tspec.measurement_retention)
    metrics += analysis.metrics
    for arg in analysis.args:
        args[arg.name] = arg
    names = [m.name for m in metrics]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise AnalysisInvalid(f"{where}: metric names repeat: {', '.join(duplicates)}")
    if not metrics:
        raise AnalysisInvalid(f"{where}: no metrics (give templates or metrics)")
    check(metrics, args, where, kind)
    judge_score_of(analysis, templates)
    return metrics, list(args.values()), retention


def _outside_strings(m: Metric, field: str, text: str, args: dict[str, Arg], where: str) -> None:
    """Only a literal number or duration, or a fieldRef (checked when sent), may stand
    outside a quoted string; a built-in or a Secret never does."""
    for name, quote in unquoted(text):
        arg = args.get(name.removeprefix("args.")) if name.startswith("args.") else None
        ok = (
            quote is None
            and arg is not None
            and (
                bare_number_or_duration(arg.value)
                if arg.value is not None
                else arg.value_from is not None and arg.value_from.field_ref is not None
            )
        )
        if not ok:
            where_it = "inside a raw `...` string" if quote else "outside a quoted string"
            raise AnalysisInvalid(
                f"{where}: metric {m.name}: {field}: {{{{{name}}}}} stands {where_it}; "
                'put it in a "..." label value, or use an argument whose value is a '
                "number or a duration (e.g. 5m)"
            )


def _check_judge(m: Metric, known: set[str], args: dict[str, Arg], where: str) -> None:
    assert m.judge is not None
    try:
        from sluice.analysis import sequential
    except ImportError:
        raise AnalysisInvalid(
            f"{where}: metric {m.name}: a judge metric needs numpy, which this operator "
            "lacks (install sluice[judge])"
        ) from None
    q = sequential.queries(m.judge, parse_duration(m.interval or 0))
    texts = [*(q.counts or ()), *q.canary_buckets, *q.baseline_buckets]
    for text in dict.fromkeys(texts):
        missing = sorted(placeholders(text) - known)
        if missing:
            raise AnalysisInvalid(f"{where}: metric {m.name}: no value for {', '.join(missing)}")
        _outside_strings(m, "judge", text, args, where)


def judge_score_of(
    analysis: RolloutAnalysis, templates: dict[tuple[str, bool], Body | None]
) -> JudgeScore | None:
    """The templates' judgeScore (merge() has checked them); two different ones are refused."""
    found: JudgeScore | None = None
    for ref in analysis.templates:
        body = templates.get((ref.template_name, ref.cluster_scope)) or {}
        card = AnalysisTemplateSpec.model_validate(body.get("spec") or {}).judge_score
        if card is not None and found is not None and card != found:
            raise AnalysisInvalid(
                f"AnalysisTemplate {ref.template_name}: spec.judgeScore differs from another "
                "template's in the same analysis"
            )
        found = found or card
    return found


def check(metrics: list[Metric], args: dict[str, Arg], where: str, kind: str) -> None:
    known = set(BUILTINS) | {f"args.{n}" for n, a in args.items() if a.value or a.value_from}
    for m in metrics:
        if m.judge is not None:
            if kind == "postPromotion" and m.judge.baseline == "baseline":
                raise AnalysisInvalid(
                    f"{where}: metric {m.name}: judge.baseline: baseline in a post-promotion "
                    "analysis: the baseline Deployment goes with the canary at promotion"
                )
            _check_judge(m, known, args, where)
            continue  # ends on its own verdict: a step analysis needs no count
        q = question(m)
        fields = (("query", q.query), ("baseline.query", q.baseline))
        for field, text in fields:
            if not text:
                continue
            missing = sorted(placeholders(text) - known)
            if missing:
                raise AnalysisInvalid(
                    f"{where}: metric {m.name}: no value for {', '.join(missing)}"
                )
            _outside_strings(m, field, text, args, where)
        for cond in filter(None, (q.success, q.failure)):
            try:
                compile_condition(cond)
            except ExprError as exc:
                raise AnalysisInvalid(f"{where}: metric {m.name}: {exc}") from None
        if kind in ("step", "prePromotion") and m.measurements_wanted() is None:
            raise AnalysisInvalid(
                f"{where}: metric {m.name}: a {kind} analysis with an interval needs a count"
            )


def manifest(
    rollout: Body,
    name: str,
    kind: str,
    revision: str,
    step: int | None,
    metrics: list[Metric],
    args: list[Arg],
    retention: int,
    judge_score: JudgeScore | None = None,
) -> Body:
    spec = AnalysisRunSpec(
        judge_score=judge_score,
        metrics=metrics,
        args=args,
        measurement_retention=retention,
        kind=kind,
        step=step,
        revision=revision,
    )
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AnalysisRun",
        "metadata": {
            "name": name,
            "namespace": rollout["metadata"]["namespace"],
            "labels": {
                L.ROLLOUT: rollout["metadata"]["name"],
                L.REVISION: revision,
                **L.shard_of(rollout),
            },
            "ownerReferences": [owner_reference(rollout)],
        },
        "spec": spec.model_dump(by_alias=True, exclude_none=True),
    }
