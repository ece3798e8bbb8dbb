"""Kubernetes reads and writes, with a hard cap on the API calls in flight.

The official client is synchronous; its calls run in a small thread pool whose
size is also the HTTP connection pool's, so a slow API server makes Sluice queue
work instead of opening connection after connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from sluice import __version__
from sluice import telemetry as M
from sluice.api.rollout import GROUP, VERSION
from sluice.cluster import api_wait, recording

if TYPE_CHECKING:
    from sluice.routers.base import ObjectRef

LIST_PAGE = 500  # objects per page of a LIST (limit/continue)

Body = dict[str, Any]


def load_config(kubeconfig: str | None = None, pool: int = 8) -> kubernetes.client.ApiClient:
    config = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=config)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=config)
    config.connection_pool_maxsize = pool
    client = kubernetes.client.ApiClient(config)
    # The API server names the field manager after this: "sluice" in managedFields.
    client.user_agent = f"sluice/{__version__}"
    recording.install(client)  # sluice_api_access_total
    return client


class Kube:
    """Async facade over the sync client: at most `limit` calls in flight."""

    def __init__(self, client: kubernetes.client.ApiClient, limit: int = 8) -> None:
        self.client = client
        self.limit = limit
        self.pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="kube")
        self.apps = kubernetes.client.AppsV1Api(client)
        self.core = kubernetes.client.CoreV1Api(client)
        self.batch = kubernetes.client.BatchV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.in_flight = 0
        # Raises when this replica may not act (leader election); checked on the thread
        # right before each request, so a call queued before the Lease was lost never goes out.
        self.guard: Callable[[], None] | None = None

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        guard = self.guard

        def run() -> Any:
            if guard is not None:
                guard()
            return fn(*args, **kwargs)

        M.API_REQUESTS.labels(getattr(fn, "__name__", "call")).inc()
        self.in_flight += 1
        try:
            with api_wait.calling():  # a queued call waits too: for the API cap
                return await loop.run_in_executor(self.pool, run)
        finally:
            self.in_flight -= 1

    async def raw(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Body:
        """Call a typed client method but get plain JSON back (no model objects)."""
        response = await self.call(fn, *args, _preload_content=False, **kwargs)
        return json.loads(response.data)

    # ------------------------------------------------------------ rollouts

    async def replace_status(self, plural: str, body: Body) -> Body:
        """PUT a custom object's status; `body.metadata.resourceVersion` makes it conditional."""
        meta = body["metadata"]
        return await self.call(
            self.custom.replace_namespaced_custom_object_status,
            GROUP,
            VERSION,
            meta["namespace"],
            plural,
            meta["name"],
            body,
        )

    async def replace_rollout_status(self, body: Body) -> Body:
        return await self.replace_status("rollouts", body)

    async def create_custom(self, plural: str, body: Body) -> Body:
        return await self.call(
            self.custom.create_namespaced_custom_object,
            GROUP,
            VERSION,
            body["metadata"]["namespace"],
            plural,
            body,
        )

    async def merge_patch_custom(self, plural: str, namespace: str, name: str, patch: Body) -> Body:
        return await self.call(
            self.custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            patch,
            _content_type="application/merge-patch+json",
        )

    async def relabel(self, kind: str, namespace: str, name: str, labels: Body) -> Body:
        """Merge `labels` (None removes one) into a Deployment's, Service's or AnalysisRun's
        metadata: nothing else of it changes."""
        patch = {"metadata": {"labels": labels}}
        if kind == "analysisruns":
            body = await self.merge_patch_custom(kind, namespace, name, patch)
        elif kind == "deployments":
            body = await self.patch_deployment(namespace, name, patch)
        else:
            body = await self.patch_service(namespace, name, patch)
        body["kind"] = _KINDS[kind]
        return body

    async def remove_action(self, namespace: str, name: str, action: str) -> Body | None:
        """Remove the action annotation only if it still holds the value we consumed."""
        path = "/metadata/annotations/" + f"{GROUP}/action".replace("/", "~1")
        patch = [{"op": "test", "path": path, "value": action}, {"op": "remove", "path": path}]
        try:
            return await self.call(
                self.custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                "rollouts",
                name,
                patch,
                _content_type="application/json-patch+json",
            )
        except ApiException as exc:
            if exc.status in (404, 409, 422):  # gone, or the annotation changed meanwhile
                return None
            raise

    # ------------------------------------------------------------ children

    async def list_children(
        self, kind: str, namespaces: list[str] | None, selector: str = f"{GROUP}/rollout"
    ) -> AsyncIterator[list[Body]]:
        """Deployments, Services, Jobs or AnalysisRuns that carry the sluice.dev/rollout
        label (or ConfigMaps, Secrets with another selector), a page at a time: at 10,000
        Rollouts one whole list is ~100 MB of JSON, decoded at once, and the heap it grew
        stays (RSS nearly doubled after a restart); a page is cached before the next."""
        scopes: list[str | None] = list(namespaces) if namespaces else [None]
        for ns in scopes:
            token = ""
            while True:
                page = {"label_selector": selector, "limit": LIST_PAGE}
                if token:
                    page["_continue"] = token
                data = await self._list_page(kind, ns, page)
                items = data.get("items") or []
                for item in items:
                    item["kind"] = _KINDS[kind]
                yield items
                token = (data.get("metadata") or {}).get("continue") or ""
                if not token:
                    break

    async def _list_page(self, kind: str, ns: str | None, page: dict[str, Any]) -> Body:
        if kind == "analysisruns":
            if ns is None:
                return await self.raw(
                    self.custom.list_cluster_custom_object, GROUP, VERSION, kind, **page
                )
            return await self.raw(
                self.custom.list_namespaced_custom_object, GROUP, VERSION, ns, kind, **page
            )
        api = {"deployments": self.apps, "jobs": self.batch}.get(kind, self.core)
        one = _singular(kind)
        if ns is None:
            return await self.raw(getattr(api, f"list_{one}_for_all_namespaces"), **page)
        return await self.raw(getattr(api, f"list_namespaced_{one}"), ns, **page)

    async def create_job(self, body: Body) -> Body:
        return await self.raw(self.batch.create_namespaced_job, body["metadata"]["namespace"], body)

    async def delete_job(self, namespace: str, name: str) -> None:
        """With its pods (Background: the garbage collector removes them)."""
        await self.call(
            self.batch.delete_namespaced_job, name, namespace, propagation_policy="Background"
        )

    async def create_deployment(self, body: Body) -> Body:
        return await self.raw(
            self.apps.create_namespaced_deployment, body["metadata"]["namespace"], body
        )

    async def dry_run_deployment(self, body: Body) -> None:
        """Ask the API server whether it would take this Deployment, writing nothing (a
        generated name, so an existing slot Deployment does not answer 409)."""
        meta = {k: v for k, v in body["metadata"].items() if k != "name"}
        meta["generateName"] = f"{body['metadata']['name'][:50]}-"
        await self.raw(
            self.apps.create_namespaced_deployment,
            meta["namespace"],
            {**body, "metadata": meta},
            dry_run="All",
        )

    async def patch_deployment(self, namespace: str, name: str, patch: Body | list[Body]) -> Body:
        return await self.raw(
            self.apps.patch_namespaced_deployment,
            name,
            namespace,
            patch,
            _content_type=_patch_type(patch),
        )

    async def delete_deployment(self, namespace: str, name: str) -> None:
        """Delete it; already gone is fine."""
        try:
            await self.call(self.apps.delete_namespaced_deployment, name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def create_service(self, body: Body) -> Body:
        return await self.raw(
            self.core.create_namespaced_service, body["metadata"]["namespace"], body
        )

    async def patch_service(self, namespace: str, name: str, patch: Body) -> Body:
        return await self.raw(
            self.core.patch_namespaced_service,
            name,
            namespace,
            patch,
            _content_type=_patch_type(patch),
        )

    async def get_service(self, namespace: str, name: str) -> Body | None:
        try:
            return await self.raw(self.core.read_namespaced_service, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # ------------------------------------------------------------ any object (router objects)
    # CustomObjectsApi speaks the REST shape of every /apis group, built-in ones included.

    async def get_object(self, ref: ObjectRef, namespace: str) -> Body | None:
        if ref.group == "" and ref.kind == "Service":  # the core group is not under /apis
            found = await self.get_service(namespace, ref.name)
            if found is not None:
                found.setdefault("kind", "Service")
            return found
        try:
            body: Body = await self.call(
                self.custom.get_namespaced_custom_object,
                ref.group,
                ref.version,
                namespace,
                ref.plural,
                ref.name,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        body.setdefault("kind", ref.kind)
        return body

    async def create_object(self, ref: ObjectRef, namespace: str, body: Body) -> Body:
        written: Body = await self.call(
            self.custom.create_namespaced_custom_object,
            ref.group,
            ref.version,
            namespace,
            ref.plural,
            body,
        )
        return written

    async def replace_object(self, ref: ObjectRef, namespace: str, body: Body) -> Body:
        """PUT; `body.metadata.resourceVersion` makes it conditional (409 if it changed)."""
        written: Body = await self.call(
            self.custom.replace_namespaced_custom_object,
            ref.group,
            ref.version,
            namespace,
            ref.plural,
            ref.name,
            body,
        )
        return written

    async def patch_object(self, ref: ObjectRef, namespace: str, patch: Body | list[Body]) -> Body:
        written: Body = await self.call(
            self.custom.patch_namespaced_custom_object,
            ref.group,
            ref.version,
            namespace,
            ref.plural,
            ref.name,
            patch,
            _content_type=_patch_type(patch),
        )
        return written

    async def delete_object(self, ref: ObjectRef, namespace: str) -> None:
        try:
            await self.call(
                self.custom.delete_namespaced_custom_object,
                ref.group,
                ref.version,
                namespace,
                ref.plural,
                ref.name,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def create_event(self, namespace: str, body: Body) -> None:
        await self.call(self.core.create_namespaced_event, namespace, body)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()


_KINDS = {
    "deployments": "Deployment",
    "services": "Service",
    "analysisruns": "AnalysisRun",
    "jobs": "Job",
    "configmaps": "ConfigMap",
    "secrets": "Secret",
}


def _singular(kind: str) -> str:
    return {
        "deployments": "deployment",
        "services": "service",
        "jobs": "job",
        "configmaps": "config_map",
        "secrets": "secret",
    }[kind]


def _patch_type(patch: Body | list[Body]) -> str:
    """A list is a JSON patch; a dict a JSON merge patch (the client would guess wrong)."""
    return (
        "application/json-patch+json" if isinstance(patch, list) else "application/merge-patch+json"
    )
