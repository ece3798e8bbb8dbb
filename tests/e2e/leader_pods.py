"""Pods for operator processes run outside the cluster, and what a Service makes of them.

Each operator of tests/e2e/test_ha.py runs as a local process; a Pod object of the same
name (POD_NAME) stands for it: the fake kubelet makes it Running and Ready, and this module
gives it a pod IP (the fake kubelet assigns none), so the Endpoints controller lists it
behind a Service that selects it. A poller records, with monotonic times, which pods carry
the leader label and which IPs the alerts Service's Endpoints hold.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sluice.leader_label import LEADER
from tests.e2e.conftest import wait_for

Seen = frozenset[str]


@dataclass
class LeaderPods:
    kubeconfig: str
    namespace: str
    service: str  # the alerts Service's name
    ips: dict[str, str]  # pod name -> the IP it gets
    labelled: list[tuple[float, Seen]] = field(default_factory=list)  # (when, pods)
    endpoints: list[tuple[float, Seen]] = field(default_factory=list)  # (when, IPs)
    stop: threading.Event = field(default_factory=threading.Event)

    def create(self, labels: dict[str, str], ports: list[dict[str, Any]]) -> None:
        """The Pods, with the chart's pod labels and container ports (the Service's
        targetPort is a port name), Running/Ready with their IPs."""
        import kubernetes

        client = kubernetes.config.new_client_from_config(config_file=self.kubeconfig)
        self.core = kubernetes.client.CoreV1Api(client)
        for name in self.ips:
            body = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "containers": [{"name": "operator", "image": "sluice:e2e", "ports": ports}]
                },
            }
            self.core.create_namespaced_pod(self.namespace, body)
        for name, ip in self.ips.items():
            wait_for(f"pod {name} Ready", lambda n=name: self._ready(n), timeout=30)
            status = {"status": {"podIP": ip, "podIPs": [{"ip": ip}]}}
            self.core.patch_namespaced_pod_status(name, self.namespace, status)

    def _ready(self, name: str) -> bool:
        pod = self.core.read_namespaced_pod(name, self.namespace)
        conditions = (pod.status and pod.status.conditions) or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    def start(self) -> None:
        threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self) -> None:
        while not self.stop.is_set():
            try:
                pods = self.core.list_namespaced_pod(
                    self.namespace, label_selector=f"{LEADER}=true"
                ).items
                self._note(self.labelled, frozenset(p.metadata.name for p in pods))
                self._note(self.endpoints, self._endpoint_ips())
            except Exception:
                pass
            time.sleep(0.05)

    def _endpoint_ips(self) -> Seen:
        from kubernetes.client.exceptions import ApiException

        try:
            endpoints: Any = self.core.read_namespaced_endpoints(self.service, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return frozenset()
            raise
        return frozenset(a.ip for s in endpoints.subsets or [] for a in s.addresses or [])

    @staticmethod
    def _note(history: list[tuple[float, Seen]], now: Seen) -> None:
        if not history or history[-1][1] != now:
            history.append((time.monotonic(), now))

    def now(self) -> tuple[Seen | None, Seen | None]:
        """(labelled pods, Endpoints IPs) as last seen."""
        last = lambda h: h[-1][1] if h else None  # noqa: E731
        return last(self.labelled), last(self.endpoints)

    def leader_only(self, pod: str, timeout: float = 10) -> float:
        """Wait until only `pod` is labelled and only its IP is behind the Service; return
        when the later of the two became so."""
        want = (frozenset({pod}), frozenset({self.ips[pod]}))

        def there() -> bool:
            assert self.now() == want, f"(labelled, endpoints) = {self.now()}"
            return True

        wait_for(f"only {pod} labelled and behind the alerts Service", there, timeout, 0.05)
        return max(self.became(self.labelled, want[0]), self.became(self.endpoints, want[1]))

    @staticmethod
    def became(history: list[tuple[float, Seen]], seen: Seen) -> float:
        """When `history` last changed to `seen` (it holds it now)."""
        assert history and history[-1][1] == seen, history[-1:]
        return history[-1][0]

    def close(self) -> None:
        self.stop.set()
