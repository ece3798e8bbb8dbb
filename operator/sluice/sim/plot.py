"""`--plot`: the new version's share of traffic and each metric against its threshold.

One panel for the traffic, one per metric, sharing the time axis (minutes from the
template change). Measurements are dots coloured by their judgement; a dashed line is
the threshold of `result <= N`-style conditions; the abort or the promotion is a
vertical line across all panels.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from sluice.sim.run import Result, Taken, short

COLOURS = {
    "Successful": "#2e7d32",
    "Failed": "#c62828",
    "Inconclusive": "#9e9e9e",
    "Error": "#ef6c00",
}
FORMATS = (".png", ".svg")


def plot(result: Result, path: Path, title: str) -> None:
    """Write the chart to `path` (.png or .svg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, PercentFormatter

    by_metric: dict[str, list[Taken]] = {}
    for m in result.measurements:
        by_metric.setdefault(m.metric, []).append(m)
    rows = 1 + len(by_metric)
    fig, axes = plt.subplots(
        rows,
        1,
        sharex=True,
        figsize=(10, 2.2 + 1.9 * rows),
        gridspec_kw={"height_ratios": [1.3] + [1.0] * (rows - 1)},
        squeeze=False,
    )
    panels = [a[0] for a in axes]
    end = max([result.seconds, *(f.t for f in result.frames)], default=0.0) / 60

    # ---- traffic
    ax = panels[0]
    times = [f.t / 60 for f in result.frames] + [end]
    shares = [f.share for f in result.frames]
    shares.append(shares[-1] if shares else 0)
    ax.step(times, shares, where="post", color="#1565c0", linewidth=2.2, label="new version")
    ax.fill_between(times, shares, step="post", color="#1565c0", alpha=0.12)
    ax.set_ylim(-3, 108)
    ax.set_ylabel("traffic to the\nnew version")
    ax.yaxis.set_major_formatter(PercentFormatter(100))
    ax.set_yticks([0, 25, 50, 75, 100])
    shown = 0
    for f in result.frames:
        if f.share != shown and f.share > 0:
            ax.annotate(
                f"{f.share}%",
                (f.t / 60, f.share),
                textcoords="offset points",
                xytext=(3, 3),
                fontsize=8,
                color="#1565c0",
            )
        shown = f.share
    ax.grid(True, alpha=0.3)

    # ---- metrics
    for ax, (name, taken) in zip(panels[1:], by_metric.items(), strict=True):
        _metric_panel(ax, name, taken, PercentFormatter, FuncFormatter)

    # ---- verdict
    verdict_colour = {"promoted": "#2e7d32", "aborted": "#c62828"}.get(result.verdict, "#ef6c00")
    at = result.seconds / 60
    label = {
        "promoted": "promoted",
        "aborted": f"aborted: {result.reason}",
    }.get(result.verdict, f"{result.verdict}: {result.reason}")
    for ax in panels:
        ax.axvline(at, color=verdict_colour, linestyle="-", linewidth=1.6, alpha=0.85)
    panels[0].text(
        at,
        1.03,
        f"{label} at {_clock(result.seconds)}",
        transform=panels[0].get_xaxis_transform(),
        ha="right" if at > end * 0.6 else "left",
        va="bottom",
        fontsize=9,
        fontweight="bold",
        color=verdict_colour,
    )
    panels[-1].set_xlabel("minutes since the template change")
    panels[-1].set_xlim(0, max(end * 1.04, 1))
    fig.suptitle(title, fontsize=12, fontweight="bold")
    if result.verdict != "promoted" and result.message:  # the subtitle: why
        why = textwrap.wrap(short(result.message), 150, max_lines=2, placeholder=" ...")
        fig.text(0.5, 0.945, "\n".join(why), ha="center", va="top", fontsize=8)
    handles = [
        Line2D([], [], marker="o", linestyle="", color=c, label=p.lower())
        for p, c in COLOURS.items()
    ]
    if by_metric:
        fig.legend(handles=handles, loc="lower right", ncol=4, fontsize=8, frameon=False)
    subtitle = result.verdict != "promoted" and bool(result.message)
    fig.tight_layout(rect=(0, 0.03 if by_metric else 0, 1, 0.95 if subtitle else 0.98))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _judge_panel(ax: Any, name: str, taken: list[Taken]) -> None:
    """A judge: its estimate (canary vs baseline, 1 = the same) inside the confidence
    sequence, which narrows as evidence comes in; dots are the verdicts so far."""
    points = [m for m in taken if m.estimate is not None and m.lower is not None]
    if not points:
        ax.text(0.5, 0.5, "no data yet", transform=ax.transAxes, ha="center", color="#9e9e9e")
        ax.set_ylabel(name)
        return
    xs = [m.t / 60 for m in points]
    estimates = [m.estimate or 0.0 for m in points]
    finite = [m.upper for m in points if m.upper is not None]
    tolerated = 1 + (points[-1].tolerance or 0.0)
    top = max([tolerated * 1.5, *estimates, *finite]) * 1.1
    lows = [m.lower or 0.0 for m in points]
    highs = [m.upper if m.upper is not None else top for m in points]
    ax.fill_between(xs, lows, highs, step="post", color="#5c6bc0", alpha=0.2,
                    label="confidence sequence")  # fmt: skip
    ax.step(xs, estimates, where="post", color="#283593", linewidth=1.4, label="estimate")
    for phase, colour in COLOURS.items():
        mine = [(x, e) for x, e, m in zip(xs, estimates, points, strict=True) if m.phase == phase]
        if mine:
            ax.scatter([x for x, _ in mine], [e for _, e in mine], color=colour, s=18, zorder=3)
    ax.axhline(1.0, color="#616161", linestyle=":", linewidth=1.0, label="no change")
    ax.axhline(tolerated, color="#c62828", linestyle="--", linewidth=1.2,
               label=f"tolerated: {tolerated:g}x")  # fmt: skip
    ax.set_ylim(0, top)
    ax.set_ylabel(name)
    ax.set_title(f"{name}: canary / baseline, judged", fontsize=9, loc="left")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, frameon=False)


