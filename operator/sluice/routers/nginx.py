"""NGINX Ingress: a canary Ingress that Sluice owns beside each of the user's Ingresses.

ingress-nginx folds an Ingress marked `canary: "true"` into the Ingress that serves the
same host and path, and sends it `canary-weight` out of `canary-weight-total` requests,
or those a header or cookie selects. So the user's Ingress is only ever read: Sluice
copies the paths that send to the stable Service, points the copy at the canary Service
and owns it (owner reference), so the copy goes away with the Rollout.
"""

from __future__ import annotations

import copy
import hashlib
from typing import ClassVar

from sluice.api.traffic import HeaderRoutingMatch, NginxTrafficRouting
from sluice.cluster import children as C  # a module: children imports the engine, which imports us
from sluice.cluster import labels as L
from sluice.cluster.kube import Kube
from sluice.engine.types import TrafficPlan
from sluice.routers.base import (
    Body,
    Capabilities,
    ObjectRef,
    RouteContext,
    RouterProblem,
    Verification,
    split,
)
from sluice.routers.owned import orphans, same_meta

GROUP, VERSION, PLURAL, KIND = "networking.k8s.io", "v1", "ingresses", "Ingress"
CLASS_ANNOTATION = "kubernetes.io/ingress.class"  # the pre-ingressClassName way; copied
ROLE = "canary-ingress"
MAX_NAME = 253  # an Ingress name is a DNS subdomain
FIELD = "spec.strategy.canary.trafficRouting.nginx"
BACKEND = "spec.rules[].http.paths[].backend.service.name"
COOKIE_VALUE = "always"  # ingress-nginx sends a cookie to the canary only for this value
_REGEX_META = frozenset("\\^$.|?*+()[]{}")


def ingress(name: str, owned: bool = False) -> ObjectRef:
    return ObjectRef(GROUP, VERSION, PLURAL, KIND, name, owned)


def canary_name(rollout: str, stable: str) -> str:
    """`<rollout>-<stable>-canary`; too long, it is cut and made unique by a hash."""
    name = f"{rollout}-{stable}-canary"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: MAX_NAME - 11].rstrip('-.')}-{digest}"


def escape(text: str) -> str:
    """`text` as a regular expression matching itself (RE2 and PCRE alike)."""
    return "".join("\\" + c if c in _REGEX_META else c for c in text)


def check_routes(plan: TrafficPlan) -> None:
    """What one canary Ingress can express: one route of one condition, cookie 'always'."""
    routes = plan.header_routes if plan.canary_slot else ()
    if len(routes) > 1:
        names = ", ".join(r.name for r in routes)
        raise RouterProblem(
            f"nginx: {len(routes)} header routes at once ({names}); an NGINX canary Ingress "
            "carries one (spec.strategy.canary.trafficRouting.managedRoutes)"
        )
    for route in routes:
        if len(route.match) != 1:
            raise RouterProblem(
                f"nginx: header route {route.name} has {len(route.match)} conditions; NGINX "
                "matches one header or one cookie (setHeaderRoute.match)"
            )
        match = route.match[0]
        if match.cookie_name is not None and match.cookie_value != COOKIE_VALUE:
            raise RouterProblem(
                f"nginx: header route {route.name} wants cookie {match.cookie_name}="
                f"{match.cookie_value}; NGINX sends a cookie to the canary only when its value "
                f"is '{COOKIE_VALUE}' (setHeaderRoute.match[0].cookieValue)"
            )


def match_annotations(prefix: str, match: HeaderRoutingMatch) -> dict[str, str]:
    if match.cookie_name is not None:
        return {f"{prefix}/canary-by-cookie": match.cookie_name}
    assert match.header_name is not None and match.header_value is not None  # by the model
    value = match.header_value
    header = {f"{prefix}/canary-by-header": match.header_name}
    if value.exact is not None:
        return {**header, f"{prefix}/canary-by-header-value": value.exact}
    # ingress-nginx searches the value for the pattern: anchor it so the whole value counts.
    pattern = f"^{escape(value.prefix)}.*" if value.prefix is not None else f"^(?:{value.regex})$"
    return {**header, f"{prefix}/canary-by-header-pattern": pattern}


