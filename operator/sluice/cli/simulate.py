"""`sluice simulate`: a Rollout through the real engine on an in-memory cluster."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from sluice.engine.validate import InvalidSpec
from sluice.sim.run import Frame, Result, Scenario, simulate


def _load_rollout(path: Path) -> dict[str, Any]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidSpec(f"{path}: {exc}") from None
    rollouts = [d for d in docs if isinstance(d, dict) and d.get("kind") == "Rollout"]
    if len(rollouts) != 1:
        raise InvalidSpec(f"{path}: expected one Rollout, found {len(rollouts)}")
    return rollouts[0]


def _load_scenario(path: Path | None) -> Scenario:
    if path is None:
        return Scenario()
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidSpec(f"{path}: {exc}") from None
    try:
        return Scenario.parse(data)
    except InvalidSpec as exc:
        raise InvalidSpec(f"{path}: {exc}") from None


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:d}:{secs:02d}"


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=False, highlight=False)
    try:
        rollout = _load_rollout(Path(args.rollout))
        scenario = _load_scenario(Path(args.scenario) if args.scenario else None)
    except InvalidSpec as exc:
        console.print(f"[red]invalid input:[/red] {exc}")
        return 3
    speed = None if args.instant else args.speed

    table = Table(title=f"sluice simulate {args.rollout}", show_lines=False)
    for column in ("time", "phase", "step", "weight", "stable", "canary", "what happened"):
        table.add_column(column, no_wrap=column != "what happened")
    last_t = 0.0

    def show(frame: Frame) -> None:
        nonlocal last_t
        if speed:
            time.sleep(max(0.0, (frame.t - last_t) / speed))
        last_t = frame.t
        what = "; ".join(
            f"[{'red' if kind == 'Warning' else 'green'}]{reason}[/]: {message}"
            for kind, reason, message in frame.events
        )
        row = (
            _clock(frame.t),
            frame.phase,
            "" if frame.step is None else str(frame.step),
            f"{frame.weight}%",
            str(frame.stable),
            str(frame.canary),
            what,
        )
        if speed and not args.json:
            console.print("  ".join(row))
        table.add_row(*row)

    result = simulate(rollout, scenario, on_frame=show)
    if args.json:
        json.dump(_as_json(result), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return result.exit_code
    if result.verdict == "invalid":
        console.print(f"[red]invalid spec:[/red] {result.reason}")
        return 3
    if not speed:
        console.print(table)
    colour = {"promoted": "green", "aborted": "red", "paused": "yellow"}[result.verdict]
    detail = f" ({result.reason})" if result.reason else ""
    console.print(
        f"[bold {colour}]{result.verdict}[/] after {_clock(result.seconds)} "
        f"({result.seconds:.0f} s simulated){detail}"
    )
    return result.exit_code


def _as_json(result: Result) -> dict[str, Any]:
    return {
        "verdict": result.verdict,
        "seconds": result.seconds,
        "reason": result.reason,
        "timeline": [
            {
                "t": f.t,
                "phase": f.phase,
                "step": f.step,
                "weight": f.weight,
                "stable": f.stable,
                "canary": f.canary,
                "events": [{"type": k, "reason": r, "message": m} for k, r, m in f.events],
            }
            for f in result.frames
        ],
    }


def add_parser(sub: Any) -> None:
    p = sub.add_parser("simulate", help="run a Rollout through the engine without a cluster")
    p.add_argument("rollout", help="YAML file with the Rollout (its template is the new version)")
    p.add_argument("--scenario", help="YAML: readyAfter, canaryReady, actions [{at, action}]")
    p.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second")
    p.add_argument("--instant", action="store_true", help="no waiting: print the timeline at once")
    p.add_argument("--json", action="store_true", help="machine-readable result")
    p.set_defaults(func=run)
