"""Traffic routing in the Rollout API: where the weight is set when it is not the pod share.

Field names are Argo Rollouts' wherever the concept is the same, so that a
`strategy.canary.trafficRouting` block migrates unchanged. What Argo Rollouts has and
Sluice does not do (alb, ambassador, traefik, plugins, TLS/TCP routes, mirror routes) is
kept by the API server (unknown fields are preserved here) and refused by validation
with the field's name, never silently ignored.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from sluice.api.base import Model
from sluice.api.re2 import re2_problem

# Unknown fields under these blocks reach the operator, which refuses them by name.
PRESERVE: JsonDict = {"x-kubernetes-preserve-unknown-fields": True}
NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"  # a DNS subdomain: any object name
HEADER = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,256}$"  # an HTTP header field name (RFC 9110 token)


def _exactly_one(model: Model, fields: tuple[str, ...], what: str) -> None:
    given = [f for f in fields if getattr(model, f) is not None]
    if len(given) != 1:
        names = ", ".join(model.model_fields[f].alias or f for f in fields)
        raise ValueError(f"{what}: exactly one of {names} must be set")


class StringMatch(Model):
    """How a header value is matched: exactly one of exact, prefix, regex."""

    exact: str | None = Field(default=None, max_length=1024, description="The whole value.")
    prefix: str | None = Field(default=None, max_length=1024, description="A value prefix.")
    regex: str | None = Field(
        default=None,
        max_length=256,
        description="An RE2 regular expression the whole value must match (no backreferences "
        "or lookaround: the routers evaluate RE2).",
    )

    @model_validator(mode="after")
    def _one(self) -> StringMatch:
        _exactly_one(self, ("exact", "prefix", "regex"), "headerValue")
        problem = None if self.regex is None else re2_problem(self.regex)
        if self.regex is not None and problem:
            raise ValueError(f"regex {self.regex[:80]!r}: {problem}")
        return self


class HeaderRoutingMatch(Model):
    """One condition of a header route: a header, or a cookie, sends a request to the canary."""

    header_name: str | None = Field(
        default=None, pattern=HEADER, description="The HTTP header to match, e.g. X-User-Group."
    )
    header_value: StringMatch | None = Field(
        default=None, description="How the header's value must match (with headerName)."
    )
    cookie_name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,256}$",
        description="A cookie instead of a header: requests carrying cookieName=cookieValue go "
        "to the canary (NGINX: the cookie's value must be 'always').",
    )
    cookie_value: str = Field(
        default="always",
        pattern=r"^[A-Za-z0-9!#$%&'()*+\-./:<=>?@\[\]^_`{|}~]{1,256}$",
        description="The cookie value that selects the canary. Defaults to 'always'.",
    )

    @model_validator(mode="after")
    def _header_or_cookie(self) -> HeaderRoutingMatch:
        if (self.header_name is None) == (self.cookie_name is None):
            raise ValueError("match: exactly one of headerName, cookieName must be set")
        if self.header_name is not None and self.header_value is None:
            raise ValueError("match: headerValue is required with headerName")
        if self.cookie_name is not None and self.header_value is not None:
            raise ValueError("match: headerValue goes with headerName, not cookieName")
        return self


class SetHeaderRoute(Model):
    """Send requests that match to the canary, whatever the weight (A/B by header or cookie).

    The route lives from this step until the rollout ends (promoted or aborted), or until a
    later setHeaderRoute of the same name without match removes it.
    """

    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="The route's name; must be listed in trafficRouting.managedRoutes.",
    )
    match: list[HeaderRoutingMatch] | None = Field(
        default=None,
        max_length=8,
        description="Conditions that must all hold. Omitted or empty: remove the route.",
    )


class SetCanaryScale(Model):
    """Size the canary apart from its traffic weight (needs a traffic router)."""

    replicas: int | None = Field(
        default=None, ge=0, le=100_000, description="This many canary pods."
    )
    weight: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="ceil(spec.replicas * weight / 100) canary pods.",
    )
    match_traffic_weight: bool | None = Field(
        default=None,
        description="true: size the canary to its traffic weight again (the default).",
    )

    @model_validator(mode="after")
    def _one(self) -> SetCanaryScale:
        _exactly_one(self, ("replicas", "weight", "match_traffic_weight"), "setCanaryScale")
        if self.match_traffic_weight is False:
            raise ValueError("setCanaryScale.matchTrafficWeight: only true is meaningful")
        return self


class ManagedRoute(Model):
    """A header route Sluice may add to the routers' objects."""

    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", description="The route's name."
    )


