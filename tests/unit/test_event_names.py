"""Events are named after the decision, so a decision made twice posts them once."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from sluice.cluster.events import event_body, event_name, transition_key
from sluice.engine.types import EventNote


def rollout(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "annotations": {}},
        "status": {"phase": "Progressing", "currentStepIndex": 2, "attempt": 1, **status},
    }


NOW = datetime(2026, 12, 2, tzinfo=UTC)
NOTE = EventNote("StepReached", "step 2/5: pause 30s", "Normal")


def name(body: dict[str, Any], note: EventNote = NOTE) -> str:
    return event_name(body, note, transition_key(body))


def test_the_same_decision_made_again_names_its_event_the_same() -> None:
    body = rollout()
    again = copy.deepcopy(body)
    # what a concurrent writer or the pods change meanwhile does not count
    again["status"]["message"] = "edited by someone else"
    again["status"]["readyReplicas"] = 3
    again["metadata"]["labels"] = {"team": "x"}
    assert name(body) == name(again)
    assert event_body(body, NOTE, NOW, name(body))["metadata"] == {
        "name": name(body),
        "namespace": "shop",
    }


def test_another_transition_or_another_note_is_another_event() -> None:
    body = rollout()
    later = rollout(currentStepIndex=3)
    acted = copy.deepcopy(body)
    acted["metadata"]["annotations"]["sluice.dev/action"] = "promote"
    retried = rollout(attempt=2)
    names = {name(body), name(later), name(acted), name(retried)}
    names.add(name(body, EventNote("Paused", "step 2/5: pause 30s", "Normal")))
    assert len(names) == 5
    other = copy.deepcopy(body)
    other["metadata"]["uid"] = "u-2"  # a Rollout deleted and created again
    assert name(other) != name(body)


def test_names_are_valid_event_names_whatever_the_rollout_name() -> None:
    body = rollout()
    body["metadata"]["name"] = "a" * 253
    got = name(body)
    assert len(got) <= 253 and got.startswith("a" * 200 + ".")


def test_without_a_name_the_api_server_generates_one() -> None:
    meta = event_body(rollout(), NOTE, NOW)["metadata"]
    assert meta == {"generateName": "web.", "namespace": "shop"}
