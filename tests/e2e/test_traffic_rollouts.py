"""Rollouts through a traffic router, with the operator running, on a real API server.

For each router that edits a user's object (Istio VirtualService, Gateway API HTTPRoute):
the weight is read in the router object at every step (from watch history: the router
object carried a weight before the Rollout's status counted it), the canary is at its
setCanaryScale size, a header route lives from its step to the end, the user's other
routes and fields stay byte-for-byte, abort and deletion restore 100 % stable, a hand
edit is written back, and a missing object holds the rollout until it appears.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Cluster, Operator, wait_for
from tests.e2e.history import Recorder, Seen
from tests.e2e.traffic_cases import BETA_ROUTE, CASES, EVERY, Case, rollout

pytestmark = pytest.mark.e2e

STEPS = [
    {"setCanaryScale": {"replicas": 1}},
    {"setWeight": 10},
    BETA_ROUTE,
    {"pause": {"duration": 2}},
    {"setCanaryScale": {"matchTrafficWeight": True}},
    {"setWeight": 50},
    {"pause": {}},
]


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest, router_crds: str) -> Case:
    return CASES[request.param]


@pytest.fixture(params=sorted(EVERY))
def any_case(request: pytest.FixtureRequest, router_crds: str) -> Case:
    return EVERY[request.param]


def recorder_for(cluster: Cluster, case: Case) -> Recorder:
    rec = Recorder(cluster.kubeconfig, cluster.namespace)
    rec.watch_custom("sluice.dev", "v1alpha1", "rollouts", "Rollout")
    rec.watch_custom(case.group, case.version, case.plural, case.kind)
    rec.watch_deployments()
    time.sleep(0.5)  # the watches are open before anything is applied
    return rec


@pytest.fixture
def recorder(cluster: Cluster, any_case: Case) -> Iterator[Recorder]:
    rec = recorder_for(cluster, any_case)
    yield rec
    rec.stop()


def apply(cluster: Cluster, body: dict[str, object]) -> None:
    cluster.kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(body))


def live(cluster: Cluster, case: Case) -> dict[str, object]:
    body = cluster.get(case.resource, case.object_name)
    assert body is not None, f"{case.kind} {case.object_name} is gone"
    return body


def split(case: Case, percent: int) -> tuple[int, int]:
    canary = round(case.total * percent / 100)
    return case.total - canary, canary


def users(cluster: Cluster, case: Case) -> str:
    """JSON of what Sluice must leave alone in the user's object."""
    if not case.objects:
        return ""
    if case.user_resource:
        body = cluster.get(case.user_resource, case.user_name)
        assert body is not None, f"the user's {case.user_name} is gone"
        return case.untouched(body)
    return case.untouched(live(cluster, case))


def start(cluster: Cluster, case: Case, steps: list[dict[str, object]], **canary: object) -> str:
    """The user's objects, then v1 Healthy; returns the router object's original JSON."""
    for body in case.objects:
        apply(cluster, body)
    original = users(cluster, case)
    apply(cluster, rollout(case, steps, **canary))
    wait_for("v1 Healthy", lambda: cluster.status().get("phase") == "Healthy", timeout=60)
    assert case.weights(live(cluster, case)) == split(case, 0)
    return original


def at(cluster: Cluster, index: int, weight: int, phase: str = "Paused") -> None:
    def reached() -> bool:
        st = cluster.status()
        return (
            st.get("currentStepIndex") == index
            and st.get("canaryWeight", 0) == weight
            and st.get("phase") == phase
        )

    wait_for(f"step {index} {phase} at weight {weight}", reached, timeout=60)


def router_before(history: list[Seen], rv: int) -> Seen | None:
    """The router object's last version written before resourceVersion `rv`."""
    before = [s for s in history if s.rv < rv and s.type != "DELETED"]
    return before[-1] if before else None


def steps_for(case: Case, steps: list[dict[str, object]]) -> list[dict[str, object]]:
    """The steps as the Rollout gets them (no header route where the router has none)."""
    return [s for s in steps if case.header_routes or "setHeaderRoute" not in s]


