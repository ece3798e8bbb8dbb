"""Webhook gates: HTTP calls a rollout waits on (or tells) at given points."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from sluice.api.base import Model
from sluice.api.duration import parse_duration

HookType = Literal[
    "confirm-rollout", "pre-rollout", "rollout", "confirm-promotion", "post-rollout", "rollback"
]
GATE_TYPES = ("confirm-rollout", "pre-rollout", "rollout", "confirm-promotion")
MAX_HOOK_TIMEOUT = 60.0  # seconds: a call that takes longer is a failed answer
MAX_WEBHOOKS = 20


class Webhook(Model):
    """An HTTP POST with a JSON body describing the rollout. A 2xx answer allows; any
    other answer, a timeout or an unreachable URL holds (for `rollout`: a failed answer)."""

    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="Unique among the Rollout's webhooks; named in the status and Events.",
    )
    type: HookType = Field(
        description=(
            "When it is called. confirm-rollout: before the canary gets any pod (holds until "
            "2xx). pre-rollout: after confirm-rollout, still before any pod (holds until "
            "2xx). rollout: at each step, once its work is done and before it counts (a "
            "non-2xx is a failed answer, asked again; more than failureLimit in a row "
            "aborts). confirm-promotion: before promotion (holds until 2xx). post-rollout "
            "and rollback: told after a promotion or an abort (delivered with retries; "
            "the answer changes nothing)."
        )
    )
    url: str = Field(
        pattern=r"^https?://[^\s/?#]+[^\s]*$",
        max_length=2048,
        description="http:// or https:// URL the JSON body is POSTed to.",
    )
    timeout: int | str = Field(
        default="10s",
        description="How long an answer may take (at most 60s); a slower one is a failed "
        "answer. Defaults to 10s.",
        json_schema_extra={"x-kubernetes-int-or-string": True},
    )
    metadata: dict[str, str] | None = Field(
        default=None,
        max_length=32,
        description="Extra key/values copied into the body (plain text: no Secrets here).",
    )
    failure_limit: int = Field(
        default=2,
        ge=0,
        le=100,
        description="rollout webhooks: failed answers in a row tolerated; one more aborts. "
        "Defaults to 2.",
    )

    @field_validator("timeout")
    @classmethod
    def _timeout_bounded(cls, value: int | str) -> int | str:
        if parse_duration(value) > MAX_HOOK_TIMEOUT:
            raise ValueError(f"at most {MAX_HOOK_TIMEOUT:.0f}s")
        return value

    def seconds(self) -> float:
        return max(parse_duration(self.timeout), 0.1)


class GateRecord(Model):
    """What a webhook gate answered for the current canary attempt."""

    key: str = Field(description="<type>/<name>[/<step>]: which gate, at which step.")
    passed: bool = Field(default=False, description="It allowed (2xx): not asked again.")
    failures: int = Field(default=0, description="Failed answers in a row.")
    answered_at: str = Field(default="", description="When its last answer came (RFC 3339).")
    message: str = Field(default="", description="Its last answer, for humans.")
