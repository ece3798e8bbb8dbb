"""What is sent: a JSON body per event (and a Slack text), and its HMAC signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any

Body = dict[str, Any]
STEP = re.compile(r"step (\d+)/(\d+)\b")

# Event reason (what the engine posts) -> notification event.
KINDS = {
    "RolloutStarted": "started",
    "CanaryReplaced": "started",
    "StepReached": "step-completed",
    "Paused": "paused",
    "Promoted": "promoted",
    "Aborted": "aborted",
    "RolledBack": "aborted",
    "AnalysisFailed": "aborted",
    "Completed": "completed",
}
EVENTS = tuple(dict.fromkeys(KINDS.values()))
ICONS = {"started": "🚀", "step-completed": "➡️", "paused": "⏸️", "promoted": "👍",
         "aborted": "🛑", "completed": "✅"}  # fmt: skip


def kind_of(reason: str) -> str | None:
    return KINDS.get(reason)


def step_index(reached: str, offset: int = 0) -> int | None:
    """The step a StepReached message names ("step 2/5: ..."), plus `offset`."""
    found = STEP.match(reached)
    return None if found is None else int(found.group(1)) + offset


def waits_for_promote(rollout: Body, reached: str) -> bool:
    """The step `reached` names is where the rollout stands, and it is a pause without a
    duration: it holds until someone promotes. (One decision can pass several steps; only
    the last one's Event is about the pause.)"""
    st, spec = rollout.get("status") or {}, rollout.get("spec") or {}
    steps = ((spec.get("strategy") or {}).get("canary") or {}).get("steps") or []
    index = st.get("currentStepIndex")
    if not isinstance(index, int) or not 0 <= index < len(steps):
        return False
    if step_index(reached) not in (None, index):
        return False
    pause = steps[index].get("pause")
    return isinstance(pause, dict) and pause.get("duration") is None


def step_completed(rollout: Body, reached: str) -> str | None:
    """The engine posts StepReached when it moves on, so the step before the one reached
    is the one completed: name it, and where the rollout went next."""
    from sluice.api.rollout import RolloutSpec
    from sluice.engine.decide import describe_step

    try:
        spec: RolloutSpec | None = RolloutSpec.model_validate(rollout.get("spec") or {})
    except ValueError:
        spec = None
    if spec is not None and spec.strategy.blue_green is not None:
        return f"preview completed ({describe_step(spec, 0)}); now at {reached}"
    found, done = STEP.match(reached), step_index(reached, -1)
    if found is None or done is None or done < 0:
        return None  # not a step change this code knows: say nothing rather than guess
    text = f"step {done}/{found.group(2)} completed"
    if spec is not None and done < len(spec.strategy.canary.steps):
        text += f" ({describe_step(spec, done).partition(': ')[2]})"
    return f"{text}; now at {reached}"


def failed_measurement(runs: list[Body], revision: str | None) -> Body | None:
    """The metric that failed the canary: run, metric, value, threshold, query, message."""
    failed = [
        r
        for r in runs
        if (r.get("status") or {}).get("phase") in ("Failed", "Error")
        and (not revision or (r.get("spec") or {}).get("revision") == revision)
    ]
    failed.sort(key=lambda r: (r.get("status") or {}).get("finishedAt") or "")
    for run in reversed(failed):
        st = run.get("status") or {}
        specs = {m.get("name"): m for m in (run.get("spec") or {}).get("metrics") or []}
        for result in st.get("metricResults") or []:
            if result.get("phase") not in ("Failed", "Error"):
                continue
            last = (result.get("measurements") or [{}])[-1]
            return {
                "run": run["metadata"]["name"],
                "metric": result.get("name"),
                "phase": result.get("phase"),
                "value": last.get("value"),
                "threshold": threshold(specs.get(result.get("name")) or {}),
                "query": last.get("query"),
                "message": last.get("message") or result.get("message") or st.get("message"),
            }
    return None


def threshold(metric: Body) -> str | None:
    if "errorRate" in metric:
        return f"errorRate.max {metric['errorRate'].get('max')}"
    if "latency" in metric:
        lat = metric["latency"]
        quantile = float(lat.get("quantile", 0.99)) * 100
        return f"latency p{quantile:g} maxSeconds {lat.get('maxSeconds')}"
    if "circuitBreaker" in metric:
        return f"circuitBreaker.max {metric['circuitBreaker'].get('max', 0)}"
    return metric.get("failureCondition") or metric.get("successCondition")


def payload(
    event: str, reason: str, message: str, when: str, rollout: Body, runs: list[Body]
) -> Body:
    meta, st = rollout["metadata"], rollout.get("status") or {}
    body: Body = {
        "event": event,
        "reason": reason,
        "message": message,
        "time": when,
        "rollout": {"namespace": meta["namespace"], "name": meta["name"]},
        "phase": st.get("phase"),
        "step": st.get("currentStepIndex"),
        "canaryWeight": st.get("canaryWeight", 0),
        "stableRevision": st.get("stableRevision") or None,
        "canaryRevision": st.get("canaryRevision") or None,
    }
    if event == "aborted":
        abort = st.get("abort") or {}
        body["abort"] = {k: abort.get(k) for k in ("reason", "message", "time")} if abort else None
        body["analysis"] = failed_measurement(runs, abort.get("revision"))
    return body


def encode(body: Body) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def signature(secret: bytes, raw: bytes) -> str:
    return "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()


def slack(body: Body) -> Body:
    """A Slack incoming-webhook message: one line, plus the failing metric when aborted."""
    ro = body["rollout"]
    head = f"{ICONS.get(body['event'], '')} *{ro['namespace']}/{ro['name']}* {body['event']}"
    lines = [f"{head}: {body['message']}"]
    analysis = body.get("analysis")
    if analysis:
        lines.append(
            f"metric `{analysis['metric']}` = `{analysis['value']}` "
            f"(threshold {analysis['threshold']}); query: `{analysis['query']}`"
        )
    return {"text": "\n".join(lines)}
