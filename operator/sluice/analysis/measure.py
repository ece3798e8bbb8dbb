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

from sluice.analysis import runstate
from sluice.analysis.judge import judge, shown
from sluice.analysis.template import TemplateError, builtin_values, render
from sluice.analysis.triggers import question
from sluice.api.analysis import AnalysisRunSpec, AnalysisRunStatus, Arg, Measurement, Metric
from sluice.api.duration import parse_duration
from sluice.engine.timefmt import fmt
from sluice.metrics.base import MetricProvider, ProviderError

Body = dict[str, Any]
Clock = Callable[[], datetime]
SecretValue = Callable[[str, str, str], Awaitable[str]]  # (namespace, name, key) -> value
MEASURE_ERRORS: tuple[type[Exception], ...] = (ProviderError, TemplateError, KeyError, OSError)


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


async def run_values(spec: AnalysisRunSpec, rollout: Body, secret: SecretValue) -> dict[str, str]:
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
    values = builtin_values(
        rollout["metadata"]["name"],
        rollout["metadata"]["namespace"],
        spec.revision,
        stable_revision,
        canary_slot,
        stable_slot,
    )
    for arg in spec.args:
        values[f"args.{arg.name}"] = await arg_value(arg, rollout, secret)
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
    started = clock()
    q = question(metric)
    query = q.query
    try:
        filled = await values()
        query = render(q.query, filled)
        baseline_query = render(q.baseline, filled) if q.baseline else None
        source = await provider()
        prom = metric.provider.prometheus
        window: str | None = None
        if prom.range is not None:
            start = started - timedelta(seconds=parse_duration(prom.range.window))
            step = parse_duration(prom.range.step)
            window = f"{fmt(start)}..{fmt(started)} step {prom.range.step}"
            result = await source.query_range(query, start, started, step)
            base = (
                await source.query_range(baseline_query, start, started, step)
                if baseline_query
                else None
            )
        else:
            window = f"at {fmt(started)}"
            result = await source.query(query, started)
            base = await source.query(baseline_query, started) if baseline_query else None
    except (*MEASURE_ERRORS, *errors) as exc:
        return Measurement(
            phase="Error",
            query=query,
            started_at=fmt(started),
            finished_at=fmt(clock()),
            message=f"error: {reason(exc)}",
        )
    phase, message = judge(q, result.values, base.values if base else None, metric.empty_result)
    return Measurement(
        phase=phase,
        value=shown(result.values) if result.values else "",
        baseline=shown(base.values) if base and base.values else None,
        query=query,
        window=window,
        started_at=fmt(started),
        finished_at=fmt(clock()),
        message=f"{message}; query `{query}` {window}",
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
            taken.append((metric, measurement))
    return status, taken