def _metric_panel(ax: Any, name: str, taken: list[Taken], percent: Any, func: Any) -> None:
    first = taken[0]
    if first.trigger == "judge":
        _judge_panel(ax, name, taken)
        return
    ratio = first.trigger == "errorRate"
    xs = [m.t / 60 for m in taken]
    have = [(x, m.value) for x, m in zip(xs, taken, strict=True) if m.value is not None]
    if have:
        ax.plot([x for x, _ in have], [v for _, v in have], color="#455a64", linewidth=1.2)
    base = [(x, m.baseline) for x, m in zip(xs, taken, strict=True) if m.baseline is not None]
    if base:
        ax.plot(
            [x for x, _ in base],
            [v for _, v in base],
            color="#8d6e63",
            linewidth=1.0,
            linestyle=":",
            label="baseline (stable)",
        )
    for phase, colour in COLOURS.items():
        points = [
            (x, m.value if m.value is not None else 0.0)
            for x, m in zip(xs, taken, strict=True)
            if m.phase == phase
        ]
        if points:
            ax.scatter(
                [x for x, _ in points],
                [v for _, v in points],
                color=colour,
                s=22,
                zorder=3,
                marker="o" if phase in ("Successful", "Failed") else "x",
            )
    limit = first.threshold
    if limit is not None:
        ax.axhline(
            limit,
            color="#c62828",
            linestyle="--",
            linewidth=1.2,
            label=f"threshold: {first.condition}",
        )
        top = max([limit, *(v for _, v in have)], default=limit)
        ax.set_ylim(0, top * 1.25 if top > 0 else 1)
    ax.set_ylabel(name)
    if ratio:
        ax.yaxis.set_major_formatter(percent(1.0, decimals=1))
    elif first.trigger == "latency":
        ax.yaxis.set_major_formatter(func(lambda v, _: f"{v * 1000:.0f} ms"))
    ax.set_title(f"{name}: {first.condition}", fontsize=9, loc="left")
    ax.grid(True, alpha=0.3)
    if limit is not None or base:
        ax.legend(loc="upper left", fontsize=8, frameon=False)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:d}:{secs:02d}"
