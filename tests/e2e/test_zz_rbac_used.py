"""The chart's RBAC is exactly what the operator uses: every request any e2e operator
made is granted by the chart's rules (no 403 waiting for a user), and every grant of
the default chart was used by some request of the suite (no right nobody needs).

The requests are the operators' own count, `sluice_api_access_total` (both clients,
read as the API server's authorizer reads them), scraped by `Operator.stop` into
tests/e2e/api_calls.py's collector. The file is named to run last of tests/e2e.

Routers driven in the test process (no operator) count too, as identity "driver".

The first check holds for whatever ran. The second needs the whole e2e suite: it skips
when only part of it ran (a file filter, -k, --lf), but not in CI with the full suite.
SLUICE_E2E_CALLS_DIR collects into a directory kept across runs and checks what it
holds, to prove the grants from several partial runs.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import api_calls

pytestmark = pytest.mark.e2e
pytest.importorskip("helm_python")

from tests.chart.render import render  # noqa: E402

HERE = Path(__file__).resolve().parent
NS = "e2e-ns"
# Every optional right on: an operator of any e2e test may use any feature.
WIDEST = {
    "rbac": {"trackSecrets": True},
    "alerts": {"enabled": True},
    "leaderElection": {"enabled": True},
}
Grant = tuple[str, str, str, str]  # (scope, group, resource, verb)

# Grants of the default chart that no e2e request exercises, each with why it stays.
UNEXERCISED: dict[tuple[str, str, str], str] = {
    ("batch", "jobs", "get"): "allowlisted: a step's Job made just before a kill, not yet in the "
    "new process's watch cache, answers its create with 409 and is read back (a race no e2e "
    "hits on purpose; the kill test's Job is in the cache by then)",
    ("sluice.dev", "analysisruns", "get"): "allowlisted: two alerts for one canary racing "
    "before its abort is in the status: the second create answers 409 and the run is read "
    "back (alerts after the abort find nothing to abort)",
}


def grants(objects: Iterable[dict[str, Any]]) -> set[Grant]:
    """What the rendered Roles allow: a Role's rules in its namespace only, a
    ClusterRole's in every namespace and at cluster scope (resourceNames not narrowed)."""
    out: set[Grant] = set()
    for role in objects:
        if role["kind"] not in ("Role", "ClusterRole"):
            continue
        scopes = ("namespaced",) if role["kind"] == "Role" else ("namespaced", "cluster")
        for rule in role.get("rules", []):
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    for verb in rule.get("verbs", []):
                        out.update((s, group, resource, verb) for s in scopes)
    return out


def _records() -> list[api_calls.Record]:
    found = api_calls.records()
    if not found:
        why = "no e2e operator ran in this session"
        if os.environ.get("SLUICE_E2E_REQUIRED") == "1":
            pytest.fail(f"{why}: nothing proves the chart's RBAC", pytrace=False)
        pytest.skip(why)
    return found


def test_every_request_of_every_operator_is_granted_by_the_chart() -> None:
    namespaced = grants(render({"watchNamespaces": [NS], **WIDEST}, namespace=NS))
    cluster_wide = grants(render(WIDEST, namespace=NS))
    refused: dict[str, set[str]] = defaultdict(set)
    for rec in _records():
        allowed = cluster_wide if rec.cluster_wide else namespaced
        for group, resource, verb, scope in rec.calls:
            if scope == "nonresource":  # discovery: every authenticated user may
                continue
            if (scope, group, resource, verb) not in allowed:
                mode = "cluster-wide" if rec.cluster_wide else "watchNamespaces"
                refused[f"{verb} {group or 'core'}/{resource} ({scope}, {mode})"].add(
                    f"{rec.test} [{rec.identity}]"
                )
    assert not refused, "requests the chart does not grant:\n" + "\n".join(
        f"  {call}: {sorted(tests)}" for call, tests in sorted(refused.items())
    )


def _whole_suite_ran(request: pytest.FixtureRequest) -> str | None:
    """None when every e2e test file was collected and nothing deselected; else why not."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return "run by xdist: other workers may still be running e2e tests"
    collected = {Path(str(item.path)).name for item in request.session.items}
    missing = sorted(p.name for p in HERE.glob("test_*.py") if p.name not in collected)
    if missing:
        return f"not the whole e2e suite ran (missing {', '.join(missing[:5])}...)"
    dropped = [n for n in api_calls.deselected() if n.startswith("tests/e2e/")]
    if dropped:
        return f"{len(dropped)} e2e tests were deselected (e.g. {dropped[0]})"
    return None


def test_every_grant_of_the_default_chart_is_used_by_some_request(
    request: pytest.FixtureRequest,
) -> None:
    partial = None if api_calls.accumulated() else _whole_suite_ran(request)
    if partial:
        pytest.skip(f"{partial}: unused grants cannot be told apart from untested ones")
    granted = {(g, r, v) for _, g, r, v in grants(render())}
    seen: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for rec in _records():
        for group, resource, verb, scope in rec.calls:
            if scope != "nonresource":
                seen[(group, resource, verb)].add(f"{rec.test} [{rec.identity}]")
    lines = []
    for grant in sorted(granted):
        users = sorted(seen.get(grant, ()))
        where = f"{len(users)} operators, e.g. {users[0]}" if users else UNEXERCISED.get(grant)
        lines.append(f"  {grant[2]:<7} {grant[0] or 'core'}/{grant[1]}: {where or 'UNUSED'}")
    print("grants of the default chart and the requests that use them:\n" + "\n".join(lines))
    unused = sorted(g for g in granted if g not in seen and g not in UNEXERCISED)
    assert not unused, "granted by the chart but no e2e operator asked for it:\n" + "\n".join(
        f"  {v} {g or 'core'}/{r}" for g, r, v in unused
    )
    # A race may or may not be hit in one run, so an allowlisted grant seen is only said;
    # one the chart no longer grants is a stale entry.
    hit = sorted(g for g in UNEXERCISED if g in seen)
    if hit:
        print(f"allowlisted races hit in this run: {hit}")
    stale = sorted(g for g in UNEXERCISED if g not in granted)
    assert not stale, f"allowlisted but no longer granted: {stale}"
