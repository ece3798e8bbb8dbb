"""Istio: weights on the stable and canary destinations of a user's VirtualService.

The VirtualService is the user's. Sluice edits only (1) the `weight` of the stable and
canary destinations in the HTTP routes it was told to manage, and (2) the header routes
it adds ahead of them, named after `trafficRouting.managedRoutes`. Everything else is
written back as it was read: the object is edited as plain JSON (never through a model
that would drop fields it does not know) and PUT with the resourceVersion it was read
at, so a concurrent edit is a 409 for the reconciler to re-read, never overwritten.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from sluice.api.rollout import RolloutSpec
from sluice.api.traffic import HeaderRoutingMatch, IstioTrafficRouting, IstioVirtualService
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

GROUP, VERSION = "networking.istio.io", "v1beta1"  # v1beta1: served by every Istio since 1.5
ISTIO = f"{M.FIELD}.istio"
PortCheck = Callable[[str, Any], str]


def vs_ref(name: str) -> ObjectRef:
    return ObjectRef(GROUP, VERSION, "virtualservices", "VirtualService", name)


@dataclass(frozen=True)
class Hosts:
    """How a destination is recognised as the stable's or the canary's."""

    namespace: str
    stable: str  # Service names
    canary: str

    def role(self, entry: Body) -> str | None:
        host = str((entry.get("destination") or {}).get("host", ""))
        if M.is_service_host(host, self.stable, self.namespace):
            return "stable"
        if M.is_service_host(host, self.canary, self.namespace):
            return "canary"
        return None


@dataclass(frozen=True)
class Managed:
    """One VirtualService as the Rollout names it, with the field path for messages."""

    spec: IstioVirtualService
    field: str  # e.g. spec.strategy.canary.trafficRouting.istio.virtualService


def managed_services(routing: IstioTrafficRouting) -> list[Managed]:
    if routing.virtual_service:
        return [Managed(routing.virtual_service, f"{ISTIO}.virtualService")]
    return [
        Managed(vs, f"{ISTIO}.virtualServices[{i}]")
        for i, vs in enumerate(routing.virtual_services or [])
    ]


def condition(match: HeaderRoutingMatch) -> dict[str, str]:
    """One header condition in Istio's StringMatch form (a cookie: a regex on `cookie`)."""
    if match.cookie_name is not None:
        return {"regex": M.cookie_regex(match.cookie_name, match.cookie_value)}
    value = match.header_value
    assert value is not None  # the API model requires it with headerName
    if value.exact is not None:
        return {"exact": value.exact}
    if value.prefix is not None:
        return {"prefix": value.prefix}
    return {"regex": str(value.regex)}


def _ours(route: Body, hosts: Hosts) -> bool:
    """A header route Sluice added: a managed name and one destination, the canary."""
    dests = route.get("route") or []
    return len(dests) == 1 and hosts.role(dests[0]) == "canary"


def _weighted(http: list[tuple[int, Body]], managed: Managed, where: str) -> list[tuple[int, Body]]:
    names = managed.spec.routes
    if names is None:
        if len(http) != 1:
            raise RouterProblem(
                f"{where}: has {len(http)} http routes; name the ones Sluice manages "
                f"({managed.field}.routes)"
            )
        return http
    found: list[tuple[int, Body]] = []
    for name in names:
        hits = [(i, r) for i, r in http if r.get("name") == name]
        if not hits:
            raise RouterProblem(f"{where}: http route {name!r} not found ({managed.field}.routes)")
        found += hits
    return found


def _set_weights(
    index: int, route: Body, hosts: Hosts, weights: tuple[int, int], where: str, ports: PortCheck
) -> Body:
    """Weights on the route's stable and canary destinations; returns the canary entry."""
    label = f"http route {route['name']!r}" if route.get("name") else "the http route"
    at = f"spec.http[{index}].route"
    entries = route.get("route") or []
    by_role: dict[str, list[Body]] = {"stable": [], "canary": []}
    for entry in entries:
        role = hosts.role(entry)
        if role is None:
            host = (entry.get("destination") or {}).get("host")
            raise RouterProblem(
                f"{where}: {label} also routes to {host!r} ({at}); Sluice splits a route "
                f"between {hosts.stable} and {hosts.canary} only"
            )
        by_role[role].append(entry)
    for role, service in (("stable", hosts.stable), ("canary", hosts.canary)):
        if len(by_role[role]) != 1:
            what = "no" if not by_role[role] else "more than one"
            raise RouterProblem(
                f"{where}: {label} has {what} destination to the {role} Service {service} ({at})"
            )
        port = ((by_role[role][0].get("destination") or {}).get("port") or {}).get("number")
        problem = ports(service, port)
        if problem:
            raise RouterProblem(f"{where}: {label}: {problem} ({at}[].destination.port)")
    by_role["stable"][0]["weight"], by_role["canary"][0]["weight"] = weights
    return by_role["canary"][0]


