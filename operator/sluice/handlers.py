"""kopf wiring: watch streams feed the controller's cache; nothing is decided here."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from typing import Any

import aiohttp
import kopf
from aiohttp import web

from sluice import (
    alerts,
    kopf_requests,
    kopf_watch,
    leader,
    leader_label,
    logs,
    memdiag,
    server,
    telemetry,
)
from sluice.api.rollout import GROUP, VERSION
from sluice.cluster import labels as L
from sluice.cluster.kube import Kube, load_config
from sluice.controller.analysis import AnalysisExecutor
from sluice.controller.reconciler import Controller
from sluice.notify.hook import attach as attach_notifier

log = logs.get("sluice")


@dataclasses.dataclass
class LeaderOptions:
    name: str
    namespace: str
    identity: str | None = None
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


@dataclasses.dataclass
class Options:
    namespaces: list[str] = dataclasses.field(default_factory=list)  # empty: all namespaces
    host: str = "0.0.0.0"
    port: int = 8080
    alerts_port: int = (
        0  # the alert webhook's own port (a NetworkPolicy can tell it apart); 0: port
    )
    workers: int = 8
    api_limit: int = 8  # Kubernetes calls in flight from the reconcilers
    webhook_interval: float = 10.0  # between two calls of a gate that did not allow
    kubeconfig: str | None = None
    alert_token_secret: str | None = None  # NAMESPACE/NAME[/KEY] of the webhook's bearer token
    leader: LeaderOptions | None = None  # None: act at once (one replica)
    instance: str | None = None  # shard: the sluice.dev/controller-instance label it serves
    track_secrets: bool = False  # trackConfig may watch and copy Secrets (RBAC to match)


kopf_watch.install()  # a 404 while the API server reloads its CRDs retries the watch
kopf_requests.install()  # kopf's requests in sluice_api_access_total

OPTIONS = Options()
STATE: dict[str, Any] = {}


@kopf.on.login()
async def login(**kwargs: Any) -> kopf.AiohttpSession | None:
    """kopf's own session has no connection limit; this one has."""
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    if info is None:
        return None
    # Watches: rollouts, deployments, services, runs, jobs, and the router kinds (one each).
    # Watches: rollouts, deployments, services, runs, jobs, configmaps (and secrets), and the
    # router kinds (one each).
    streams = (6 + OPTIONS.track_secrets + len(ROUTER_KINDS)) * max(1, len(OPTIONS.namespaces))
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
    # The first LIST of each watch in pages, as warm() does: one 10,000-object answer
    # decoded at once grows a heap that stays.
    settings.watching.chunk_size = 500
    settings.networking.request_timeout = 60
    # Cluster-wide, scanning is on: a router CRD installed after Sluice starts is watched from
    # then on (the chart grants CRD list/watch). With named namespaces it would also list
    # every namespace, which a namespaced install may not: the kinds found at start are kept.
    settings.scanning.disabled = bool(OPTIONS.namespaces)
    for resource, selector in watch_selectors(OPTIONS.instance).items():
        settings.watching.label_selectors[resource] = selector
    kube = Kube(load_config(OPTIONS.kubeconfig, OPTIONS.api_limit), OPTIONS.api_limit)
    STATE["kube"] = kube
    # Health, metrics and the webhook are served at once, by a standby too (/readyz: 200).
    application = server.app(_ready)
    if OPTIONS.alerts_port:
        webhook = web.Application(client_max_size=alerts.MAX_BODY)
        webhook.router.add_post("/v1/alerts", _alerts)
        STATE["alerts_runner"] = await server.serve(webhook, OPTIONS.host, OPTIONS.alerts_port)
    else:
        application.router.add_post("/v1/alerts", _alerts)
    STATE["runner"] = await server.serve(application, OPTIONS.host, OPTIONS.port)
    await _lead(kube)
    controller = Controller(
        kube,
        workers=OPTIONS.workers,
        instance=OPTIONS.instance,
        track_secrets=OPTIONS.track_secrets,
    )
    controller.hooks.interval = OPTIONS.webhook_interval
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
    STATE.update(controller=controller, executor=executor, token=token)
    STATE["memdiag"] = memdiag.start_from_env(controller)
    STATE["alerts"] = alerts.handler(token.get, controller.record_alert)
    log.info("sluice started", namespaces=OPTIONS.namespaces or "all", port=OPTIONS.port)


