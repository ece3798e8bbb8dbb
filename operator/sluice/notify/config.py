"""Where notifications go: the namespace's ConfigMap, overridden key by key per Rollout.

ConfigMap `sluice-notifications` (data) or Rollout annotations `notifications.sluice.dev/KEY`:
  webhook-url        generic webhook (JSON body, X-Sluice-Signature when a secret is set)
  webhook-secret     SECRET[/KEY] holding the HMAC key (KEY defaults to "secret")
  slack-url          Slack-compatible incoming webhook
  slack-url-secret   SECRET[/KEY] holding that URL instead (KEY defaults to "url")
  events             comma-separated subset of started, step-completed, paused, promoted,
                     aborted, completed (default: all)
  enabled            "false" turns notifications off (e.g. for one Rollout)
"""

from __future__ import annotations

from dataclasses import dataclass

from sluice.notify.message import EVENTS

CONFIGMAP = "sluice-notifications"
PREFIX = "notifications.sluice.dev/"
KEYS = ("webhook-url", "webhook-secret", "slack-url", "slack-url-secret", "events", "enabled")


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str


@dataclass(frozen=True)
class Settings:
    webhook_url: str | None = None
    webhook_secret: SecretRef | None = None
    slack_url: str | None = None
    slack_url_secret: SecretRef | None = None
    events: frozenset[str] = frozenset(EVENTS)

    @property
    def any(self) -> bool:
        return bool(self.webhook_url or self.slack_url or self.slack_url_secret)


def _ref(value: str | None, default_key: str) -> SecretRef | None:
    if not value:
        return None
    name, _, key = value.strip().partition("/")
    return SecretRef(name, key or default_key)


def merge(configmap: dict[str, str] | None, annotations: dict[str, str] | None) -> Settings:
    """The namespace's keys, each replaced by the Rollout's annotation when it has one."""
    values = {k: v for k, v in (configmap or {}).items() if k in KEYS}
    for key, value in (annotations or {}).items():
        if key.startswith(PREFIX) and key[len(PREFIX) :] in KEYS:
            values[key[len(PREFIX) :]] = value
    if values.get("enabled", "true").strip().lower() in ("false", "no", "0", "off"):
        return Settings()
    events = frozenset(EVENTS)
    if values.get("events"):
        events = frozenset(e.strip() for e in values["events"].split(",")) & frozenset(EVENTS)
    return Settings(
        webhook_url=values.get("webhook-url") or None,
        webhook_secret=_ref(values.get("webhook-secret"), "secret"),
        slack_url=values.get("slack-url") or None,
        slack_url_secret=_ref(values.get("slack-url-secret"), "url"),
        events=events,
    )


def annotated(annotations: dict[str, str] | None) -> bool:
    return any(k.startswith(PREFIX) for k in annotations or {})
