"""The pure decision core: (spec, status, observed, now) -> actions. No I/O, no clock reads."""

from sluice.engine.decide import decide
from sluice.engine.types import (
    CreateRun,
    Decision,
    DeleteRun,
    DeploySlot,
    EventNote,
    Observed,
    RemoveAction,
    RolloutInput,
    ScaleSlot,
    SetTraffic,
    SlotObserved,
    TerminateRun,
    TrafficObserved,
    TrafficPlan,
)

__all__ = [
    "CreateRun",
    "Decision",
    "DeleteRun",
    "DeploySlot",
    "EventNote",
    "Observed",
    "RemoveAction",
    "RolloutInput",
    "ScaleSlot",
    "SetTraffic",
    "SlotObserved",
    "TerminateRun",
    "TrafficObserved",
    "TrafficPlan",
    "decide",
]
