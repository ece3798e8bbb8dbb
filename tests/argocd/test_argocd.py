"""Argo CD's view of a Rollout: the health check and the actions, run in Lua 5.1.

The scripts are taken from the generated argocd-cm ConfigMap (what Argo CD is given),
and run against Rollouts captured from a real operator (tests/argocd/capture.py).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.argocd import lua

ROOT = Path(__file__).resolve().parents[2]
CM = ROOT / "charts" / "sluice" / "argocd" / "argocd-cm.yaml"
FIXTURES = Path(__file__).parent / "fixtures"
ACTIONS = ("promote", "promote-full", "abort", "retry", "pause", "resume", "rollback-gradually")

pytestmark = pytest.mark.skipif(lua.LUA is None, reason="lua5.1 is not installed")


def fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / f"{name}.json").read_text()))


def _config() -> dict[str, Any]:
    return dict(yaml.safe_load(CM.read_text())["data"])


def _script(tmp: Path, name: str, text: str) -> Path:
    path = tmp / f"{name}.lua"
    path.write_text(text)
    return path


def health(obj: dict[str, Any], tmp: Path) -> dict[str, str]:
    text = _config()["resource.customizations.health.sluice.dev_Rollout"]
    return dict(lua.run(_script(tmp, "health", text), obj, tmp))


def _actions() -> dict[str, Any]:
    return dict(yaml.safe_load(_config()["resource.customizations.actions.sluice.dev_Rollout"]))


def discover(obj: dict[str, Any], tmp: Path) -> dict[str, bool]:
    """action name -> enabled."""
    out = lua.run(_script(tmp, "discovery", _actions()["discovery.lua"]), obj, tmp)
    return {name: not spec.get("disabled", False) for name, spec in out.items()}


def act(name: str, obj: dict[str, Any], tmp: Path) -> dict[str, Any]:
    (definition,) = [d for d in _actions()["definitions"] if d["name"] == name]
    return dict(lua.run(_script(tmp, name, definition["action.lua"]), obj, tmp))


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("healthy", "Healthy", "stable "),
        ("promoted", "Healthy", "stable "),
        ("progressing", "Progressing", "step 0/4: setWeight 20"),
        ("paused-step", "Suspended", "step 1/4: pause 5s"),
        ("paused-manual", "Suspended", "pause until promoted"),
        ("user-paused", "Suspended", "paused by annotation"),
        ("aborted", "Degraded", "aborted by the sluice.dev/action annotation"),
        ("invalid-spec", "Degraded", "Invalid spec: spec.selector: does not match"),
        ("lagging-generation", "Progressing", "has not observed generation"),
        ("no-status", "Progressing", "Waiting for Sluice"),
    ],
)
def test_health_of_captured_rollouts(tmp_path: Path, case: str, status: str, message: str) -> None:
    result = health(fixture(case), tmp_path)
    assert result["status"] == status
    assert message in result["message"]


def test_lagging_generation_wins_over_a_healthy_phase(tmp_path: Path) -> None:
    obj = fixture("healthy")
    obj["metadata"]["generation"] = obj["status"]["observedGeneration"] + 1
    assert health(obj, tmp_path)["status"] == "Progressing"
    del obj["status"]["observedGeneration"]
    assert health(obj, tmp_path)["status"] == "Progressing"


def test_unknown_phase_is_progressing_and_named(tmp_path: Path) -> None:
    obj = fixture("healthy")
    obj["status"]["phase"] = "Rebalancing"
    result = health(obj, tmp_path)
    assert result["status"] == "Progressing" and "Rebalancing" in result["message"]


@pytest.mark.parametrize(
    ("case", "enabled"),
    [
        ("healthy", set()),
        ("no-status", set()),
        ("progressing", {"promote", "promote-full", "abort", "pause", "rollback-gradually"}),
        ("paused-manual", {"promote", "promote-full", "abort", "pause", "rollback-gradually"}),
        ("user-paused", {"promote", "promote-full", "abort", "resume", "rollback-gradually"}),
        ("aborted", {"retry"}),
        ("action-pending", set()),
    ],
)
def test_discovery_offers_what_would_do_something(
    tmp_path: Path, case: str, enabled: set[str]
) -> None:
    offered = discover(fixture(case), tmp_path)
    assert set(offered) == set(ACTIONS)
    assert {name for name, on in offered.items() if on} == enabled


@pytest.mark.parametrize("name", ACTIONS)
def test_each_action_sets_only_the_annotation(tmp_path: Path, name: str) -> None:
    obj = fixture("paused-manual")
    before = copy.deepcopy(obj)
    after = act(name, obj, tmp_path)
    assert after["metadata"]["annotations"]["sluice.dev/action"] == name
    after["metadata"]["annotations"].pop("sluice.dev/action")
    before["metadata"].setdefault("annotations", {})
    # nothing else changed (the spec is Git's; the status is Sluice's)
    assert after["spec"] == before["spec"]
    assert after["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert after["status"]["phase"] == before["status"]["phase"]


def test_action_on_an_object_without_annotations(tmp_path: Path) -> None:
    obj = fixture("no-status")
    obj["metadata"].pop("annotations", None)
    after = act("abort", obj, tmp_path)
    assert after["metadata"]["annotations"] == {"sluice.dev/action": "abort"}


def test_the_action_names_are_the_operators() -> None:
    from sluice.api.rollout import ACTIONS as OPERATOR_ACTIONS

    assert tuple(d["name"] for d in _actions()["definitions"]) == OPERATOR_ACTIONS


def test_configmap_is_generated_from_the_lua_files() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "render.py"), "argocd"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == CM.read_text(), "argocd-cm.yaml is stale: run `make deploy`"
