"""The pure decision core: (spec, status, observed, now) -> actions. No I/O, no clock reads."""

from sluice.engine.decide import decide
from sluice.engine.types import (
    Decision,
    DeploySlot,
    EventNote,
    Observed,
    RemoveAction,
    RolloutInput,
    ScaleSlot,
    SetTraffic,
    SlotObserved,
    TrafficTarget,
)

__all__ = [
    "Decision",
    "DeploySlot",
    "EventNote",
    "Observed",
    "RemoveAction",
    "RolloutInput",
    "ScaleSlot",
    "SetTraffic",
    "SlotObserved",
    "TrafficTarget",
    "decide",
]
