"""Claims on shared routes (the reconciler's `_claim_problem`), on the Controller alone: the
message each claimant would carry, as the reconcile combines it (a claim problem, else the
router's own problem), while claimants come and go."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.controller.reconciler import Controller

NOT_FOUND = "VirtualService missing-vs: not found in shop"  # what the router says
CLAIM = "VirtualService missing-vs route primary"
VS: dict[str, Any] = {"metadata": {"name": "missing-vs", "namespace": "shop"}}


def rollout(name: str, age: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": f"u-{name}",
            "resourceVersion": str(age),
            "creationTimestamp": f"2026-01-01T00:00:{age:02d}Z",
        }
    }


def message(controller: Controller, name: str, objects: dict[str, Any]) -> str:
    claimed = controller._claim_problem(("shop", name), {CLAIM}, objects)
    return claimed or ("" if objects else NOT_FOUND)


@pytest.fixture
def controller() -> Controller:
    made = Controller(kube=None)  # type: ignore[arg-type]  # no call reaches the API here
    for age, name in enumerate(("r0", "r1", "r2", "r3")):
        made.rollout_event("ADDED", rollout(name, age))
    return made


def messages(controller: Controller, objects: dict[str, Any]) -> dict[str, str]:
    return {
        key[1]: message(controller, key[1], objects) for key in sorted(controller.cache.rollouts)
    }


def test_a_claim_on_a_missing_object_changes_nobodys_message_when_a_claimant_goes(
    controller: Controller,
) -> None:
    seen = messages(controller, {})
    assert seen == {name: NOT_FOUND for name in ("r0", "r1", "r2", "r3")}
    changes = 0
    for oldest in ("r0", "r1", "r2"):
        controller.rollout_event("DELETED", rollout(oldest, 0))
        now = messages(controller, {})
        changes += sum(now[name] != seen[name] for name in now)
        seen = now
    assert changes == 0, "a status write for each claimant the route passed to"


def test_once_the_object_exists_the_oldest_claimant_keeps_the_route(
    controller: Controller,
) -> None:
    messages(controller, {})  # all four claimed it while it was missing
    seen = messages(controller, {"VirtualService/missing-vs": VS})
    assert seen["r0"] == ""
    for name in ("r1", "r2", "r3"):
        assert seen[name] == f"shared route: {CLAIM} is already managed by Rollout r0"


def test_an_ingress_claimed_whole_and_by_host_rule_overlaps_and_the_index_empties(
    controller: Controller,
) -> None:
    ingress = {"Ingress/web": {"metadata": {"name": "web"}}, "Ingress/web-2": {}}
    rule = "Ingress web host shop.example"
    # r1 read the Ingress (a host rule); r0, older, claimed it whole before reading it.
    assert controller._claim_problem(("shop", "r1"), {rule}, ingress) is None
    assert controller._claim_problem(("shop", "r0"), {"Ingress web"}, ingress) is None
    told = controller._claim_problem(("shop", "r1"), {rule}, ingress)
    assert told == f"shared route: {rule} is already managed by Rollout r0"
    # Another Ingress whose name starts alike is no rival.
    other = "Ingress web-2 host shop.example"
    assert controller._claim_problem(("shop", "r2"), {other}, ingress) is None
    for name in ("r0", "r1", "r2"):
        controller.rollout_event("DELETED", rollout(name, 0))
    assert controller.claims == {} and controller.ingress_claims == {}
