"""Wiring: what the reconciler's Event hook feeds (notifications and Event-based metrics)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from sluice import telemetry as M
from sluice.notify.sender import KubeSource, Notifier

Body = dict[str, Any]
Key = tuple[str, str]


def attach(controller: Any, kube: Any) -> Notifier:
    """Subscribe a started Notifier and the metrics to `controller.on_event`."""

    def lookup(key: Key) -> tuple[Body | None, list[Body]]:
        runs = [
            b
            for b in controller.cache.children.get(key, {}).values()
            if b.get("kind") == "AnalysisRun"
        ]
        return controller.cache.rollouts.get(key), runs

    notifier = Notifier(KubeSource(kube), lookup)

    def on_event(body: Body, note: Any, now: datetime) -> None:
        meta = body["metadata"]
        with contextlib.suppress(Exception):  # a metric is never worth a failed reconcile
            M.on_event(body, note, now, lookup((meta["namespace"], meta["name"]))[1])
        stamp = now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        notifier.submit(body, note, stamp)

    controller.on_event = on_event
    notifier.start()
    return notifier
