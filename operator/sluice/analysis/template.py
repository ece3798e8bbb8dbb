"""Query templates: {{args.NAME}} and built-ins, every value escaped for where it lands.

A placeholder inside a double- or single-quoted PromQL string is escaped for that
string, so whatever the value holds it stays one string literal. Outside a string
(a range `[{{args.window}}]`, a factor `* {{args.scale}}`) no escaping can make text
safe, so only a number or a duration may stand there; anything else, and any
placeholder inside a raw (backtick) string, is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from sluice.metrics.prometheus import escape_label_value

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")
# What PromQL reads as one number or one duration token: nothing else can follow.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DURATION = re.compile(r"(?:\d+(?:ms|s|m|h|d|w|y))+")

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
    "baseline.deployment",
)


class TemplateError(ValueError):
    """A placeholder without a value, or with a value that cannot stand where it is."""


def placeholders(text: str) -> set[str]:
    return {m.group(1) for m in _PLACEHOLDER.finditer(text)}


def _in_context(text: str) -> Iterator[tuple[re.Match[str], str | None]]:
    """Each placeholder with the quote it stands in (`"`, `'`, a backtick) or None."""
    spans = {m.start(): m for m in _PLACEHOLDER.finditer(text)}
    quote: str | None = None
    comment = False
    i = 0
    while i < len(text):
        found = spans.get(i)
        if found is not None:
            yield found, None if comment else quote
            i = found.end()
            continue
        c = text[i]
        if comment:
            comment = c != "\n"
        elif quote is None:
            if c in "\"'`":
                quote = c
            comment = c == "#"
        elif c == "\\" and quote != "`":
            i += 1  # the escaped character cannot end the string
        elif c == quote:
            quote = None
        i += 1


def bare_number_or_duration(value: str) -> bool:
    return bool(_NUMBER.fullmatch(value) or _DURATION.fullmatch(value))


def unquoted(text: str) -> list[tuple[str, str | None]]:
    """Placeholders outside a quoted string: (name, "`" inside a raw string, else None)."""
    return [(m.group(1), q) for m, q in _in_context(text) if q is None or q == "`"]


def _escaped(value: str, quote: str) -> str:
    if quote == "'":
        return (
            value.replace("\\", "\\\\")
            .replace("'", "\\'")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return escape_label_value(value)


def render(text: str, values: Mapping[str, str], shown: Mapping[str, str] | None = None) -> str:
    """Substitute every placeholder, escaped for the string it is in (see the module).

    `shown` replaces some values by what may be recorded instead (a Secret's mask): the
    checks apply to the real value, the text gets the shown one.
    """
    out: list[str] = []
    last = 0
    for match, quote in _in_context(text):
        key = match.group(1)
        if key not in values:
            known = ", ".join(sorted(values)) or "none"
            raise TemplateError(f"{{{{{key}}}}} has no value (known: {known})")
        value = values[key]
        if quote == "`":
            raise TemplateError(
                f"{{{{{key}}}}} is inside a raw `...` string, where nothing can be escaped: "
                'use a "..." string'
            )
        if quote is None and not bare_number_or_duration(value):
            raise TemplateError(
                f"{{{{{key}}}}} stands outside a quoted string, where only a number or a "
                f"duration (e.g. 5m) may go; its value is not one (length {len(value)})"
            )
        if shown is not None and key in shown:
            value = shown[key]
        if quote is not None:
            value = _escaped(value, quote)
        out += [text[last : match.start()], value]
        last = match.end()
    out.append(text[last:])
    return "".join(out)


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
        "baseline.deployment": f"{rollout}-baseline",  # a judge's baseline Deployment
    }
