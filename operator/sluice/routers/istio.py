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
from sluice.api.traffic import (
    HeaderRoutingMatch,
    IstioDestinationRule,
    IstioTrafficRouting,
    IstioVirtualService,
)
from sluice.cluster import labels as L
from sluice.cluster.kube import Kube
from sluice.engine.types import HeaderRoute, Slot, TrafficPlan, other
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


def dr_ref(name: str) -> ObjectRef:
    return ObjectRef(GROUP, VERSION, "destinationrules", "DestinationRule", name)


@dataclass(frozen=True)
class Hosts:
    """How a destination is recognised as the stable's or the canary's: by host (two
    Services), or with a DestinationRule by subset of one host."""

    namespace: str
    stable: str  # Service names, or subset names when `host` is set
    canary: str
    host: str | None = None  # the DestinationRule's host; "": any (the rule is gone)

    def role(self, entry: Body) -> str | None:
        dest = entry.get("destination") or {}
        host = str(dest.get("host", ""))
        if self.host is not None:
            same = M.service_name(host, self.namespace) == M.service_name(self.host, self.namespace)
            if self.host and not same:
                return None
            return {self.stable: "stable", self.canary: "canary"}.get(str(dest.get("subset")))
        if M.is_service_host(host, self.stable, self.namespace):
            return "stable"
        if M.is_service_host(host, self.canary, self.namespace):
            return "canary"
        return None

    def describe(self, role: str) -> str:
        name = self.stable if role == "stable" else self.canary
        if self.host is not None:
            return f"the {role} subset {name!r} of {self.host}"
        return f"the {role} Service {name}"

    def service(self, role: str) -> str | None:
        """The Service Sluice manages for `role` (its ports are checked); None: subsets."""
        if self.host is not None:
            return None
        return self.stable if role == "stable" else self.canary


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
                f"between {hosts.describe('stable')} and {hosts.describe('canary')} only"
            )
        by_role[role].append(entry)
    for role in ("stable", "canary"):
        if len(by_role[role]) != 1:
            what = "no" if not by_role[role] else "more than one"
            raise RouterProblem(
                f"{where}: {label} has {what} destination to {hosts.describe(role)} ({at})"
            )
        service = hosts.service(role)
        port = ((by_role[role][0].get("destination") or {}).get("port") or {}).get("number")
        problem = ports(service, port) if service else ""
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
    kept = M.outside_managed(
        http,
        reserved,
        lambda route: _ours(route, hosts),
        lambda index, route: (
            f"{where}: http route {route['name']!r} (spec.http[{index}]) has a name "
            f"listed in {M.FIELD}.managedRoutes but is not a header route Sluice "
            "added; rename one of them"
        ),
    )
    weighted = _weighted(kept, managed, where)
    canary: Body = {}
    for index, route in weighted:
        entry = _set_weights(index, route, hosts, weights, where, ports)
        canary = canary or {k: v for k, v in entry.items() if k != "weight"}
    sources = [r for _, r in weighted]
    added = [_header_route(r, sources, canary, where) for r in routes]
    out["spec"]["http"] = M.ahead_of(kept, min(i for i, _ in weighted), added)
    return out


def edit_destination_rule(body: Body, rule: IstioDestinationRule, slots: dict[str, Slot]) -> Body:
    """A copy of `body` whose subsets named in `slots` select that slot (only the
    sluice.dev/slot key of their labels is touched). Pure; raises RouterProblem."""
    out = copy.deepcopy(body)
    subsets = (out.get("spec") or {}).get("subsets") or []
    fields = {
        rule.stable_subset_name: "stableSubsetName",
        rule.canary_subset_name: "canarySubsetName",
    }
    for name, slot in slots.items():
        found = [s for s in subsets if s.get("name") == name]
        if not found:
            raise RouterProblem(
                f"DestinationRule {rule.name}: subset {name!r} not found (spec.subsets; "
                f"{ISTIO}.destinationRule.{fields[name]})"
            )
        found[0]["labels"] = {**(found[0].get("labels") or {}), L.SLOT: slot}
    return out


