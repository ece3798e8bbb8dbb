"""The alert fast path: an Alertmanager webhook receiver that aborts a canary at once.

A firing alert whose labels name a Rollout (`namespace`, `rollout`) and opt in with
`sluice_action="abort"` is recorded as a Failed AnalysisRun of the Rollout's
current canary (or, during post-promotion analysis, of its new stable); the engine
aborts on it like on any failed metric. Requests need `Authorization: Bearer
<token>`; anything else gets 401, a malformed body 400, and changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sluice import logs

log = logs.get("sluice.alerts")

ACTION_LABEL = "sluice_action"


@dataclass(frozen=True)
class AlertAbort:
    """One firing alert that asks to abort one Rollout."""

    namespace: str
    rollout: str
    alertname: str
    fingerprint: str
    starts_at: str
    summary: str
    labels: dict[str, str]


def parse(payload: Any) -> tuple[list[AlertAbort], list[str]]:
    """(aborts, reasons others were ignored). Raises ValueError on a malformed body."""
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise ValueError("expected an Alertmanager webhook body with an `alerts` list")
    aborts, ignored = [], []
    common = payload.get("commonLabels") or {}
    for i, alert in enumerate(payload["alerts"]):
        if not isinstance(alert, dict) or not isinstance(alert.get("labels", {}), dict):
            raise ValueError(f"alerts[{i}]: not an alert object")
        labels = {str(k): str(v) for k, v in {**common, **alert.get("labels", {})}.items()}
        name = labels.get("alertname", f"alert-{i}")
        if alert.get("status", "firing") != "firing":
            ignored.append(f"{name}: {alert.get('status')}")
            continue
        if labels.get(ACTION_LABEL) != "abort":
            ignored.append(f'{name}: no {ACTION_LABEL}="abort" label')
            continue
        if not labels.get("namespace") or not labels.get("rollout"):
            ignored.append(f"{name}: needs `namespace` and `rollout` labels")
            continue
        annotations = alert.get("annotations") or {}
        fingerprint = (
            str(alert.get("fingerprint") or "")
            or hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]
        )
        aborts.append(
            AlertAbort(
                namespace=labels["namespace"],
                rollout=labels["rollout"],
                alertname=name,
                fingerprint=fingerprint,
                starts_at=str(alert.get("startsAt") or ""),
                summary=str(annotations.get("summary") or annotations.get("description") or ""),
                labels=labels,
            )
        )
    return aborts, ignored


def handler(
    token: Callable[[], str | None], record: Callable[[AlertAbort], Awaitable[str]]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The aiohttp handler; `record` turns one alert into a failed run and says what it did."""

    async def receive(request: web.Request) -> web.Response:
        expected = token()
        given = request.headers.get("Authorization", "")
        if not expected or not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            return web.json_response({"error": "unauthorized"}, status=401)
        try:
            aborts, ignored = parse(await request.json())
        except (ValueError, json.JSONDecodeError) as exc:
            return web.json_response({"error": f"malformed: {exc}"}, status=400)
        done = []
        for alert in aborts:
            outcome = await record(alert)
            log.warning(
                "alert",
                alertname=alert.alertname,
                namespace=alert.namespace,
                rollout=alert.rollout,
                outcome=outcome,
            )
            done.append(
                {
                    "rollout": f"{alert.namespace}/{alert.rollout}",
                    "alert": alert.alertname,
                    "outcome": outcome,
                }
            )
        return web.json_response({"results": done, "ignored": ignored})

    return receive
