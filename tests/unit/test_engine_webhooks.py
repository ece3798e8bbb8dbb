"""Webhook gates in the engine: the answers the controller gathered, and what they allow.

The Driver plays the cluster; `answer` plays the controller's HTTP call (a new answer has
a new time). Each test looks at what a user sees: steps, weights, canary pods, phase,
conditions, Events and the gate records in the status.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from driver import Driver, make_spec, with_image

from sluice.engine.timefmt import fmt
from sluice.engine.types import AskHook, HookAnswer, Observed

STEPS: list[dict[str, Any]] = [{"setWeight": 25}, {"pause": {"duration": 10}}, {"setWeight": 50}]


class HookDriver(Driver):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.hooks: dict[str, HookAnswer] = {}

    def observe(self) -> Observed:
        return dataclasses.replace(super().observe(), hooks=dict(self.hooks))

    def asked(self) -> list[str]:
        assert self.last is not None
        return [a.key for a in self.last.actions if isinstance(a, AskHook)]

    def answer(self, key: str, ok: bool, message: str = "HTTP 200") -> None:
        self.t += 1
        self.hooks[key] = HookAnswer(ok, message, fmt(self.now))


def hook(name: str, type_: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "url": f"http://127.0.0.1:1/{name}", **extra}


def started(*webhooks: dict[str, Any], steps: list[dict[str, Any]] = STEPS) -> HookDriver:
    spec = make_spec(steps, replicas=4)
    spec["strategy"]["canary"]["webhooks"] = list(webhooks)
    d = HookDriver(spec)
    d.step(0)
    d.step(d.cluster.ready_delay)
    assert d.status.phase == "Healthy"
    d.step(0, spec=with_image(spec, "web:2"))
    return d


def canary_pods(d: HookDriver) -> int:
    slot = d.status.canary.slot if d.status.canary else "b"
    return d.cluster.observe(d.t).slots[slot].replicas


def test_confirm_rollout_holds_with_no_canary_pod_until_allowed() -> None:
    d = started(hook("ok", "confirm-rollout"))
    assert d.asked() == ["1/confirm-rollout/ok"]
    assert canary_pods(d) == 0 and d.status.current_step_index == 0
    assert "waiting for webhook ok (confirm-rollout) to answer" in d.status.message
    d.answer("1/confirm-rollout/ok", False, "HTTP 403: not now")
    d.step(0)
    d.step(30)
    assert d.status.phase == "Paused" and canary_pods(d) == 0
    paused = next(c for c in d.status.conditions if c.type == "Paused")
    assert paused.status == "True" and paused.reason == "WebhookDenied"
    assert "HTTP 403: not now" in d.status.message
    denied = [e for h in d.history for e in h.events if e.reason == "WebhookDenied"]
    assert len(denied) == 1, "a refusal is told once, not per reconcile"
    assert d.asked() == ["1/confirm-rollout/ok"], "asked again while it does not allow"
    d.answer("1/confirm-rollout/ok", True)
    d.step(0)
    assert canary_pods(d) == 1 and d.asked() == []
    d.step(d.cluster.ready_delay)
    assert d.status.canary_weight == 25 and d.status.current_step_index == 1


def test_pre_rollout_is_asked_after_confirm_rollout() -> None:
    d = started(hook("pre", "pre-rollout"), hook("confirm", "confirm-rollout"))
    assert d.asked() == ["1/confirm-rollout/confirm"]
    d.answer("1/confirm-rollout/confirm", True)
    d.step(0)
    assert d.asked() == ["1/pre-rollout/pre"] and canary_pods(d) == 0
    d.answer("1/pre-rollout/pre", True)
    d.step(0)
    assert canary_pods(d) == 1


def test_no_answer_never_promotes() -> None:
    d = started(hook("gate", "confirm-promotion"), steps=[{"setWeight": 50}])
    d.step(d.cluster.ready_delay)
    d.step(d.cluster.ready_delay)
    for _ in range(5):
        d.step(60)
    st = d.status
    assert st.canary_revision and st.current_step_index == 1 and st.stable_revision != ""
    assert st.phase != "Degraded", "waiting on a gate is not the progress deadline"
    assert "waiting for webhook gate (confirm-promotion) to answer" in st.message
    d.answer("1/confirm-promotion/gate", True)
    d.step(0)
    assert d.status.phase == "Healthy" and not d.status.canary_revision


def test_rollout_webhook_failures_beyond_the_limit_abort() -> None:
    d = started(hook("load", "rollout", failureLimit=1))
    d.step(d.cluster.ready_delay)
    assert d.status.current_step_index == 0 and d.status.canary_weight == 25
    assert d.asked() == ["1/rollout/load/0"]
    d.answer("1/rollout/load/0", True)
    d.step(0)
    assert d.status.current_step_index == 1
    d.step(10)
    assert d.asked() == ["1/rollout/load/1"]
    d.answer("1/rollout/load/1", False, "HTTP 500")
    d.step(0)
    assert d.status.current_step_index == 1 and not d.status.abort
    assert "failed 1/2 (HTTP 500)" in d.status.message
    d.answer("1/rollout/load/1", False, "no answer within 2s")
    d.step(0)
    assert d.status.abort is not None and d.status.abort.reason == "WebhookFailed"
    assert d.status.canary_weight == 0 and d.status.phase == "Degraded"


def test_a_retry_asks_the_gates_again() -> None:
    d = started(hook("load", "rollout", failureLimit=0))
    d.step(d.cluster.ready_delay)
    d.answer("1/rollout/load/0", False, "HTTP 500")
    d.step(0)
    assert d.status.abort is not None
    d.step(0, action="retry")
    d.step(d.cluster.ready_delay)
    assert d.asked() == ["2/rollout/load/0"]
    assert all(r.key.startswith("2/") for r in d.status.webhook_gates)


def test_duplicate_names_and_other_schemes_are_invalid() -> None:
    spec = make_spec(STEPS)
    spec["strategy"]["canary"]["webhooks"] = [hook("a", "rollout"), hook("a", "rollback")]
    d = HookDriver(spec)
    d.step(0)
    assert d.status.phase == "Degraded" and "name 'a' is used twice" in d.status.message
    spec["strategy"]["canary"]["webhooks"] = [{**hook("b", "rollout"), "url": "file:///etc"}]
    d.step(0, spec=spec)
    assert "spec.strategy.canary.webhooks[0].url" in d.status.message


def test_the_simulator_refuses_gates_it_cannot_ask(tmp_path: Any) -> None:
    import pytest
    import yaml

    from sluice.engine.validate import InvalidSpec
    from sluice.sim.load import load

    spec = make_spec(STEPS)
    spec["strategy"]["canary"]["webhooks"] = [hook("ok", "confirm-rollout")]
    path = tmp_path / "r.yaml"
    doc = {"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"}}
    path.write_text(yaml.safe_dump({**doc, "spec": spec}))
    with pytest.raises(InvalidSpec, match="does not call webhook gates"):
        load(path)
    spec["strategy"]["canary"]["webhooks"] = [hook("told", "post-rollout")]
    path.write_text(yaml.safe_dump({**doc, "spec": spec}))
    assert load(path).spec.strategy.canary.webhooks[0].name == "told"
