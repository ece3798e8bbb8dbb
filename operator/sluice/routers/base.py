"""What a traffic router must do: make its objects exist, set weights, report them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sluice.api.rollout import RolloutSpec
from sluice.engine.types import TrafficTarget

Body = dict[str, Any]


@dataclass(frozen=True)
class RouteContext:
    """The Rollout a router works for, and the children cache it may read."""

    rollout: Body
    spec: RolloutSpec
    children: dict[str, Body]  # "Kind/name" -> body, from the watch cache

    @property
    def name(self) -> str:
        return str(self.rollout["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.rollout["metadata"]["namespace"])


class TrafficRouter(Protocol):
    def observe(self, ctx: RouteContext) -> TrafficTarget | None:
        """The target last applied, read from the cache; None if it must be (re)applied."""

    async def apply(self, ctx: RouteContext, target: TrafficTarget) -> list[Body]:
        """Create or update the router's objects; returns the bodies written (for the cache)."""