def _header_route(route: HeaderRoute, weighted: list[Body], canary: Body, where: str) -> Body:
    """Requests the weighted routes take that also match the conditions -> the canary.

    It carries the weighted routes' own matches (so it never catches a request they
    would not) and the first one's other fields (timeouts, retries, rewrites...), so a
    request sent to the canary by header is handled as the weighted route handles it."""
    conditions = {M.header_key(m): condition(m) for m in route.match}
    matches: list[Body] = []
    for source in weighted:
        for match in source.get("match") or [{}]:
            merged = copy.deepcopy(match)
            headers = dict(merged.get("headers") or {})
            clash = sorted(set(headers) & set(conditions))
            if clash:
                raise RouterProblem(
                    f"{where}: header route {route.name!r} matches header {clash[0]!r}, "
                    "which the managed route's match already tests (spec.http[].match.headers)"
                )
            merged["headers"] = {**headers, **conditions}
            if merged not in matches:
                matches.append(merged)
    rest = {k: copy.deepcopy(v) for k, v in weighted[0].items() if k not in {"name", "match"}}
    rest["route"] = [{**copy.deepcopy(canary), "weight": 100}]
    return {"name": route.name, "match": matches, **rest}


def edit_virtual_service(
    body: Body,
    managed: Managed,
    hosts: Hosts,
    weights: tuple[int, int],
    routes: tuple[HeaderRoute, ...],
    reserved: frozenset[str],
    ports: PortCheck = lambda _service, _port: "",
) -> Body:
    """A copy of `body` with the managed weights set and exactly `routes` as header routes
    (ahead of the first weighted route, in order). Pure; raises RouterProblem."""
    where = f"VirtualService {body['metadata']['name']}"
    out = copy.deepcopy(body)
    http = (out.get("spec") or {}).get("http")
    if not isinstance(http, list) or not http:
        raise RouterProblem(f"{where}: has no http routes (spec.http)")
    kept: list[tuple[int, Body]] = []
    for index, route in enumerate(http):
        if route.get("name") in reserved:
            if not _ours(route, hosts):
                raise RouterProblem(
                    f"{where}: http route {route['name']!r} (spec.http[{index}]) has a name "
                    f"listed in {M.FIELD}.managedRoutes but is not a header route Sluice "
                    "added; rename one of them"
                )
            continue
        kept.append((index, route))
    weighted = _weighted(kept, managed, where)
    canary: Body = {}
    for index, route in weighted:
        entry = _set_weights(index, route, hosts, weights, where, ports)
        canary = canary or {k: v for k, v in entry.items() if k != "weight"}
    sources = [r for _, r in weighted]
    added = [_header_route(r, sources, canary, where) for r in routes]
    first = min(i for i, _ in weighted)
    before = [r for i, r in kept if i < first]
    after = [r for i, r in kept if i >= first]
    out["spec"]["http"] = before + added + after
    return out


def summary(body: Body, hosts: Hosts) -> str:
    """What a reader sees: each route's (stable, canary) weights, then header routes."""
    parts: list[str] = []
    for route in (body.get("spec") or {}).get("http") or []:
        weights = {hosts.role(e): e.get("weight") for e in route.get("route") or []}
        name = route.get("name") or "?"
        if "stable" in weights:
            parts.append(f"{name} {weights.get('stable')}/{weights.get('canary')}")
        elif "canary" in weights:
            parts.append(f"{name} -> canary")
    return ", ".join(parts)


