"""The engine with a traffic router: what it asks of the routers, and what it does to the pods
while a router lags or cannot be written (no cluster: the routers are simulated)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from driver import Driver, make_spec, revision, with_image

from sluice.engine.types import Decision, TrafficObserved, TrafficPlan

V1, V2 = revision("web:1"), revision("web:2")
NGINX = {"nginx": {"stableIngress": "web"}}
VS_MISSING = "spec.strategy.canary.trafficRouting.istio: VirtualService web not found"
ANALYSIS: dict[str, Any] = {"templates": [{"templateName": "error-rate"}]}


def routed(
    steps: list[dict[str, Any]],
    routing: dict[str, Any] | None = None,
    *,
    dynamic: bool = False,
    delay: int = 30,
    **extra: Any,
) -> dict[str, Any]:
    spec = make_spec(steps, replicas=4, scaleDownDelaySeconds=delay, **extra)
    canary = spec["strategy"]["canary"]
    canary["trafficRouting"] = routing or NGINX
    if dynamic:
        canary["dynamicStableScale"] = True
    return spec


class Routers(Driver):
    """A Driver whose routers can lag (written, not read back yet) or have a problem (they
    take no write at all). `moves` records every change of the traffic the routers carry,
    with the Ready stable pods and the canary's replicas at that moment."""

    def __init__(self, spec: dict[str, Any], **kw: Any) -> None:
        super().__init__(spec, **kw)
        self.lag = False
        self.problem: str | None = None
        self.moves: list[tuple[TrafficPlan | None, int, int]] = []

    def observe(self) -> Any:
        seen = super().observe()
        if self.problem:
            return dataclasses.replace(
                seen, traffic=TrafficObserved(self.cluster.traffic, False, self.problem)
            )
        if self.lag:
            return dataclasses.replace(seen, traffic=TrafficObserved(self.cluster.traffic, False))
        return seen

    def _reconcile(self, remove_annotation: bool) -> Decision:
        before = self.cluster.traffic
        decision = super()._reconcile(remove_annotation)
        if self.problem:
            self.cluster.traffic = before  # the router refused the write
        if self.cluster.traffic != before:
            stable = self.status.stable_slot or "a"
            canary = "b" if stable == "a" else "a"
            self.moves.append((self.cluster.traffic, self.ready(stable), self.replicas(canary)))
        return decision


def at_first_pause(spec: dict[str, Any], **kw: Any) -> Routers:
    d = Routers(spec, **kw)
    d.step(0)
    d.run(d.cluster.ready_delay + 1)
    assert d.status.phase == "Healthy"
    d.step(1, spec=with_image(spec, "web:2"))
    d.run(2 * d.cluster.ready_delay + 2)
    assert d.condition("Paused").reason == "PauseStep", d.status.message
    return d


# ---------------------------------------------------------------- abort and the canary's pods


def test_an_aborted_canary_keeps_its_pods_while_a_router_still_sends_it_traffic() -> None:
    d = at_first_pause(routed([{"setWeight": 50}, {"pause": {}}]))
    assert d.traffic == TrafficPlan("a", "b", 50) and d.replicas("b") == 2
    d.problem = VS_MISSING  # one router cannot be written: it stays at 50 % canary
    d.step(1, action="abort")
    d.run(120, tick=10)  # far beyond scaleDownDelaySeconds (30)
    assert d.replicas("b") == 2, "the canary was scaled down while a router sends it traffic"
    assert d.status.phase == "Degraded"
    assert "VirtualService web not found" in d.status.message  # the problem stays visible
    d.problem = None  # the VirtualService is back: the plan goes through and is read back
    d.step(1)
    assert d.traffic == TrafficPlan("a")
    assert (d.replicas("a"), d.replicas("b")) == (4, 0)


def test_an_aborted_canary_is_scaled_down_after_the_delay_once_traffic_left_it() -> None:
    d = at_first_pause(routed([{"setWeight": 50}, {"pause": {}}]))
    d.step(1, action="abort")
    assert d.traffic == TrafficPlan("a") and d.replicas("b") == 2
    d.run(30, tick=10)
    assert d.replicas("b") == 0  # the guard holds pods only while traffic is unverified


