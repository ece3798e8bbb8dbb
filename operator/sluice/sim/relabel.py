"""`--canary-labels` / `--stable-labels`: point an analysis at series recorded under other labels.

A past incident's series are labelled as they were then (`sluice_dev_revision="3f9c..."`,
`version="v41"`, `pod=~"shop-7d9.*"`), not with the revisions of a simulation. With
`--canary-labels version=v42,env=prod`:

* a built-in trigger's selector (`errorRate`, `latency`, `circuitBreaker`) becomes these
  matchers;
* in an own query (and a baseline query), every label matcher whose value uses a
  `{{canary.*}}` placeholder is replaced by these matchers; `--stable-labels` does the
  same for `{{stable.*}}`.

Values never enter the query text directly: they become arguments
(`{{args.sluice_canary_0}}`, ...) that the run's own templating fills in, escaped
like every other value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sluice.api.analysis import Arg, Metric
from sluice.engine.validate import InvalidSpec
from sluice.sim.metrics import MATCHER

_TERM = re.compile(
    r"""\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^,]*?)\s*(,|$)"""
)
Matcher = tuple[str, str, str]  # (label, operator, value)


def parse_labels(text: str, flag: str) -> list[Matcher]:
    """`a=b,c=~"d,e.*"` -> matchers (quote values with commas); InvalidSpec naming the flag
    when a term does not parse."""
    out: list[Matcher] = []
    pos = 0
    while pos < len(text) and text[pos:].strip():
        found = _TERM.match(text, pos)
        if found is None or found.end() == pos:
            term = text[pos:].split(",", 1)[0].strip()
            raise InvalidSpec(
                f"{flag}: {term!r} is not a label matcher (write label=value, label!=value, "
                "label=~regex or label!~regex, separated by commas; quote values with commas: "
                'label="a,b")'
            )
        label, op, value, _ = found.groups()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        elif len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        out.append((label, op, value))
        pos = found.end()
    if not out:
        raise InvalidSpec(f"{flag}: no label matchers given")
    return out


@dataclass(frozen=True)
class Relabel:
    canary: list[Matcher] | None = None
    stable: list[Matcher] | None = None

    def __bool__(self) -> bool:
        return bool(self.canary or self.stable)

    def args(self) -> list[Arg]:
        out = []
        for role, matchers in (("canary", self.canary), ("stable", self.stable)):
            for i, (_, _, value) in enumerate(matchers or []):
                out.append(Arg(name=f"sluice_{role}_{i}", value=value))
        return out

    def _selector(self, role: str) -> str | None:
        matchers = self.canary if role == "canary" else self.stable
        if not matchers:
            return None
        return ", ".join(
            f'{label}{op}"{{{{args.sluice_{role}_{i}}}}}"'
            for i, (label, op, _) in enumerate(matchers)
        )

    def text(self, query: str) -> str:
        """`query` with the matchers that use {{canary.*}} / {{stable.*}} replaced."""

        def one(found: re.Match[str]) -> str:
            value = found.group(3)
            for role in ("canary", "stable"):
                if re.search(r"\{\{\s*" + role + r"\.", value):
                    return self._selector(role) or found.group(0)
            return found.group(0)

        return MATCHER.sub(one, query)

    def metric(self, metric: Metric) -> Metric:
        canary = self._selector("canary")
        update: dict[str, object] = {}
        for field in ("error_rate", "latency", "circuit_breaker"):
            trigger = getattr(metric, field)
            if trigger is None:
                continue
            own = trigger.selector
            selector = self.text(own) if own is not None else canary
            if selector is not None:
                update[field] = trigger.model_copy(update={"selector": selector})
        prom = metric.provider.prometheus
        if prom.query is not None:
            query = self.text(prom.query)
            provider = metric.provider.model_copy(
                update={"prometheus": prom.model_copy(update={"query": query})}
            )
            update["provider"] = provider
        if metric.baseline is not None:
            update["baseline"] = metric.baseline.model_copy(
                update={"query": self.text(metric.baseline.query)}
            )
        return metric.model_copy(update=update) if update else metric

    def apply(self, metrics: list[Metric], args: list[Arg]) -> tuple[list[Metric], list[Arg]]:
        if not self:
            return metrics, args
        return [self.metric(m) for m in metrics], [*args, *self.args()]
