"""Checks the CRD schema cannot express. Each message names the field it is about."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from sluice.api.rollout import ACTION_ANNOTATION, ACTIONS, LabelSelector, RolloutSpec
from sluice.engine import bluegreen
from sluice.engine.hooks import check_webhooks
from sluice.engine.rollback import check_rollback
from sluice.engine.steps import FIELD_NAMES, kind_of, kinds_of
from sluice.engine.traffic_checks import check_names, check_traffic

RESERVED_LABEL_PREFIX = "sluice.dev/"


class InvalidSpec(ValueError):
    """The Rollout cannot be acted on; the message says which field and why."""


def _loc(loc: tuple[int | str, ...]) -> str:
    path = "spec"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "not supported by Sluice (unknown field)"
    return str(error["msg"])


def parse_spec(raw: dict[str, Any], name: str | None = None) -> RolloutSpec:
    try:
        spec = RolloutSpec.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{_loc(e['loc'])}: {_message(e)}" for e in exc.errors()[:20]]
        raise InvalidSpec("; ".join(problems)) from None
    check_spec(spec, name)
    return spec


def with_name(spec: RolloutSpec, name: str) -> RolloutSpec | None:
    """`spec`, parsed without a name, as parse_spec(raw, name) returns it; None when the
    name is refused (parse_spec(raw, name) then says why). With no other problem, the
    name's are all check_spec would find."""
    return None if check_names(spec, name) else spec


def check_spec(spec: RolloutSpec, name: str | None = None) -> None:
    problems: list[str] = []
    for index, step in enumerate(spec.strategy.canary.steps):
        where = f"spec.strategy.canary.steps[{index}]"
        if len(kinds_of(step)) != 1:
            names = ", ".join(FIELD_NAMES.values())
            problems.append(f"{where}: exactly one of {names} must be set")
            continue
        problems += kind_of(step).check(spec, index, where)
    problems += check_traffic(spec)
    problems += bluegreen.check(spec, name)
    problems += check_webhooks(spec)
    problems += check_rollback(spec)
    if name is not None:
        problems += check_names(spec, name)

    if spec.template is None:  # workloadRef: the Deployment's template is checked once read
        if problems:
            raise InvalidSpec("; ".join(problems[:20]))
        return
    problems += check_template_shape(spec.template)
    metadata = spec.template.get("metadata")
    labels = (metadata.get("labels") if isinstance(metadata, dict) else None) or {}
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


_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
TEMPLATE_LIMIT = 256 * 1024  # the API server refuses annotations past this, etcd a bit later


def _label_problem(key: object, value: object) -> str | None:
    if not isinstance(key, str) or not isinstance(value, str):
        return "keys and values must be strings"
    prefix, _, name = key.rpartition("/")
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return f"key {key[:80]!r}: at most 63 characters [A-Za-z0-9-_.], alphanumeric at the ends"
    if prefix and not _PREFIX.match(prefix):
        return f"key {key[:80]!r}: the prefix must be a DNS subdomain"
    if len(value) > 63 or not _LABEL_NAME.match(value):
        return f"{key}: value of {len(value)} characters; at most 63 [A-Za-z0-9-_.]"
    return None


def check_template_shape(template: dict[str, Any]) -> list[str]:
    """What would make every Deployment write fail: refused here, named, before anything
    is touched. The API server checks the rest (reported as InvalidSpec too)."""
    problems: list[str] = []
    metadata = template.get("metadata", {})
    if not isinstance(metadata, dict):
        return ["spec.template.metadata: must be an object"]
    for field in ("labels", "annotations"):
        values = metadata.get(field) or {}
        if not isinstance(values, dict):
            problems.append(f"spec.template.metadata.{field}: must be a map of strings")
        elif field == "labels":
            for key, value in values.items():
                problem = _label_problem(key, value)
                if problem:
                    problems.append(f"spec.template.metadata.labels: {problem}")
    for i, container in enumerate((template.get("spec") or {}).get("containers") or []):
        where = f"spec.template.spec.containers[{i}]"
        if not isinstance(container, dict):
            problems.append(f"{where}: must be an object")
            continue
        for field in ("name", "image"):
            if not isinstance(container.get(field), str) or not container.get(field):
                problems.append(f"{where}.{field}: required (a string)")
        for j, port in enumerate(container.get("ports") or []):
            number = port.get("containerPort") if isinstance(port, dict) else None
            if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 65536:
                problems.append(f"{where}.ports[{j}].containerPort: an integer in 1-65535")
    size = len(json.dumps(template, default=str))
    if size > TEMPLATE_LIMIT:
        problems.append(f"spec.template: {size} bytes; at most {TEMPLATE_LIMIT}")
    return problems


def check_action(action: str | None) -> None:
    if action is not None and action not in ACTIONS:
        raise InvalidSpec(
            f"metadata.annotations[{ACTION_ANNOTATION}]: unknown action {action[:64]!r}; "
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
