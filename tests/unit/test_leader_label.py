"""The leader's pod label: who sets and removes it, that a failure is logged once, and that
a slow API server never holds up whoever asked."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

from kubernetes.client.exceptions import ApiException

from sluice.leader_label import LEADER, PodLabel, pod_of


class FakePods:
    def __init__(self, *names: str) -> None:
        self.labels: dict[str, dict[str, str]] = {n: {"app": "sluice"} for n in names}
        self.patches: list[tuple[str, str | None]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail: int | None = None  # answer every call with this status

    def read_namespaced_pod(self, name: str, namespace: str, **_: Any) -> Any:
        self.gate.wait(10)
        if self.fail:
            raise ApiException(status=self.fail, reason="Forbidden")
        if name not in self.labels:
            raise ApiException(status=404, reason="NotFound")
        return SimpleNamespace(metadata=SimpleNamespace(labels=dict(self.labels[name])))

    def patch_namespaced_pod(self, name: str, namespace: str, body: Any, **_: Any) -> None:
        value = body["metadata"]["labels"][LEADER]
        self.patches.append((name, value))
        if value is None:
            self.labels[name].pop(LEADER, None)
        else:
            self.labels[name][LEADER] = value


def label(pods: FakePods, pod: str | None = "sluice-1", ns: str | None = "sys") -> PodLabel:
    p = PodLabel(lambda: None, pod, ns)
    p.api = pods
    return p


def test_the_holder_identity_names_its_pod() -> None:
    assert pod_of("sluice-7d9f-abcde_0a1b2c3d") == "sluice-7d9f-abcde"
    assert pod_of("op-a") == "op-a"  # --leader-id without the suffix: taken whole


def test_a_new_leader_labels_its_pod_and_unlabels_the_previous_holders() -> None:
    pods = FakePods("sluice-1", "sluice-2")
    pods.labels["sluice-2"][LEADER] = "true"  # killed without a word
    p = label(pods)
    done = p.mark(True, previous_holder="sluice-2_deadbeef")
    assert done is not None
    done.result(5)
    assert pods.labels["sluice-1"][LEADER] == "true"
    assert LEADER not in pods.labels["sluice-2"]
    assert pods.labels["sluice-1"]["app"] == "sluice"  # only its own key touched


def test_a_standby_removes_a_stale_label_and_writes_nothing_when_there_is_none() -> None:
    pods = FakePods("sluice-1")
    pods.labels["sluice-1"][LEADER] = "true"  # the previous process in this pod led
    p = label(pods)
    p.unmark(timeout=5)
    assert LEADER not in pods.labels["sluice-1"]
    p.unmark(timeout=5)
    assert pods.patches == [("sluice-1", None)]  # the second one found nothing to do


def test_without_a_pod_name_nothing_is_labelled() -> None:
    pods = FakePods("sluice-1")
    p = label(pods, pod=None)
    assert p.mark(True) is None
    p.unmark(timeout=1)
    assert pods.patches == []


def test_a_slow_api_server_does_not_hold_up_the_caller_and_writes_stay_in_order() -> None:
    pods = FakePods("sluice-1")
    pods.gate.clear()
    p = label(pods)
    started = time.monotonic()
    p.mark(False)
    done = p.mark(True)
    assert time.monotonic() - started < 0.1
    pods.gate.set()
    assert done is not None
    done.result(5)
    assert pods.labels["sluice-1"][LEADER] == "true"


def test_unmark_waits_a_bounded_time() -> None:
    pods = FakePods("sluice-1")
    pods.gate.clear()
    p = label(pods)
    started = time.monotonic()
    p.unmark(timeout=0.2)
    assert time.monotonic() - started < 1
    pods.gate.set()
    p.close()


def test_a_failure_is_logged_once_and_not_raised(capsys: Any) -> None:
    pods = FakePods("sluice-1")
    pods.fail = 403
    p = label(pods)
    for leading in (True, False, True):
        done = p.mark(leading)
        assert done is not None
        done.result(5)  # no exception
    assert p.failed
    err = capsys.readouterr()
    text = err.out + err.err
    assert text.count("leader label not written") == 1, text
