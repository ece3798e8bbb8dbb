"""Concurrent Rollouts with scripted scenarios, driven round after round while faults happen.

A scenario is a list of steps, the actions a user sets at given paused steps, and the
phase the round must end in. The driver polls the Rollouts (one list call), sets each
action once when its step is reached, starts the next round (a new image) when a round
ends, and records everything it did, for the invariants to compare with the history.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import kubernetes

from tests.chaos.analysis_bench import finite_template_name, template_name
from tests.chaos.invariants import Router
from tests.e2e.conftest import Cluster
from tests.e2e.traffic_cases import GATEWAY, ISTIO, rollout

Body = dict[str, Any]
ACTION = "sluice.dev/action"


@dataclass(frozen=True)
class Scenario:
    label: str
    router: str  # "istio" (a VirtualService), "gateway" (an HTTPRoute), "" (replica mode)
    steps: list[Body]
    actions: dict[int, str]  # paused at this step index -> set this action
    outcome: str  # the phase a round ends in
    analysis: str = ""  # a background analysis: "healthy", "failing" (see analysis_bench)
    abort_reason: str = ""  # the reason a Degraded round's abort must give
    post_promotion: str = ""  # a postPromotionAnalysis (finite): "healthy", "failing"


def _w(weight: int) -> Body:
    return {"setWeight": weight}


HOLD: Body = {"pause": {}}
TIMED: Body = {"pause": {"duration": 2}}


def _analysis(kind: str) -> Body:
    """A step analysis: it must end, so its template takes a finite count."""
    return {"analysis": {"templates": [{"templateName": finite_template_name(kind)}]}}


# Any 6 consecutive Rollouts cover replica mode, both routers, a healthy and a failing
# analysis, promote, promote-full, abort and promote-then-abort; 10 add the rest.
SCENARIOS = [
    Scenario("replica-promote", "", [_w(25), HOLD, _w(50), TIMED], {1: "promote"}, "Healthy"),
    Scenario(
        "istio-promote-full", "istio", [_w(20), HOLD, _w(50), HOLD], {1: "promote-full"}, "Healthy"
    ),
    Scenario(
        "gateway-abort",
        "gateway",
        [_w(25), TIMED, _w(50), HOLD],
        {3: "abort"},
        "Degraded",
        abort_reason="UserAbort",
    ),
    Scenario(
        "istio-analysis",
        "istio",
        [_w(25), TIMED, _w(50), HOLD],
        {3: "promote"},
        "Healthy",
        analysis="healthy",
    ),
    Scenario(
        "replica-analysis-fails",
        "",
        [_w(25), HOLD, _w(50), HOLD],
        {},
        "Degraded",
        analysis="failing",
        abort_reason="AnalysisFailed",
    ),
    Scenario(
        "gateway-promote-abort",
        "gateway",
        [_w(30), HOLD, _w(60), HOLD],
        {1: "promote", 3: "abort"},
        "Degraded",
        abort_reason="UserAbort",
    ),
    Scenario(
        "replica-promote-full",
        "",
        [_w(25), HOLD, _w(50), HOLD, _w(75), HOLD],
        {1: "promote-full"},
        "Healthy",
    ),
    Scenario(
        "gateway-analysis",
        "gateway",
        [_w(25), TIMED, _w(50), TIMED],
        {},
        "Healthy",
        analysis="healthy",
    ),
    Scenario("istio-timed", "istio", [_w(25), TIMED, _w(50), TIMED], {}, "Healthy"),
    Scenario(
        "istio-promote-abort",
        "istio",
        [_w(30), HOLD, _w(60), HOLD],
        {1: "promote", 3: "abort"},
        "Degraded",
        abort_reason="UserAbort",
    ),
]

# Step and post-promotion analyses (tests/chaos/test_analysis_kills.py); a failed
# post-promotion analysis switches back to the previous version: the engine records it as
# an abort of the promoted revision (Degraded, AnalysisFailed).
ANALYSIS_SCENARIOS = [
    Scenario(
        "replica-step-analysis",
        "",
        [_w(25), _analysis("healthy"), _w(50), HOLD],
        {3: "promote"},
        "Healthy",
    ),
    Scenario(
        "istio-step-analysis-fails",
        "istio",
        # TIMED, not HOLD, after it: a step reached wrongly ends Healthy, a wrong outcome.
        [_w(25), _analysis("failing"), _w(50), TIMED],
        {},
        "Degraded",
        abort_reason="AnalysisFailed",
    ),
    Scenario(
        "gateway-post-promotion",
        "gateway",
        [_w(25), TIMED, _w(50), TIMED],
        {},
        "Healthy",
        post_promotion="healthy",
    ),
    Scenario(
        "replica-post-promotion-fails",
        "",
        [_w(25), TIMED, _w(50), TIMED],
        {},
        "Degraded",
        abort_reason="AnalysisFailed",
        post_promotion="failing",
    ),
]

CASES = {"istio": ISTIO, "gateway": GATEWAY}


def mix(scenarios: list[Scenario]) -> str:
    """What a fleet covers, for the test's output."""
    count = Counter(
        [s.router or "replica" for s in scenarios]
        + [f"analysis {s.analysis}" for s in scenarios if s.analysis]
        + [f"step analysis {_step_kind(s)}" for s in scenarios if _step_kind(s)]
        + [f"post-promotion {s.post_promotion}" for s in scenarios if s.post_promotion]
        + [a for s in scenarios for a in s.actions.values()]
        + ["timed pause" for s in scenarios if TIMED in s.steps]
    )
    return ", ".join(f"{k} x{n}" for k, n in sorted(count.items()))


