"""A fleet for the scale benchmark: N Rollouts across namespaces, plus Deployments that are
not Sluice's, created fast (a thread pool of plain POSTs; an object already there is kept).

    .venv/bin/python benchmarks/scale/fleet.py create --rollouts 1000 --foreign 1000
    .venv/bin/python benchmarks/scale/fleet.py count
    .venv/bin/python benchmarks/scale/fleet.py delete

Rollouts are `r-<i>` in `fleet-<i % namespaces>` (with `--instance X`: `<X>-<i>`, labelled
sluice.dev/controller-instance=X, for a shard); foreign Deployments `other-<i>`, same
namespaces, no Sluice label, paused (see --foreign-unpaused). Each namespace gets the
AnalysisTemplate `fleet-check`
(one query every 10 s to `--prometheus`, which measure.py serves).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

GROUP, VERSION = "sluice.dev", "v1alpha1"
INSTANCE = "sluice.dev/controller-instance"
PREFIX = "fleet-"


def client(kubeconfig: str | None = None, pool: int = 32) -> kubernetes.client.ApiClient:
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=config)
    config.connection_pool_maxsize = pool
    config.retries = 3
    return kubernetes.client.ApiClient(config)


def namespace(i: int, namespaces: int) -> str:
    return f"{PREFIX}{i % namespaces}"


def pod_template(app: str, image: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {
            "containers": [{"name": "app", "image": image, "resources": {}}],
            "terminationGracePeriodSeconds": 0,
        },
    }


def rollout(name: str, ns: str, replicas: int, instance: str | None, image: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if instance:
        meta["labels"] = {INSTANCE: instance}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(name, image),
            "strategy": {
                "canary": {
                    "scaleDownDelaySeconds": 0,
                    "analysis": {"templates": [{"templateName": "fleet-check"}]},
                    "steps": [
                        {"setWeight": 50},
                        {"pause": {"duration": "10s"}},
                        {"setWeight": 100},
                        {"pause": {"duration": "10s"}},
                    ],
                }
            },
        },
    }


def foreign(name: str, ns: str, replicas: int, paused: bool) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "paused": paused,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(name, "busybox:1"),
        },
    }


def template(ns: str, prometheus: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "fleet-check", "namespace": ns},
        "spec": {
            "metrics": [
                {
                    "name": "errors",
                    "provider": {"prometheus": {"address": prometheus, "query": "vector(0)"}},
                    "successCondition": "result[0] < 1",
                    "interval": "10s",
                }
            ]
        },
    }


def _ignore_exists(call: Callable[[], Any]) -> bool:
    for attempt in range(20):
        try:
            call()
            return True
        except ApiException as exc:
            if exc.status == 409:
                return False
            # a new namespace's default ServiceAccount, a busy server: try again
            if exc.status in (403, 429, 500, 503, 504) and attempt < 19:
                time.sleep(0.5)
                continue
            raise
    return False


class Creator:
    def __init__(self, api: kubernetes.client.ApiClient, threads: int) -> None:
        self.core = kubernetes.client.CoreV1Api(api)
        self.apps = kubernetes.client.AppsV1Api(api)
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.threads = threads
        self.done = 0
        self.lock = threading.Lock()

    def namespaces(self, count: int) -> None:
        for i in range(count):
            body = {"metadata": {"name": f"{PREFIX}{i}"}}
            _ignore_exists(lambda b=body: self.core.create_namespace(b, _preload_content=False))

    def custom_object(self, body: dict[str, Any], plural: str) -> None:
        ns = body["metadata"]["namespace"]
        _ignore_exists(
            lambda: self.custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, plural, body, _preload_content=False
            )
        )
        self._count()

    def deployment(self, body: dict[str, Any]) -> None:
        ns = body["metadata"]["namespace"]
        _ignore_exists(
            lambda: self.apps.create_namespaced_deployment(ns, body, _preload_content=False)
        )
        self._count()

    def _count(self) -> None:
        with self.lock:
            self.done += 1

    def run(self, jobs: Iterable[Callable[[], None]]) -> None:
        with ThreadPoolExecutor(self.threads) as pool:
            for future in [pool.submit(job) for job in jobs]:
                future.result()


def interleaved(*streams: Iterable[Callable[[], None]]) -> Iterator[Callable[[], None]]:
    """Rollouts and foreign Deployments side by side, as in a real cluster."""
    iterators = [iter(s) for s in streams]
    while iterators:
        for it in list(iterators):
            job = next(it, None)
            if job is None:
                iterators.remove(it)
            else:
                yield job


def create(args: argparse.Namespace, api: kubernetes.client.ApiClient | None = None) -> float:
    """Create the fleet; returns the seconds it took (namespaces and templates excluded)."""
    creator = Creator(api or client(args.kubeconfig, args.threads), args.threads)
    creator.namespaces(args.namespaces)
    for i in range(args.namespaces):
        creator.custom_object(template(f"{PREFIX}{i}", args.prometheus), "analysistemplates")
    prefix = args.instance or "r"
    rollouts = (
        lambda i=i: creator.custom_object(
            rollout(
                f"{prefix}-{i}",
                namespace(i, args.namespaces),
                args.replicas,
                args.instance,
                args.image,
            ),
            "rollouts",
        )
        for i in range(args.rollouts)
    )
    others = (
        lambda i=i: creator.deployment(
            foreign(
                f"other-{i}",
                namespace(i, args.namespaces),
                args.foreign_replicas,
                not args.foreign_unpaused,
            )
        )
        for i in range(args.foreign)
    )
    started = time.monotonic()
    creator.run(interleaved(rollouts, others))
    return time.monotonic() - started


def _lister(kind: str, api: kubernetes.client.ApiClient) -> Callable[..., Any]:
    if kind == "rollouts":
        custom = kubernetes.client.CustomObjectsApi(api)
        return lambda **kw: custom.list_cluster_custom_object(GROUP, VERSION, kind, **kw)
    if kind == "pods":
        return kubernetes.client.CoreV1Api(api).list_pod_for_all_namespaces
    apps = kubernetes.client.AppsV1Api(api)
    name = {"deployments": "deployment", "replicasets": "replica_set"}[kind]
    return getattr(apps, f"list_{name}_for_all_namespaces")  # type: ignore[no-any-return]


def _page(kind: str, api: kubernetes.client.ApiClient, **kw: Any) -> dict[str, Any]:
    response = _lister(kind, api)(_preload_content=False, **kw)
    return json.loads(response.data)  # type: ignore[no-any-return]


def count(kind: str, api: kubernetes.client.ApiClient, selector: str = "") -> int:
    """How many objects of a kind, from one LIST with limit=1 (remainingItemCount)."""
    data = _page(kind, api, limit=1, label_selector=selector)
    return len(data.get("items", [])) + int(data["metadata"].get("remainingItemCount") or 0)


def list_all(kind: str, api: kubernetes.client.ApiClient, page: int = 500) -> list[dict[str, Any]]:
    """Every object of a kind, paged. Under load a 20,000-object list can outlive etcd's
    compaction (410 Expired); it then goes on from the token the 410 carries, as the API
    server offers, and objects met twice are kept once."""
    items: dict[tuple[str, str], dict[str, Any]] = {}
    token = ""
    while True:
        try:
            data = (
                _page(kind, api, limit=page, _continue=token)
                if token
                else _page(kind, api, limit=page)
            )
        except kubernetes.client.ApiException as e:
            token = _expired_continue(e)
            if not token:
                raise
            continue
        for item in data.get("items", []):
            meta = item["metadata"]
            items[(meta.get("namespace", ""), meta["name"])] = item
        token = data["metadata"].get("continue") or ""
        if not token:
            return list(items.values())


def _expired_continue(e: kubernetes.client.ApiException) -> str:
    if e.status != 410 or not e.body:
        return ""
    body = json.loads(e.body)
    return str(body.get("metadata", {}).get("continue") or "")


def rollouts(api: kubernetes.client.ApiClient) -> list[dict[str, Any]]:
    return list_all("rollouts", api)


def delete(args: argparse.Namespace) -> None:
    core = kubernetes.client.CoreV1Api(client(args.kubeconfig))
    for i in range(args.namespaces):
        try:
            core.delete_namespace(f"{PREFIX}{i}")
        except ApiException as exc:
            if exc.status != 404:
                raise


def add_fleet_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rollouts", type=int, default=1000)
    p.add_argument("--foreign", type=int, default=None, help="foreign Deployments (default N)")
    p.add_argument("--replicas", type=int, default=1, help="replicas of each Rollout")
    p.add_argument("--foreign-replicas", type=int, default=0)
    p.add_argument(
        "--foreign-unpaused",
        action="store_true",
        help="foreign Deployments get ReplicaSets (default: paused, which the API server "
        "still sends to every watch of Deployments, but the controller-manager, 20 "
        "requests/s per controller, does not work on)",
    )
    p.add_argument("--namespaces", type=int, default=20)
    p.add_argument("--instance", default=None, help="label the Rollouts for this shard")
    p.add_argument("--image", default="nginx:1.27")
    p.add_argument("--threads", type=int, default=32)
    p.add_argument("--prometheus", default="http://127.0.0.1:19090")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("verb", choices=("create", "count", "delete"))
    p.add_argument("--kubeconfig", default=None)
    add_fleet_args(p)
    args = p.parse_args()
    if args.foreign is None:
        args.foreign = args.rollouts
    if args.verb == "create":
        took = create(args)
        print(f"created {args.rollouts} Rollouts, {args.foreign} foreign Deployments: {took:.1f} s")
    elif args.verb == "count":
        api = client(args.kubeconfig)
        for kind in ("rollouts", "deployments", "replicasets", "pods"):
            print(kind, count(kind, api))
    else:
        delete(args)
    sys.exit(0)


if __name__ == "__main__":
    main()
