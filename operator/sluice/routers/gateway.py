"""Gateway API: backendRefs weights on the rules of a user's HTTPRoute that send to the stable.

The HTTPRoute is the user's. Sluice edits only (1) the `weight` of the stable and canary
backendRefs in the rules whose backendRefs include the stable Service, and (2) the header
rules it adds ahead of them, whose rule `name` is a `trafficRouting.managedRoutes` name.
Everything else is written back as read (plain JSON, PUT at the resourceVersion read, so
a concurrent edit is a 409 for the reconciler to retry, never overwritten).

A rule missing the canary backendRef is a problem rather than something Sluice adds:
the user decides which port and which filters the canary gets.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from sluice.api.rollout import RolloutSpec
from sluice.api.traffic import GatewayAPIRoute, GatewayAPITrafficRouting, HeaderRoutingMatch
from sluice.cluster.kube import Kube
from sluice.engine.types import HeaderRoute, TrafficPlan
from sluice.routers import matching as M
from sluice.routers.base import (
    Body,
    Capabilities,
    ObjectRef,
    RouteContext,
    RouterProblem,
    Verification,
    split,
)

GROUP, VERSION = "gateway.networking.k8s.io", "v1"
GATEWAY = f"{M.FIELD}.gatewayAPI"
MAX_RULES, MAX_MATCHES, MAX_HEADERS = 16, 64, 16  # the CRD's maxItems
# What the API server fills in when omitted: written explicitly so that a rule Sluice adds
# reads back exactly as written (else every verify would see a difference).
DEFAULT_PATH = {"type": "PathPrefix", "value": "/"}
PortCheck = Callable[[str, Any], str]


def route_ref(name: str) -> ObjectRef:
    return ObjectRef(GROUP, VERSION, "httproutes", "HTTPRoute", name)


@dataclass(frozen=True)
class Backends:
    """How a backendRef is recognised as the stable's or the canary's Service."""

    namespace: str
    stable: str
    canary: str

    def role(self, ref: Body) -> str | None:
        core = ref.get("group") in (None, "") and ref.get("kind", "Service") == "Service"
        if not core or ref.get("namespace", self.namespace) != self.namespace:
            return None
        return {self.stable: "stable", self.canary: "canary"}.get(str(ref.get("name")))


@dataclass(frozen=True)
class Managed:
    spec: GatewayAPIRoute
    field: str  # e.g. spec.strategy.canary.trafficRouting.gatewayAPI.httpRoute


def managed_routes(routing: GatewayAPITrafficRouting) -> list[Managed]:
    if routing.http_route:
        return [Managed(GatewayAPIRoute(name=routing.http_route), f"{GATEWAY}.httpRoute")]
    return [
        Managed(route, f"{GATEWAY}.httpRoutes[{i}].name")
        for i, route in enumerate(routing.http_routes or [])
    ]


def condition(match: HeaderRoutingMatch) -> Body:
    """One header condition as an HTTPHeaderMatch: Exact, or RegularExpression for a
    prefix (anchored, escaped), a regex, or a cookie (a regex on the Cookie header)."""
    if match.cookie_name is not None:
        value = M.cookie_regex(match.cookie_name, match.cookie_value)
        return {"name": "Cookie", "type": "RegularExpression", "value": value}
    given = match.header_value
    assert given is not None  # the API model requires it with headerName
    if given.exact is not None:
        return {"name": match.header_name, "type": "Exact", "value": given.exact}
    regex = M.prefix_regex(given.prefix) if given.prefix is not None else str(given.regex)
    return {"name": match.header_name, "type": "RegularExpression", "value": regex}


def _ours(rule: Body, backends: Backends) -> bool:
    """A header rule Sluice added: a managed name, and the canary as its only backend."""
    refs = rule.get("backendRefs") or []
    return len(refs) == 1 and backends.role(refs[0]) == "canary"


def _sends_to_stable(rule: Body, backends: Backends) -> bool:
    return any(backends.role(ref) == "stable" for ref in rule.get("backendRefs") or [])


def _label(index: int, rule: Body) -> str:
    name = rule.get("name")
    return f"rule {name!r} (spec.rules[{index}])" if name else f"spec.rules[{index}]"


def _set_weights(
    index: int,
    rule: Body,
    backends: Backends,
    weights: tuple[int, int],
    where: str,
    ports: PortCheck,
) -> Body:
    """Weights on the rule's stable and canary backendRefs; returns the canary ref."""
    label = _label(index, rule)
    by_role: dict[str, list[Body]] = {"stable": [], "canary": []}
    for ref in rule.get("backendRefs") or []:
        role = backends.role(ref)
        if role is None:
            raise RouterProblem(
                f"{where}: {label} also sends to {ref.get('kind', 'Service')} "
                f"{ref.get('name')!r} (spec.rules[{index}].backendRefs); Sluice splits a rule "
                f"between {backends.stable} and {backends.canary} only"
            )
        by_role[role].append(ref)
    for role, service in (("stable", backends.stable), ("canary", backends.canary)):
        if len(by_role[role]) != 1:
            what = "no" if not by_role[role] else "more than one"
            raise RouterProblem(
                f"{where}: {label} has {what} backendRef to the {role} Service {service} "
                f"(spec.rules[{index}].backendRefs)"
            )
        problem = ports(service, by_role[role][0].get("port"))
        if problem:
            raise RouterProblem(f"{where}: {label}: {problem} (spec.rules[{index}].backendRefs)")
    by_role["stable"][0]["weight"], by_role["canary"][0]["weight"] = weights
    return by_role["canary"][0]


