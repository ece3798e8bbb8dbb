"""`sluice simulate`: a Rollout through the real engine and analysis on an in-memory cluster.

Exit codes: 0 promoted, 1 aborted, 2 paused or inconclusive, 3 invalid input.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sluice.engine.validate import InvalidSpec
from sluice.sim.load import Loaded, load, read_yaml
from sluice.sim.relabel import Relabel, parse_labels
from sluice.sim.run import (
    EPOCH,
    Frame,
    Result,
    Scenario,
    Taken,
    moved,
    prometheus_factory,
    short,
    simulate,
    unanswered,
)
from sluice.sim.when import parse_time

INVALID = 3
MARK = {"Successful": "[green]✓[/]", "Failed": "[red]✗[/]", "Inconclusive": "[yellow]?[/]"}
MARK_ERROR = "[dark_orange]![/]"


def load_scenario(path: Path | None) -> Scenario:
    if path is None:
        return Scenario()
    docs = read_yaml(path)
    if len(docs) > 1:
        raise InvalidSpec(f"{path}: expected one scenario document, found {len(docs)}")
    try:
        return Scenario.parse(docs[0] if docs else None)
    except InvalidSpec as exc:
        raise InvalidSpec(f"{path}: {exc}") from None


def relabel_of(args: argparse.Namespace) -> Relabel:
    canary = parse_labels(args.canary_labels, "--canary-labels") if args.canary_labels else None
    stable = parse_labels(args.stable_labels, "--stable-labels") if args.stable_labels else None
    return Relabel(canary, stable)


def clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:d}:{secs:02d}"


OPS = {"<=": "≤", ">=": "≥", "<": "<", ">": ">"}


def number(trigger: str, value: float) -> str:
    """A value as people read it: error ratios in %, latencies in ms."""
    if trigger == "errorRate":
        return f"{value * 100:.3g}%"
    if trigger == "latency":
        return f"{value * 1000:.4g} ms" if value < 10 else f"{value:.4g} s"
    return f"{value:.6g}"


def against(m: Taken) -> str:
    """The threshold (`≤ 2%`), or the condition when it is not a simple one."""
    found = re.match(r"^\s*result\s*(<=|>=|<|>)", m.condition)
    if found and m.threshold is not None:
        return f"{OPS[found.group(1)]} {number(m.trigger, m.threshold)}"
    return m.condition


def measurement_line(m: Taken) -> str:
    mark = MARK.get(m.phase, MARK_ERROR)
    step = f" (step {m.step})" if m.kind == "step" else ""
    if m.phase == "Error":
        return f"{mark} {escape(m.metric)}{step}: [dark_orange]{escape(m.message)}[/]"
    value = number(m.trigger, m.value) if m.value is not None else m.shown or "no data"
    base = f" (stable {number(m.trigger, m.baseline)})" if m.baseline is not None else ""
    return f"{mark} {escape(m.metric)}{step} {escape(value)}{base} [dim]({escape(against(m))})[/]"


def _shown(m: Taken, which: str) -> bool:
    return which == "all" or (which == "failed" and m.phase != "Successful")


def what_happened(frame: Frame, which: str, before: Frame | None = None) -> str:
    lines = [
        f"[{'red' if kind == 'Warning' else 'green'}]{reason}[/]: {escape(short(message))}"
        for kind, reason, message in frame.events
    ]
    if not frame.events and before is not None and before.reason != frame.reason:
        # e.g. a pause step now also held by an inconclusive run: no Event, a new reason
        lines.append(f"[yellow]{frame.reason}[/]: {escape(short(frame.message))}")
    lines += [measurement_line(m) for m in frame.measurements if _shown(m, which)]
    return "\n".join(lines)


BLUE_GREEN_STAGES = ("preview", "switch")  # currentStepIndex 0 and 1 of a blue-green


def cells(
    frame: Frame, steps: int, state: bool = True, same: bool = False, blue_green: bool = False
) -> tuple[str, ...]:
    """time, step, weight, pods (stable + canary), phase; the state ones blank if `state`
    is False (a row of measurements only: nothing else changed), the time if `same`.
    A blue-green rollout shows its stage instead of a step."""
    if not state:
        return ("" if same else clock(frame.t), "", "", "", "")
    step = "" if frame.step is None else f"{frame.step}/{steps}"
    if blue_green and frame.step is not None:
        step = BLUE_GREEN_STAGES[min(frame.step, 1)]
    return (
        clock(frame.t),
        step,
        f"{frame.weight}%",
        f"{frame.stable}+{frame.canary}",
        frame.phase,
    )


COLUMNS = ("time", "step", "weight", "pods", "phase", "what happened")
WIDTHS = (7, 7, 6, 7, 11)


def live_row(lead: tuple[str, ...], what: str, bold: bool = False) -> Table:
    """One line of the live timeline, in the columns of the table (long text wraps in its
    column)."""
    grid = Table.grid(padding=(0, 1))
    for width in WIDTHS:
        grid.add_column(width=width, no_wrap=True)
    grid.add_column(overflow="fold")
    style = "bold" if bold else ""
    grid.add_row(*lead, what, style=style)
    return grid


def verdict_line(result: Result) -> str:
    colour = {"promoted": "green", "aborted": "red"}.get(result.verdict, "yellow")
    took = f"after {clock(result.seconds)} ({result.seconds:.0f} s simulated)"
    if result.verdict == "promoted":
        return f"[bold {colour}]promoted[/] {took}"
    if result.verdict == "aborted":
        return (
            f"[bold {colour}]aborted[/] {took}: "
            f"[bold]{escape(result.reason)}[/]: {escape(short(result.message))}"
        )
    message = short(result.message)
    why = f"{result.reason}: {message}" if message else result.reason
    return f"[bold {colour}]{result.verdict}[/] {took}: {escape(why)}"


def run(args: argparse.Namespace) -> int:
    console = Console(highlight=False, soft_wrap=False)
    out = Console(stderr=True, highlight=False) if args.json else console
    try:
        if args.plot and Path(args.plot).suffix.lower() not in (".png", ".svg"):
            raise InvalidSpec(f"--plot {args.plot}: the chart is written as .png or .svg")
        if args.plot and importlib.util.find_spec("matplotlib") is None:
            raise InvalidSpec("--plot needs the [sim] extra: pip install 'sluice[sim]'")
        loaded = load(Path(args.rollout), [Path(p) for p in args.filename or []])
        scenario = load_scenario(Path(args.scenario) if args.scenario else None)
        relabel = relabel_of(args)
        epoch = EPOCH
        provider = None
        if args.prometheus:
            provider = prometheus_factory(args.prometheus)
            default = f"now-{int(scenario.max_seconds)}s"
            epoch = parse_time(args.start or default, "--start")
        elif args.start:
            epoch = parse_time(args.start, "--start")
    except InvalidSpec as exc:
        out.print(f"[red]invalid input:[/red] {escape(str(exc))}", soft_wrap=True)
        return INVALID
    speed = None if args.instant else args.speed
    live = bool(speed) and not args.json

    steps = len(loaded.spec.strategy.canary.steps)
    table = Table(title=f"sluice simulate {escape(args.rollout)}", show_lines=False, pad_edge=False)
    for column in COLUMNS:
        table.add_column(column, no_wrap=column != "what happened", overflow="fold")
    last: Frame | None = None
    if live:
        console.print(live_row(COLUMNS[:-1], COLUMNS[-1], bold=True))

    def show(frame: Frame) -> None:
        nonlocal last
        what = what_happened(frame, args.measurements, last)
        if not what and not frame.events and frame.measurements:
            return  # only measurements, none of them shown
        state = last is None or bool(frame.events) or moved(last, frame)
        same = last is not None and last.t == frame.t
        row = cells(
            frame, steps, state, same, blue_green=loaded.spec.strategy.blue_green is not None
        )
        if live:
            assert speed is not None
            time.sleep(max(0.0, (frame.t - (last.t if last else 0.0)) / speed))
            console.print(live_row(row, what))
        else:
            table.add_row(*row, what)
        last = frame

    if provider is None:
        for warning in unanswered(loaded, scenario):
            out.print(f"[yellow]warning:[/] {escape(warning)}")
    result = simulate(
        loaded, scenario, on_frame=show, provider=provider, epoch=epoch, relabel=relabel
    )
    if args.json:
        json.dump(as_json(result, loaded, epoch), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif result.verdict == "invalid":
        console.print(f"[red]invalid spec:[/red] {escape(result.message)}", soft_wrap=True)
    else:
        if not live:
            console.print(table)
        console.print(verdict_line(result))
    if args.plot and result.verdict != "invalid":
        from sluice.sim.plot import plot

        title = f"{loaded.name}: {result.verdict} after {clock(result.seconds)}"
        plot(result, Path(args.plot), title)
        out.print(f"chart written to {escape(args.plot)}")
    return result.exit_code


def as_json(
    result: Result, loaded: Loaded | None = None, epoch: datetime = EPOCH
) -> dict[str, Any]:
    steps = []
    for f in result.frames:
        for _, reason, message in f.events:
            index = re.match(r"step (\d+)/", message)
            if reason == "StepReached" and index:
                steps.append(
                    {"t": f.t, "step": int(index.group(1)), "weight": f.weight, "what": message}
                )
    return {
        "verdict": result.verdict,
        "exitCode": result.exit_code,
        "seconds": result.seconds,
        "reason": result.reason,
        "message": result.message,
        "rollout": loaded.name if loaded else None,
        "revision": result.revision,
        "previousRevision": result.previous,
        "start": epoch.isoformat(),
        "steps": steps,
        "runs": [vars(r) for r in result.runs],
        "warnings": result.warnings,
        "timeline": [
            {
                "t": f.t,
                "phase": f.phase,
                "step": f.step,
                "weight": f.weight,
                "share": f.share,
                "stable": f.stable,
                "canary": f.canary,
                "events": [{"type": k, "reason": r, "message": m} for k, r, m in f.events],
                "measurements": [_taken(m) for m in f.measurements],
            }
            for f in result.frames
        ],
    }


def _taken(m: Taken) -> dict[str, Any]:
    return {
        "t": m.t,
        "run": m.run,
        "metric": m.metric,
        "phase": m.phase,
        "value": m.value,
        "shown": m.shown,
        "baseline": m.baseline,
        "condition": m.condition,
        "threshold": m.threshold,
        "message": m.message,
        "query": m.query,
        **(
            {"estimate": m.estimate, "lower": m.lower, "upper": m.upper}
            if m.estimate is not None
            else {}
        ),
    }


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "simulate",
        help="run a Rollout through the engine and its analysis without a cluster",
        description="Simulate a Rollout (its template is the new version) with the operator's "
        "own engine and analysis, on an in-memory cluster and a simulated clock. Exit codes: "
        "0 promoted, 1 aborted, 2 paused or inconclusive, 3 invalid input.",
    )
    p.add_argument("rollout", help="YAML file with the Rollout (and any AnalysisTemplates)")
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        metavar="FILE",
        help="more YAML files with AnalysisTemplates / ClusterAnalysisTemplates (repeatable)",
    )
    p.add_argument(
        "--scenario",
        help="YAML: readiness, metric series per version (canary/stable), actions [{at, action}]",
    )
    p.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second")
    p.add_argument("--instant", action="store_true", help="no waiting: print the timeline at once")
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    p.add_argument("--plot", metavar="OUT.png|OUT.svg", help="write a chart of weight and metrics")
    p.add_argument(
        "--measurements",
        choices=("all", "failed", "none"),
        default="all",
        help="which measurements the timeline shows (default all)",
    )
    p.add_argument(
        "--prometheus",
        metavar="URL",
        help="ask this Prometheus instead of the scenario's series (any PromQL)",
    )
    p.add_argument(
        "--start",
        metavar="TIME",
        help="wall-clock time of the template change (with --prometheus; default: maxDuration ago)",
    )
    p.add_argument("--canary-labels", metavar="L=V,...", help="the canary's series' labels")
    p.add_argument("--stable-labels", metavar="L=V,...", help="the stable's series' labels")
    p.set_defaults(func=run)
