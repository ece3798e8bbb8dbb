"""What the API server saw, as it happened: watch events of a namespace, and Lease holders.

A write by Sluice is a watch event whose `managedFields` entries of the manager "sluice"
(the operator's user agent) changed since the previous version of that object.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

GROUP, VERSION = "sluice.dev", "v1alpha1"


@dataclass
class Write:
    at: float  # time.monotonic() when the watch delivered it
    kind: str
    name: str
    resource_version: str


@dataclass
class History:
    kubeconfig: str
    namespace: str
    lease: str
    writes: list[Write] = field(default_factory=list)
    holders: list[tuple[float, str]] = field(default_factory=list)  # (when seen, holder)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        import kubernetes

        client = kubernetes.config.new_client_from_config(config_file=self.kubeconfig)
        apps = kubernetes.client.AppsV1Api(client)
        core = kubernetes.client.CoreV1Api(client)
        custom = kubernetes.client.CustomObjectsApi(client)
        coord = kubernetes.client.CoordinationV1Api(client)
        sources: list[tuple[str, Any, tuple[Any, ...]]] = [
            ("Deployment", apps.list_namespaced_deployment, (self.namespace,)),
            ("Service", core.list_namespaced_service, (self.namespace,)),
            (
                "Rollout",
                custom.list_namespaced_custom_object,
                (GROUP, VERSION, self.namespace, "rollouts"),
            ),
            (
                "AnalysisRun",
                custom.list_namespaced_custom_object,
                (GROUP, VERSION, self.namespace, "analysisruns"),
            ),
        ]
        for kind, fn, args in sources:
            thread = threading.Thread(target=self._watch, args=(kind, fn, args), daemon=True)
            thread.start()
            self.threads.append(thread)
        poller = threading.Thread(target=self._poll_lease, args=(coord,), daemon=True)
        poller.start()
        self.threads.append(poller)
        time.sleep(0.5)  # the watches are open before anything happens

    def _watch(self, kind: str, fn: Any, args: tuple[Any, ...]) -> None:
        import kubernetes

        last: dict[str, Any] = {}
        while not self.stop.is_set():
            watch = kubernetes.watch.Watch()
            try:
                for event in watch.stream(fn, *args, timeout_seconds=5):
                    obj = event["object"]
                    body = obj if isinstance(obj, dict) else obj.to_dict()
                    meta = body["metadata"]
                    fields = meta.get("managedFields") or meta.get("managed_fields") or []
                    mine = sorted(
                        (str(f.get("operation")), str(f.get("time")), str(f.get("subresource")))
                        for f in fields
                        if f.get("manager") == "sluice"
                    )
                    name = meta["name"]
                    if mine and mine != last.get(name):
                        rv = meta.get("resourceVersion") or meta.get("resource_version")
                        self.writes.append(Write(time.monotonic(), kind, name, str(rv)))
                    last[name] = mine
                    if self.stop.is_set():
                        break
            except Exception:
                time.sleep(0.2)
            finally:
                watch.stop()

    def _poll_lease(self, coord: Any) -> None:
        while not self.stop.is_set():
            try:
                lease = coord.read_namespaced_lease(self.lease, self.namespace)
                holder = lease.spec.holder_identity or ""
                if not self.holders or self.holders[-1][1] != holder:
                    self.holders.append((time.monotonic(), holder))
            except Exception:
                pass
            time.sleep(0.05)

    def holder(self) -> str | None:
        return self.holders[-1][1] if self.holders else None

    def became(self, holder: str) -> float | None:
        return next((t for t, h in self.holders if h == holder), None)

    def writes_between(self, start: float, end: float) -> list[Write]:
        return [w for w in self.writes if start < w.at < end]

    def close(self) -> None:
        self.stop.set()
