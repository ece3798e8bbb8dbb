"""A scorecard over judge metrics: a critical failure fails at once, else weights decide."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sluice.api.judge import JudgeMetric, JudgeResult, JudgeScore, Verdict


@dataclass(frozen=True)
class Score:
    verdict: Verdict
    final: bool
    score: float  # percent of the weight that passed
    message: str


def score(judged: Sequence[tuple[str, JudgeMetric, JudgeResult]], card: JudgeScore) -> Score:
    """The analysis' verdict from its judge metrics' latest results.

    A critical metric's failure decides at once; otherwise the score is only final when
    every metric's verdict is (a held metric is not yet a failure, nor a pass).
    """
    for name, spec, result in judged:
        if spec.critical and result.verdict == "Fail":
            return Score("Fail", True, 0.0, f"critical metric {name} failed: {result.message()}")
    total = sum(spec.weight for _, spec, _ in judged)
    passed = sum(spec.weight for _, spec, r in judged if r.verdict == "Pass")
    value = 100.0 * passed / total if total > 0 else 100.0
    final = all(r.final for _, _, r in judged)
    worst = ", ".join(f"{n}: {r.verdict}" for n, _, r in judged if r.verdict != "Pass")
    line = f"score {value:.0f} (pass {card.pass_score:g}, marginal {card.marginal_score:g})"
    line += f"; not passing: {worst}" if worst else ""
    if not final:
        return Score("Inconclusive", False, value, f"{line}; still judging")
    if value >= card.pass_score:
        return Score("Pass", True, value, line)
    if value >= card.marginal_score:
        return Score("Inconclusive", True, value, f"{line}: marginal")
    return Score("Fail", True, value, line)
