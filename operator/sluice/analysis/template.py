"""Query templates: {{args.NAME}} and built-ins, every value escaped for a PromQL string."""

from __future__ import annotations

import re
from collections.abc import Mapping

from sluice.metrics.prometheus import escape_label_value

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")

BUILTINS = (
    "rollout.name",
    "rollout.namespace",
    "canary.revision",
    "stable.revision",
    "canary.slot",
    "stable.slot",
    "canary.service",
    "stable.service",
    "canary.deployment",
    "stable.deployment",
)


class TemplateError(ValueError):
    """A placeholder without a value."""


def placeholders(text: str) -> set[str]:
    return {m.group(1) for m in _PLACEHOLDER.finditer(text)}


def render(text: str, values: Mapping[str, str]) -> str:
    """Substitute every placeholder; a value is escaped wherever it lands."""

    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            known = ", ".join(sorted(values)) or "none"
            raise TemplateError(f"{{{{{key}}}}} has no value (known: {known})")
        return escape_label_value(values[key])

    return _PLACEHOLDER.sub(one, text)


def builtin_values(
    rollout: str,
    namespace: str,
    canary_revision: str,
    stable_revision: str,
    canary_slot: str,
    stable_slot: str,
) -> dict[str, str]:
    return {
        "rollout.name": rollout,
        "rollout.namespace": namespace,
        "canary.revision": canary_revision,
        "stable.revision": stable_revision,
        "canary.slot": canary_slot,
        "stable.slot": stable_slot,
        "canary.service": f"{rollout}-canary",
        "stable.service": f"{rollout}-stable",
        "canary.deployment": f"{rollout}-{canary_slot}",
        "stable.deployment": f"{rollout}-{stable_slot}",
    }