def test_dynamic_stable_abort_refills_the_stable_first_and_keeps_the_canary_until_verified() -> (
    None
):
    # The stable takes longer to come back (40 s) than scaleDownDelaySeconds (30 s): the
    # decision that sends traffic back is also past the delay.
    spec = routed([{"setWeight": 50}, {"pause": {}}], dynamic=True)
    d = at_first_pause(spec, ready_delay=40)
    assert d.traffic == TrafficPlan("a", "b", 50) and (d.replicas("a"), d.replicas("b")) == (2, 2)
    d.step(1, action="abort")
    d.run(30, tick=5)
    assert d.traffic == TrafficPlan("a", "b", 50)  # the stable is not Ready at 4 yet
    d.lag = True  # the router takes the write back to stable but has not read it back
    d.run(20, tick=5)
    assert d.traffic == TrafficPlan("a")
    assert d.moves[-1] == (TrafficPlan("a"), 4, 2)  # stable Ready at 4 before traffic moved
    assert d.replicas("b") == 2, "the canary was scaled down before the routers verified"
    d.lag = False
    d.step(1)
    assert (d.replicas("a"), d.replicas("b")) == (4, 0)


def test_promotion_without_delay_keeps_the_old_stable_until_the_routers_verified() -> None:
    d = at_first_pause(routed([{"setWeight": 50}, {"pause": {}}], delay=0))
    d.lag = True
    d.step(1, action="promote")
    d.run(10, tick=2)
    assert d.status.stable_slot == "b" and d.traffic == TrafficPlan("b")
    assert d.replicas("a") == 4, "the old stable went to 0 before the routers verified"
    d.lag = False
    d.step(1)
    assert d.replicas("a") == 0


# ---------------------------------------------------------------- warm, never scaled up


def promoted_from_100_into_a_bake() -> Any:
    """dynamicStableScale, promoted at 100 % with a post-promotion analysis to come."""
    d = at_first_pause(
        routed(
            [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}, {"pause": {"duration": 5}}],
            dynamic=True,
            postPromotionAnalysis=ANALYSIS,
        )
    )
    d.step(1, action="promote")
    return d


def test_post_promotion_bake_does_not_scale_the_previous_version_back_up() -> None:
    d = promoted_from_100_into_a_bake()
    d.run(4, tick=2)
    assert d.replicas("a") == 0  # web:1 takes no traffic at 100 %: dynamicStableScale
    d.run(10, tick=2)
    assert d.status.stable_slot == "b" and d.status.post_promotion_run
    assert d.replicas("a") == 0, "the warm previous version was scaled back up"
    completed = [e.message for h in d.history for e in h.events if e.reason == "Completed"]
    assert len(completed) == 1 and f"{V1} had no pods left to keep warm" in completed[0]
    d.run(60, tick=10)
    assert d.replicas("a") == 0


def test_completed_event_says_how_many_pods_are_kept_warm() -> None:
    d = at_first_pause(routed([{"setWeight": 50}, {"pause": {}}]))
    d.step(1, action="promote")
    d.run(10, tick=2)
    completed = [e.message for h in d.history for e in h.events if e.reason == "Completed"]
    assert len(completed) == 1 and f"{V1} kept warm with 4 pods for 30s" in completed[0]


# ---------------------------------------------------------------- dynamicStableScale


def test_dynamic_stable_scale_shrinks_the_stable_only_after_the_weight_is_verified() -> None:
    spec = routed(
        [{"setWeight": 25}, {"pause": {}}, {"setWeight": 75}, {"pause": {}}], dynamic=True
    )
    d = at_first_pause(spec)
    assert d.replicas("a") == 3  # 75 % of 4, rounded up
    d.lag = True
    d.step(1, action="promote")
    d.run(10, tick=2)  # the canary has its 3 pods; the router carries 75 % unverified
    assert d.traffic == TrafficPlan("a", "b", 75) and d.replicas("b") == 3
    assert d.status.canary_weight == 25
    assert d.replicas("a") == 3, "the stable shrank for a weight no router verified"
    d.lag = False
    d.step(1)
    assert d.status.canary_weight == 75 and d.replicas("a") == 1


# ---------------------------------------------------------------- header routes


