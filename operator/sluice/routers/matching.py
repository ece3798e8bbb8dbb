"""Helpers the mesh and Gateway API routers share: regexes for header routes, Service refs.

Regexes are written for RE2 (what Envoy-based routers evaluate) and stay within the
subset every common dialect reads the same way: only the metacharacters are escaped,
and no `\\s`, lookaround or backreference is used.
"""

from __future__ import annotations

from collections.abc import Callable

from sluice.api.rollout import RolloutSpec
from sluice.api.traffic import HeaderRoutingMatch
from sluice.cluster.kube import Kube
from sluice.routers.base import Body, ObjectRef, RouteContext, RouterProblem

_META = set("\\.+*?()|[]{}^$")
FIELD = "spec.strategy.canary.trafficRouting"


def escape(text: str) -> str:
    """`text` as a regex matching itself. Only metacharacters are escaped: RE2 refuses
    some escapes Python's `re.escape` writes (e.g. a backslash before a space)."""
    return "".join("\\" + c if c in _META else c for c in text)


def prefix_regex(prefix: str) -> str:
    return f"^{escape(prefix)}.*$"


def cookie_regex(name: str, value: str) -> str:
    """Matches a Cookie header holding `name=value` as one whole cookie, anywhere in it
    (so `xbeta=always` or `beta=alwaysx` do not count)."""
    return f"^(.*; *)?{escape(name)}={escape(value)}( *;.*)?$"


def header_key(match: HeaderRoutingMatch) -> str:
    """The header a condition reads, lower-cased (a cookie reads `cookie`)."""
    return (match.header_name or "cookie").lower()


def condition_clash(matches: tuple[HeaderRoutingMatch, ...] | list[HeaderRoutingMatch]) -> str:
    """Two conditions on one header cannot both be expressed by these routers (a header
    match names a header once); returns that header, or ''."""
    seen: set[str] = set()
    for match in matches:
        key = header_key(match)
        if key in seen:
            return key
        seen.add(key)
    return ""


def header_route_problems(spec: RolloutSpec, provider: str) -> list[str]:
    """setHeaderRoute steps this provider cannot write, as validation messages."""
    problems: list[str] = []
    for index, step in enumerate(spec.strategy.canary.steps):
        route = step.set_header_route
        if route is None or not route.match:
            continue
        clash = condition_clash(route.match)
        if clash:
            problems.append(
                f"spec.strategy.canary.steps[{index}].setHeaderRoute.match: two conditions "
                f"on header {clash!r}; {provider} can match a header only once per route"
            )
    return problems


def service_name(host: str, namespace: str) -> str:
    """A mesh host in `namespace` reduced to its Service name (short, `svc.ns`, `svc.ns.svc`
    and the cluster FQDN are one Service); any other host is returned as it is."""
    for suffix in (f".{namespace}.svc.cluster.local", f".{namespace}.svc", f".{namespace}"):
        if host.endswith(suffix):
            return host.removesuffix(suffix)
    return host


def is_service_host(host: str, service: str, namespace: str) -> bool:
    return service_name(host, namespace) == service


async def put(
    kube: Kube, ctx: RouteContext, ref: ObjectRef, live: Body, desired: Body
) -> Body | None:
    """PUT `desired` at the resourceVersion it was read at (a 409 if the object changed
    since: the caller re-reads); nothing when it equals `live`."""
    if desired == live:
        return None
    desired["apiVersion"] = f"{ref.group}/{ref.version}"  # the version it is PUT to
    body = await kube.replace_object(ref, ctx.namespace, desired)
    body.setdefault("kind", ref.kind)
    return body


def port_problem(ctx: RouteContext, service: str, port: object) -> str:
    """'' if `port` is None or a port of the Service Sluice manages (when it exists yet)."""
    if port is None:
        return ""
    key = f"Service/{service}"
    body: Body | None = ctx.children.get(key) or ctx.objects.get(key)
    if body is None:
        return ""
    ports = [p.get("port") for p in body.get("spec", {}).get("ports") or []]
    if port in ports:
        return ""
    return f"port {port} is not a port of Service {service} (it has {ports})"


def outside_managed(
    entries: list[Body],
    reserved: frozenset[str],
    ours: Callable[[Body], bool],
    clash: Callable[[int, Body], str],
) -> list[tuple[int, Body]]:
    """(index, entry) of the routes/rules that are not header routes Sluice added earlier.
    An entry carrying a managed name that Sluice did not add is a clash: RouterProblem."""
    kept: list[tuple[int, Body]] = []
    for index, entry in enumerate(entries):
        if entry.get("name") in reserved:
            if not ours(entry):
                raise RouterProblem(clash(index, entry))
            continue
        kept.append((index, entry))
    return kept


def ahead_of(kept: list[tuple[int, Body]], first: int, added: list[Body]) -> list[Body]:
    """The kept entries with `added` inserted just before the one at index `first`."""
    return [e for i, e in kept if i < first] + added + [e for i, e in kept if i >= first]
