"""Gradual rollback: the weights walked back down, with pauses, for an incident that is
not an emergency (an abort stays instant)."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from sluice.api.base import Model

MAX_ROLLBACK_STEPS = 40
DEFAULT_WEIGHTS = (75, 50, 25, 10)  # those below the weight the walk starts from
DEFAULT_PAUSE_SECONDS = 30


class RollbackPause(Model):
    """Hold the walk back at the current weight."""

    duration: int | str = Field(
        description="How long: seconds as an integer, or a string such as 30s, 5m.",
        json_schema_extra={"x-kubernetes-int-or-string": True},
    )


class RollbackStep(Model):
    """One stage of the walk back. Exactly one of setWeight and pause is set."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["setWeight"]}, {"required": ["pause"]}]}
    )

    set_weight: int | None = Field(
        default=None, ge=0, le=100, description="Canary weight to go down to (percent)."
    )
    pause: RollbackPause | None = Field(default=None, description="Hold for a duration.")


class GradualRollback(Model):
    """How `sluice.dev/action: rollback-gradually` walks the canary's weight back to 0."""

    steps: list[RollbackStep] = Field(
        default_factory=list,
        max_length=MAX_ROLLBACK_STEPS,
        description="The walk, in order; weights at or above the current one are skipped, "
        "and after the last step the canary goes to 0 (aborted, reason GradualRollback). "
        "Empty: 75, 50, 25, 10, then 0, with 30s pauses between.",
    )


class RollbackProgress(Model):
    """A gradual rollback under way (status)."""

    step_index: int = Field(default=0, description="Index of the walk's current step.")
    from_weight: int = Field(description="The canary weight when the walk began.")
    started_at: str = Field(description="When it began (RFC 3339).")