def route(name: str, value: str | None) -> dict[str, Any]:
    if value is None:
        return {"setHeaderRoute": {"name": name}}
    match = [{"headerName": "X-Group", "headerValue": {"exact": value}}]
    return {"setHeaderRoute": {"name": name, "match": match}}


def test_header_routes_live_from_their_step_in_managed_routes_order_until_removed() -> None:
    routing = {
        "managedRoutes": [{"name": "beta"}, {"name": "alpha"}],
        "istio": {"virtualService": {"name": "web", "routes": ["primary"]}},
    }
    steps = [
        {"setWeight": 10},
        {"pause": {}},
        route("alpha", "a"),
        route("beta", "b"),
        {"pause": {}},
        route("beta", None),
        {"pause": {}},
    ]
    d = at_first_pause(routed(steps, routing))
    assert d.traffic is not None and d.traffic.header_routes == ()  # not before its step
    d.step(1, action="promote")
    d.run(4, tick=2)
    assert d.status.current_step_index == 4
    assert d.traffic is not None
    assert [r.name for r in d.traffic.header_routes] == ["beta", "alpha"]  # managedRoutes order
    assert d.traffic.header_routes[1].match[0].header_value.exact == "a"  # type: ignore[union-attr]
    d.step(1, action="promote")
    d.run(4, tick=2)
    assert d.status.current_step_index == 6
    assert [r.name for r in d.traffic.header_routes] == ["alpha"]  # removed by its step
    d.step(1, action="promote")
    d.run(10, tick=2)
    assert d.status.stable_slot == "b" and d.traffic == TrafficPlan("b")


# ---------------------------------------------------------------- what a router cannot do


@pytest.mark.parametrize(
    ("routing", "steps", "refusal"),
    [
        (
            {"managedRoutes": [{"name": "beta"}], "smi": {"trafficSplitName": "web"}},
            [{"setWeight": 10}, route("beta", "b")],
            "trafficRouting.smi: at most 0 header route(s)",
        ),
        (
            {"managedRoutes": [{"name": "beta"}, {"name": "alpha"}], **NGINX},
            [{"setWeight": 10}, route("beta", "b"), route("alpha", "a")],
            "trafficRouting.nginx: at most 1 header route(s)",
        ),
        (
            {"managedRoutes": [{"name": "beta"}], **NGINX},
            [
                {
                    "setHeaderRoute": {
                        "name": "beta",
                        "match": [{"cookieName": "beta", "cookieValue": "yes"}],
                    }
                }
            ],
            "cookieValue must be one of always with nginx",
        ),
        (
            {"managedRoutes": [{"name": "beta"}], "smi": {"trafficSplitName": "web"}},
            [route("beta", "b")],
            "setHeaderRoute beta: headerValue.exact is not supported by smi",
        ),
    ],
    ids=["smi-header-route", "nginx-two-routes", "nginx-cookie-value", "smi-header-kind"],
)
def test_a_step_the_router_cannot_do_is_an_invalid_spec(
    routing: dict[str, Any], steps: list[dict[str, Any]], refusal: str
) -> None:
    d = Routers(routed(steps, routing))
    d.step(0)
    assert d.status.phase == "Degraded" and "InvalidSpec" in d.true_conditions()
    assert refusal in d.condition("InvalidSpec").message
    assert d.revision_of("a") is None and d.traffic is None  # nothing deployed, nothing routed


def test_a_failed_bake_goes_back_to_a_previous_with_no_pod_only_once_it_has_them() -> None:
    d = promoted_from_100_into_a_bake()
    d.run(14, tick=2)
    assert d.status.post_promotion_run and d.replicas("a") == 0
    d.set_run(d.status.post_promotion_run, "Failed", "errors: 0.4 is not < 0.02")
    d.step(1)
    assert d.status.stable_slot == "a" and d.status.phase == "Degraded"
    assert d.replicas("a") == 4  # the previous is brought back
    assert d.traffic == TrafficPlan("b"), "traffic went to a version with no Ready pod"
    assert "Ready before traffic returns" in d.status.message
    d.run(4, tick=1)  # its pods are Ready after 2 s
    assert d.traffic == TrafficPlan("a")
    assert d.moves[-1][1] == 4  # all 4 Ready when the routers got it back
    d.run(40, tick=10)
    assert (d.replicas("a"), d.replicas("b")) == (4, 0)
