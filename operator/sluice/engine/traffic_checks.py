"""Checks of what a Rollout's children and routers need: names they can have, routers that
can do the steps. Each message names the field; none of this can be said in the schema."""

from __future__ import annotations

import re

from sluice.api.rollout import RolloutSpec

ROUTING = "spec.strategy.canary.trafficRouting"
WIRE = {"nginx": "nginx", "istio": "istio", "gateway_api": "gatewayAPI", "smi": "smi"}
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # a Service name (RFC 1035)


def check_traffic(spec: RolloutSpec) -> list[str]:
    problems = [spec.strategy.localize(p) for p in _check_traffic(spec)]
    bg = spec.strategy.blue_green
    if bg is not None and bg.traffic_routing is not None and bg.traffic_routing.managed_routes:
        problems.append(
            "spec.strategy.blueGreen.trafficRouting.managedRoutes: header routes are set by "
            "canary steps; a blue-green rollout has none"
        )
    return problems


def _check_traffic(spec: RolloutSpec) -> list[str]:
    # Here, not at the top: the routers import the engine's types, so a module-level import
    # would make `import sluice.routers.<any>` (before sluice.engine) a circular import.
    from sluice.routers.factory import capabilities, checks

    canary = spec.strategy.canary
    routing = spec.strategy.traffic_routing()
    problems: list[str] = []
    if routing is None:
        if canary.dynamic_stable_scale:
            problems.append(
                "spec.strategy.canary.dynamicStableScale: needs trafficRouting (without a "
                "router the stable already shrinks with the weight)"
            )
        return problems
    if canary.stable_service and canary.stable_service == canary.canary_service:
        problems.append("spec.strategy.canary.canaryService: must differ from stableService")
    if not routing.providers():
        problems.append(f"{ROUTING}: name at least one of nginx, istio, gatewayAPI, smi")
    routes = [s.set_header_route for s in canary.steps if s.set_header_route is not None]
    matched = [r for r in routes if r.match]
    live = {r.name for r in matched}
    for field in routing.providers():
        where = f"{ROUTING}.{WIRE[field]}"
        caps = capabilities(field)
        if caps is None:
            problems.append(f"{where}: not supported by this version of Sluice")
            continue
        problems += checks(field, spec)
        if caps.fixed_total is not None and routing.max_traffic_weight != caps.fixed_total:
            problems.append(
                f"{ROUTING}.maxTrafficWeight: {WIRE[field]} weights are percentages; "
                f"it must be {caps.fixed_total}"
            )
        if caps.max_header_routes is not None and len(live) > caps.max_header_routes:
            problems.append(
                f"{where}: at most {caps.max_header_routes} header route(s), the steps set "
                f"{len(live)} ({', '.join(sorted(live))})"
            )
        for route in matched:
            assert route.match is not None
            if caps.max_matches is not None and len(route.match) > caps.max_matches:
                problems.append(
                    f"{where}: setHeaderRoute {route.name} has {len(route.match)} conditions; "
                    f"{WIRE[field]} takes at most {caps.max_matches}"
                )
            for match in route.match:
                if match.cookie_name is not None and not caps.cookie:
                    problems.append(
                        f"{where}: setHeaderRoute {route.name}: cookie matches are not "
                        f"supported by {WIRE[field]}"
                    )
                value = match.header_value
                kind = next(
                    (
                        k
                        for k in ("exact", "prefix", "regex")
                        if value and getattr(value, k) is not None
                    ),
                    None,
                )
                if kind is not None and kind not in caps.header:
                    problems.append(
                        f"{where}: setHeaderRoute {route.name}: headerValue.{kind} is not "
                        f"supported by {WIRE[field]}"
                    )
                if (
                    match.cookie_name is not None
                    and caps.cookie_values is not None
                    and match.cookie_value not in caps.cookie_values
                ):
                    problems.append(
                        f"{where}: setHeaderRoute {route.name}: cookieValue must be one of "
                        f"{', '.join(sorted(caps.cookie_values))} with {WIRE[field]}"
                    )
    return problems


def check_names(spec: RolloutSpec, name: str) -> list[str]:
    """The Services `<name>`, `<name>-stable`, `<name>-canary` must be valid Service names,
    and `<name>` a label value: refused up front instead of failing on every create."""
    canary = spec.strategy.canary
    services = {
        "metadata.name": name,
        "spec.strategy.canary.stableService": canary.stable_service or f"{name}-stable",
        "spec.strategy.canary.canaryService": canary.canary_service or f"{name}-canary",
    }
    problems = []
    for field, service in services.items():
        if len(service) > 63 or not _DNS_LABEL.match(service):
            why = "over 63 characters" if len(service) > 63 else "not a DNS-1035 label"
            hint = (
                " (the Rollout's name makes it: use at most 56 characters, a-z 0-9 and -, "
                "starting with a letter)"
                if field != "metadata.name" and service.startswith(name)
                else ""
            )
            problems.append(f"{field}: Service name {service!r} is {why}{hint}")
    return problems
