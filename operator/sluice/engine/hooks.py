"""Webhook gates as the engine sees them: which to ask, and what their answers allow.

The controller makes the HTTP calls and hands the answers in (`Observed.hooks`); here
they are counted once each (by their time) into `status.webhookGates`, so a restart
resumes with what was answered. No answer is never an allow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sluice.api.rollout import RolloutSpec
from sluice.api.webhooks import GateRecord, Webhook
from sluice.engine.gates import Gate
from sluice.engine.steps import Progress
from sluice.engine.timefmt import fmt
from sluice.engine.types import AskHook

if TYPE_CHECKING:
    from sluice.engine.decide import _Decider

BEFORE_START = ("confirm-rollout", "pre-rollout")


def gate_key(attempt: int, type_: str, name: str, step: int | None = None) -> str:
    """Per canary attempt (a retry asks again), type, webhook and step."""
    return f"{attempt}/{type_}/{name}" + ("" if step is None else f"/{step}")


def hooks_of(spec: RolloutSpec, type_: str) -> list[Webhook]:
    return [h for h in spec.strategy.canary.webhooks if h.type == type_]


def check_webhooks(spec: RolloutSpec) -> list[str]:
    names = [h.name for h in spec.strategy.canary.webhooks]
    twice = sorted({n for n in names if names.count(n) > 1})
    where = "spec.strategy.canary.webhooks"
    return [f"{where}: name {n!r} is used twice" for n in twice]


def allow(d: _Decider, type_: str, step: int | None = None) -> Progress:
    """DONE when every webhook of `type_` allowed; WAIT while one has not (it is asked
    again); ABORTED when a rollout webhook failed more than its failureLimit in a row."""
    s = d.s
    current = f"{s.attempt}/"
    if any(not r.key.startswith(current) for r in s.webhook_gates):
        s.webhook_gates = [r for r in s.webhook_gates if r.key.startswith(current)]
    for hook in hooks_of(d.spec, type_):
        key = gate_key(s.attempt, type_, hook.name, step)
        record = _count_answer(d, hook, key)
        if record is not None and record.passed:
            continue
        d.actions.append(AskHook(key, hook.name, type_, step))
        what = f"webhook {hook.name} ({type_}{'' if step is None else f' at step {step}'})"
        if record is None:
            d.waiting_for = f"{what} to answer"
            return Progress.WAIT
        if type_ != "rollout":
            d.held = Gate("pause", "WebhookDenied", f"{what} did not allow: {record.message}")
            return Progress.WAIT
        if record.failures > hook.failure_limit:
            d._abort(
                "WebhookFailed",
                f"{what} failed {record.failures} times in a row: {record.message}",
            )
            d._aborted()
            return Progress.ABORTED
        d.waiting_for = (
            f"{what}: failed {record.failures}/{hook.failure_limit + 1} ({record.message})"
        )
        return Progress.WAIT
    return Progress.DONE


def allow_start(d: _Decider) -> bool:
    """confirm-rollout, then pre-rollout: both must allow before the canary gets a pod."""
    return all(allow(d, type_) is Progress.DONE for type_ in BEFORE_START)


def _count_answer(d: _Decider, hook: Webhook, key: str) -> GateRecord | None:
    """The gate's record, with the controller's answer counted if it is a new one."""
    s = d.s
    record = next((r for r in s.webhook_gates if r.key == key), None)
    answer = d.obs.hooks.get(key)
    if answer is None or (record is not None and record.answered_at == answer.at):
        return record
    if record is not None and record.passed:
        return record
    failures = 0 if answer.ok else (record.failures if record else 0) + 1
    new = GateRecord(
        key=key,
        passed=answer.ok,
        failures=failures,
        answered_at=answer.at,
        message=answer.message[:300],
    )
    s.webhook_gates = [*(r for r in s.webhook_gates if r.key != key), new]
    if answer.ok:
        s.step_start_time = fmt(d.now)  # the progress deadline counts from the allow
        d._event("WebhookAllowed", f"webhook {hook.name} ({hook.type}) allowed: {new.message}")
    elif record is None or record.message != new.message:
        reason = "WebhookFailed" if hook.type == "rollout" else "WebhookDenied"
        d._event(reason, f"webhook {hook.name} ({hook.type}): {new.message}", warning=True)
    return new
