"""SMI: a TrafficSplit that Sluice creates and owns, splitting the root Service.

A mesh that implements SMI sends the calls to the split's `service` (the apex) to its
backends in proportion to their weights. Sluice writes the whole object, so there is
nothing of the user's to keep; a TrafficSplit of that name that the Rollout does not own
is refused, never taken over. No header routes: in SMI they need an HTTPRouteGroup,
which Sluice does not manage, so validation refuses setHeaderRoute with smi.

The API versions differ only in how a weight is written (a quantity string in v1alpha1,
a number later) and which ones a cluster serves, so the version is discovered.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import kubernetes
from kubernetes.client.exceptions import ApiException

from sluice.cluster import children as C  # a module: children imports the engine, which imports us
from sluice.cluster import labels as L
from sluice.cluster.kube import Kube
from sluice.engine.types import TrafficPlan
from sluice.routers.base import (
    Body,
    Capabilities,
    ObjectRef,
    RouteContext,
    RouterProblem,
    Verification,
    split,
)
from sluice.routers.owned import orphans, same_meta

GROUP, PLURAL, KIND = "split.smi-spec.io", "trafficsplits", "TrafficSplit"
PREFERRED = ("v1alpha4", "v1alpha3", "v1alpha2", "v1alpha1")  # newest first
ROLE = "traffic-split"
DISCOVERY_TTL = 300.0  # seconds; a CRD installed or upgraded later is seen after this
_SUFFIXES = {"m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}

# API server host -> (when discovered, version). Shared by every router instance, which
# the factory makes per reconciliation.
_discovered: dict[str, tuple[float, str]] = {}


def choose(served: list[str]) -> str | None:
    """The newest version Sluice knows among those served."""
    return next((v for v in PREFERRED if v in served), None)


def quantity(value: Any) -> float:
    """A weight as written by any version: a number, or a quantity such as "500m"."""
    if isinstance(value, int | float):
        return float(value)
    text = str(value)
    unit = text[-1] if text and text[-1] in _SUFFIXES else ""
    return float(text[: len(text) - len(unit)]) * _SUFFIXES[unit]


def split_name(ctx: RouteContext) -> str:
    routing = ctx.spec.strategy.traffic_routing()
    smi = routing.smi if routing else None
    return (smi.traffic_split_name if smi else None) or ctx.name


def apex(ctx: RouteContext) -> str:
    routing = ctx.spec.strategy.traffic_routing()
    smi = routing.smi if routing else None
    return (smi.root_service if smi else None) or ctx.name


def ref(name: str, version: str) -> ObjectRef:
    return ObjectRef(GROUP, version, PLURAL, KIND, name, owned=True)


def traffic_split(ctx: RouteContext, plan: TrafficPlan, version: str) -> Body:
    """The whole TrafficSplit carrying `plan`, in API `version`. Pure."""
    weight = plan.canary_weight if plan.canary_slot else 0
    stable, canary = split(weight, ctx.max_weight)

    def written(w: int) -> int | str:
        return str(w) if version == "v1alpha1" else w  # v1alpha1: a resource.Quantity

    return {
        "apiVersion": f"{GROUP}/{version}",
        "kind": KIND,
        "metadata": {
            "name": split_name(ctx),
            "namespace": ctx.namespace,
            "labels": {L.ROLLOUT: ctx.name, L.ROLE: ROLE},
            "ownerReferences": [C.owner_reference(ctx.rollout)],
        },
        "spec": {
            "service": apex(ctx),
            "backends": [
                {"service": ctx.stable_service, "weight": written(stable)},
                {"service": ctx.canary_service, "weight": written(canary)},
            ],
        },
    }


def weights(body: Body) -> dict[str, float]:
    backends = (body.get("spec") or {}).get("backends") or []
    return {str(b.get("service")): quantity(b.get("weight", 0)) for b in backends}


def _show(weights: dict[str, float]) -> str:
    return ", ".join(f"{service}={weight:g}" for service, weight in weights.items()) or "none"


def mismatch(live: Body, desired: Body) -> str | None:
    """How the live TrafficSplit splits differently from `desired`; None: it does not."""
    name = desired["metadata"]["name"]
    service = (live.get("spec") or {}).get("service")
    if service != desired["spec"]["service"]:
        return (
            f"TrafficSplit {name}: spec.service is {service!r}, want {desired['spec']['service']!r}"
        )
    have, want = weights(live), weights(desired)
    if have != want:
        return f"TrafficSplit {name}: spec.backends weights are {_show(have)}, want {_show(want)}"
    return None


def foreign(ctx: RouteContext, name: str) -> str:
    return (
        f"TrafficSplit {name} exists and is not owned by Rollout {ctx.name} "
        "(metadata.ownerReferences); Sluice will not take it over: delete it or set "
        "spec.strategy.canary.trafficRouting.smi.trafficSplitName to another name"
    )


class SMIRouter:
    name: ClassVar[str] = "smi"
    capabilities: ClassVar[Capabilities] = Capabilities(
        header=frozenset(), cookie=False, max_header_routes=0
    )

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.host = str(kube.client.configuration.host)

    async def version(self) -> str:
        """The served version to write, from API discovery (cached)."""
        cached = _discovered.get(self.host)
        if cached and time.monotonic() - cached[0] < DISCOVERY_TTL:
            return cached[1]
        # GET /apis: every group with its served versions (one call, then cached).
        groups = await self.kube.raw(kubernetes.client.ApisApi(self.kube.client).get_api_versions)
        group: Body = next((g for g in groups.get("groups") or [] if g.get("name") == GROUP), {})
        served = [str(v.get("version")) for v in group.get("versions") or []]
        version = choose(served)
        if version is None:
            raise RouterProblem(
                f"TrafficSplit: the API group {GROUP} serves {served or 'nothing'}, none of "
                f"{', '.join(PREFERRED)} (is the SMI TrafficSplit CRD installed?)"
            )
        _discovered[self.host] = (time.monotonic(), version)
        return version

    def watched(self, ctx: RouteContext) -> list[ObjectRef]:
        cached = _discovered.get(self.host)
        return [ref(split_name(ctx), cached[1] if cached else PREFERRED[0])]

    def verify(self, ctx: RouteContext, plan: TrafficPlan) -> Verification:
        name = split_name(ctx)
        live = ctx.get(ref(name, PREFERRED[0]))  # the cache key has no version
        if live is None:
            return Verification(False, detail=f"TrafficSplit {name}: not created yet")
        if not ctx.owned(live):
            return Verification(False, problem=foreign(ctx, name))
        diff = mismatch(live, traffic_split(ctx, plan, PREFERRED[0]))
        if diff:
            return Verification(False, detail=diff)
        stable, canary = split(plan.canary_weight if plan.canary_slot else 0, ctx.max_weight)
        return Verification(
            True, detail=f"TrafficSplit {name}: {stable}/{canary} of {ctx.max_weight}"
        )

    async def _current(self, ctx: RouteContext, object_ref: ObjectRef) -> Body | None:
        return ctx.get(object_ref) or await self.kube.get_object(object_ref, ctx.namespace)

    async def apply(self, ctx: RouteContext, plan: TrafficPlan) -> list[Body]:
        try:
            written = await self._write(ctx, plan)
        except ApiException as exc:
            if exc.status == 404:  # the version cached is no longer served: ask again
                _discovered.pop(self.host, None)
            raise
        # After a rename the old split would keep splitting the apex: it is Sluice's, so
        # it goes.
        version = await self.version()
        for body in orphans(ctx, ROLE, KIND, {split_name(ctx)}):
            await self.kube.delete_object(ref(body["metadata"]["name"], version), ctx.namespace)
        return [written]

    async def _write(self, ctx: RouteContext, plan: TrafficPlan) -> Body:
        version = await self.version()
        object_ref = ref(split_name(ctx), version)
        desired = traffic_split(ctx, plan, version)
        live = await self._current(ctx, object_ref)
        if live is None:
            body = await self.kube.create_object(object_ref, ctx.namespace, desired)
        elif not ctx.owned(live):
            raise RouterProblem(foreign(ctx, object_ref.name))
        elif mismatch(live, desired) or not same_meta(live, desired):
            meta = {k: v for k, v in live["metadata"].items() if k != "managedFields"}
            meta["labels"] = {**(meta.get("labels") or {}), **desired["metadata"]["labels"]}
            meta["ownerReferences"] = desired["metadata"]["ownerReferences"]
            # PUT with the live resourceVersion: a 409 if it changed since it was read.
            body = await self.kube.replace_object(
                object_ref, ctx.namespace, {**desired, "metadata": meta}
            )
        else:
            body = live
        body.setdefault("kind", KIND)
        return body

    async def release(self, ctx: RouteContext) -> list[Body]:
        """All weight to the stable; a TrafficSplit that is gone (or not ours) is left be."""
        try:
            version = await self.version()
        except RouterProblem:
            return []  # no SMI API: nothing can send traffic to the canary through it
        live = await self._current(ctx, ref(split_name(ctx), version))
        if live is None or not ctx.owned(live):
            return []
        # A plan with no canary slot: all weight to the stable (the slot name is not used).
        stable = traffic_split(ctx, TrafficPlan(stable_slot="a"), version)
        patch = {"spec": stable["spec"]}
        body = await self.kube.patch_object(ref(split_name(ctx), version), ctx.namespace, patch)
        body.setdefault("kind", KIND)
        return [body]