def test_a_rollout_moves_the_weight_in_the_router_and_counts_it_only_once_there(
    cluster: Cluster, operator: Operator, recorder: Recorder, any_case: Case
) -> None:
    case = any_case
    beta = ["beta"] if case.header_routes else []
    original = start(cluster, case, STEPS)
    cluster.set_image("nginx:1.28")

    at(cluster, len(steps_for(case, STEPS)) - 1, 50)  # the untimed pause after setWeight 50
    body = live(cluster, case)
    assert case.weights(body) == split(case, 50)
    assert case.routes(body) == beta
    assert cluster.replicas("web-b") == (2, 2)  # matchTrafficWeight again: 50 % of 4
    assert cluster.replicas("web-a")[0] == 4  # no dynamicStableScale: the stable stays

    # Every weight the Rollout counted was in the router object first.
    router = recorder.history(case.kind, case.object_name)
    counted = [
        s for s in recorder.history("Rollout") if (s.body.get("status") or {}).get("canaryWeight")
    ]
    first: dict[int, Seen] = {}
    for seen in counted:
        first.setdefault(seen.body["status"]["canaryWeight"], seen)
    assert sorted(first) == [10, 50]
    for weight, seen in first.items():
        carried = router_before(router, seen.rv)
        assert carried is not None and case.weights(carried.body) == split(case, weight), (
            f"status counted weight {weight} before the {case.kind} carried it"
        )
    # setCanaryScale 1: one canary pod at 10 %, before matchTrafficWeight took over.
    sizes = [
        s.body["spec"]["replicas"]
        for s in recorder.history("Deployment", "web-b")
        if s.type != "DELETED"
    ]
    assert sizes[0] == 1 and 1 in sizes and max(sizes) == 2
    # The header route appeared only once step 2 began, with the canary Ready.
    with_route = [s for s in router if case.routes(s.body) == ["beta"]]
    assert bool(with_route) == case.header_routes, f"{case.kind}: header route {with_route}"

    cluster.action("promote")
    wait_for("Completed", lambda: cluster.condition("Completed").get("status") == "True")
    wait_for(
        "the router back to 100 % stable, no header route",
        lambda: (
            case.weights(live(cluster, case)) == split(case, 0)
            and case.routes(live(cluster, case)) == []
        ),
    )
    assert cluster.selector("web-stable")["sluice.dev/slot"] == "b"  # the new version
    assert users(cluster, case) == original
    assert cluster.selector("web")["sluice.dev/slot"] == "b"  # root: the stable slot only


def test_abort_with_dynamic_stable_scale_refills_the_stable_before_traffic_returns(
    cluster: Cluster, operator: Operator, recorder: Recorder, any_case: Case
) -> None:
    case = any_case
    steps = [{"setWeight": 50}, BETA_ROUTE, {"pause": {}}]
    original = start(cluster, case, steps, dynamicStableScale=True)
    cluster.set_image("nginx:1.28")
    at(cluster, len(steps_for(case, steps)) - 1, 50)
    assert cluster.replicas("web-a")[0] == 2  # its share fell to 50 %: half of 4

    cluster.action("abort")
    wait_for("Degraded", lambda: cluster.status().get("phase") == "Degraded")
    wait_for(
        "traffic back on the stable",
        lambda: (
            case.weights(live(cluster, case)) == split(case, 0)
            and case.routes(live(cluster, case)) == []
        ),
        timeout=30,
    )
    assert cluster.replicas("web-a") == (4, 4)
    assert users(cluster, case) == original

    # From the history: when the router gave the stable its weight back, the stable
    # Deployment already had all 4 pods Ready.
    router = recorder.history(case.kind, case.object_name)
    back = next(
        s
        for s in router
        if case.weights(s.body) == split(case, 0)
        and any(case.weights(p.body) != split(case, 0) for p in router if p.rv < s.rv)
    )
    stable = [s for s in recorder.history("Deployment", "web-a") if s.rv < back.rv]
    ready = (stable[-1].body.get("status") or {}).get("readyReplicas", 0) if stable else 0
    assert ready >= 4, f"traffic returned to a stable with {ready}/4 pods Ready"


def test_a_hand_edit_of_the_weight_is_written_back(
    cluster: Cluster, operator: Operator, case: Case
) -> None:
    start(cluster, case, [{"setWeight": 50}, {"pause": {}}])
    cluster.set_image("nginx:1.28")
    at(cluster, 1, 50)

    body = live(cluster, case)
    _, canary = case.weights(body)
    edited = json.dumps(body).replace(f'"weight": {canary}', '"weight": 0', 1)
    cluster.kubectl("replace", "--validate=false", "-f", "-", stdin=edited)
    wait_for(
        "Sluice writes the weight back",
        lambda: case.weights(live(cluster, case)) == split(case, 50),
        timeout=20,
    )
    wait_for("a TrafficRestored Event", lambda: "TrafficRestored" in cluster.reasons())
    assert cluster.status()["canaryWeight"] == 50