def canary_annotations(prefix: str, plan: TrafficPlan, max_weight: int) -> dict[str, str]:
    """The `<prefix>/canary*` annotations that carry `plan`."""
    check_routes(plan)
    weight = plan.canary_weight if plan.canary_slot else 0
    out = {
        f"{prefix}/canary": "true",
        f"{prefix}/canary-weight": str(split(weight, max_weight)[1]),
    }
    if max_weight != 100:
        out[f"{prefix}/canary-weight-total"] = str(max_weight)
    for route in plan.header_routes if plan.canary_slot else ():
        out.update(match_annotations(prefix, route.match[0]))
    return out


def config(ctx: RouteContext) -> NginxTrafficRouting:
    routing = ctx.spec.strategy.traffic_routing()
    if routing is None or routing.nginx is None:
        raise RouterProblem(f"{FIELD}: not set")
    return routing.nginx


def missing(nginx: NginxTrafficRouting, name: str) -> str:
    names = nginx.ingresses()
    field = "stableIngress" if nginx.stable_ingress else f"stableIngresses[{names.index(name)}]"
    return f"Ingress {name}: not found ({FIELD}.{field})"


def _port_problem(ctx: RouteContext, name: str, i: int, j: int, port: Body) -> str | None:
    """A path's port that the stable or canary Service (as cached) does not have."""
    for service in (ctx.stable_service, ctx.canary_service):
        body = ctx.children.get(f"Service/{service}") or ctx.objects.get(f"Service/{service}")
        if body is None:
            continue  # not created yet: the Service router makes it
        ports = (body.get("spec") or {}).get("ports") or []
        if "number" in port:
            wanted, have = port["number"], [p.get("port") for p in ports]
        else:
            wanted, have = port.get("name"), [p.get("name") for p in ports]
        if wanted not in have:
            return (
                f"Ingress {name}: spec.rules[{i}].http.paths[{j}].backend.service.port is "
                f"{wanted!r}, which Service {service} does not have (its ports: {have})"
            )
    return None


def canary_rules(ctx: RouteContext, stable: Body) -> list[Body]:
    """The rules of `stable` that send to the stable Service, sent to the canary instead."""
    name = stable["metadata"]["name"]
    rules: list[Body] = []
    for i, rule in enumerate((stable.get("spec") or {}).get("rules") or []):
        paths: list[Body] = []
        for j, path in enumerate((rule.get("http") or {}).get("paths") or []):
            service = (path.get("backend") or {}).get("service") or {}
            if service.get("name") != ctx.stable_service:
                continue
            problem = _port_problem(ctx, name, i, j, service.get("port") or {})
            if problem:
                raise RouterProblem(problem)
            path = copy.deepcopy(path)
            path["backend"]["service"]["name"] = ctx.canary_service
            paths.append(path)
        if paths:
            copied = {k: copy.deepcopy(v) for k, v in rule.items() if k != "http"}
            rules.append({**copied, "http": {"paths": paths}})
    if not rules:
        raise RouterProblem(
            f"Ingress {name}: no path sends to Service {ctx.stable_service} ({BACKEND})"
        )
    return rules


