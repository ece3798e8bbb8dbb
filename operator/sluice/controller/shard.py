"""A Rollout's children, taken over by the shard that now owns the Rollout.

Each shard's watches select on the server only the children labelled for it (a child
carries its Rollout's sluice.dev/controller-instance). A Rollout relabelled to another
shard, or one whose children an older Sluice made without the label, arrives with
children the new owner's watches never bring: before its first decision they are read
directly, relabelled for this shard (metadata only) and cached, so none is made twice.
"""

from __future__ import annotations

from sluice import logs
from sluice import telemetry as M
from sluice.cluster import labels as L
from sluice.cluster.kube import Kube
from sluice.controller.cache import Body, Cache

log = logs.get("sluice.shard")

KINDS = ("deployments", "services", "analysisruns")  # what the sharded watches select


def needs_adoption(rollout: Body, cached_children: int) -> bool:
    """Sluice made children for it before (a stable revision), yet none reached this shard."""
    return cached_children == 0 and bool((rollout.get("status") or {}).get("stableRevision"))


async def adopt_children(kube: Kube, cache: Cache, rollout: Body, instance: str | None) -> int:
    """Relabel and cache the Rollout's children; returns how many were relabelled."""
    meta = rollout["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    moved = 0
    for kind in KINDS:
        async for page in kube.list_children(kind, [namespace], f"{L.ROLLOUT}={name}"):
            for body in page:
                child = body["metadata"]
                if not any(o.get("uid") == uid for o in child.get("ownerReferences") or []):
                    continue  # another object of that name's: never taken
                if (child.get("labels") or {}).get(L.INSTANCE) != instance:
                    M.API_CALLS.labels("relabel").inc()
                    body = await kube.relabel(
                        kind, namespace, child["name"], {L.INSTANCE: instance}
                    )
                    moved += 1
                cache.put_child(body)
    if moved:
        log.info("children taken over by this shard", rollout=name, namespace=namespace,
                 relabelled=moved, instance=instance or "default")  # fmt: skip
    return moved
