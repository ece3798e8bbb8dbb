"""The watch cache: latest bodies of Rollouts and of their children, newest wins."""

from __future__ import annotations

from typing import Any

from sluice.cluster import labels as L

Body = dict[str, Any]
Key = tuple[str, str]  # (namespace, rollout name)


def _rv(body: Body) -> int:
    try:
        return int(body["metadata"].get("resourceVersion", "0"))
    except (TypeError, ValueError):
        return 0


def _newer(new: Body, old: Body | None) -> bool:
    # resourceVersions are etcd revisions: comparing them keeps a write's response from
    # being overwritten by a watch event that was already on its way.
    return old is None or _rv(new) >= _rv(old)


class Cache:
    def __init__(self) -> None:
        self.rollouts: dict[Key, Body] = {}
        self.children: dict[Key, dict[str, Body]] = {}

    def put_rollout(self, body: Body) -> bool:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if _newer(body, self.rollouts.get(key)):
            self.rollouts[key] = body
            return True
        return False

    def drop_rollout(self, key: Key) -> None:
        self.rollouts.pop(key, None)
        self.children.pop(key, None)

    def child_key(self, body: Body) -> tuple[Key, str] | None:
        meta = body.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(L.ROLLOUT)
        if not owner:
            return None
        return (meta["namespace"], owner), f"{body.get('kind', '')}/{meta['name']}"

    def put_child(self, body: Body, deleted: bool = False) -> Key | None:
        found = self.child_key(body)
        if found is None:
            return None
        key, name = found
        if deleted:
            bucket = self.children.get(key, {})
            bucket.pop(name, None)
            if not bucket:
                self.children.pop(key, None)
            return key
        bucket = self.children.setdefault(key, {})
        if _newer(body, bucket.get(name)):
            bucket[name] = body
        return key
