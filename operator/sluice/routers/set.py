"""Several routers moved as one: the plan counts as verified only when every one carries it."""

from __future__ import annotations

from sluice.engine.types import TrafficObserved, TrafficPlan
from sluice.routers.base import Body, ObjectRef, RouteContext, RouterProblem, TrafficRouter
from sluice.routers.services import ServiceRouter


class PartlyApplied(RouterProblem):
    """The plan is in every router but the ones named; `written` is what was written."""

    def __init__(self, message: str, written: list[Body]) -> None:
        super().__init__(message)
        self.written = written


def toward_stable(before: TrafficPlan | None, plan: TrafficPlan) -> bool:
    """Does `plan` only take traffic off the canary of `before` (an abort, a lower weight, a
    header route removed, a release)? A new stable slot (a promotion) is not that."""
    if before is None:
        return plan.canary_slot is None
    return (
        plan.stable_slot == before.stable_slot
        and plan.canary_weight <= before.canary_weight
        and set(plan.header_routes) <= set(before.header_routes)
    )


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
        sends a request to a version that the plan takes traffic away from.

        Traffic toward the canary moves in all routers or none. Traffic back to the stable
        (an abort) moves in every router that can take it: one broken router must not keep
        the others on the canary. The broken ones are then raised as PartlyApplied."""
        localize = ctx.spec.strategy.localize
        broken = {id(p): p.verify(ctx, plan).problem for p in self.providers}
        first = next((problem for problem in broken.values() if problem), None)
        partial = toward_stable(self.services.applied(ctx), plan)
        if first and not partial:
            raise RouterProblem(localize(first))
        problems: list[str] = []
        written = await self.services.apply(ctx, plan, {"root", "stable"})
        for provider in self.providers:
            problem = broken[id(provider)]
            if problem is None:
                try:
                    written += await provider.apply(ctx, plan)
                    continue
                except RouterProblem as exc:
                    if not partial:
                        raise
                    problem = str(exc)
            problems.append(localize(problem))
        written += await self.services.apply(ctx, plan, {"canary"})
        if problems:
            raise PartlyApplied("; ".join(problems), written)
        return written

    async def release(self, ctx: RouteContext) -> list[Body]:
        written: list[Body] = []
        for provider in self.providers:
            written += await provider.release(ctx)
        return written
