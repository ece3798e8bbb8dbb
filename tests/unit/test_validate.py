"""The checks the CRD schema cannot express: every message names the field it is about."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from driver import make_spec
from hypothesis import given
from hypothesis import strategies as st

from sluice.api.duration import parse_duration
from sluice.api.rollout import ACTIONS, LabelSelector, Pause
from sluice.engine.validate import (
    InvalidSpec,
    check_action,
    parse_spec,
    selector_matches,
    selector_string,
)


def spec_with(**changes: Any) -> dict[str, Any]:
    spec = make_spec([{"setWeight": 20}, {"pause": {"duration": "5s"}}, {"setWeight": 50}])
    for path, value in changes.items():
        node = spec
        *parents, last = path.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    return spec


def problem(raw: dict[str, Any]) -> str:
    with pytest.raises(InvalidSpec) as info:
        parse_spec(raw)
    return str(info.value)


# ---------------------------------------------------------------- parse_spec


def test_a_valid_spec_parses_with_defaults() -> None:
    spec = parse_spec(make_spec([{"setWeight": 10}, {"pause": {}}]))
    assert spec.replicas == 4
    assert spec.strategy.canary.scale_down_delay_seconds == 30
    assert spec.progress_deadline_seconds == 600
    assert spec.paused is False
    assert [s.kind() for s in spec.strategy.canary.steps] == ["setWeight", "pause"]
    assert spec.strategy.canary.steps[1].pause is not None
    assert spec.strategy.canary.steps[1].pause.seconds() is None  # wait for promote


def test_wire_names_are_camel_case() -> None:
    raw = make_spec(replicas=3, progressDeadlineSeconds=90, scaleDownDelaySeconds=7, paused=True)
    spec = parse_spec(raw)
    assert (spec.progress_deadline_seconds, spec.paused) == (90, True)
    assert spec.strategy.canary.scale_down_delay_seconds == 7


def test_weights_going_down_name_the_step_and_the_earlier_one() -> None:
    steps = [{"setWeight": 30}, {"pause": {}}, {"setWeight": 20}]
    message = problem(spec_with(strategy__canary__steps=steps))
    assert message.startswith("spec.strategy.canary.steps[2].setWeight: ")
    assert "20 is lower than 30 at steps[0]" in message


def test_equal_weights_are_allowed() -> None:
    parse_spec(spec_with(strategy__canary__steps=[{"setWeight": 30}, {"setWeight": 30}]))


def test_every_decreasing_weight_is_reported() -> None:
    steps = [{"setWeight": 50}, {"setWeight": 40}, {"setWeight": 60}, {"setWeight": 10}]
    message = problem(spec_with(strategy__canary__steps=steps))
    assert "steps[1].setWeight" in message and "steps[3].setWeight" in message
    assert "10 is lower than 60 at steps[2]" in message
    assert "spec.strategy.canary.steps[2].setWeight" not in message


@pytest.mark.parametrize(
    "step", [{"setWeight": 10, "pause": {}}, {}], ids=["both-kinds", "no-kind"]
)
def test_a_step_needs_exactly_one_kind(step: dict[str, Any]) -> None:
    steps = [{"setWeight": 5}, step]
    message = problem(spec_with(strategy__canary__steps=steps))
    assert message.startswith("spec.strategy.canary.steps[1]: exactly one of ")
    assert "setWeight" in message and "pause" in message


@pytest.mark.parametrize("weight", [-1, 101])
def test_weight_out_of_range(weight: int) -> None:
    message = problem(spec_with(strategy__canary__steps=[{"setWeight": weight}]))
    assert message.startswith("spec.strategy.canary.steps[0].setWeight: ")


@pytest.mark.parametrize("duration", ["soon", "5 m", "-5s", -3, "", "1h30"])
def test_bad_pause_duration(duration: Any) -> None:
    steps = [{"setWeight": 10}, {"pause": {"duration": duration}}]
    message = problem(spec_with(strategy__canary__steps=steps))
    assert message.startswith("spec.strategy.canary.steps[1].pause.duration: ")
    assert "invalid duration" in message


def test_selector_that_does_not_match_the_template() -> None:
    message = problem(spec_with(selector={"matchLabels": {"app": "api", "tier": "web"}}))
    assert message.startswith("spec.selector: does not match spec.template.metadata.labels")
    assert "(app=api,tier=web vs app=web)" in message


def test_selector_expressions_are_checked_too() -> None:
    raw = spec_with(
        selector={"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}
    )
    assert "(app notin (web) vs app=web)" in problem(raw)


def test_empty_selector_is_refused() -> None:
    assert problem(spec_with(selector={})).startswith("spec.selector: empty selector")


def test_template_needs_labels_and_no_reserved_ones() -> None:
    raw = spec_with()
    del raw["template"]["metadata"]
    assert "spec.template.metadata.labels: the pod template needs labels" in problem(raw)

    raw = spec_with()
    raw["template"]["metadata"]["labels"]["sluice.dev/slot"] = "a"
    assert "spec.template.metadata.labels: sluice.dev/slot is reserved" in problem(raw)


def test_template_needs_a_container() -> None:
    raw = spec_with()
    raw["template"]["spec"]["containers"] = []
    assert "spec.template" in problem(raw) and "container" in problem(raw)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("replicas", -1, "spec.replicas"),
        ("progressDeadlineSeconds", 0, "spec.progressDeadlineSeconds"),
        (
            "strategy__canary__scaleDownDelaySeconds",
            -1,
            "spec.strategy.canary.scaleDownDelaySeconds",
        ),
        ("paused", "maybe", "spec.paused"),
        ("replica", 3, "spec.replica"),
    ],
)
def test_schema_errors_name_the_wire_field(path: str, value: Any, field: str) -> None:
    message = problem(spec_with(**{path: value}))
    assert message.startswith(f"{field}: "), message


def test_several_problems_are_all_reported() -> None:
    raw = spec_with(
        strategy__canary__steps=[{"setWeight": 50}, {"setWeight": 10}],
        selector={"matchLabels": {"app": "api"}},
    )
    message = problem(raw)
    first = message.index("spec.strategy.canary.steps[1].setWeight: ")
    assert message.index("; spec.selector: does not match") > first


def test_parse_spec_does_not_modify_its_input() -> None:
    raw = spec_with()
    before = copy.deepcopy(raw)
    parse_spec(raw)
    assert raw == before


# ---------------------------------------------------------------- actions


@pytest.mark.parametrize("action", [None, *ACTIONS])
def test_known_actions(action: str | None) -> None:
    check_action(action)


@pytest.mark.parametrize("action", ["Promote", "promote ", "rollback", ""])
def test_unknown_action_names_the_annotation(action: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        check_action(action)
    message = str(info.value)
    assert message.startswith("metadata.annotations[sluice.dev/action]: unknown action ")
    assert repr(action) in message
    assert all(known in message for known in ACTIONS)


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (30, 30.0),
        (2.5, 2.5),
        ("30", 30.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("250ms", 0.25),
        ("1.5s", 1.5),
        ("1s500ms", 1.5),
        (" 10s ", 10.0),
    ],
)
def test_parse_duration(value: int | float | str, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", ["", " ", "abc", "10x", "5m10", "s", "-5s", "1h 30m", "1.s", -1, -0.5, True, False]
)
def test_parse_duration_refuses(value: Any) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(value)


@given(st.integers(0, 99), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999))
def test_parse_duration_composes(h: int, m: int, s: int, ms: int) -> None:
    text = f"{h}h{m}m{s}s{ms}ms"
    assert parse_duration(text) == pytest.approx(h * 3600 + m * 60 + s + ms / 1000)
    assert parse_duration(str(h * 3600 + m * 60 + s)) == h * 3600 + m * 60 + s


def test_pause_seconds() -> None:
    assert Pause(duration="2m").seconds() == 120.0
    assert Pause(duration=7).seconds() == 7.0
    assert Pause().seconds() is None


# ---------------------------------------------------------------- selectors


def selector(raw: dict[str, Any]) -> LabelSelector:
    return LabelSelector.model_validate(raw)


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ({"matchLabels": {"tier": "web", "app": "shop"}}, "app=shop,tier=web"),
        (
            {"matchExpressions": [{"key": "env", "operator": "In", "values": ["a", "b"]}]},
            "env in (a,b)",
        ),
        (
            {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["x"]}]},
            "env notin (x)",
        ),
        ({"matchExpressions": [{"key": "canary", "operator": "Exists"}]}, "canary"),
        ({"matchExpressions": [{"key": "legacy", "operator": "DoesNotExist"}]}, "!legacy"),
        (
            {
                "matchLabels": {"app": "shop"},
                "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod"]},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ],
            },
            "app=shop,env in (prod),!legacy",
        ),
        ({}, ""),
    ],
)
def test_selector_string(raw: dict[str, Any], text: str) -> None:
    assert selector_string(selector(raw)) == text


def test_selector_string_is_kubectl_syntax() -> None:
    text = selector_string(selector({"matchLabels": {"app": "web", "team": "core"}}))
    assert re.fullmatch(r"[a-z]+=[a-z]+(,[a-z]+=[a-z]+)*", text)


@pytest.mark.parametrize(
    ("raw", "labels", "matches"),
    [
        ({"matchLabels": {"app": "web"}}, {"app": "web", "x": "y"}, True),
        ({"matchLabels": {"app": "web"}}, {"app": "api"}, False),
        ({"matchExpressions": [{"key": "e", "operator": "In", "values": ["a"]}]}, {"e": "a"}, True),
        ({"matchExpressions": [{"key": "e", "operator": "In", "values": ["a"]}]}, {}, False),
        ({"matchExpressions": [{"key": "e", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        ({"matchExpressions": [{"key": "e", "operator": "Exists"}]}, {"e": ""}, True),
        ({"matchExpressions": [{"key": "e", "operator": "DoesNotExist"}]}, {"e": "1"}, False),
    ],
)
def test_selector_matches(raw: dict[str, Any], labels: dict[str, str], matches: bool) -> None:
    assert selector_matches(selector(raw), labels) is matches


def test_argo_rollouts_fields_sluice_does_not_do_are_refused_by_name() -> None:
    """The CRD keeps unknown fields under trafficRouting and the canary strategy (so the API
    server does not prune them in silence); the operator refuses them, naming the field."""
    import yaml

    from sluice.api.crd import all_crds, render

    crd = yaml.safe_load(render(all_crds()["sluice.dev_rollouts.yaml"]))
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    canary = schema["properties"]["spec"]["properties"]["strategy"]["properties"]["canary"]
    assert canary.get("x-kubernetes-preserve-unknown-fields") is True
    routing = canary["properties"]["trafficRouting"]
    assert routing.get("x-kubernetes-preserve-unknown-fields") is True
    for extra, field in (
        ({"trafficRouting": {"alb": {"ingress": "web"}}}, "trafficRouting.alb"),
        ({"maxSurge": "25%"}, "canary.maxSurge"),
    ):
        raw = {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]},
            },
            "strategy": {"canary": {"steps": [{"setWeight": 10}], **extra}},
        }
        with pytest.raises(InvalidSpec, match=rf"{field}[^;]*not supported by Sluice"):
            parse_spec(raw)


def _header_route(regex: str) -> dict[str, Any]:
    spec = make_spec(steps=[{"setWeight": 10}])
    spec["strategy"]["canary"]["trafficRouting"] = {
        "istio": {"virtualService": {"name": "vs", "routes": ["primary"]}},
        "managedRoutes": [{"name": "beta"}],
    }
    match = [{"headerName": "X-Group", "headerValue": {"regex": regex}}]
    spec["strategy"]["canary"]["steps"].insert(
        0, {"setHeaderRoute": {"name": "beta", "match": match}}
    )
    return spec


@pytest.mark.parametrize(
    ("regex", "why"),
    [
        ("(a)\\1", "backreference"),
        ("(?P<g>a)(?P=g)", "backreference"),
        ("(?=beta)beta", "lookahead"),
        ("x|(?<!y)z", "lookbehind"),
        ("a++", "possessive"),
        ("(?>a)", "atomic group"),
        ("(", "not a regular expression"),
        ("[z-a]", "not a regular expression"),
    ],
)
def test_a_header_regex_the_routers_cannot_run_is_refused_by_name(regex: str, why: str) -> None:
    """Found by the fuzzed-spec chaos test: these were written to the router objects."""
    with pytest.raises(InvalidSpec) as exc:
        parse_spec(_header_route(regex), "web")
    message = str(exc.value)
    assert "steps[0].setHeaderRoute.match[0].headerValue" in message and why in message


@pytest.mark.parametrize(
    "regex", ["^(a+)+$", "(x+x+)+y", "(.*a){20}", "beta-\\pL+\\z", "[[:alpha:]]+", "(?i)b|c"]
)
def test_re2_patterns_are_taken_even_ones_that_explode_a_backtracking_engine(regex: str) -> None:
    parse_spec(_header_route(regex), "web")
