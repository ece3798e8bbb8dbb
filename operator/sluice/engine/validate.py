"""Checks the CRD schema cannot express. Each message names the field it is about."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from sluice.api.rollout import ACTION_ANNOTATION, ACTIONS, LabelSelector, RolloutSpec

RESERVED_LABEL_PREFIX = "sluice.dev/"


class InvalidSpec(ValueError):
    """The Rollout cannot be acted on; the message says which field and why."""


def _loc(loc: tuple[int | str, ...]) -> str:
    path = "spec"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


STEP_KINDS = ("set_weight", "pause", "analysis", "set_canary_scale", "set_header_route")


def parse_spec(raw: dict[str, Any]) -> RolloutSpec:
    try:
        spec = RolloutSpec.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{_loc(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise InvalidSpec("; ".join(problems)) from None
    check_spec(spec)
    return spec


def check_spec(spec: RolloutSpec) -> None:
    problems: list[str] = []
    last_weight, last_index = 0, -1
    for index, step in enumerate(spec.strategy.canary.steps):
        where = f"spec.strategy.canary.steps[{index}]"
        kinds = [k for k in STEP_KINDS if getattr(step, k) is not None]
        if len(kinds) != 1:
            problems.append(
                f"{where}: exactly one of setWeight, pause, analysis, setCanaryScale, "
                "setHeaderRoute must be set"
            )
            continue
        if step.set_weight is not None:
            if step.set_weight < last_weight:
                problems.append(
                    f"{where}.setWeight: {step.set_weight} is lower than {last_weight} at "
                    f"steps[{last_index}]; weights may not go down"
                )
            last_weight, last_index = step.set_weight, index

    labels = (spec.template.get("metadata") or {}).get("labels") or {}
    if not isinstance(labels, dict) or not labels:
        problems.append("spec.template.metadata.labels: the pod template needs labels")
        labels = {}
    for key in labels:
        if str(key).startswith(RESERVED_LABEL_PREFIX):
            problems.append(f"spec.template.metadata.labels: {key} is reserved for Sluice")
    if not spec.selector.match_labels and not spec.selector.match_expressions:
        problems.append("spec.selector: empty selector would match every pod")
    elif not selector_matches(spec.selector, labels):
        problems.append(
            "spec.selector: does not match spec.template.metadata.labels "
            f"({selector_string(spec.selector)} vs {_labels_string(labels)})"
        )
    if problems:
        raise InvalidSpec("; ".join(problems))


def check_action(action: str | None) -> None:
    if action is not None and action not in ACTIONS:
        raise InvalidSpec(
            f"metadata.annotations[{ACTION_ANNOTATION}]: unknown action {action!r}; "
            f"use one of {', '.join(ACTIONS)}"
        )


def selector_matches(selector: LabelSelector, labels: dict[str, Any]) -> bool:
    for key, value in (selector.match_labels or {}).items():
        if labels.get(key) != value:
            return False
    for req in selector.match_expressions or []:
        present = req.key in labels
        found = labels.get(req.key)
        values = req.values or []
        ok = {
            "In": present and found in values,
            "NotIn": not present or found not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[req.operator]
        if not ok:
            return False
    return True


def selector_string(selector: LabelSelector) -> str:
    """The selector in kubectl's syntax (for the scale subresource and messages)."""
    parts = [f"{k}={v}" for k, v in sorted((selector.match_labels or {}).items())]
    for req in selector.match_expressions or []:
        if req.operator in ("In", "NotIn"):
            parts.append(f"{req.key} {req.operator.lower()} ({','.join(req.values or [])})")
        else:
            parts.append(req.key if req.operator == "Exists" else f"!{req.key}")
    return ",".join(parts)


def _labels_string(labels: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "no labels"
