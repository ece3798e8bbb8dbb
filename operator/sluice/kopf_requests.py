"""kopf's own API requests, counted by the permission they use.

kopf lists and watches the watched kinds and patches finalizers and annotations with
its own aiohttp client, which Sluice's client never sees. kopf has no hook for its
requests; the wrapper replaces the module function that kopf's get, post, patch, delete
and stream all call (kopf is pinned in requirements.lock; a unit test fails if the
function moves), the way kopf_watch.py wraps its watch. Retries inside kopf's request
count once: they ask for the same permission.
"""

from __future__ import annotations

from typing import Any

from kopf._cogs.clients import api

from sluice.cluster import recording

_original = api.request


async def request(method: str, url: str, **kwargs: Any) -> Any:
    recording.count(method, url)
    return await _original(method, url, **kwargs)


def install() -> None:
    api.request = request
