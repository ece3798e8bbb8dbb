"""One measurement, and one pass over an AnalysisRun: the executor's logic without Kubernetes.

The operator's executor (`sluice.controller.analysis`), `sluice simulate` and
`sluice replay` all measure through these functions; only where the placeholders'
values, the provider and the clock come from differs.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, quote_plus

from sluice.analysis import bounds, runstate
from sluice.analysis.judge import judge, shown
from sluice.analysis.judge_metric import measure_judge
from sluice.analysis.template import TemplateError, builtin_values, render
from sluice.analysis.triggers import question
from sluice.api.analysis import AnalysisRunSpec, AnalysisRunStatus, Arg, Measurement, Metric
from sluice.api.duration import parse_duration
from sluice.engine.timefmt import fmt
from sluice.metrics.base import MetricProvider, ProviderError
from sluice.metrics.prometheus import escape_label_value

Body = dict[str, Any]
Clock = Callable[[], datetime]
SecretValue = Callable[[str, str, str], Awaitable[str]]  # (namespace, name, key) -> value


class ArgError(ValueError):
    """An argument's value cannot be had (a Secret that is not text, a missing key)."""


# What a measurement may run into that the metric's spec or the world, not a bug, caused:
# each is an Error measurement that counts against consecutiveErrorLimit, so a verdict is
# reached (OverflowError: a time window no datetime can hold).
MEASURE_ERRORS: tuple[type[Exception], ...] = (
    ProviderError,
    TemplateError,
    ArgError,
    KeyError,
    OSError,
    OverflowError,
)


class Values(dict[str, str]):
    """Placeholder values; `masks` names the Secret-sourced ones and what to record instead."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        super().__init__(values or {})
        self.masks: dict[str, str] = {}


def masks_of(values: Mapping[str, str]) -> dict[str, str]:
    return values.masks if isinstance(values, Values) else {}


def scrub(text: str, values: Mapping[str, str]) -> str:
    """`text` with every Secret value in it (raw or escaped) replaced by its mask."""
    for key, mask in masks_of(values).items():
        secret = values[key]
        if not secret:
            continue
        # The escaped forms first (they contain the raw one), each also URL-encoded as
        # an HTTP client's error quotes the URL it asked for.
        for form in (escape_label_value(secret), _single_quoted(secret), secret):
            for shown_as in (quote_plus(form), quote(form, safe=""), form):
                text = text.replace(shown_as, mask)
    return text


def _single_quoted(value: str) -> str:
    return render("'{{v}}'", {"v": value})[1:-1]


def field_value(rollout: Body, path: str) -> str:
    """A Rollout field by a dotted path; `metadata.labels['a.b/c']` style keys too."""
    node: Any = rollout
    # finditer, not findall: with a group in the pattern findall gives the group, which is
    # "" for every plain segment (`spec.replicas` was never found).
    for part in re.finditer(r"[^.\[\]']+|\['([^']*)'\]", path):
        key = part.group(1) if part.group(1) is not None else part.group(0)
        node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            raise KeyError(f"fieldRef {path}: not found in the Rollout")
    return str(node)


async def run_values(spec: AnalysisRunSpec, rollout: Body, secret: SecretValue) -> Values:
    """The placeholders' values for a run of `rollout` (its body: metadata and status)."""
    st = rollout.get("status") or {}
    stable_slot = st.get("stableSlot") or "a"
    stable_revision = st.get("stableRevision", "")
    canary_slot = (st.get("canary") or {}).get("slot") or ("b" if stable_slot == "a" else "a")
    previous = st.get("previous") or {}
    if spec.revision == stable_revision and previous:
        # After promotion the analysed version is the new stable; the one it is compared
        # with ("stable" in queries) is the previous version, still warm.
        canary_slot = stable_slot
        stable_slot, stable_revision = previous.get("slot", stable_slot), previous["revision"]
    values = Values(
        builtin_values(
            rollout["metadata"]["name"],
            rollout["metadata"]["namespace"],
            spec.revision,
            stable_revision,
            canary_slot,
            stable_slot,
        )
    )
    for arg in spec.args:
        values[f"args.{arg.name}"] = await arg_value(arg, rollout, secret)
        source = arg.value_from
        if source is not None and source.secret_key_ref is not None:
            ref = source.secret_key_ref
            values.masks[f"args.{arg.name}"] = f"<secret:{ref.name}/{ref.key}>"
    return values


