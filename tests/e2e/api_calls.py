"""The API requests each e2e operator made, collected for tests/e2e/test_zz_rbac_used.py.

`Operator.stop` scrapes the operator's `sluice_api_access_total` (every request of
both its clients, as the authorizer sees it) before it stops it, and writes one JSON
file per operator into this session's directory. SLUICE_E2E_CALLS_DIR names a
directory to collect into instead, kept across runs (see test_zz_rbac_used.py).

Some tests drive a traffic router's code in the test process, without an operator
(tests/e2e/routers.py, provider_driver.py): `track` counts the requests of that
router's own client the same way, one record per test, as identity "driver".
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kubernetes
from prometheus_client.parser import text_string_to_metric_families

from sluice.cluster.access import classify

if TYPE_CHECKING:
    import pytest

    from tests.e2e.conftest import Operator

METRIC = "sluice_api_access_total"
_state: dict[str, Any] = {"dir": None, "own": False, "deselected": []}
_driven: dict[str, dict[tuple[str, str, str, str], float]] = {}  # test -> calls


@dataclass(frozen=True)
class Record:
    test: str
    identity: str  # "admin": the test cluster's kubeconfig; "chart": the chart's account
    cluster_wide: bool
    calls: dict[tuple[str, str, str, str], float]  # (group, resource, verb, scope) -> count


def open_session() -> None:
    if _state["dir"] is not None:
        return
    given = os.environ.get("SLUICE_E2E_CALLS_DIR")
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        _state["dir"], _state["own"] = Path(given), False
    else:
        _state["dir"], _state["own"] = Path(tempfile.mkdtemp(prefix="sluice-api-calls-")), True


def close_session() -> None:
    if accumulated():  # the next run checks what this one drove too
        for rec in driven():
            _write(rec)
    if _state["own"] and _state["dir"] is not None:
        shutil.rmtree(_state["dir"], ignore_errors=True)
    _state["dir"] = None


def accumulated() -> bool:
    """True when the records come from SLUICE_E2E_CALLS_DIR, possibly of several runs."""
    return _state["dir"] is not None and not _state["own"]


def note_deselected(items: list[pytest.Item]) -> None:
    _state["deselected"].extend(item.nodeid for item in items)


def deselected() -> list[str]:
    return list(_state["deselected"])


def parse(text: str) -> dict[tuple[str, str, str, str], float]:
    calls: dict[tuple[str, str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != METRIC:
                continue
            labels = sample.labels
            key = (labels["group"], labels["resource"], labels["verb"], labels["scope"])
            calls[key] = calls.get(key, 0.0) + sample.value
    return calls


def record(op: Operator) -> None:
    """Scrape a running operator's calls into the session's directory (best effort: an
    operator that no longer answers has nothing more to say)."""
    if _state["dir"] is None:
        return
    try:
        calls = parse(op.metrics())
    except OSError:
        return
    admin = os.environ.get("SLUICE_E2E_KUBECONFIG")
    identity = "admin" if op.kubeconfig == admin else "chart"
    _write(Record(_current_test(), identity, op.cluster_wide, calls))


def _current_test() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" (", 1)[0]


def _write(rec: Record) -> None:
    doc = {
        "test": rec.test,
        "identity": rec.identity,
        "cluster_wide": rec.cluster_wide,
        "calls": [[*key, value] for key, value in sorted(rec.calls.items())],
    }
    path = _state["dir"] / f"{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(doc))


def track(client: kubernetes.client.ApiClient) -> kubernetes.client.ApiClient:
    """Count the requests of a client that a router driven in this process uses."""
    original = client.call_api

    def call_api(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        a = classify(method, url)
        calls = _driven.setdefault(_current_test(), {})
        key = (a.group, a.resource, a.verb, a.scope)
        calls[key] = calls.get(key, 0.0) + 1
        return original(method, url, *args, **kwargs)

    client.call_api = call_api  # type: ignore[method-assign]
    return client


def driven() -> list[Record]:
    return [Record(test, "driver", False, dict(calls)) for test, calls in _driven.items()]


def records() -> list[Record]:
    """Every operator's record and every driven router's of this session (and, with
    SLUICE_E2E_CALLS_DIR, of earlier runs)."""
    if _state["dir"] is None:
        return []
    out = driven()
    for path in sorted(_state["dir"].glob("*.json")):
        doc = json.loads(path.read_text())
        calls = {(g, r, v, s): float(n) for g, r, v, s, n in doc["calls"]}
        out.append(Record(doc["test"], doc["identity"], doc["cluster_wide"], calls))
    return out
