"""What a traffic router is: the protocol every provider (one file each) implements.

The engine plans where traffic goes (`TrafficPlan`); a router makes its objects carry
that plan (`apply`), reads its live objects back to say whether they do (`verify`), and
gives all traffic back to the stable when the rollout no longer needs it (`release`).
A step's weight only counts once every router has verified it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from sluice.api.rollout import RolloutSpec
from sluice.engine.types import TrafficPlan

if TYPE_CHECKING:
    from sluice.cluster.kube import Kube

Body = dict[str, Any]


@dataclass(frozen=True)
class ObjectRef:
    """A router object a Rollout names (the user's) or owns (made by Sluice)."""

    group: str
    version: str
    plural: str
    kind: str
    name: str
    owned: bool = False  # made by Sluice (labelled, cached with the children)

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do; validation refuses a step that needs more (InvalidSpec)."""

    header: frozenset[str] = frozenset({"exact", "prefix", "regex"})  # headerValue kinds
    cookie: bool = True
    max_header_routes: int | None = None  # None: no limit
    max_matches: int | None = None  # conditions in one route
    cookie_values: frozenset[str] | None = None  # None: any cookieValue
    fixed_total: int | None = None  # weights are out of this total (Istio: 100)
    edits_user_objects: bool = False  # True: a finalizer restores them on delete


@dataclass(frozen=True)
class RouteContext:
    """The Rollout a router works for, and the cached objects it may read."""

    rollout: Body
    spec: RolloutSpec
    children: dict[str, Body]  # "Kind/name" -> objects Sluice owns (watch cache)
    objects: dict[str, Body] = field(default_factory=dict)  # "Kind/name" -> named user objects

    @property
    def name(self) -> str:
        return str(self.rollout["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.rollout["metadata"]["namespace"])

    @property
    def uid(self) -> str:
        return str(self.rollout["metadata"]["uid"])

    @property
    def stable_service(self) -> str:
        return self.spec.strategy.canary.stable_service or f"{self.name}-stable"

    @property
    def canary_service(self) -> str:
        return self.spec.strategy.canary.canary_service or f"{self.name}-canary"

    @property
    def max_weight(self) -> int:
        routing = self.spec.strategy.traffic_routing()
        return routing.max_traffic_weight if routing else 100

    def owned(self, body: Body) -> bool:
        refs = body.get("metadata", {}).get("ownerReferences") or []
        return any(ref.get("uid") == self.uid for ref in refs)

    def get(self, ref: ObjectRef) -> Body | None:
        """The object as last seen: owned ones from children, the user's from objects."""
        return self.children.get(ref.key) or self.objects.get(ref.key)


@dataclass(frozen=True)
class Verification:
    """A router's live objects read back against a plan."""

    verified: bool
    problem: str | None = None  # names the object and field that stops the router
    detail: str = ""  # what was read, for messages ("web: canary weight 5 of 100")


class TrafficRouter(Protocol):
    name: ClassVar[str]  # the trafficRouting field: nginx | istio | gatewayAPI | smi
    capabilities: ClassVar[Capabilities]

    def __init__(self, kube: Kube) -> None: ...

    def watched(self, ctx: RouteContext) -> list[ObjectRef]:
        """The objects to watch and keep in the cache for this Rollout."""

    def verify(self, ctx: RouteContext, plan: TrafficPlan) -> Verification:
        """Do the live objects (from ctx) carry `plan`? Reads them, not Sluice's own note."""

    async def apply(self, ctx: RouteContext, plan: TrafficPlan) -> list[Body]:
        """Write the whole plan, idempotently; returns the bodies written (for the cache).
        Raises RouterProblem when an object it needs is missing or foreign."""

    async def release(self, ctx: RouteContext) -> list[Body]:
        """All traffic to stable, managed routes removed (abort, completion, deletion).
        An object that is gone already is fine."""


class RouterProblem(Exception):
    """An object a router needs is missing, foreign, or lacks a named route or port.
    The message names the object and field; the Rollout holds with it as a condition."""


def split(weight_percent: int, max_weight: int) -> tuple[int, int]:
    """(stable, canary) weights out of `max_weight` for a canary percentage."""
    canary = round(max_weight * weight_percent / 100)
    return max_weight - canary, canary