async def _lead(kube: Kube) -> None:
    """Without election: lead at once. With it: wait (standby) until this replica holds it."""
    if OPTIONS.leader is None:
        telemetry.LEADER.set(1)
        return
    opts = OPTIONS.leader
    store = leader.KubeLeaseStore(load_config(OPTIONS.kubeconfig, 2), opts.namespace, opts.name)
    elector = leader.Elector(
        store,
        opts.identity or leader.default_identity(),
        lease_duration=opts.lease_duration,
        renew_deadline=opts.renew_deadline,
        retry_period=opts.retry_period,
    )
    STATE["elector"] = elector
    kube.guard = elector.check  # every Kubernetes call of the operator, from now on
    # The alerts Service selects the leader's pod by a label (leader_label.py): written
    # on its own thread, so it never holds up the Lease.
    label = leader_label.PodLabel.from_env(lambda: load_config(OPTIONS.kubeconfig, 1))
    STATE["leader_label"] = label
    label.mark(False)  # a stale label of this pod's previous process
    log.info("waiting for the lease", lease=f"{opts.namespace}/{opts.name}", id=elector.identity)
    await elector.acquire()
    label.mark(True, elector.taken_from)

    def lost(why: str) -> None:
        label.unmark(timeout=1.0)  # the guard is closed already; the process ends next
        leader.exit_process(why)

    elector.start_renewing(lost)


def _ready() -> bool:
    controller: Controller | None = STATE.get("controller")
    if OPTIONS.leader is not None and "controller" not in STATE:
        return "elector" in STATE  # standing by is ready: it can take over
    return controller is not None and controller.started


async def _alerts(request: web.Request) -> web.StreamResponse:
    handler = STATE.get("alerts")
    # The chart's alerts Service selects only the leader's pod (leader_label.py); a standby
    # reached anyway (the label moving) answers 503, which Alertmanager retries.
    if handler is None:
        return web.Response(status=503, text="not the leader\n")
    response: web.StreamResponse = await handler(request)
    return response


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
    if "elector" in STATE:
        await STATE["elector"].release()
        STATE["elector"].close()
    if "leader_label" in STATE:
        await asyncio.to_thread(STATE["leader_label"].unmark, 2.0)
        STATE["leader_label"].close()
    for runner in ("runner", "alerts_runner"):
        if runner in STATE:
            await STATE[runner].cleanup()
    if "kube" in STATE:
        STATE["kube"].close()


def _controller() -> Controller | None:
    return STATE.get("controller")


def watch_selectors(instance: str | None) -> dict[tuple[str, str, str], str]:
    """Server-side label selectors: the API server sends only what Sluice owns (children
    carry sluice.dev/rollout) and only this shard's Rollouts, so a cluster's other
    Deployments never reach the operator (a handler's `labels=` filter would only drop
    them after kopf received and processed them). Services by the sluice.dev/role key:
    Sluice's own carry it, and a user's Service a Rollout names (blue-green active/preview,
    an adopted stableService/canaryService) is labelled role=named when first read."""
    shard = f"{L.INSTANCE}={instance}" if instance else f"!{L.INSTANCE}"
    return {
        (GROUP, VERSION, "rollouts"): shard,
        # Children carry their Rollout's shard label: another shard's never arrive.
        ("apps", "v1", "deployments"): L.in_shard(L.ROLLOUT, instance),
        # Sluice's own and the named users' (see L.NAMED), of this shard
        ("", "v1", "services"): L.in_shard(L.ROLE, instance),
        ("batch", "v1", "jobs"): L.ROLLOUT,  # a job step's Jobs (few: not sharded)
        (GROUP, VERSION, "analysisruns"): L.in_shard(L.ROLLOUT, instance),
        ("", "v1", "configmaps"): L.TRACK_CONFIG,  # trackConfig's: the users', labelled
        ("", "v1", "secrets"): L.TRACK_CONFIG,
    }