def _step_kind(s: Scenario) -> str:
    names = [
        t["templateName"] for st in s.steps for t in st.get("analysis", {}).get("templates", [])
    ]
    return ", ".join(n.removeprefix("breakers-").removesuffix("-finite") for n in names)


def _renamed(body: Body, name: str) -> Body:
    """traffic_cases' objects are named "web"; every Rollout here has its own."""
    return dict(json.loads(json.dumps(body).replace('"web', f'"{name}')))


def manifests(name: str, scenario: Scenario, replicas: int) -> list[Body]:
    case = CASES.get(scenario.router, ISTIO)
    body = _renamed(rollout(case, scenario.steps, replicas=replicas), name)
    canary = body["spec"]["strategy"]["canary"]
    if scenario.analysis:
        canary["analysis"] = {"templates": [{"templateName": template_name(scenario.analysis)}]}
    if scenario.post_promotion:
        ref = {"templateName": finite_template_name(scenario.post_promotion)}
        canary["postPromotionAnalysis"] = {"templates": [ref]}
    if not scenario.router:
        canary.pop("trafficRouting")
        return [body]
    canary["trafficRouting"].pop("managedRoutes", None)
    return [*(_renamed(o, name) for o in case.objects), body]


def router_of(name: str, scenario: Scenario) -> Router | None:
    """How the invariants read the (stable, canary) weights of this Rollout's router."""
    if not scenario.router:
        return None
    stable, canary = f"{name}-stable", f"{name}-canary"

    def vs_weights(body: Body) -> tuple[int, int]:
        route = next(r for r in body["spec"]["http"] if r.get("name") == "primary")
        hosts = {d["destination"]["host"]: int(d.get("weight", 0)) for d in route["route"]}
        return hosts.get(stable, 0), hosts.get(canary, 0)

    def route_weights(body: Body) -> tuple[int, int]:
        # The rule Sluice weighs is the unnamed one; a backendRef without weight has 1.
        rule = next(r for r in body["spec"]["rules"] if "name" not in r)
        refs = {b["name"]: int(b.get("weight", 1)) for b in rule["backendRefs"]}
        return refs.get(stable, 0), refs.get(canary, 0)

    if scenario.router == "gateway":
        return Router(GATEWAY.kind, name, route_weights)
    return Router(ISTIO.kind, name, vs_weights)


@dataclass
class Member:
    name: str
    scenario: Scenario
    round: int = 0
    generation: int = 0  # the generation of this round's template
    acted: set[int] = field(default_factory=set)
    applied: list[str] = field(default_factory=list)  # every action set, in order
    # (round, phase it ended in, the abort's reason or "")
    outcomes: list[tuple[int, str, str]] = field(default_factory=list)
    done: bool = True  # the current round has ended
    before: str = ""  # the canary revision in status when the round began (an aborted one)
    canary: str = ""  # this round's canary revision, once the status shows it


