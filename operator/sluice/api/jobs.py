"""The Job gate: a step that runs a Kubernetes Job (a smoke test) and waits for it."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from sluice.api.base import Model
from sluice.api.duration import parse_duration

MAX_JOB_SECONDS = 24 * 3600


class JobMetadata(Model):
    """Labels and annotations for the Job (Sluice adds its own sluice.dev/ labels)."""

    labels: dict[str, str] | None = Field(default=None, description="Labels of the Job.")
    annotations: dict[str, str] | None = Field(default=None, description="Its annotations.")


class JobStep(Model):
    """Run a Job made from this template; success moves on, failure aborts the canary."""

    metadata: JobMetadata | None = Field(default=None, description="Labels and annotations.")
    spec: dict[str, Any] = Field(
        description="A Job spec (batch/v1), e.g. a pod template whose container tests the "
        "canary through <name>-canary. Set backoffLimit: a failed pod is retried up to "
        "6 times by default before the Job fails.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True, "type": "object"},
    )
    timeout: int | str = Field(
        default="10m",
        description="How long the Job may run before the canary is aborted (at most 24h). "
        "Defaults to 10m.",
        json_schema_extra={"x-kubernetes-int-or-string": True},
    )

    @field_validator("timeout")
    @classmethod
    def _timeout_bounded(cls, value: int | str) -> int | str:
        if parse_duration(value) > MAX_JOB_SECONDS:
            raise ValueError("at most 24h")
        return value

    @field_validator("spec")
    @classmethod
    def _has_template(cls, value: dict[str, Any]) -> dict[str, Any]:
        containers = ((value.get("template") or {}).get("spec") or {}).get("containers")
        if not isinstance(containers, list) or not containers:
            raise ValueError("template.spec.containers: at least one container is required")
        return value

    def seconds(self) -> float:
        return parse_duration(self.timeout)