def dr_host(body: Body, rule: IstioDestinationRule) -> str:
    host = (body.get("spec") or {}).get("host")
    if not host:
        raise RouterProblem(f"DestinationRule {rule.name}: has no host (spec.host)")
    return str(host)


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
        routing = spec.strategy.traffic_routing()
        if routing is None or routing.istio is None:
            return []
        problems: list[str] = []
        if routing.max_traffic_weight != 100:
            problems.append(
                f"{M.FIELD}.maxTrafficWeight: Istio weights are percentages; it must be 100 "
                f"(is {routing.max_traffic_weight})"
            )
        rule = routing.istio.destination_rule
        if rule is not None and rule.stable_subset_name == rule.canary_subset_name:
            problems.append(
                f"{ISTIO}.destinationRule: stableSubsetName and canarySubsetName must differ"
            )
        return problems + M.header_route_problems(spec, "Istio")

    @staticmethod
    def _routing(ctx: RouteContext) -> IstioTrafficRouting:
        routing = ctx.spec.strategy.traffic_routing()
        assert routing is not None and routing.istio is not None
        return routing.istio

    def claims(self, ctx: RouteContext) -> list[str]:
        """The routes this Rollout weights: no other Rollout may weight them too."""
        return [
            f"VirtualService {m.spec.name} route {route}"
            for m in managed_services(self._routing(ctx))
            for route in (m.spec.routes or ["(its only one)"])
        ]

    def watched(self, ctx: RouteContext) -> list[ObjectRef]:
        istio = self._routing(ctx)
        refs = [vs_ref(m.spec.name) for m in managed_services(istio)]
        return refs + ([dr_ref(istio.destination_rule.name)] if istio.destination_rule else [])

    def _hosts(self, ctx: RouteContext, rule_body: Body | None) -> Hosts:
        rule = self._routing(ctx).destination_rule
        if rule is None:
            return Hosts(ctx.namespace, ctx.stable_service, ctx.canary_service)
        host = dr_host(rule_body, rule) if rule_body else ""  # gone: releasing, by subset
        return Hosts(ctx.namespace, rule.stable_subset_name, rule.canary_subset_name, host)

    def _edit(
        self,
        ctx: RouteContext,
        body: Body,
        managed: Managed,
        hosts: Hosts,
        plan: TrafficPlan | None,
    ) -> Body:
        routing = ctx.spec.strategy.traffic_routing()
        assert routing is not None
        routes = plan.header_routes if plan else ()
        reserved = frozenset(r.name for r in routing.managed_routes or []) | {
            r.name for r in routes
        }
        weights = split(plan.canary_weight, 100) if plan else (100, 0)

        def ports(service: str, port: Any) -> str:
            return M.port_problem(ctx, service, port)

        return edit_virtual_service(body, managed, hosts, weights, routes, reserved, ports)

    def _rule(self, ctx: RouteContext, live: Body | None) -> Body | None:
        """The user's DestinationRule, if the Rollout names one; missing -> problem."""
        rule = self._routing(ctx).destination_rule
        if rule is None:
            return None
        if live is None:
            raise RouterProblem(
                f"DestinationRule {rule.name}: not found in {ctx.namespace} "
                f"({ISTIO}.destinationRule.name); Sluice never creates it"
            )
        return live

    @staticmethod
    def _slots(rule: IstioDestinationRule, plan: TrafficPlan) -> dict[str, Slot]:
        canary = plan.canary_slot or other(plan.stable_slot)
        return {rule.stable_subset_name: plan.stable_slot, rule.canary_subset_name: canary}

    def verify(self, ctx: RouteContext, plan: TrafficPlan) -> Verification:
        details: list[str] = []
        verified = True
        try:
            rule = self._routing(ctx).destination_rule
            rule_body = self._rule(ctx, ctx.objects.get(dr_ref(rule.name).key) if rule else None)
            hosts = self._hosts(ctx, rule_body)
            slots = self._slots(rule, plan) if rule else {}
            if rule and rule_body and edit_destination_rule(rule_body, rule, slots) != rule_body:
                verified = False
                details.append(f"DestinationRule {rule.name}: subsets select other slots")
            for managed in managed_services(self._routing(ctx)):
                ref = vs_ref(managed.spec.name)
                live = ctx.objects.get(ref.key)
                if live is None:
                    raise RouterProblem(
                        f"VirtualService {ref.name}: not found in {ctx.namespace} "
                        f"({managed.field}.name)"
                    )
                seen = f"VirtualService {ref.name}: {summary(live, hosts)}"
                desired = self._edit(ctx, live, managed, hosts, plan)
                if desired != live:
                    verified = False
                    seen += f" (plan: {summary(desired, hosts)})"
                details.append(seen)
        except RouterProblem as problem:
            return Verification(False, problem=str(problem))
        return Verification(verified, detail="; ".join(details))

    async def _live(self, ctx: RouteContext, ref: ObjectRef) -> Body | None:
        return ctx.objects.get(ref.key) or await self.kube.get_object(ref, ctx.namespace)

    async def _write(self, ctx: RouteContext, plan: TrafficPlan | None) -> list[Body]:
        """Every edit is computed before the first write, so a problem in one object
        leaves all of them as they were. With a DestinationRule the stable subset moves
        first and the canary subset last (as the Services do): a promotion or a rollback
        never sends a request to the version the plan takes traffic away from."""
        istio = self._routing(ctx)
        rule = istio.destination_rule
        rule_body = await self._live(ctx, dr_ref(rule.name)) if rule else None
        if plan is not None:
            self._rule(ctx, rule_body)
        hosts = self._hosts(ctx, rule_body)
        edits: list[tuple[ObjectRef, Body, Body]] = []
        for managed in managed_services(istio):
            ref = vs_ref(managed.spec.name)
            live = await self._live(ctx, ref)
            if live is None:
                if plan is None:  # releasing: a VirtualService that is gone holds no traffic
                    continue
                raise RouterProblem(
                    f"VirtualService {ref.name}: not found in {ctx.namespace} "
                    f"({managed.field}.name); Sluice never creates it"
                )
            edits.append((ref, live, self._edit(ctx, live, managed, hosts, plan)))
        halves: list[dict[str, Slot]] = []
        if rule and rule_body and plan:
            slots = self._slots(rule, plan)
            edit_destination_rule(rule_body, rule, slots)  # its problems, before any write
            halves = [{k: slots[k]} for k in (rule.stable_subset_name, rule.canary_subset_name)]

        written: list[Body] = []

        async def put(ref: ObjectRef, live: Body, desired: Body) -> Body:
            body = await M.put(self.kube, ctx, ref, live, desired)
            if body is None:
                return live
            written.append(body)
            return body

        if rule and rule_body and halves:
            rule_body = await put(
                dr_ref(rule.name), rule_body, edit_destination_rule(rule_body, rule, halves[0])
            )
        for ref, live, desired in edits:
            await put(ref, live, desired)
        if rule and rule_body and halves:
            await put(
                dr_ref(rule.name), rule_body, edit_destination_rule(rule_body, rule, halves[1])
            )
        return written

    async def apply(self, ctx: RouteContext, plan: TrafficPlan) -> list[Body]:
        return await self._write(ctx, plan)

    async def release(self, ctx: RouteContext) -> list[Body]:
        """All traffic to the stable destinations; a DestinationRule keeps its subsets
        (the stable one already selects the stable slot)."""
        return await self._write(ctx, None)
