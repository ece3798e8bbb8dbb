"""One answer judged: Successful, Failed or Inconclusive, with a message that says why."""

from __future__ import annotations

import math
from collections.abc import Sequence

from sluice.analysis.expr import ExprError, compile_condition
from sluice.analysis.triggers import Question

Value = float | list[float]


def shown(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.6g}"
    inner = ", ".join(f"{v:.6g}" for v in values[:10])
    return f"[{inner}{', …' if len(values) > 10 else ''}]"


def _as_value(values: Sequence[float]) -> Value:
    return float(values[0]) if len(values) == 1 else [float(v) for v in values]


def no_data(values: Sequence[float]) -> str | None:
    if not values:
        return "no data (empty result)"
    if all(math.isnan(v) for v in values):
        return "no data (NaN)"
    return None


def judge(
    question: Question,
    values: Sequence[float],
    baseline: Sequence[float] | None,
    empty_result: str,
) -> tuple[str, str]:
    """(phase, message). Missing or NaN data is never a success unless `empty_result` says so."""
    missing = no_data(values) or (
        f"baseline {no_data(baseline)}" if baseline is not None and no_data(baseline) else None
    )
    if missing:
        phase = {"inconclusive": "Inconclusive", "failure": "Failed", "success": "Successful"}
        return phase[empty_result], missing
    env: dict[str, Value] = {"result": _as_value(values)}
    if baseline is not None:
        env["baseline"] = _as_value(baseline)
    about = f"result={shown(values)}" + (f" baseline={shown(baseline)}" if baseline else "")
    try:
        if question.failure and compile_condition(question.failure).evaluate(env):
            return "Failed", f"{about} met failureCondition `{question.failure}`"
        if question.success and not compile_condition(question.success).evaluate(env):
            return "Failed", f"{about} did not meet successCondition `{question.success}`"
    except ExprError as exc:
        return "Error", f"{about}: {exc}"
    what = question.success or f"not ({question.failure})"
    return "Successful", f"{about} met `{what}`"