class NginxTrafficRouting(Model):
    """NGINX Ingress: Sluice owns a canary copy of each stable Ingress (canary annotations)."""

    model_config = ConfigDict(json_schema_extra=PRESERVE)

    stable_ingress: str | None = Field(
        default=None, pattern=NAME, description="The user's Ingress that serves the stable."
    )
    stable_ingresses: list[str] | None = Field(
        default=None,
        max_length=16,
        description="Several stable Ingresses (instead of stableIngress).",
    )
    annotation_prefix: str = Field(
        default="nginx.ingress.kubernetes.io",
        max_length=253,
        description="Prefix of the NGINX canary annotations. Defaults to "
        "nginx.ingress.kubernetes.io.",
    )
    additional_ingress_annotations: dict[str, str] | None = Field(
        default=None,
        description="Extra annotations on the canary Ingresses Sluice creates.",
    )

    def ingresses(self) -> list[str]:
        return [self.stable_ingress] if self.stable_ingress else list(self.stable_ingresses or [])

    @model_validator(mode="after")
    def _one(self) -> NginxTrafficRouting:
        _exactly_one(self, ("stable_ingress", "stable_ingresses"), "nginx")
        return self


class IstioVirtualService(Model):
    """A user's VirtualService; Sluice edits only the HTTP routes named here."""

    model_config = ConfigDict(json_schema_extra=PRESERVE)

    name: str = Field(pattern=NAME, description="The VirtualService's name (same namespace).")
    routes: list[str] | None = Field(
        default=None,
        max_length=32,
        description="Names of its HTTP routes whose weights Sluice sets. Omitted: the "
        "VirtualService must have exactly one HTTP route.",
    )


class IstioDestinationRule(Model):
    """Split by DestinationRule subsets of one Service instead of two Services."""

    name: str = Field(pattern=NAME, description="The DestinationRule's name.")
    canary_subset_name: str = Field(max_length=253, description="The canary's subset.")
    stable_subset_name: str = Field(max_length=253, description="The stable's subset.")


class IstioTrafficRouting(Model):
    """Istio: weights on the stable and canary destinations of a VirtualService's routes."""

    model_config = ConfigDict(json_schema_extra=PRESERVE)

    virtual_service: IstioVirtualService | None = Field(
        default=None, description="The VirtualService to edit."
    )
    virtual_services: list[IstioVirtualService] | None = Field(
        default=None, max_length=16, description="Several VirtualServices (instead of one)."
    )
    destination_rule: IstioDestinationRule | None = Field(
        default=None,
        description="Optional: route to subsets of one Service; Sluice sets each subset's "
        "pod label to its slot.",
    )

    def services(self) -> list[IstioVirtualService]:
        return [self.virtual_service] if self.virtual_service else list(self.virtual_services or [])

    @model_validator(mode="after")
    def _one(self) -> IstioTrafficRouting:
        _exactly_one(self, ("virtual_service", "virtual_services"), "istio")
        return self


class GatewayAPIRoute(Model):
    """One HTTPRoute whose rules Sluice weights."""

    name: str = Field(pattern=NAME, description="The HTTPRoute's name (same namespace).")
    use_header_routes: bool = Field(
        default=True,
        description="Add header-match rules for setHeaderRoute steps to this route.",
    )


class GatewayAPITrafficRouting(Model):
    """Gateway API: backendRefs weights on the HTTPRoute rules that send to the stable."""

    model_config = ConfigDict(json_schema_extra=PRESERVE)

    http_route: str | None = Field(default=None, pattern=NAME, description="The HTTPRoute to edit.")
    http_routes: list[GatewayAPIRoute] | None = Field(
        default=None, max_length=16, description="Several HTTPRoutes (instead of httpRoute)."
    )

    def routes(self) -> list[GatewayAPIRoute]:
        if self.http_route:
            return [GatewayAPIRoute(name=self.http_route)]
        return list(self.http_routes or [])

    @model_validator(mode="after")
    def _one(self) -> GatewayAPITrafficRouting:
        _exactly_one(self, ("http_route", "http_routes"), "gatewayAPI")
        return self


class SMITrafficRouting(Model):
    """SMI: a TrafficSplit Sluice creates and owns, splitting the root Service."""

    model_config = ConfigDict(json_schema_extra=PRESERVE)

    traffic_split_name: str | None = Field(
        default=None, pattern=NAME, description="Its name. Defaults to the Rollout's name."
    )
    root_service: str | None = Field(
        default=None,
        pattern=NAME,
        description="The Service clients call (the split's apex). Defaults to the Rollout's "
        "name, the root Service Sluice manages.",
    )


class TrafficRouting(Model):
    """Where the weight is set. Several providers here move together, step by step."""

    model_config = ConfigDict(json_schema_extra=PRESERVE)

    max_traffic_weight: int = Field(
        default=100,
        ge=1,
        le=1_000_000,
        description="The total weight, for routers whose weights are not percentages; "
        "setWeight stays a percentage of it. Defaults to 100.",
    )
    managed_routes: list[ManagedRoute] | None = Field(
        default=None,
        max_length=16,
        description="Header routes Sluice may add, in this order of precedence.",
    )
    nginx: NginxTrafficRouting | None = Field(default=None, description="NGINX Ingress.")
    istio: IstioTrafficRouting | None = Field(default=None, description="Istio.")
    gateway_api: GatewayAPITrafficRouting | None = Field(
        default=None, alias="gatewayAPI", description="Gateway API HTTPRoute."
    )
    smi: SMITrafficRouting | None = Field(default=None, description="SMI TrafficSplit.")

    def providers(self) -> list[str]:
        return [p for p in ("nginx", "istio", "gateway_api", "smi") if getattr(self, p)]
