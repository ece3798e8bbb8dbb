"""The watch cache: latest bodies of Rollouts and of their children, newest wins."""

from __future__ import annotations

import sys
from typing import Any

from sluice.cluster import labels as L

Body = dict[str, Any]
Key = tuple[str, str]  # (namespace, rollout name)


def _rv(body: Body) -> int:
    try:
        return int(body["metadata"].get("resourceVersion", "0"))
    except (TypeError, ValueError):
        return 0


def newer(new: Body, old: Body | None) -> bool:
    # resourceVersions are etcd revisions: comparing them keeps a write's response from
    # being overwritten by a watch event that was already on its way.
    return old is None or _rv(new) >= _rv(old)


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# What observe() reads of a child Deployment's status; conditions and the rest are not kept.
DEPLOYMENT_STATUS = ("observedGeneration", "replicas", "updatedReplicas", "readyReplicas")


def slim(body: Body) -> Body:
    """What decisions need of an object Sluice owns or reads: no managedFields, no
    last-applied copy (often larger than the object itself), of a Deployment's status only
    the replica counts. User router objects are kept whole: Sluice writes them back and
    must not drop a byte of them."""
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        return body
    out = body
    if "managedFields" in meta or LAST_APPLIED in (meta.get("annotations") or {}):
        meta = {k: v for k, v in meta.items() if k != "managedFields"}
        annotations = meta.get("annotations")
        if annotations and LAST_APPLIED in annotations:
            meta["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
        out = {**body, "metadata": meta}
    status = body.get("status")
    if not isinstance(status, dict) or body.get("kind") != "Deployment":
        return out
    if any(k not in DEPLOYMENT_STATUS for k in status):
        out = {**out, "status": {k: status[k] for k in DEPLOYMENT_STATUS if k in status}}
    return out


SHORT = 64  # longer strings (messages, templates of queries) are rarely repeated


def _interned(value: Any) -> Any:
    if isinstance(value, dict):
        return {sys.intern(k): _interned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interned(v) for v in value]
    if isinstance(value, str) and len(value) <= SHORT:
        return sys.intern(value)
    return value


def compact(body: Body) -> Body:
    """slim(), with keys and short values shared between all cached bodies: each decoded
    body has its own copy of "metadata", "readyReplicas", "sluice.dev/rollout", a
    namespace... which at 10,000 Rollouts is about half of the cache."""
    out: Body = _interned(slim(body))
    return out


class Cache:
    def __init__(self) -> None:
        self.rollouts: dict[Key, Body] = {}
        self.children: dict[Key, dict[str, Body]] = {}
        # Router objects users own (no Sluice label), kept only while a Rollout names them.
        self.objects: dict[tuple[str, str], Body] = {}  # (namespace, "Kind/name") -> body
        self.named_by: dict[tuple[str, str], set[Key]] = {}  # which Rollouts name it
        self.names: dict[Key, set[str]] = {}  # Rollout -> the "Kind/name"s it names

    def name_objects(self, key: Key, refs: set[str]) -> list[str]:
        """Record the objects Rollout `key` names; returns the ones not cached yet."""
        for gone in self.names.get(key, set()) - refs:
            who = self.named_by.get((key[0], gone), set())
            who.discard(key)
            if not who:
                self.named_by.pop((key[0], gone), None)
                self.objects.pop((key[0], gone), None)
        if refs:
            self.names[key] = set(refs)
        else:
            self.names.pop(key, None)
        for ref in refs:
            self.named_by.setdefault((key[0], ref), set()).add(key)
        return sorted(ref for ref in refs if (key[0], ref) not in self.objects)

    def unnamed(self, key: Key, refs: set[str]) -> list[Body]:
        """The cached objects `key` names now that nobody would name once it names `refs`."""
        gone = self.names.get(key, set()) - refs
        alone = [ref for ref in gone if self.named_by.get((key[0], ref), set()) <= {key}]
        found = (self.objects.get((key[0], ref)) for ref in sorted(alone))
        return [body for body in found if body is not None]

    def put_object(self, body: Body, deleted: bool = False) -> set[Key]:
        """A watched user object changed: cache it if named; returns the Rollouts naming it."""
        meta = body.get("metadata") or {}
        ref = (str(meta.get("namespace", "")), f"{body.get('kind', '')}/{meta.get('name', '')}")
        who = self.named_by.get(ref)
        if not who:
            return set()
        if deleted:
            self.objects.pop(ref, None)
        elif newer(body, self.objects.get(ref)):
            self.objects[ref] = body
        return set(who)

    def objects_of(self, key: Key) -> dict[str, Body]:
        found = ((ref, self.objects.get((key[0], ref))) for ref in self.names.get(key, ()))
        return {ref: body for ref, body in found if body is not None}

    def put_rollout(self, body: Body) -> bool:
        body = compact(body)
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if newer(body, self.rollouts.get(key)):
            self.rollouts[key] = body
            return True
        return False

    def drop_rollout(self, key: Key) -> None:
        self.rollouts.pop(key, None)
        self.children.pop(key, None)
        self.name_objects(key, set())

    def child_key(self, body: Body) -> tuple[Key, str] | None:
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        owner = labels.get(L.ROLLOUT)
        if not owner or labels.get(L.WORKLOAD):  # a user's Deployment a workloadRef names
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
        if newer(body, bucket.get(name)):
            bucket[name] = compact(body)
        return key