def canary_ingress(ctx: RouteContext, stable: Body, plan: TrafficPlan) -> Body:
    """The whole canary Ingress for the user's Ingress `stable`. Pure."""
    nginx = config(ctx)
    prefix = nginx.annotation_prefix.rstrip("/")
    annotations = dict(nginx.additional_ingress_annotations or {})
    ingress_class = (stable["metadata"].get("annotations") or {}).get(CLASS_ANNOTATION)
    if ingress_class is not None:
        annotations[CLASS_ANNOTATION] = ingress_class
    annotations.update(canary_annotations(prefix, plan, ctx.max_weight))
    spec: Body = {"rules": canary_rules(ctx, stable)}
    class_name = (stable.get("spec") or {}).get("ingressClassName")
    if class_name:
        spec["ingressClassName"] = class_name
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": canary_name(ctx.name, stable["metadata"]["name"]),
            "namespace": ctx.namespace,
            "labels": {L.ROLLOUT: ctx.name, L.ROLE: ROLE},
            "annotations": annotations,
            "ownerReferences": [C.owner_reference(ctx.rollout)],
        },
        "spec": spec,
    }


def mismatch(live: Body, desired: Body, prefix: str) -> str | None:
    """How the live canary Ingress routes differently from `desired`; None: it does not."""
    name = desired["metadata"]["name"]
    have = live["metadata"].get("annotations") or {}
    want = desired["metadata"]["annotations"]
    managed = f"{prefix.rstrip('/')}/canary"
    for key in sorted(set(want) | {k for k in have if k.startswith(managed)}):
        if have.get(key) != want.get(key):
            seen, wanted = have.get(key), want.get(key)
            return f"Ingress {name}: metadata.annotations[{key}] is {seen!r}, want {wanted!r}"
    for key in ("ingressClassName", "rules"):
        if (live.get("spec") or {}).get(key) != desired["spec"].get(key):
            return f"Ingress {name}: spec.{key} differs from the stable Ingress's copy"
    return None


def foreign(ctx: RouteContext, name: str) -> str:
    return (
        f"Ingress {name} exists and is not owned by Rollout {ctx.name} "
        "(metadata.ownerReferences); Sluice will not take it over: rename or delete it"
    )