def _header_rule(route: HeaderRoute, weighted: list[Body], canary: Body, where: str) -> Body:
    """Each match of the weighted rules plus the conditions -> the canary only.

    Precedence in Gateway API goes to the match with more header matches (same path and
    method), so this rule takes the requests it matches whatever the list order. It keeps
    the first weighted rule's filters and timeouts: a request sent to the canary by header
    is handled as the weighted rule handles it."""
    conditions = [condition(m) for m in route.match]
    names = {str(c["name"]).lower() for c in conditions}
    matches: list[Body] = []
    for source in weighted:
        for match in source.get("matches") or [{}]:
            merged = {"path": DEFAULT_PATH, **copy.deepcopy(match)}
            headers = list(merged.get("headers") or [])
            clash = sorted(names & {str(h.get("name")).lower() for h in headers})
            if clash:
                raise RouterProblem(
                    f"{where}: header route {route.name!r} matches header {clash[0]!r}, which "
                    "the managed rule's match already tests (spec.rules[].matches[].headers)"
                )
            if len(headers) + len(conditions) > MAX_HEADERS:
                raise RouterProblem(
                    f"{where}: header route {route.name!r} would have more than {MAX_HEADERS} "
                    "header matches in one match (spec.rules[].matches[].headers)"
                )
            merged["headers"] = headers + conditions
            if merged not in matches:
                matches.append(merged)
    if len(matches) > MAX_MATCHES:
        raise RouterProblem(f"{where}: header route {route.name!r} needs more than 64 matches")
    rest = {
        k: copy.deepcopy(v)
        for k, v in weighted[0].items()
        if k not in {"name", "matches", "backendRefs"}
    }
    refs = [{**copy.deepcopy(canary), "weight": 1}]  # the only backend: any weight > 0 is all
    return {"name": route.name, "matches": matches, **rest, "backendRefs": refs}


def edit_http_route(
    body: Body,
    managed: Managed,
    backends: Backends,
    weights: tuple[int, int],
    routes: tuple[HeaderRoute, ...],
    reserved: frozenset[str],
    ports: PortCheck = lambda _service, _port: "",
) -> Body:
    """A copy of `body` with the weights set on every rule that sends to the stable and
    exactly `routes` as header rules (ahead of the first such rule, in order, when the
    route uses header routes). Pure; raises RouterProblem."""
    where = f"HTTPRoute {body['metadata']['name']}"
    out = copy.deepcopy(body)
    rules = (out.get("spec") or {}).get("rules")
    if not isinstance(rules, list) or not rules:
        raise RouterProblem(f"{where}: has no rules (spec.rules)")
    kept = M.outside_managed(
        rules,
        reserved,
        lambda rule: _ours(rule, backends),
        lambda index, rule: (
            f"{where}: rule {rule['name']!r} (spec.rules[{index}]) has a name listed "
            f"in {M.FIELD}.managedRoutes but is not a header rule Sluice added; "
            "rename one of them"
        ),
    )
    weighted = [(i, r) for i, r in kept if _sends_to_stable(r, backends)]
    if not weighted:
        raise RouterProblem(
            f"{where}: no rule has a backendRef to the stable Service {backends.stable} "
            f"(spec.rules[].backendRefs; {managed.field})"
        )
    canary: Body = {}
    for index, rule in weighted:
        ref = _set_weights(index, rule, backends, weights, where, ports)
        canary = canary or {k: v for k, v in ref.items() if k != "weight"}
    sources = [r for _, r in weighted]
    added = (
        [_header_rule(r, sources, canary, where) for r in routes]
        if managed.spec.use_header_routes
        else []
    )
    if len(kept) + len(added) > MAX_RULES:
        raise RouterProblem(
            f"{where}: {len(added)} header rules would take it past {MAX_RULES} rules (spec.rules)"
        )
    out["spec"]["rules"] = M.ahead_of(kept, weighted[0][0], added)
    return out


