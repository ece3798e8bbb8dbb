"""A watch that outlives an API server restart.

A kube-apiserver that has just started answers 404 for custom resources until it has
loaded their CRDs again. kopf retries a watch after a disconnect or a 429, but a 404
fails the watcher, and with it every watch of the operator: the process lives on and
sees nothing more (found by tests/chaos/test_apiserver_restart.py). Here a 404 ends the
stream instead, and kopf's own loop (`infinite_watch`) lists and watches again after
`settings.watching.reconnect_backoff`. A CRD really removed is logged on each retry; in
cluster-wide mode kopf's scanner stops that watch itself.

Likewise a 410 from the paged LIST that starts each watch: a list of 10,000 objects, read
by an operator under load, can outlive etcd's compaction (5 min), and its next page's
`continue` token has expired. kopf lets that fail the operator (seen at 2 shards x 10,000:
the process exited); here the stream ends and kopf lists again from the start.

kopf has no setting for this; the wrapper replaces the module function that
`infinite_watch` calls (kopf is pinned in requirements.lock; a unit test fails if the
function moves).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from kopf._cogs.clients import errors, watching

from sluice import logs

log = logs.get("sluice.watch")
_original = watching.continuous_watch


async def continuous_watch(**kwargs: Any) -> AsyncIterator[Any]:
    try:
        async for event in _original(**kwargs):
            yield event
    except errors.APINotFoundError as exc:
        log.warning(
            "watch answered 404 (an API server still loading its CRDs?): watching again",
            resource=str(kwargs.get("resource")),
            error=str(exc)[:200],
        )
    except errors.APIClientError as exc:
        if exc.status != 410:
            raise
        log.warning(
            "a paged list outlived its continue token (410 Expired): listing again",
            resource=str(kwargs.get("resource")),
            error=str(exc)[:200],
        )


def install() -> None:
    watching.continuous_watch = continuous_watch
