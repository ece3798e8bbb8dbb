"""The alert fast path: an Alertmanager webhook receiver that aborts a canary at once.

A firing alert whose labels name a Rollout (`namespace`, `rollout`) and opt in with
`sluice_action="abort"` is recorded as a Failed AnalysisRun of the Rollout's
current canary (or, during post-promotion analysis, of its new stable); the engine
aborts on it like on any failed metric. Requests need `Authorization: Bearer
<token>` (401 otherwise). The body is Alertmanager's webhook JSON
(`openapi/alerts.yaml` describes it):

* a body too large is 413, one that is not JSON (or nested too deep) or not shaped
  like a webhook body is 400 and changes nothing;
* each alert is judged alone: the valid ones are acted on even when others in the same
  body are malformed (then the answer is 400, naming each rejected alert);
* oversized text (a summary, a label) is cut, never fatal; a Rollout is acted on once
  per request however many alerts name it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sluice import logs

log = logs.get("sluice.alerts")

ACTION_LABEL = "sluice_action"
MAX_BODY = 2 * 1024 * 1024  # bytes; Alertmanager batches are far smaller
MAX_ALERTS = 10_000
MAX_LABELS = 64
LABEL_CHARS = 256  # recorded per label name or value
SUMMARY_CHARS = 1024
BODY_TIMEOUT = 10.0  # seconds to send the whole body


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


class Malformed(ValueError):
    """The body (not just one alert) cannot be read."""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}…[{len(text) - limit} cut]"


def decode(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Malformed(f"body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        return json.loads(text)
    except RecursionError:  # the parser's own guard against deep nesting
        raise Malformed("JSON nested too deep") from None
    except ValueError as exc:
        raise Malformed(f"not JSON: {str(exc)[:200]}") from None


def _labels(raw: Any, what: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{what} must be an object of strings, not {type(raw).__name__}")
    bad = [str(k)[:40] for k, v in raw.items() if not isinstance(v, str)]
    if bad:
        raise ValueError(f"{what}: values must be strings ({', '.join(bad[:5])})")
    return {k: v for k, v in raw.items()}


def _one(alert: Any, common: dict[str, str], i: int) -> AlertAbort | str:
    """An abort, or why this alert is ignored; raises ValueError when it is malformed."""
    if not isinstance(alert, dict):
        raise ValueError("not an alert object")
    labels = {**common, **_labels(alert.get("labels"), "labels")}
    annotations = _labels(alert.get("annotations"), "annotations")
    for field in ("status", "startsAt", "fingerprint"):
        if alert.get(field) is not None and not isinstance(alert[field], str):
            raise ValueError(f"{field} must be a string")
    name = _clip(labels.get("alertname") or f"alert-{i}", LABEL_CHARS)
    status = alert.get("status") or "firing"
    if status != "firing":
        return f"{name}: {_clip(status, 40)}"
    if labels.get(ACTION_LABEL) != "abort":
        return f'{name}: no {ACTION_LABEL}="abort" label'
    if not labels.get("namespace") or not labels.get("rollout"):
        return f"{name}: needs `namespace` and `rollout` labels"
    kept = dict(sorted(labels.items())[:MAX_LABELS])
    return AlertAbort(
        namespace=labels["namespace"],
        rollout=labels["rollout"],
        alertname=name,
        fingerprint=_clip(alert.get("fingerprint") or "", 64),
        starts_at=_clip(alert.get("startsAt") or "", 64),
        summary=_clip(
            annotations.get("summary") or annotations.get("description") or "", SUMMARY_CHARS
        ),
        labels={_clip(k, LABEL_CHARS): _clip(v, LABEL_CHARS) for k, v in kept.items()},
    )


def parse(payload: Any) -> tuple[list[AlertAbort], list[str], list[str]]:
    """(aborts, reasons others were ignored, reasons others were rejected as malformed).

    Raises Malformed when the body as a whole is not a webhook body."""
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise Malformed("expected an Alertmanager webhook body with an `alerts` list")
    if len(payload["alerts"]) > MAX_ALERTS:
        raise Malformed(f"more than {MAX_ALERTS} alerts in one body")
    try:
        common = _labels(payload.get("commonLabels"), "commonLabels")
    except ValueError as exc:
        raise Malformed(str(exc)) from None
    aborts: list[AlertAbort] = []
    ignored: list[str] = []
    rejected: list[str] = []
    for i, alert in enumerate(payload["alerts"]):
        try:
            outcome = _one(alert, common, i)
        except ValueError as exc:
            rejected.append(f"alerts[{i}]: {exc}")
            continue
        if isinstance(outcome, AlertAbort):
            aborts.append(outcome)
        else:
            ignored.append(outcome)
    return aborts, ignored, rejected


def authorized(expected: str | None, given: str) -> bool:
    """Constant-time: the comparison's duration says nothing about the token."""
    if not expected:
        return False
    return hmac.compare_digest(given.encode(), f"Bearer {expected}".encode())


def handler(
    token: Callable[[], str | None],
    record: Callable[[AlertAbort], Awaitable[str]],
    body_timeout: float = BODY_TIMEOUT,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The aiohttp handler; `record` turns one alert into a failed run and says what it did."""

    async def receive(request: web.Request) -> web.Response:
        if not authorized(token(), request.headers.get("Authorization", "")):
            return web.json_response({"error": "unauthorized"}, status=401)
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.json_response({"error": f"body larger than {MAX_BODY} bytes"}, status=413)
        try:
            async with asyncio.timeout(body_timeout):
                raw = await request.read()  # the app's client_max_size answers 413 beyond it
            aborts, ignored, rejected = parse(decode(raw))
        except TimeoutError:
            return web.json_response({"error": "body not received in time"}, status=408)
        except Malformed as exc:
            return web.json_response({"error": f"malformed: {exc}"}, status=400)
        done = []
        failed = False
        seen: set[tuple[str, str]] = set()
        for alert in aborts:
            key = (alert.namespace, alert.rollout)
            if key in seen:
                continue  # one run per canary: the first alert that names it
            seen.add(key)
            try:
                outcome = await record(alert)
            except Exception as exc:  # the API server failed us: Alertmanager must retry
                failed = True
                outcome = f"not recorded: {str(exc)[:200]}"
            log.warning(
                "alert",
                alertname=alert.alertname,
                namespace=_clip(alert.namespace, 80),
                rollout=_clip(alert.rollout, 80),
                outcome=outcome,
            )
            done.append(
                {
                    "rollout": _clip(f"{alert.namespace}/{alert.rollout}", 200),
                    "alert": alert.alertname,
                    "outcome": outcome,
                }
            )
        answer: dict[str, Any] = {"results": done, "ignored": ignored[:100]}
        if rejected:
            answer |= {"error": f"malformed: {len(rejected)} alert(s)", "rejected": rejected[:100]}
        return web.json_response(answer, status=503 if failed else 400 if rejected else 200)

    return receive