def test_a_missing_router_object_holds_the_rollout_until_it_appears(
    cluster: Cluster, operator: Operator, case: Case
) -> None:
    apply(cluster, rollout(case, [{"setWeight": 20}, {"pause": {}}]))
    wait_for("v1 Healthy", lambda: cluster.status().get("phase") == "Healthy", timeout=60)
    cluster.set_image("nginx:1.28")

    def held() -> bool:
        cond = cluster.condition("Paused")
        return cond.get("reason") == "TrafficRouterProblem"

    wait_for("Paused with TrafficRouterProblem", held, timeout=30)
    message = cluster.condition("Paused")["message"]
    assert f"{case.kind} web" in message, message
    assert cluster.status().get("canaryWeight", 0) == 0
    warned = [e for e in cluster.events() if e["reason"] == "TrafficRouterProblem"]
    assert warned and warned[0]["type"] == "Warning"
    assert f"{case.kind} web" in warned[0]["message"]

    for body in case.objects:  # the user fixes it: the rollout goes on by itself
        apply(cluster, body)
    at(cluster, 1, 20)
    assert case.weights(live(cluster, case)) == split(case, 20)


def test_deleting_the_rollout_gives_the_users_object_back_to_the_stable(
    cluster: Cluster, operator: Operator, case: Case
) -> None:
    original = start(cluster, case, [{"setWeight": 30}, BETA_ROUTE, {"pause": {}}])
    assert "sluice.dev/traffic-release" in cluster.rollout()["metadata"].get("finalizers", [])
    cluster.set_image("nginx:1.28")
    at(cluster, 2, 30)
    assert case.routes(live(cluster, case)) == ["beta"]

    cluster.kubectl("delete", "rollout", "web", "--wait=false")
    wait_for("the Rollout gone", lambda: cluster.get("rollouts.sluice.dev", "web") is None, 30)
    body = live(cluster, case)
    assert case.weights(body) == split(case, 0)
    assert case.routes(body) == []
    assert case.untouched(body) == original


def test_two_rollouts_naming_one_route_the_older_keeps_it(
    cluster: Cluster, operator: Operator, router_crds: str
) -> None:
    case = CASES["istio"]
    original = start(cluster, case, [{"setWeight": 30}, {"pause": {}}])
    rival = rollout(case, [{"setWeight": 70}, {"pause": {}}])
    rival["metadata"]["name"] = "web2"
    apply(cluster, rival)

    def named() -> bool:
        return "already managed by Rollout web" in str(cluster.status("web2").get("message"))

    wait_for("web2 names the route web holds", named, timeout=30)
    assert "VirtualService web route primary" in cluster.status("web2")["message"]
    cluster.set_image("nginx:1.28", name="web2")
    time.sleep(3)
    assert case.weights(live(cluster, case)) == split(case, 0)  # web2 never wrote it
    assert case.untouched(live(cluster, case)) == original

    cluster.set_image("nginx:1.28")  # the owner still moves its route
    at(cluster, 1, 30)
    assert case.weights(live(cluster, case)) == split(case, 30)
    cluster.kubectl("delete", "rollout", "web")  # ...and once it is gone, web2 may take it
    wait_for(
        "web2 moves the route",
        lambda: (
            cluster.status("web2").get("phase") != "Healthy"
            and "already managed" not in str(cluster.status("web2").get("message"))
        ),
        timeout=30,
    )


def test_rollouts_naming_the_route_of_a_missing_object_all_say_not_found_and_keep_quiet(
    cluster: Cluster, operator: Operator, router_crds: str
) -> None:
    """No claim changes hands on an object that is not there: every claimant says "not
    found", so deleting the oldest writes no other's status (it used to pass the route on,
    each next one's message going from "shared route" to "not found")."""
    case = CASES["istio"]
    names = ("web", "web2", "web3")
    for name in names:
        body = rollout(case, [{"setWeight": 20}, {"pause": {}}])
        body["metadata"]["name"] = name
        apply(cluster, body)
        wait_for(f"{name} Healthy", lambda n=name: cluster.status(n).get("phase") == "Healthy")
    for name in names:
        cluster.set_image("nginx:1.28", name=name)

    def not_found(name: str) -> bool:
        return "not found" in str(cluster.condition("Paused", name).get("message"))

    for name in names:
        wait_for(f"{name} says not found", lambda n=name: not_found(n), timeout=60)
        assert "already managed" not in str(cluster.status(name).get("message"))
    time.sleep(2)  # settled
    rec = Recorder(cluster.kubeconfig, cluster.namespace)
    rec.watch_custom("sluice.dev", "v1alpha1", "rollouts", "Rollout")
    try:
        time.sleep(1)
        start = time.monotonic()
        cluster.kubectl("delete", "rollout", "web")
        time.sleep(5)
        writes = [s for n in names[1:] for s in rec.history("Rollout", n) if s.at > start]
        assert not [s for s in writes if s.type == "MODIFIED"], [(s.name, s.rv) for s in writes]
    finally:
        rec.stop()
    for name in names[1:]:
        assert not_found(name)
