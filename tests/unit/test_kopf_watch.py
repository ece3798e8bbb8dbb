"""A 404 from a watch (an API server reloading its CRDs), or a 410 from its paged LIST
(a continue token expired), ends the stream for kopf to list and watch again; neither
fails every watcher of the operator any more."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kopf._cogs.clients import errors, watching

import sluice.handlers  # noqa: F401  (installs the wrapper)
from sluice import kopf_watch


def test_kopf_calls_the_wrapper() -> None:
    assert watching.continuous_watch is kopf_watch.continuous_watch
    assert kopf_watch._original.__module__ == "kopf._cogs.clients.watching"


def test_a_404_ends_the_stream_and_other_errors_still_raise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def failing(error: Exception, **_: Any) -> AsyncIterator[Any]:
        yield {"type": "ADDED", "object": {}}
        raise error

    async def drain(error: Exception) -> list[Any]:
        monkeypatch.setattr(kopf_watch, "_original", lambda **kw: failing(error, **kw))
        return [e async for e in kopf_watch.continuous_watch(resource="x")]

    not_found = errors.APINotFoundError({"message": "404 page not found"}, status=404, headers={})
    assert asyncio.run(drain(not_found)) == [{"type": "ADDED", "object": {}}]
    with pytest.raises(errors.APIForbiddenError):
        asyncio.run(drain(errors.APIForbiddenError({"message": "no"}, status=403, headers={})))


def test_an_expired_continue_token_ends_the_stream_for_a_new_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def listing(error: Exception, **_: Any) -> AsyncIterator[Any]:
        yield {"type": None, "object": {"metadata": {"name": "r-1"}}}
        raise error

    async def drain(error: Exception) -> list[Any]:
        monkeypatch.setattr(kopf_watch, "_original", lambda **kw: listing(error, **kw))
        return [e async for e in kopf_watch.continuous_watch(resource="rollouts")]

    expired = errors.APIClientError(
        {"message": "The provided continue parameter is too old", "reason": "Expired"},
        status=410,
        headers={},
    )
    assert len(asyncio.run(drain(expired))) == 1
    # another 4xx still fails as before
    bad = errors.APIClientError({"message": "bad request"}, status=400, headers={})
    with pytest.raises(errors.APIClientError):
        asyncio.run(drain(bad))
