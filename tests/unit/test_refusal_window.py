"""A refused canary (its analysis invalid, a child's name taken) stands until its retry is
due or the spec changes: a child's watch event in between (the stable's pods becoming Ready)
makes no new attempt, so the analysis templates are not read again for each one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sluice.controller.reconciler import REJECTED_RETRY_SECONDS, Controller, Rejected

START = datetime(2026, 1, 1, tzinfo=UTC)
KEY = ("shop", "web")


def controller(now: list[datetime]) -> Controller:
    made = Controller(kube=None, clock=lambda: now[0])  # type: ignore[arg-type]
    body: dict[str, Any] = {
        "metadata": {"name": "web", "namespace": "shop", "uid": "u", "generation": 3}
    }
    made.cache.rollouts[KEY] = body
    return made


def test_a_refusal_stands_through_child_events_until_its_retry_is_due() -> None:
    now = [START]
    made = controller(now)
    made.refuse(KEY, Rejected("rev1", "analysis: template missing"))
    for second in (0, 1, 5, 20, 29):  # each a child's watch event: the refusal is said again
        standing, retry_in = made.refusals(KEY, 3, START + timedelta(seconds=second))
        assert standing == {"rev1": "analysis: template missing"}, second
        assert retry_in == REJECTED_RETRY_SECONDS - second
    standing, _ = made.refusals(KEY, 3, START + timedelta(seconds=REJECTED_RETRY_SECONDS))
    assert standing == {}, "due: tried again"
    now[0] = START + timedelta(seconds=31)
    made.refuse(KEY, Rejected("rev1", "analysis: template missing"))  # refused again
    standing, retry_in = made.refusals(KEY, 3, now[0] + timedelta(seconds=1))
    assert standing and retry_in == REJECTED_RETRY_SECONDS - 1, "a new window from then"


def test_a_new_spec_is_tried_at_once() -> None:
    made = controller([START])
    made.refuse(KEY, Rejected("rev1", "analysis: template missing"))
    standing, _ = made.refusals(KEY, 4, START + timedelta(seconds=1))
    assert standing == {}
