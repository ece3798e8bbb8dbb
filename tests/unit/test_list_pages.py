"""Sluice's own LISTs (the cache warm-up at start) come a page at a time: at 10,000
Rollouts one answer is ~100 MB of JSON, and decoding it whole grew a heap that stayed."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import kubernetes

from sluice.cluster import kube as K


def _pages(total: int, calls: list[dict[str, Any]]) -> Any:
    def list_deployment_for_all_namespaces(**kwargs: Any) -> Any:
        calls.append(kwargs)
        start = int(kwargs.get("_continue") or 0)
        end = min(start + kwargs["limit"], total)
        items = [{"metadata": {"name": f"d{i}"}} for i in range(start, end)]
        meta = {"continue": str(end)} if end < total else {}
        return SimpleNamespace(data=json.dumps({"items": items, "metadata": meta}).encode())

    return list_deployment_for_all_namespaces


def test_children_are_listed_in_pages_and_each_page_is_handed_over_before_the_next() -> None:
    kube = K.Kube(kubernetes.client.ApiClient(), limit=1)
    calls: list[dict[str, Any]] = []
    kube.apps.list_deployment_for_all_namespaces = _pages(1234, calls)  # type: ignore[method-assign]
    seen: list[int] = []

    async def main() -> list[str]:
        names = []
        async for page in kube.list_children("deployments", None):
            seen.append(len(calls))  # the next page is not asked for yet
            names += [b["metadata"]["name"] for b in page]
            assert all(b["kind"] == "Deployment" for b in page)
        return names

    names = asyncio.run(main())
    assert names == [f"d{i}" for i in range(1234)]
    assert [c["limit"] for c in calls] == [K.LIST_PAGE] * 3
    assert [c.get("_continue") for c in calls] == [None, "500", "1000"]
    assert seen == [1, 2, 3]
    assert all(c["label_selector"] == "sluice.dev/rollout" for c in calls)