class NginxRouter:
    name: ClassVar[str] = "nginx"
    capabilities: ClassVar[Capabilities] = Capabilities(
        cookie_values=frozenset({COOKIE_VALUE}), max_header_routes=1, max_matches=1
    )

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def claims(self, ctx: RouteContext) -> list[str]:
        """The host rules of the stable Ingresses that send to the stable Service:
        ingress-nginx takes one canary Ingress per rule, so a second Rollout's copy of
        the same rule would fight the first's. An Ingress not read yet claims as a whole."""
        found: list[str] = []
        for name in config(ctx).ingresses():
            stable = ctx.objects.get(f"{KIND}/{name}")
            if stable is None:
                found.append(f"Ingress {name}")
                continue
            for rule in (stable.get("spec") or {}).get("rules") or []:
                paths = (rule.get("http") or {}).get("paths") or []
                services = {
                    ((p.get("backend") or {}).get("service") or {}).get("name") for p in paths
                }
                if ctx.stable_service in services:
                    found.append(f"Ingress {name} host {rule.get('host') or '*'}")
        return found

    def watched(self, ctx: RouteContext) -> list[ObjectRef]:
        stables = config(ctx).ingresses()
        canaries = [ingress(canary_name(ctx.name, s), owned=True) for s in stables]
        return [ingress(s) for s in stables] + canaries

    def verify(self, ctx: RouteContext, plan: TrafficPlan) -> Verification:
        nginx = config(ctx)
        problems: list[str] = []
        pending: list[str] = []
        seen: list[str] = []
        try:
            check_routes(plan)
        except RouterProblem as exc:
            return Verification(False, problem=str(exc))
        for stable_name in nginx.ingresses():
            stable = ctx.objects.get(f"{KIND}/{stable_name}")
            name = canary_name(ctx.name, stable_name)
            live = ctx.get(ingress(name))
            if stable is None:
                problems.append(missing(nginx, stable_name))
                continue
            if live is not None and not ctx.owned(live):
                problems.append(foreign(ctx, name))
                continue
            try:
                desired = canary_ingress(ctx, stable, plan)
            except RouterProblem as exc:
                problems.append(str(exc))
                continue
            if live is None:
                pending.append(f"Ingress {name}: not created yet")
                continue
            diff = mismatch(live, desired, nginx.annotation_prefix)
            if diff:
                pending.append(diff)
                continue
            weight = desired["metadata"]["annotations"][
                f"{nginx.annotation_prefix.rstrip('/')}/canary-weight"
            ]
            seen.append(f"Ingress {name}: canary weight {weight} of {ctx.max_weight}")
        if problems:
            return Verification(False, problem="; ".join(problems))
        if pending:
            return Verification(False, detail="; ".join(pending))
        return Verification(True, detail="; ".join(seen))

    async def _stable(self, ctx: RouteContext, name: str) -> Body:
        body = ctx.objects.get(f"{KIND}/{name}") or await self.kube.get_object(
            ingress(name), ctx.namespace
        )
        if body is None:
            raise RouterProblem(missing(config(ctx), name))
        return body

    async def _current(self, ctx: RouteContext, name: str) -> Body | None:
        ref = ingress(name)
        return ctx.get(ref) or await self.kube.get_object(ref, ctx.namespace)

    async def apply(self, ctx: RouteContext, plan: TrafficPlan) -> list[Body]:
        nginx = config(ctx)
        check_routes(plan)
        # Everything is built (and every problem found) before the first write.
        desired = [canary_ingress(ctx, await self._stable(ctx, s), plan) for s in nginx.ingresses()]
        current = [await self._current(ctx, d["metadata"]["name"]) for d in desired]
        for live, want in zip(current, desired, strict=True):
            if live is not None and not ctx.owned(live):
                raise RouterProblem(foreign(ctx, want["metadata"]["name"]))
        written: list[Body] = []
        for live, want in zip(current, desired, strict=True):
            ref = ingress(want["metadata"]["name"])
            if live is None:
                body = await self.kube.create_object(ref, ctx.namespace, want)
            elif mismatch(live, want, nginx.annotation_prefix) or not same_meta(live, want):
                body = await self.kube.replace_object(ref, ctx.namespace, _update(live, want))
            else:
                body = live
            body.setdefault("kind", KIND)
            written.append(body)
        # A stable Ingress no longer named leaves a canary copy that would still take its
        # weight: it is Sluice's, so it goes.
        names = {d["metadata"]["name"] for d in desired}
        for body in orphans(ctx, ROLE, KIND, names):
            await self.kube.delete_object(ingress(body["metadata"]["name"]), ctx.namespace)
        return written

    async def release(self, ctx: RouteContext) -> list[Body]:
        """Weight 0 and no header or cookie match; the canary Ingress itself stays (its
        owner reference deletes it with the Rollout)."""
        nginx = config(ctx)
        prefix = nginx.annotation_prefix.rstrip("/")
        written: list[Body] = []
        for stable_name in nginx.ingresses():
            ref = ingress(canary_name(ctx.name, stable_name))
            live = await self._current(ctx, ref.name)
            if live is None or not ctx.owned(live):
                continue
            have = live["metadata"].get("annotations") or {}
            annotations: dict[str, str | None] = {
                k: None for k in have if k.startswith(f"{prefix}/canary-by-")
            }
            annotations[f"{prefix}/canary-weight"] = "0"
            patch = {"metadata": {"annotations": annotations}}
            body = await self.kube.patch_object(ref, ctx.namespace, patch)
            body.setdefault("kind", KIND)
            written.append(body)
        return written


def _update(live: Body, want: Body) -> Body:
    """`want` over `live`'s metadata; its resourceVersion makes the PUT conditional."""
    meta = {k: v for k, v in live["metadata"].items() if k != "managedFields"}
    meta["labels"] = {**(meta.get("labels") or {}), **want["metadata"]["labels"]}
    meta["annotations"] = want["metadata"]["annotations"]
    meta["ownerReferences"] = want["metadata"]["ownerReferences"]
    return {**want, "metadata": meta}
