"""What `kubectl sluice get rollout` shows: one snapshot of the cluster, rendered with rich."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import RenderableType

    from sluice.cli.kube import Client

Body = dict[str, Any]
BAR = 40  # characters of the weight bar
EVENTS = 8  # the last Events shown
ROUTER_KINDS = {  # trafficRouting field -> kind of the object it names
    ("nginx", "stableIngress"): "Ingress",
    ("nginx", "stableIngresses"): "Ingress",
    ("istio", "virtualService"): "VirtualService",
    ("istio", "virtualServices"): "VirtualService",
    ("istio", "destinationRule"): "DestinationRule",
    ("gatewayAPI", "httpRoute"): "HTTPRoute",
    ("gatewayAPI", "httpRoutes"): "HTTPRoute",
    ("smi", "trafficSplitName"): "TrafficSplit",
}
PHASE_STYLE = {"Healthy": "green", "Degraded": "red", "Paused": "yellow", "Progressing": "cyan"}


@dataclass
class Snapshot:
    rollout: Body
    runs: list[Body] = field(default_factory=list)
    events: list[Body] = field(default_factory=list)


def gather(client: Client, name: str) -> Snapshot:
    return Snapshot(client.rollout(name), client.runs(name), client.events(name))


def describe_step(step: Body) -> str:
    if not step:
        return "?"
    kind, value = next(iter(step.items()))
    if kind == "setWeight":
        return f"setWeight {value}"
    if kind == "pause":
        duration = (value or {}).get("duration")
        return f"pause {duration}" if duration is not None else "pause (until promoted)"
    if kind == "analysis":
        names = [t.get("templateName", "?") for t in (value or {}).get("templates") or []]
        names += [m.get("name", "?") for m in (value or {}).get("metrics") or []]
        return "analysis " + ", ".join(names)
    return f"{kind} {json.dumps(value, separators=(',', ':'))}"


def routers(spec: Body) -> list[str]:
    """`Kind/name` of every object the Rollout's trafficRouting names."""
    routing = (spec.get("strategy") or {}).get("canary", {}).get("trafficRouting") or {}
    found: list[str] = []
    for (section, key), kind in ROUTER_KINDS.items():
        value = (routing.get(section) or {}).get(key)
        for item in value if isinstance(value, list) else [value]:
            name = item.get("name") if isinstance(item, dict) else item
            if name:
                found.append(f"{kind}/{name}")
    return found


def threshold(metric: Body) -> str:
    """The metric's limit as its spec states it."""
    if "judge" in metric:
        judge = metric["judge"] or {}
        kind = next((k for k in ("errors", "counts", "latency") if k in judge), "?")
        return (
            f"judge {kind} vs {judge.get('baseline', 'stable')}: "
            f"{judge.get('direction', 'increase')} beyond {judge.get('tolerance', 0)}, "
            f"alpha {judge.get('alpha', 0.05)}"
        )
    if "errorRate" in metric:
        return f"error rate <= {metric['errorRate'].get('max')}"
    if "latency" in metric:
        lat = metric["latency"]
        return f"p{float(lat.get('quantile', 0.99)) * 100:g} <= {lat.get('maxSeconds')}s"
    if "circuitBreaker" in metric:
        return f"circuit breakers <= {metric['circuitBreaker'].get('max', 0)}"
    parts = []
    if metric.get("successCondition"):
        parts.append(f"success: {metric['successCondition']}")
    if metric.get("failureCondition"):
        parts.append(f"failure: {metric['failureCondition']}")
    return "; ".join(parts) or "-"


def weight_bar(weight: int) -> str:
    filled = round(BAR * max(0, min(weight, 100)) / 100)
    return "█" * filled + "░" * (BAR - filled)