def _counted(kind: str, owned: bool) -> bool:
    """Count a watch event; False for one the selectors should have kept away."""
    telemetry.WATCH_EVENTS.labels(kind, "owned" if owned else "foreign").inc()
    return owned


def _labelled(body: Any) -> bool:
    return bool((body.get("metadata", {}).get("labels") or {}).get(L.ROLLOUT))


@kopf.on.event(GROUP, VERSION, "rollouts")
async def rollout_event(**kwargs: Any) -> None:
    event = kwargs["event"]
    controller = _controller()
    body = event["object"]
    labels = body.get("metadata", {}).get("labels") or {}
    _counted("Rollout", labels.get(L.INSTANCE) == OPTIONS.instance)
    if controller is not None:
        controller.rollout_event(event.get("type"), body)


@kopf.on.event("apps", "v1", "deployments")
async def deployment_event(**kwargs: Any) -> None:
    """Sluice's own Deployments, and the users' that a workloadRef names: both carry
    sluice.dev/rollout (the server-side selector); the latter also sluice.dev/workload-of."""
    event = kwargs["event"]
    controller = _controller()
    if not _counted("Deployment", _labelled(event["object"])) or controller is None:
        return
    body = {**event["object"], "kind": "Deployment"}
    if (body["metadata"].get("labels") or {}).get(L.WORKLOAD):
        controller.workload_event(event.get("type"), body)
    else:
        controller.child_event(event.get("type"), body)


@kopf.on.event("", "v1", "services")
async def service_event(**kwargs: Any) -> None:
    # Sluice's own Services are children; the user's (labelled role=named) are kept only
    # while a Rollout names them (activeService, previewService, stableService...).
    event = kwargs["event"]
    controller = _controller()
    body = {**event["object"], "kind": "Service"}
    named = (body.get("metadata", {}).get("labels") or {}).get(L.ROLE) == L.NAMED
    if not _counted("Service", _labelled(body) or named) or controller is None:
        return
    if _labelled(body):
        controller.child_event(event.get("type"), body)
    controller.object_event(event.get("type"), body)  # kept only if a Rollout names it


@kopf.on.event("batch", "v1", "jobs")
async def job_event(**kwargs: Any) -> None:
    event = kwargs["event"]
    controller = _controller()
    if _counted("Job", _labelled(event["object"])) and controller is not None:
        controller.child_event(event.get("type"), {**event["object"], "kind": "Job"})


@kopf.on.event(GROUP, VERSION, "analysisruns")
async def analysis_run_event(**kwargs: Any) -> None:
    event = kwargs["event"]
    controller = _controller()
    if not _counted("AnalysisRun", _labelled(event["object"])):
        return
    if controller is not None:
        body = {**event["object"], "kind": "AnalysisRun"}
        controller.child_event(event.get("type"), body)
        STATE["executor"].run_event(event.get("type"), body)


def _config_handler(kind: str) -> Any:
    async def config_event(**kwargs: Any) -> None:
        event = kwargs["event"]
        controller = _controller()
        labels = event["object"].get("metadata", {}).get("labels") or {}
        if _counted(kind, bool(labels.get(L.TRACK_CONFIG))) and controller is not None:
            controller.config_event(kind, event.get("type"), event["object"])

    config_event.__name__ = f"{kind.lower()}_event"
    return config_event


kopf.on.event("", "v1", "configmaps", id="configmap-event")(_config_handler("ConfigMap"))


def watch_secrets() -> None:
    """--track-secrets: Secrets are watched (by label) only when the operator may."""
    kopf.on.event("", "v1", "secrets", id="secret-event")(_config_handler("Secret"))


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
