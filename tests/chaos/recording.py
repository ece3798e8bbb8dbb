"""A gap-free watch history for chaos tests: each watch resumes from the last resourceVersion.

The e2e Recorder starts every watch afresh (a new list) when it times out, so a version
written in between can be missed; a missed version would look like a skipped step. Here a
watch that ends or fails resumes where it stopped, and only a 410 (history compacted)
starts from a new list, which is reported in `gaps`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from tests.e2e.history import Recorder, Seen


class ChaosRecorder(Recorder):
    def __init__(self, kubeconfig: str, namespace: str) -> None:
        super().__init__(kubeconfig, namespace)
        self.gaps: list[str] = []
        self._seen: set[tuple[str, str, int, str]] = set()

    def watch_services(self) -> None:
        api = kubernetes.client.CoreV1Api(self.client)
        self._start("Service", api.list_namespaced_service, self.namespace)

    def watch_all(self, routers: list[tuple[str, str, str, str]]) -> None:
        self.watch_custom("sluice.dev", "v1alpha1", "rollouts", "Rollout")
        self.watch_custom("sluice.dev", "v1alpha1", "analysisruns", "AnalysisRun")
        self.watch_deployments()
        self.watch_services()
        for group, version, plural, kind in routers:
            self.watch_custom(group, version, plural, kind)
        time.sleep(0.5)  # the watches are open before anything is applied

    def _run(self, kind: str, fn: Any, args: tuple[Any, ...]) -> None:
        rv: str | None = None
        while not self.stopping.is_set():
            w = watch.Watch()
            try:
                if rv is None:
                    listed = fn(*args, _request_timeout=10)
                    if not isinstance(listed, dict):
                        listed = self.client.sanitize_for_serialization(listed)
                    for item in listed.get("items") or []:
                        self._add(kind, "ADDED", item)
                    rv = str(listed["metadata"]["resourceVersion"])
                for event in w.stream(
                    fn, *args, resource_version=rv, timeout_seconds=5, _request_timeout=10
                ):
                    if event["type"] == "ERROR":
                        raise ApiException(status=410, reason="watch expired")
                    obj = event["object"]
                    body = (
                        obj
                        if isinstance(obj, dict)
                        else self.client.sanitize_for_serialization(obj)
                    )
                    self._add(kind, str(event["type"]), body)
                    rv = str((body.get("metadata") or {}).get("resourceVersion") or rv)
                    if self.stopping.is_set():
                        break
            except ApiException as exc:
                if exc.status == 410:
                    self.gaps.append(f"{kind}: watch expired at {rv}; listed again")
                    rv = None
                time.sleep(0.2)
            except Exception:  # the API server is away: resume from rv when it is back
                time.sleep(0.2)

    def dump(self, path: Path) -> None:
        """The history as JSON lines, for a failing test's post-mortem."""
        with path.open("w") as out:
            for seen in self.history():
                out.write(
                    json.dumps(
                        {
                            "rv": seen.rv,
                            "type": seen.type,
                            "kind": seen.kind,
                            "name": seen.name,
                            "body": seen.body,
                        }
                    )
                    + "\n"
                )

    def _add(self, kind: str, type_: str, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        rv = int(meta.get("resourceVersion") or 0)
        name = str(meta.get("name"))
        key = (kind, name, rv, type_ if type_ == "DELETED" else "")
        with self.lock:
            if key in self._seen:
                return
            self._seen.add(key)
            self.events.append(Seen(time.monotonic(), rv, type_, kind, name, body))