class Fleet:
    def __init__(self, cluster: Cluster, scenarios: list[Scenario], replicas: int = 4) -> None:
        self.cluster = cluster
        self.replicas = replicas
        self.members = [Member(f"{s.label}-{i}", s) for i, s in enumerate(scenarios)]
        self.client = kubernetes.config.new_client_from_config(config_file=cluster.kubeconfig)
        self.api = kubernetes.client.CustomObjectsApi(self.client)
        self.errors = 0  # failed polls (the API server away)
        self.acted_at: list[float] = []  # when each action was set (monotonic)

    def kubectl(self, *args: str, timeout: float = 90) -> str:
        """kubectl, retried while the API server is away (a fault test makes it so)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.cluster.kubectl(*args)
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def close(self) -> None:
        self.client.close()

    def create(self, templates: Sequence[Body] = ()) -> None:
        """The AnalysisTemplates (tests.chaos.analysis_bench), then every member's objects."""
        for body in templates:
            self.cluster.kubectl("apply", "-f", "-", stdin=json.dumps(body))
        for m in self.members:
            for body in manifests(m.name, m.scenario, self.replicas):
                self.cluster.kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(body))

    def poll(self) -> dict[str, Body]:
        try:
            listed = self.api.list_namespaced_custom_object(
                "sluice.dev", "v1alpha1", self.cluster.namespace, "rollouts", _request_timeout=5
            )
        except Exception:
            self.errors += 1
            return {}
        items: list[Body] = listed["items"]  # type: ignore[index]
        return {item["metadata"]["name"]: item for item in items}

    def wait_healthy(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            bodies = self.poll()
            if len(bodies) == len(self.members) and all(
                (b.get("status") or {}).get("phase") == "Healthy" for b in bodies.values()
            ):
                return
            time.sleep(0.5)
        raise AssertionError(f"not all Healthy after {timeout}s: {self._phases(self.poll())}")

    def _phases(self, bodies: dict[str, Body]) -> dict[str, Any]:
        return {n: (b.get("status") or {}).get("phase") for n, b in bodies.items()}

    def start_round(self, m: Member) -> None:
        m.round += 1
        m.acted = set()
        m.done = False
        m.canary = ""
        st = json.loads(self.kubectl("get", "rollout", m.name, "-o", "json")).get("status") or {}
        m.before = str(st.get("canaryRevision") or "")
        patch = [
            {
                "op": "replace",
                "path": "/spec/template/spec/containers/0/image",
                # Never the first image (nginx:1.27): setting the stable's template back
                # is a revert (AbortResolved), not this round's scenario.
                "value": f"nginx:2.{m.round}",
            }
        ]
        out = self.kubectl(
            "patch", "rollout", m.name, "--type", "json", "-p", json.dumps(patch), "-o", "json"
        )
        m.generation = int(json.loads(out)["metadata"]["generation"])

    def act(self, m: Member, action: str) -> None:
        self.kubectl("annotate", "--overwrite", "rollout", m.name, f"{ACTION}={action}")
        m.applied.append(action)
        self.acted_at.append(time.monotonic())

    def step(self, bodies: dict[str, Body], more_rounds: bool) -> None:
        """One pass of the driver over every member."""
        for m in self.members:
            body = bodies.get(m.name)
            if body is None:
                continue
            if m.done:
                if more_rounds:
                    self.start_round(m)
                continue
            st = body.get("status") or {}
            if int(st.get("observedGeneration") or 0) < m.generation:
                continue  # the operator has not seen this round's template yet
            phase, index = st.get("phase"), st.get("currentStepIndex")
            pending = (body["metadata"].get("annotations") or {}).get(ACTION)
            revision = st.get("canaryRevision") or ""
            if not m.canary and revision and revision != m.before:
                m.canary = revision  # this round's canary started
            if not m.canary or pending:
                continue
            promoted = phase == "Healthy" and not revision and st.get("stableRevision") == m.canary
            aborted = phase == "Degraded" and revision == m.canary and st.get("abort")
            if promoted or aborted:
                reason = str((st.get("abort") or {}).get("reason") or "")
                m.outcomes.append((m.round, str(phase), reason))
                m.done = True
                continue
            action = m.scenario.actions.get(index) if index is not None else None
            if action and phase == "Paused" and isinstance(index, int) and index not in m.acted:
                m.acted.add(index)
                self.act(m, action)

    def run(self, until: Any, timeout: float, finish: float | None = None) -> None:
        """Rounds go on while `until()` is false; then the rounds in flight finish, within
        `finish` seconds from then if given (the faults' own pace, not the rounds', sets how
        long `until()` takes: a restart under load can take 20 s), else within `timeout`."""
        deadline = time.monotonic() + timeout
        ended = False
        while time.monotonic() < deadline:
            more = not until()
            if not more and not ended and finish is not None:
                ended, deadline = True, time.monotonic() + finish
            self.step(self.poll(), more)
            if not more and all(m.done for m in self.members):
                return
            time.sleep(0.3)
        left = {m.name: (m.round, m.acted) for m in self.members if not m.done}
        raise AssertionError(
            f"rounds not finished after {timeout}s: {left}; {self._phases(self.poll())}"
        )

    def wrong_outcomes(self) -> list[str]:
        return [
            f"{m.name} round {r}: ended {phase} ({reason or 'no abort'}), its scenario says "
            f"{m.scenario.outcome} ({m.scenario.abort_reason or 'no abort'})"
            for m in self.members
            for r, phase, reason in m.outcomes
            if (phase, reason) != (m.scenario.outcome, m.scenario.abort_reason)
        ]

    def analysis_runs(self) -> list[Body]:
        try:
            listed = self.api.list_namespaced_custom_object(
                "sluice.dev", "v1alpha1", self.cluster.namespace, "analysisruns", _request_timeout=5
            )
        except Exception:
            self.errors += 1
            return []
        return list(listed["items"])  # type: ignore[index]

    def runs_settled(self, timeout: float) -> float:
        """Seconds until no AnalysisRun measures any more (every round is over); at most
        `timeout` (the invariants then name the run still live)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            phases = [(r.get("status") or {}).get("phase") for r in self.analysis_runs()]
            if all(p not in ("Pending", "Running", "Holding", None) for p in phases):
                break
            time.sleep(0.5)
        return time.monotonic() - started

    def analysis_aborts_total(self) -> int:
        return sum(self.analysis_aborts(m) for m in self.members)

    def analysis_aborts(self, m: Member) -> int:
        """Rounds the analysis aborted: each posts an Aborted Event no action asked for."""
        return sum(reason == "AnalysisFailed" for _, _, reason in m.outcomes)
