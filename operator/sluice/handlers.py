"""kopf wiring: watch streams feed the controller's cache; nothing is decided here."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from typing import Any

import aiohttp
import kopf

from sluice import alerts, logs, server
from sluice.api.rollout import GROUP, VERSION
from sluice.cluster import labels as L
from sluice.cluster.kube import Kube, load_config
from sluice.controller.analysis import AnalysisExecutor
from sluice.controller.reconciler import Controller
from sluice.notify.hook import attach as attach_notifier

log = logs.get("sluice")


@dataclasses.dataclass
class Options:
    namespaces: list[str] = dataclasses.field(default_factory=list)  # empty: all namespaces
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 8
    api_limit: int = 8  # Kubernetes calls in flight from the reconcilers
    kubeconfig: str | None = None
    alert_token_secret: str | None = None  # NAMESPACE/NAME[/KEY] of the webhook's bearer token


OPTIONS = Options()
STATE: dict[str, Any] = {}


@kopf.on.login()
async def login(**kwargs: Any) -> kopf.AiohttpSession | None:
    """kopf's own session has no connection limit; this one has."""
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    if info is None:
        return None
    # Watches: rollouts, deployments, services, runs, and the router kinds (one stream each).
    streams = (4 + len(ROUTER_KINDS)) * max(1, len(OPTIONS.namespaces))
    connector = aiohttp.TCPConnector(limit=streams + 4, ssl=info.as_ssl_context())
    session = aiohttp.ClientSession(
        connector=connector, headers=info.as_http_headers(), auth=info.as_aiohttp_basic_auth()
    )
    log.info("kopf API session", max_connections=streams + 4, server=info.server)
    return kopf.AiohttpSession(
        server=info.server,
        default_namespace=info.default_namespace,
        expiration=info.expiration,
        aiohttp_session=session,
    )


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False  # Sluice posts its own Events, through the capped client
    settings.watching.server_timeout = 600
    settings.networking.request_timeout = 60
    kube = Kube(load_config(OPTIONS.kubeconfig, OPTIONS.api_limit), OPTIONS.api_limit)
    controller = Controller(kube, workers=OPTIONS.workers)
    executor = AnalysisExecutor(
        kube,
        controller.run_lookup,
        controller.queue.add,
        controller.cache.put_child,
        workers=OPTIONS.workers,
    )
    controller.on_run_created = lambda body: executor.run_event("ADDED", body)
    STATE["notifier"] = attach_notifier(controller, kube)  # Events -> notifications, metrics
    await controller.warm(OPTIONS.namespaces or None)
    controller.start()
    executor.start()
    token = AlertToken(kube, OPTIONS.alert_token_secret)
    await token.refresh()
    application = server.app(lambda: controller.started)
    application.router.add_post("/v1/alerts", alerts.handler(token.get, controller.record_alert))
    runner = await server.serve(application, OPTIONS.host, OPTIONS.port)
    STATE.update(controller=controller, executor=executor, kube=kube, runner=runner, token=token)
    log.info("sluice started", namespaces=OPTIONS.namespaces or "all", port=OPTIONS.port)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    controller: Controller | None = STATE.get("controller")
    if controller is not None:
        await controller.stop()
    if "executor" in STATE:
        await STATE["executor"].stop()
    if "notifier" in STATE:
        await STATE["notifier"].stop()
    if "token" in STATE:
        STATE["token"].close()
    if "runner" in STATE:
        await STATE["runner"].cleanup()
    if "kube" in STATE:
        STATE["kube"].close()


def _controller() -> Controller | None:
    return STATE.get("controller")


@kopf.on.event(GROUP, VERSION, "rollouts")
async def rollout_event(**kwargs: Any) -> None:
    event = kwargs["event"]
    controller = _controller()
    if controller is not None:
        controller.rollout_event(event.get("type"), event["object"])


@kopf.on.event("apps", "v1", "deployments", labels={L.ROLLOUT: kopf.PRESENT})
async def deployment_event(**kwargs: Any) -> None:
    event = kwargs["event"]
    controller = _controller()
    if controller is not None:
        controller.child_event(event.get("type"), {**event["object"], "kind": "Deployment"})


@kopf.on.event("", "v1", "services", labels={L.ROLLOUT: kopf.PRESENT})
async def service_event(**kwargs: Any) -> None:
    event = kwargs["event"]
    controller = _controller()
    if controller is not None:
        controller.child_event(event.get("type"), {**event["object"], "kind": "Service"})


@kopf.on.event(GROUP, VERSION, "analysisruns", labels={L.ROLLOUT: kopf.PRESENT})
async def analysis_run_event(**kwargs: Any) -> None:
    event = kwargs["event"]
    controller = _controller()
    if controller is not None:
        body = {**event["object"], "kind": "AnalysisRun"}
        controller.child_event(event.get("type"), body)
        STATE["executor"].run_event(event.get("type"), body)


# Router kinds: the user's objects (no Sluice label: filtered by name in the cache, which
# keeps only those a Rollout names) and the ones Sluice owns (labelled, cached as children).
# kopf watches a kind only while its CRD is installed.
ROUTER_KINDS = (
    ("networking.k8s.io", "ingresses", "Ingress"),
    ("networking.istio.io", "virtualservices", "VirtualService"),
    ("networking.istio.io", "destinationrules", "DestinationRule"),
    ("gateway.networking.k8s.io", "httproutes", "HTTPRoute"),
    ("split.smi-spec.io", "trafficsplits", "TrafficSplit"),
)


def _router_handler(kind: str) -> Any:
    async def router_object_event(**kwargs: Any) -> None:
        event = kwargs["event"]
        controller = _controller()
        if controller is None:
            return
        body = {**event["object"], "kind": kind}
        if (body.get("metadata", {}).get("labels") or {}).get(L.ROLLOUT):
            controller.child_event(event.get("type"), body)
        controller.object_event(event.get("type"), body)

    router_object_event.__name__ = f"{kind.lower()}_event"
    return router_object_event


for _group, _plural, _kind in ROUTER_KINDS:
    kopf.on.event(_group, _plural, id=f"{_kind.lower()}-event")(_router_handler(_kind))


class AlertToken:
    """The webhook's bearer token, read from a Secret and refreshed every 30 s (rotation)."""

    def __init__(self, kube: Kube, ref: str | None) -> None:
        self.kube, self.ref = kube, ref
        self.value: str | None = None
        self.task: asyncio.Task[None] | None = None

    def get(self) -> str | None:
        return self.value

    async def refresh(self) -> None:
        if not self.ref:
            return  # no token configured: every alert request is refused
        parts = self.ref.split("/")
        namespace, name, key = parts[0], parts[1], parts[2] if len(parts) > 2 else "token"
        try:
            body = await self.kube.raw(self.kube.core.read_namespaced_secret, name, namespace)
            self.value = base64.b64decode((body.get("data") or {})[key]).decode().strip()
        except Exception as exc:  # keep the last good token; say why
            log.warning("alert token unreadable", secret=self.ref, error=str(exc)[:200])
        if self.task is None:
            self.task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(30)
            await self.refresh()

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