def render(snap: Snapshot) -> RenderableType:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    body = snap.rollout
    meta, spec, st = body["metadata"], body.get("spec") or {}, body.get("status") or {}
    phase = st.get("phase") or "Unknown"
    parts: list[RenderableType] = []
    head = Text()
    head.append(f"Rollout {meta['namespace']}/{meta['name']}  ", style="bold")
    head.append(phase, style=f"bold {PHASE_STYLE.get(phase, 'white')}")
    if st.get("message"):
        head.append(f"  {st['message']}")
    parts.append(head)
    abort = st.get("abort")
    if abort:
        parts.append(Text(f"Aborted: {abort.get('reason')}: {abort.get('message')}", style="red"))

    weight = int(st.get("canaryWeight") or 0)
    bar = Text("Weight   ")
    filled = weight_bar(weight)
    bar.append(filled[: filled.count("█")], style="magenta")
    bar.append(filled[filled.count("█") :], style="dim")
    bar.append(f" canary {weight}% / stable {100 - weight}%")
    parts.append(bar)

    steps = Table(title="Steps", title_justify="left", show_edge=False, box=None)
    steps.add_column(" ")
    steps.add_column("#", justify="right")
    steps.add_column("step")
    current = st.get("currentStepIndex")
    all_steps = (spec.get("strategy") or {}).get("canary", {}).get("steps") or []
    for index, step in enumerate(all_steps):
        if current is None or index > current:
            mark = " "
        elif index == current:
            mark = "▶"
        else:
            mark = "✓"
        style = "bold" if index == current else ("dim" if mark == " " else "")
        steps.add_row(mark, str(index), describe_step(step), style=style)
    parts.append(steps)

    revs = Table(title="Revisions", title_justify="left", show_edge=False, box=None)
    for column in ("role", "slot", "revision", "desired", "ready"):
        revs.add_column(column)
    for role in ("stable", "canary"):
        slot = st.get(role) or {}
        revision = st.get(f"{role}Revision") or slot.get("revision") or ""
        if not revision and not slot:
            continue
        revs.add_row(
            role,
            str(slot.get("slot", st.get("stableSlot", "") if role == "stable" else "")),
            revision,
            str(slot.get("replicas", "")),
            str(slot.get("readyReplicas", "")),
        )
    previous = st.get("previous")
    if previous:
        revs.add_row("previous", previous.get("slot", ""), previous.get("revision", ""), "warm", "")
    parts.append(revs)

    named = routers(spec)
    traffic = ", ".join(named) if named else f"Service/{meta['name']} (share of pods)"
    blue_green = (spec.get("strategy") or {}).get("blueGreen")
    if isinstance(blue_green, dict):
        preview = blue_green.get("previewService")
        traffic = f"blue-green: active Service/{blue_green.get('activeService')}" + (
            f", preview Service/{preview}" if preview else ""
        )
    parts.append(Text(f"Traffic  {traffic}"))

    parts += _analysis(snap.runs)
    parts.append(_events(snap.events))
    return Group(*parts)


def _analysis(runs: list[Body]) -> list[RenderableType]:
    from rich.table import Table
    from rich.text import Text

    if not runs:
        return [Text("Analysis  none", style="dim")]
    runs = sorted(runs, key=lambda r: r["metadata"].get("creationTimestamp") or "")
    out: list[RenderableType] = []
    for run in runs[-2:]:  # the running one and the one before
        rst = run.get("status") or {}
        kind = (run.get("spec") or {}).get("kind", "")
        title = f"Analysis {run['metadata']['name']} ({kind}): {rst.get('phase', 'Pending')}"
        table = Table(title=title, title_justify="left", show_edge=False, box=None)
        for column in ("metric", "phase", "last value", "threshold", "s/f/i/e", "note"):
            table.add_column(column, overflow="fold")
        specs = {m.get("name"): m for m in (run.get("spec") or {}).get("metrics") or []}
        for result in rst.get("metricResults") or []:
            last = (result.get("measurements") or [{}])[-1]
            counts = "/".join(
                str(result.get(k, 0)) for k in ("successful", "failed", "inconclusive", "error")
            )
            style = {"Failed": "red", "Error": "red", "Successful": "green"}.get(
                result.get("phase", ""), ""
            )
            table.add_row(
                result.get("name", ""),
                result.get("phase", ""),
                str(last.get("value", "")),
                threshold(specs.get(result.get("name"), {})),
                counts,
                last.get("message", "") or result.get("message", ""),
                style=style,
            )
        out.append(table)
        if rst.get("message"):
            out.append(Text(f"  {rst['message']}"))
    return out


def _events(events: list[Body]) -> RenderableType:
    from rich.table import Table

    table = Table(title="Events", title_justify="left", show_edge=False, box=None)
    for column in ("time", "type", "reason", "message"):
        table.add_column(column, overflow="fold")
    for event in events[-EVENTS:]:
        stamp = event.get("lastTimestamp") or event.get("eventTime") or ""
        table.add_row(
            stamp[11:19],
            event.get("type", ""),
            event.get("reason", ""),
            event.get("message", ""),
            style="yellow" if event.get("type") == "Warning" else "",
        )
    return table
