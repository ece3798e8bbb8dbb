"""Small checks on the objects a router creates and owns (shared by the providers)."""

from __future__ import annotations

from sluice.cluster import labels as L
from sluice.routers.base import Body, RouteContext


def same_meta(live: Body, want: Body) -> bool:
    """`live` carries the labels and owner references Sluice gives it."""
    meta = live["metadata"]
    labels = meta.get("labels") or {}
    return all(labels.get(k) == v for k, v in want["metadata"]["labels"].items()) and (
        meta.get("ownerReferences") == want["metadata"]["ownerReferences"]
    )


def orphans(ctx: RouteContext, role: str, kind: str, keep: set[str]) -> list[Body]:
    """Objects of `kind` and `role` this Rollout owns (cached) whose name is not in `keep`:
    left over from a spec that named other objects."""
    return [
        body
        for key, body in ctx.children.items()
        if key.startswith(f"{kind}/")
        and (body["metadata"].get("labels") or {}).get(L.ROLE) == role
        and ctx.owned(body)
        and body["metadata"]["name"] not in keep
    ]