def summary(body: Body, backends: Backends) -> str:
    parts: list[str] = []
    for index, rule in enumerate((body.get("spec") or {}).get("rules") or []):
        weights = {backends.role(b): b.get("weight", 1) for b in rule.get("backendRefs") or []}
        name = rule.get("name") or f"rules[{index}]"
        if "stable" in weights:
            parts.append(f"{name} {weights.get('stable')}/{weights.get('canary')}")
        elif "canary" in weights:
            parts.append(f"{name} -> canary")
    return ", ".join(parts)


class GatewayAPIRouter:
    name: ClassVar[str] = "gatewayAPI"
    capabilities: ClassVar[Capabilities] = Capabilities(
        max_matches=MAX_HEADERS, edits_user_objects=True
    )

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    @staticmethod
    def check(spec: RolloutSpec) -> list[str]:
        """Validation problems (InvalidSpec messages) for what Gateway API cannot do."""
        routing = spec.strategy.traffic_routing()
        if routing is None or routing.gateway_api is None:
            return []
        problems = M.header_route_problems(spec, "Gateway API")
        steps = spec.strategy.canary.steps
        if any(s.set_header_route for s in steps) and not any(
            r.use_header_routes for r in routing.gateway_api.routes()
        ):
            problems.append(
                f"{GATEWAY}.httpRoutes: setHeaderRoute needs useHeaderRoutes: true on at least "
                "one HTTPRoute"
            )
        return problems

    def _routing(self, ctx: RouteContext) -> GatewayAPITrafficRouting:
        routing = ctx.spec.strategy.traffic_routing()
        assert routing is not None and routing.gateway_api is not None
        return routing.gateway_api

    def claims(self, ctx: RouteContext) -> list[str]:
        """Rules are found by the stable Service: two Rollouts may share an HTTPRoute, not
        the rules of one Service."""
        return [
            f"HTTPRoute {m.spec.name} rules to Service {ctx.stable_service}"
            for m in managed_routes(self._routing(ctx))
        ]

    def watched(self, ctx: RouteContext) -> list[ObjectRef]:
        return [route_ref(m.spec.name) for m in managed_routes(self._routing(ctx))]

    def _edit(
        self, ctx: RouteContext, body: Body, managed: Managed, plan: TrafficPlan | None
    ) -> Body:
        routing = ctx.spec.strategy.traffic_routing()
        assert routing is not None
        routes = plan.header_routes if plan else ()
        reserved = frozenset(r.name for r in routing.managed_routes or []) | {
            r.name for r in routes
        }
        backends = Backends(ctx.namespace, ctx.stable_service, ctx.canary_service)
        weights = split(plan.canary_weight if plan else 0, ctx.max_weight)

        def ports(service: str, port: Any) -> str:
            return M.port_problem(ctx, service, port)

        return edit_http_route(body, managed, backends, weights, routes, reserved, ports)

    def verify(self, ctx: RouteContext, plan: TrafficPlan) -> Verification:
        backends = Backends(ctx.namespace, ctx.stable_service, ctx.canary_service)
        details: list[str] = []
        verified = True
        try:
            for managed in managed_routes(self._routing(ctx)):
                ref = route_ref(managed.spec.name)
                live = ctx.objects.get(ref.key)
                if live is None:
                    raise RouterProblem(
                        f"HTTPRoute {ref.name}: not found in {ctx.namespace} ({managed.field})"
                    )
                desired = self._edit(ctx, live, managed, plan)
                seen = f"HTTPRoute {ref.name}: {summary(live, backends)}"
                if desired != live:
                    verified = False
                    seen += f" (plan: {summary(desired, backends)})"
                details.append(seen)
        except RouterProblem as problem:
            return Verification(False, problem=str(problem))
        return Verification(verified, detail="; ".join(details))

    async def _write(self, ctx: RouteContext, plan: TrafficPlan | None) -> list[Body]:
        """Every edit is computed before the first write: a problem in one HTTPRoute
        leaves all of them as they were."""
        edits: list[tuple[ObjectRef, Body, Body]] = []
        for managed in managed_routes(self._routing(ctx)):
            ref = route_ref(managed.spec.name)
            live = ctx.objects.get(ref.key) or await self.kube.get_object(ref, ctx.namespace)
            if live is None:
                if plan is None:  # releasing: an HTTPRoute that is gone holds no traffic
                    continue
                raise RouterProblem(
                    f"HTTPRoute {ref.name}: not found in {ctx.namespace} ({managed.field}); "
                    "Sluice never creates it"
                )
            edits.append((ref, live, self._edit(ctx, live, managed, plan)))
        written: list[Body] = []
        for ref, live, desired in edits:
            body = await M.put(self.kube, ctx, ref, live, desired)
            if body is not None:
                written.append(body)
        return written

    async def apply(self, ctx: RouteContext, plan: TrafficPlan) -> list[Body]:
        return await self._write(ctx, plan)

    async def release(self, ctx: RouteContext) -> list[Body]:
        return await self._write(ctx, None)
