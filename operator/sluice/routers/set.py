"""Several routers moved as one: the plan counts as verified only when every one carries it."""

from __future__ import annotations

from sluice.engine.types import TrafficObserved, TrafficPlan
from sluice.routers.base import Body, ObjectRef, RouteContext, RouterProblem, TrafficRouter
from sluice.routers.services import ServiceRouter


class RouterSet:
    def __init__(self, services: ServiceRouter, providers: list[TrafficRouter]) -> None:
        self.services = services
        self.providers = providers

    @property
    def edits_user_objects(self) -> bool:
        return any(p.capabilities.edits_user_objects for p in self.providers)

    def claims(self, ctx: RouteContext) -> list[str]:
        """Parts of shared objects this Rollout alone may write (a provider's `claims`)."""
        return [c for p in self.providers for c in getattr(p, "claims", lambda _c: [])(ctx)]

    def watched(self, ctx: RouteContext) -> list[ObjectRef]:
        return self.services.watched(ctx) + [ref for p in self.providers for ref in p.watched(ctx)]

    def observe(self, ctx: RouteContext) -> TrafficObserved:
        plan = self.services.applied(ctx)
        if plan is None:
            return TrafficObserved()
        verified = self.services.verify(ctx, plan).verified
        for provider in self.providers:
            seen = provider.verify(ctx, plan)
            if seen.problem:
                return TrafficObserved(plan, False, ctx.spec.strategy.localize(seen.problem))
            verified = verified and seen.verified
        return TrafficObserved(plan, verified)

    async def apply(self, ctx: RouteContext, plan: TrafficPlan) -> list[Body]:
        """Stable side first, canary Service last: a promotion or a rollback then never
        sends a request to a version that the plan takes traffic away from."""
        for provider in self.providers:  # all or none: no router moves while one cannot
            problem = provider.verify(ctx, plan).problem
            if problem:
                raise RouterProblem(ctx.spec.strategy.localize(problem))
        written = await self.services.apply(ctx, plan, {"root", "stable"})
        for provider in self.providers:
            written += await provider.apply(ctx, plan)
        written += await self.services.apply(ctx, plan, {"canary"})
        return written

    async def release(self, ctx: RouteContext) -> list[Body]:
        written: list[Body] = []
        for provider in self.providers:
            written += await provider.release(ctx)
        return written
