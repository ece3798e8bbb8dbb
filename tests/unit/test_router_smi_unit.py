"""The SMI TrafficSplit as built for each API version (no API server)."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.engine.types import TrafficPlan
from sluice.engine.validate import parse_spec
from sluice.routers import factory
from sluice.routers.base import RouteContext
from sluice.routers.smi import SMIRouter, choose, mismatch, quantity, traffic_split


def ctx(smi: dict[str, Any], max_weight: int = 100) -> RouteContext:
    spec = parse_spec(
        {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "x"}]},
            },
            "strategy": {
                "canary": {
                    "stableService": "web-main",
                    "trafficRouting": {"maxTrafficWeight": max_weight, "smi": smi},
                    "steps": [{"setWeight": 5}],
                }
            },
        }
    )
    return RouteContext({"metadata": {"name": "web", "namespace": "shop", "uid": "u-1"}}, spec, {})


def backends(body: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(b["service"], b["weight"]) for b in body["spec"]["backends"]]


def test_the_newest_served_version_known_is_chosen() -> None:
    assert choose(["v1alpha4"]) == "v1alpha4"
    assert choose(["v1alpha1", "v1alpha2", "v1alpha3"]) == "v1alpha3"
    assert choose(["v1alpha1", "v1alpha2"]) == "v1alpha2"
    assert choose(["v1alpha1"]) == "v1alpha1"
    assert choose(["v1beta9"]) is None and choose([]) is None


@pytest.mark.parametrize(("text", "value"), [(5, 5.0), ("950", 950.0), ("500m", 0.5), ("1k", 1e3)])
def test_weights_read_in_any_version(text: Any, value: float) -> None:
    assert quantity(text) == value


def test_weights_are_numbers_but_quantity_strings_in_v1alpha1() -> None:
    c = ctx({}, max_weight=1000)
    plan = TrafficPlan("a", "b", 5)
    for version in ("v1alpha4", "v1alpha3", "v1alpha2"):
        body = traffic_split(c, plan, version)
        assert body["apiVersion"] == f"split.smi-spec.io/{version}"
        assert backends(body) == [("web-main", 950), ("web-canary", 50)]
    old = traffic_split(c, plan, "v1alpha1")
    assert backends(old) == [("web-main", "950"), ("web-canary", "50")]
    # The same split, whichever version wrote it.
    assert mismatch(old, traffic_split(c, plan, "v1alpha4")) is None


def test_names_default_to_the_rollout_and_no_canary_slot_means_no_weight() -> None:
    body = traffic_split(ctx({}), TrafficPlan("a", None, 40), "v1alpha4")
    assert body["metadata"]["name"] == "web" and body["spec"]["service"] == "web"
    assert backends(body) == [("web-main", 100), ("web-canary", 0)]
    named = traffic_split(
        ctx({"trafficSplitName": "split", "rootService": "apex"}), TrafficPlan("a"), "v1alpha4"
    )
    assert (named["metadata"]["name"], named["spec"]["service"]) == ("split", "apex")
    assert named["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_mismatch_names_what_differs() -> None:
    c = ctx({})
    want = traffic_split(c, TrafficPlan("a", "b", 25), "v1alpha4")
    other_apex = {**want, "spec": {**want["spec"], "service": "elsewhere"}}
    assert "spec.service is 'elsewhere'" in (mismatch(other_apex, want) or "")
    extra = {
        **want,
        "spec": {
            **want["spec"],
            "backends": [*want["spec"]["backends"], {"service": "x", "weight": 0}],
        },
    }
    assert "x=0" in (mismatch(extra, want) or "")


def test_no_header_routes_and_registered() -> None:
    caps = factory.capabilities("smi")
    assert caps is not None and caps.header == frozenset() and caps.cookie is False
    assert caps.max_header_routes == 0
    assert factory.PROVIDERS["smi"] is SMIRouter