class IstioRouter:
    name: ClassVar[str] = "istio"
    capabilities: ClassVar[Capabilities] = Capabilities(edits_user_objects=True)

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    @staticmethod
    def check(spec: RolloutSpec) -> list[str]:
        """Validation problems (InvalidSpec messages) for what Istio cannot do."""
        routing = spec.strategy.canary.traffic_routing
        if routing is None or routing.istio is None:
            return []
        problems: list[str] = []
        if routing.max_traffic_weight != 100:
            problems.append(
                f"{M.FIELD}.maxTrafficWeight: Istio weights are percentages; it must be 100 "
                f"(is {routing.max_traffic_weight})"
            )
        if routing.istio.destination_rule is not None:
            problems.append(f"{ISTIO}.destinationRule: not supported yet; use two Services")
        return problems + M.header_route_problems(spec, "Istio")

    def _routing(self, ctx: RouteContext) -> IstioTrafficRouting:
        routing = ctx.spec.strategy.canary.traffic_routing
        assert routing is not None and routing.istio is not None
        if routing.istio.destination_rule is not None:
            raise RouterProblem(f"{ISTIO}.destinationRule: not supported yet; use two Services")
        return routing.istio

    def watched(self, ctx: RouteContext) -> list[ObjectRef]:
        return [vs_ref(m.spec.name) for m in managed_services(self._routing(ctx))]

    def _edit(
        self, ctx: RouteContext, body: Body, managed: Managed, plan: TrafficPlan | None
    ) -> Body:
        routing = ctx.spec.strategy.canary.traffic_routing
        assert routing is not None
        reserved = frozenset(r.name for r in routing.managed_routes or [])
        hosts = Hosts(ctx.namespace, ctx.stable_service, ctx.canary_service)
        weights = split(plan.canary_weight, 100) if plan else (100, 0)
        routes = plan.header_routes if plan else ()
        reserved |= {r.name for r in routes}

        def ports(service: str, port: Any) -> str:
            return M.port_problem(ctx, service, port)

        return edit_virtual_service(body, managed, hosts, weights, routes, reserved, ports)

    def verify(self, ctx: RouteContext, plan: TrafficPlan) -> Verification:
        try:
            details: list[str] = []
            verified = True
            hosts = Hosts(ctx.namespace, ctx.stable_service, ctx.canary_service)
            for managed in managed_services(self._routing(ctx)):
                ref = vs_ref(managed.spec.name)
                live = ctx.objects.get(ref.key)
                if live is None:
                    raise RouterProblem(
                        f"VirtualService {ref.name}: not found in {ctx.namespace} "
                        f"({managed.field}.name)"
                    )
                desired = self._edit(ctx, live, managed, plan)
                if desired != live:
                    verified = False
                    details.append(
                        f"VirtualService {ref.name}: {summary(live, hosts)} "
                        f"(plan: {summary(desired, hosts)})"
                    )
                else:
                    details.append(f"VirtualService {ref.name}: {summary(live, hosts)}")
        except RouterProblem as problem:
            return Verification(False, problem=str(problem))
        return Verification(verified, detail="; ".join(details))

    async def _write(self, ctx: RouteContext, plan: TrafficPlan | None) -> list[Body]:
        """Every edit is computed before the first write, so a problem in one object
        leaves all of them as they were."""
        edits: list[tuple[ObjectRef, Body, Body]] = []
        for managed in managed_services(self._routing(ctx)):
            ref = vs_ref(managed.spec.name)
            live = ctx.objects.get(ref.key) or await self.kube.get_object(ref, ctx.namespace)
            if live is None:
                if plan is None:  # releasing: a VirtualService that is gone holds no traffic
                    continue
                raise RouterProblem(
                    f"VirtualService {ref.name}: not found in {ctx.namespace} "
                    f"({managed.field}.name); Sluice never creates it"
                )
            edits.append((ref, live, self._edit(ctx, live, managed, plan)))
        written: list[Body] = []
        for ref, live, desired in edits:
            if desired == live:
                continue
            desired["apiVersion"] = f"{ref.group}/{ref.version}"  # the version PUT to
            body = await self.kube.replace_object(ref, ctx.namespace, desired)
            body.setdefault("kind", ref.kind)
            written.append(body)
        return written

    async def apply(self, ctx: RouteContext, plan: TrafficPlan) -> list[Body]:
        return await self._write(ctx, plan)

    async def release(self, ctx: RouteContext) -> list[Body]:
        return await self._write(ctx, None)