async def arg_value(arg: Arg, rollout: Body, secret: SecretValue) -> str:
    if arg.value is not None:
        return arg.value
    source = arg.value_from
    if source is not None and source.secret_key_ref is not None:
        ref = source.secret_key_ref
        return await secret(rollout["metadata"]["namespace"], ref.name, ref.key)
    if source is not None and source.field_ref is not None:
        return field_value(rollout, source.field_ref.field_path)
    raise KeyError(f"argument {arg.name} has no value")


async def measure(
    metric: Metric,
    values: Callable[[], Awaitable[Mapping[str, str]]],
    provider: Callable[[], Awaitable[MetricProvider]],
    clock: Clock,
    errors: tuple[type[Exception], ...] = (),
    reason: Callable[[Exception], object] = lambda exc: exc,
) -> Measurement:
    """Ask `metric`'s question now and judge the answer; a failure to ask is an Error.

    `errors` are further exceptions that count as provider errors (the operator's
    Kubernetes API errors, when a Secret cannot be read); `reason` words them.
    """
    if metric.judge is not None:
        return await measure_judge(
            metric, values, provider, clock, (*MEASURE_ERRORS, *errors), reason, scrub, masks_of
        )
    started = clock()
    q = question(metric)
    query = q.query
    filled: Mapping[str, str] = {}
    try:
        filled = await values()
        shown_as = masks_of(filled)
        sent, query = render(q.query, filled), render(q.query, filled, shown_as)
        baseline_query = render(q.baseline, filled) if q.baseline else None
        source = await provider()
        prom = metric.provider.prometheus
        window: str | None = None
        if prom.range is not None:
            start = started - timedelta(seconds=parse_duration(prom.range.window))
            step = parse_duration(prom.range.step)
            window = f"{fmt(start)}..{fmt(started)} step {prom.range.step}"
            result = await source.query_range(sent, start, started, step)
            base = (
                await source.query_range(baseline_query, start, started, step)
                if baseline_query
                else None
            )
        else:
            window = f"at {fmt(started)}"
            result = await source.query(sent, started)
            if result.at is not None:  # the time evaluated (shared queries: rounded down)
                window = f"at {fmt(result.at)}"
            base = await source.query(baseline_query, started) if baseline_query else None
    except (*MEASURE_ERRORS, *errors) as exc:
        return Measurement(
            phase="Error",
            query=bounds.clip(query, bounds.QUERY),
            started_at=fmt(started),
            finished_at=fmt(clock()),
            message=bounds.clip(scrub(f"error: {reason(exc)}", filled), bounds.MESSAGE),
        )
    phase, message = judge(q, result.values, base.values if base else None, metric.empty_result)
    recorded = bounds.clip(query, bounds.QUERY)
    return Measurement(
        phase=phase,
        value=bounds.clip(shown(result.values), bounds.VALUE) if result.values else "",
        baseline=bounds.clip(shown(base.values), bounds.VALUE) if base and base.values else None,
        query=recorded,
        window=window,
        started_at=fmt(started),
        finished_at=fmt(clock()),
        message=bounds.clip(
            scrub(f"{message}; query `{recorded}` {window}", filled), bounds.MESSAGE
        ),
    )


async def advance(
    spec: AnalysisRunSpec,
    status: AnalysisRunStatus,
    clock: Clock,
    take: Callable[[Metric], Awaitable[Measurement]] | None,
) -> tuple[AnalysisRunStatus, list[tuple[Metric, Measurement]]]:
    """One pass of the executor over a run: start it, end it when terminated, take the
    measurements that are due (together) and record them. `take` None: measure nothing."""
    now = clock()
    if status.started_at is None:
        status = runstate.start(spec, now)
    if spec.terminate and status.phase not in runstate.TERMINAL:
        status = runstate.verdict(spec, status, now)
    due, _ = runstate.due(spec, status, now)
    taken: list[tuple[Metric, Measurement]] = []
    if due and take is not None:
        measured = await asyncio.gather(*(take(m) for m in due))
        now = clock()
        for metric, measurement in zip(due, measured, strict=True):
            status = runstate.record(spec, status, metric, measurement, now)
            taken.append((metric, runstate.last_measurement(status, metric, measurement)))
    return status, taken
