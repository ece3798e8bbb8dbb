"""The leader's Pod carries `sluice.dev/leader: "true"`, so a Service can select the leader.

The chart's alerts Service selects it: Alertmanager reaches the one replica that acts
instead of a standby answering 503. Best effort and never in the Lease's way: every write
runs on this module's own thread, in the order asked, with its own client (not the
operator's, which refuses calls while this replica does not lead), and a failure is
logged once, not raised. Who removes a label:

* a process starting as standby, from its own pod (a container restarted in the same pod
  keeps the labels its previous process set);
* a leader that loses the Lease or stops, from its own pod (a short, bounded try);
* a new leader, from the previous holder's pod, whose process may have died without a
  word (SIGKILL, a lost node): the holder identity starts with the pod's name.

Without a pod name (POD_NAME unset: `sluice run` on a laptop) nothing is labelled.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sluice import logs
from sluice.api.rollout import GROUP

log = logs.get("sluice.leader")

LEADER = f"{GROUP}/leader"


def pod_of(identity: str) -> str:
    """The pod name a holder identity starts with ("<pod>_<random>", see leader.py).

    Pod names never hold "_", so an identity without one (--leader-id) is taken whole."""
    return identity.split("_", 1)[0]


class PodLabel:
    def __init__(
        self, client_factory: Callable[[], Any], pod: str | None, namespace: str | None
    ) -> None:
        self.pod, self.namespace = pod or None, namespace or None
        self.client_factory = client_factory
        self.api: Any = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leader-label")
        self.failed = False  # a failure is logged once

    @classmethod
    def from_env(cls, client_factory: Callable[[], Any]) -> PodLabel:
        return cls(client_factory, os.environ.get("POD_NAME"), os.environ.get("POD_NAMESPACE"))

    @property
    def enabled(self) -> bool:
        return bool(self.pod and self.namespace)

    def mark(self, leading: bool, previous_holder: str | None = None) -> Future[None] | None:
        """Queue the label of this pod (and the removal from the previous holder's pod)."""
        if not self.enabled:
            return None
        return self.pool.submit(self._apply, leading, previous_holder)

    def unmark(self, timeout: float) -> None:
        """Remove this pod's label, waiting at most `timeout` seconds (on stop or loss)."""
        done = self.mark(False)
        if done is not None:
            with contextlib.suppress(Exception):  # timed out: the next leader removes it
                done.result(timeout=timeout)

    def _apply(self, leading: bool, previous_holder: str | None) -> None:
        assert self.pod is not None
        self._patch(self.pod, "true" if leading else None)
        previous = pod_of(previous_holder) if previous_holder else None
        if leading and previous and previous != self.pod:
            self._patch(previous, None)

    def _patch(self, pod: str, value: str | None) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            if self.api is None:
                import kubernetes

                self.api = kubernetes.client.CoreV1Api(self.client_factory())
            current = self.api.read_namespaced_pod(pod, self.namespace, _request_timeout=5)
            if (current.metadata.labels or {}).get(LEADER) == value:
                return  # already so: no write
            patch = {"metadata": {"labels": {LEADER: value}}}
            self.api.patch_namespaced_pod(pod, self.namespace, patch, _request_timeout=5)
            log.info("leader label", pod=pod, value=value or "removed")
        except ApiException as exc:
            if exc.status == 404 and value is None:
                return  # the pod is gone: so is its label
            self._failed(pod, f"{exc.status} {exc.reason}")
        except Exception as exc:
            self._failed(pod, str(exc)[:200] or type(exc).__name__)

    def _failed(self, pod: str, why: str) -> None:
        if not self.failed:
            self.failed = True
            log.warning(
                "leader label not written (the alerts Service selects it; needs get and "
                "patch on pods)",
                pod=pod,
                error=why,
            )

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
