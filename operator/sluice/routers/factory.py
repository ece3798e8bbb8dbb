"""From a Rollout's trafficRouting to its routers; the one place that lists the providers."""

from __future__ import annotations

from sluice.api.rollout import RolloutSpec
from sluice.cluster.kube import Kube
from sluice.routers.base import Capabilities, TrafficRouter
from sluice.routers.bluegreen import BlueGreenServices
from sluice.routers.gateway import GatewayAPIRouter
from sluice.routers.istio import IstioRouter
from sluice.routers.nginx import NginxRouter
from sluice.routers.services import ServiceRouter
from sluice.routers.set import RouterSet
from sluice.routers.smi import SMIRouter

# trafficRouting field (python name) -> provider class; each lives in its own module.
PROVIDERS: dict[str, type[TrafficRouter]] = {
    "nginx": NginxRouter,
    "istio": IstioRouter,
    "gateway_api": GatewayAPIRouter,
    "smi": SMIRouter,
}


def capabilities(field: str) -> Capabilities | None:
    provider = PROVIDERS.get(field)
    return provider.capabilities if provider else None


def checks(field: str, spec: RolloutSpec) -> list[str]:
    """A provider's own refusals of a spec (its optional static `check`)."""
    check = getattr(PROVIDERS.get(field), "check", None)
    return list(check(spec)) if check is not None else []


def routers(kube: Kube, spec: RolloutSpec) -> RouterSet:
    routing = spec.strategy.traffic_routing()
    fields = routing.providers() if routing else []
    providers = [PROVIDERS[f](kube) for f in fields if f in PROVIDERS]
    if spec.strategy.blue_green is not None:
        # The user's Services switch first, then the routers (which send all traffic to
        # <name>-stable): a promotion counts once all of them read it back.
        providers = [BlueGreenServices(kube), *providers]
    return RouterSet(ServiceRouter(kube), providers)
