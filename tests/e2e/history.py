"""Watch history: every version of the objects a test cares about, in API-server order.

Invariants ("the stable was back at full Ready capacity before its weight rose") are
checked on this history, not on a final snapshot. Each watch runs in a thread with the
official client; events are merged and ordered by resourceVersion, which within one
API server is etcd's revision (compared here only to order events the server emitted).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import kubernetes
from kubernetes import watch

Body = dict[str, Any]


@dataclass(frozen=True)
class Seen:
    at: float  # monotonic time the event arrived
    rv: int
    type: str
    kind: str
    name: str
    body: Body


class Recorder:
    def __init__(self, kubeconfig: str, namespace: str) -> None:
        self.client = kubernetes.config.new_client_from_config(config_file=kubeconfig)
        self.namespace = namespace
        self.events: list[Seen] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def watch_custom(self, group: str, version: str, plural: str, kind: str) -> None:
        api = kubernetes.client.CustomObjectsApi(self.client)
        self._start(
            kind,
            api.list_namespaced_custom_object,
            group,
            version,
            self.namespace,
            plural,
        )

    def watch_deployments(self) -> None:
        api = kubernetes.client.AppsV1Api(self.client)
        self._start("Deployment", api.list_namespaced_deployment, self.namespace)

    def watch_services(self) -> None:
        api = kubernetes.client.CoreV1Api(self.client)
        self._start("Service", api.list_namespaced_service, self.namespace)

    def _start(self, kind: str, fn: Any, *args: Any) -> None:
        thread = threading.Thread(target=self._run, args=(kind, fn, args), daemon=True)
        thread.start()
        self.threads.append(thread)

    def _run(self, kind: str, fn: Any, args: tuple[Any, ...]) -> None:
        while not self.stopping.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(fn, *args, timeout_seconds=5, _request_timeout=10):
                    obj = event["object"]
                    body = (
                        obj
                        if isinstance(obj, dict)
                        else self.client.sanitize_for_serialization(obj)
                    )
                    meta = body.get("metadata") or {}
                    with self.lock:
                        self.events.append(
                            Seen(
                                time.monotonic(),
                                int(meta.get("resourceVersion") or 0),
                                str(event["type"]),
                                kind,
                                str(meta.get("name")),
                                body,
                            )
                        )
                    if self.stopping.is_set():
                        break
            except Exception:  # a dropped watch: start again (the test reads what arrived)
                time.sleep(0.2)

    def history(self, kind: str | None = None, name: str | None = None) -> list[Seen]:
        with self.lock:
            seen = sorted(self.events, key=lambda s: s.rv)
        return [
            s for s in seen if (kind is None or s.kind == kind) and (name is None or s.name == name)
        ]

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=15)
        self.client.close()
