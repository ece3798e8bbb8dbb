"""kopf wiring: watch streams feed the controller's cache; nothing is decided here."""

from __future__ import annotations

import dataclasses
from typing import Any

import aiohttp
import kopf

from sluice import logs, server
from sluice.api.rollout import GROUP, VERSION
from sluice.cluster import labels as L
from sluice.cluster.kube import Kube, load_config
from sluice.controller.reconciler import Controller

log = logs.get("sluice")


@dataclasses.dataclass
class Options:
    namespaces: list[str] = dataclasses.field(default_factory=list)  # empty: all namespaces
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 8
    api_limit: int = 8  # Kubernetes calls in flight from the reconcilers
    kubeconfig: str | None = None


OPTIONS = Options()
STATE: dict[str, Any] = {}


@kopf.on.login()
async def login(**kwargs: Any) -> kopf.AiohttpSession | None:
    """kopf's own session has no connection limit; this one has."""
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    if info is None:
        return None
    streams = 3 * max(1, len(OPTIONS.namespaces))  # watches: rollouts, deployments, services
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
    await controller.warm(OPTIONS.namespaces or None)
    controller.start()
    runner = await server.serve(server.app(lambda: controller.started), OPTIONS.host, OPTIONS.port)
    STATE.update(controller=controller, kube=kube, runner=runner)
    log.info("sluice started", namespaces=OPTIONS.namespaces or "all", port=OPTIONS.port)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    controller: Controller | None = STATE.get("controller")
    if controller is not None:
        await controller.stop()
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
