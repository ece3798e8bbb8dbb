"""`sluice replay`: a Rollout's analysis against what Prometheus recorded, interval by interval.

Exit codes: 0 it would not have aborted, 1 it would have aborted, 2 it would only have
paused (inconclusive, or provider errors with onProviderError: pause), 3 invalid input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from sluice.api.analysis import Metric
from sluice.api.duration import parse_duration
from sluice.cli.simulate import INVALID, clock, measurement_line, relabel_of
from sluice.engine.timefmt import fmt_seconds
from sluice.engine.validate import InvalidSpec
from sluice.metrics.base import MetricProvider, ProviderError
from sluice.metrics.prometheus import PrometheusProvider
from sluice.sim.load import load
from sluice.sim.replay import Replay, ReplayResult, Verdict
from sluice.sim.run import Taken, short
from sluice.sim.when import parse_time

KINDS = ("background", "postPromotion")


def _only(values: list[str] | None) -> set[str] | None:
    if not values:
        return None
    out: set[str] = set()
    for value in values:
        text = value.strip()
        if text == "all":
            return None
        if text in KINDS or text.startswith("spec.") or re.fullmatch(r"step:\d+", text):
            out.add(text)
        elif text.isdigit():
            out.add(f"step:{text}")
        else:
            raise InvalidSpec(f"--analysis {value}: use background, postPromotion, step:N or all")
    return out


def run(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    out = Console(stderr=True, highlight=False) if args.json else console
    try:
        loaded = load(Path(args.rollout), [Path(p) for p in args.filename or []])
        now = datetime.now(UTC)
        start = parse_time(args.start, "--from", now)
        end = parse_time(args.end, "--to", now)
        if end <= start:
            raise InvalidSpec(f"--to {args.end}: must be after --from {args.start}")
        relabel = relabel_of(args)
        only = _only(args.analysis)
        if not loaded.analyses():
            raise InvalidSpec(f"{args.rollout}: the Rollout runs no analysis")
        providers: dict[float, PrometheusProvider] = {}

        def provider(metric: Metric) -> MetricProvider:
            timeout = parse_duration(metric.provider.prometheus.timeout)
            if timeout not in providers:
                providers[timeout] = PrometheusProvider(args.prometheus, timeout=timeout)
            return providers[timeout]

        try:
            probe = PrometheusProvider(args.prometheus, timeout=10)
        except ProviderError as exc:
            raise InvalidSpec(f"--prometheus: {exc}") from None
    except InvalidSpec as exc:
        out.print(f"[red]invalid input:[/red] {escape(str(exc))}", soft_wrap=True)
        return INVALID

    several = only is None or len(only) > 1

    def show(at: datetime, where: str, m: Taken) -> None:
        if args.json or args.quiet:
            return
        analysis = f"  [dim]{escape(where)}[/]" if several and len(loaded.analyses()) > 1 else ""
        console.print(f"{fmt_seconds(at)}  +{clock(m.t):>7}  {measurement_line(m)}{analysis}")

    async def go() -> ReplayResult | str:
        try:
            await probe.query("vector(1)", start)
        except ProviderError as exc:
            return str(exc)
        finally:
            probe.close()
        replay = Replay(
            loaded,
            provider,
            start,
            end,
            relabel=relabel,
            only=only,
            stable_revision=args.stable_revision or "",
            on_measure=show,
        )
        if not replay.runs:
            return f"--analysis: the Rollout has no such analysis ({', '.join(sorted(only or []))})"
        if not args.json:
            console.print(
                f"[bold]sluice replay {escape(args.rollout)}[/]: "
                f"{', '.join(replay.result.analyses)} from {fmt_seconds(start)} to "
                f"{fmt_seconds(end)} against {escape(args.prometheus)}"
            )
        try:
            return await replay.run()
        finally:
            for made in providers.values():
                made.close()

    result = asyncio.run(go())
    if isinstance(result, str):
        out.print(f"[red]invalid input:[/red] {escape(result)}", soft_wrap=True)
        return INVALID
    if args.json:
        json.dump(as_json(result), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return result.exit_code
    pauses = [v for v in result.verdicts if v.verdict == "pause"]
    for verdict in pauses:
        console.print(
            f"[yellow]would have paused[/] {_when(verdict)}: {escape(short(verdict.message))}"
        )
    abort = result.abort
    if abort is not None:
        console.print(
            f"[bold red]would have aborted[/] {_when(abort)} "
            f"({escape(abort.analysis)}): [bold]{escape(abort.reason)}[/]: "
            f"{escape(short(abort.message))}"
        )
        failed = [m for _, _, m in result.measurements if m.phase != "Successful"]
        if failed:
            console.print(f"[dim]last query: {escape(failed[-1].query)}[/]", soft_wrap=True)
    else:
        paused = f" (it would have paused {len(pauses)} times)" if pauses else ""
        console.print(
            f"[bold green]would not have aborted[/]{paused}: {len(result.measurements)} "
            f"measurements from {fmt_seconds(result.start)} to {fmt_seconds(result.end)}"
        )
    taken = [m for _, _, m in result.measurements]
    if taken and all(m.value is None and m.phase != "Error" for m in taken):
        console.print(
            "[yellow]hint:[/] every answer was 'no data': the series were probably labelled "
            "otherwise then; give --canary-labels (e.g. sluice_dev_revision=<the revision "
            "then>) and, for baseline queries, --stable-labels"
        )
    return result.exit_code


def _when(v: Verdict) -> str:
    return f"at {fmt_seconds(v.at)} (+{clock(v.offset)} after --from)"


def as_json(result: ReplayResult) -> dict[str, Any]:
    def verdict(v: Verdict) -> dict[str, Any]:
        return {
            "at": fmt_seconds(v.at),
            "offsetSeconds": v.offset,
            "analysis": v.analysis,
            "run": v.run,
            "verdict": v.verdict,
            "reason": v.reason,
            "message": v.message,
        }

    return {
        "from": fmt_seconds(result.start),
        "to": fmt_seconds(result.end),
        "revision": result.revision,
        "analyses": result.analyses,
        "exitCode": result.exit_code,
        "abort": verdict(result.abort) if result.abort else None,
        "verdicts": [verdict(v) for v in result.verdicts],
        "measurements": [
            {
                "at": fmt_seconds(at),
                "offsetSeconds": m.t,
                "analysis": where,
                "run": m.run,
                "metric": m.metric,
                "phase": m.phase,
                "value": m.value,
                "shown": m.shown,
                "condition": m.condition,
                "message": m.message,
                "query": m.query,
            }
            for at, where, m in result.measurements
        ],
    }


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="backtest a Rollout's analysis against what Prometheus recorded",
        description="Evaluate the Rollout's analysis against Prometheus' history, interval by "
        "interval, and say when (if ever) it would have aborted and why. Exit codes: 0 no "
        "abort, 1 abort, 2 only paused (inconclusive), 3 invalid input.",
    )
    p.add_argument("rollout", help="YAML file with the Rollout (and any AnalysisTemplates)")
    p.add_argument(
        "-f", "--filename", action="append", metavar="FILE", help="more YAML files with templates"
    )
    p.add_argument("--prometheus", required=True, metavar="URL", help="the Prometheus to ask")
    p.add_argument(
        "--from",
        dest="start",
        required=True,
        metavar="T1",
        help="start: RFC 3339, Unix seconds, or now-2h",
    )
    p.add_argument("--to", dest="end", default="now", metavar="T2", help="end (default now)")
    p.add_argument(
        "--canary-labels",
        metavar="L=V,...",
        help="matchers of the canary's series (replace {{canary.*}} selectors), e.g. "
        "sluice_dev_revision=3f9c0a1b2c",
    )
    p.add_argument(
        "--stable-labels",
        metavar="L=V,...",
        help="matchers of the stable's series (replace {{stable.*}} selectors)",
    )
    p.add_argument(
        "--stable-revision", metavar="HASH", help="value of {{stable.revision}} (default empty)"
    )
    p.add_argument(
        "--analysis",
        action="append",
        metavar="WHICH",
        help="background, postPromotion, step:N or all (default all; repeatable)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    p.add_argument("--quiet", action="store_true", help="only the verdict, not every interval")
    p.set_defaults(func=run)
