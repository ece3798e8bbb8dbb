"""What happens during a simulation: readiness, metric series per version, manual actions.

A scenario file (YAML), every field optional; times are from the template change (t=0):

    readyAfter: 3s            # pods of either version are Ready this long after they are
    maxDuration: 4h           #   asked for; the simulation stops at maxDuration
    interpolation: step       # default of every series: step (hold) or linear
    canary:                   # the new version (the Rollout's template)
      readyAfter: 20s
      ready: true             # false: its pods never become Ready
      errorRate: 0.002        # ratio of 5xx responses (errorRate triggers, judge errors)
      requestRate: 10         # requests/s, which judge metrics count (default 10)
      latency: {p99: 0.18}  # seconds, by quantile (latency triggers and judges), or one series
      circuitBreaker: 0       # open breakers (circuitBreaker triggers)
      series:                 # any metric by its name (own queries, or to override)
        checkout-p95: [{at: 0s, value: 0.1}, {at: 10m, value: 0.4}]
    stable: {errorRate: 0.002}  # the previous version: baseline queries
    actions:
      - {at: 2m, action: promote}
    secrets: {name: {key: value}}   # Secrets that analysis args read

A series is a number, a list of points `{at, value}`, or `{interpolation, points}`.
Before its first point, and where a value is null, there is no data (as when a
version takes no traffic): the measurement is judged with `emptyResult`.
"""

from __future__ import annotations

import bisect
import math
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from sluice.api.base import Model
from sluice.api.duration import parse_duration
from sluice.engine.validate import InvalidSpec, check_action

Duration = int | float | str
Interpolation = Literal["step", "linear"]
ANY_QUANTILE = "any"


def _duration(value: Duration) -> Duration:
    parse_duration(value)
    return value


class Point(Model):
    at: Duration = Field(description="Seconds from the template change, or e.g. 90s, 5m.")
    value: float | None = Field(description="The value from here on; null: no data.")

    @field_validator("at")
    @classmethod
    def _at(cls, value: Duration) -> Duration:
        return _duration(value)


class Series(Model):
    """Values over time, by step or linear interpolation between points."""

    interpolation: Interpolation | None = None
    points: list[Point] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if (isinstance(data, int | float) and not isinstance(data, bool)) or data is None:
            return {"points": [{"at": 0, "value": data}]}
        if isinstance(data, list):
            return {"points": data}
        if isinstance(data, dict):
            return data
        raise ValueError(
            f"{data!r} is not a series: give a number, a list of {{at, value}} points, "
            "or {interpolation, points}"
        )

    def compiled(self, default: Interpolation) -> Curve:
        points = sorted(((parse_duration(p.at), p.value) for p in self.points), key=lambda p: p[0])
        return Curve([t for t, _ in points], [v for _, v in points], self.interpolation or default)


class Curve:
    """A compiled series: value(t), fast."""

    def __init__(self, times: list[float], values: list[float | None], how: Interpolation):
        self.times, self.values, self.how = times, values, how

    def at(self, t: float) -> float | None:
        i = bisect.bisect_right(self.times, t) - 1
        if i < 0:
            return None
        value = self.values[i]
        if self.how == "step" or i + 1 >= len(self.times) or value is None:
            return value
        after = self.values[i + 1]
        if after is None:
            return value
        t0, t1 = self.times[i], self.times[i + 1]
        return value + (after - value) * (t - t0) / (t1 - t0) if t1 > t0 else after


def quantile_key(key: str) -> float:
    """`p99` -> 0.99, `p999` -> 0.999, `p50` -> 0.5, `0.95` -> 0.95."""
    text = key.strip().lower()
    try:
        q = float("0." + text[1:]) if text.startswith("p") and text[1:].isdigit() else float(text)
    except ValueError:
        q = math.nan
    if not 0 < q < 1:
        raise ValueError(f"latency quantile {key!r}: use p99, p50, ... or a number in (0, 1)")
    return q


class Version(Model):
    """One version's pods and metrics."""

    ready_after: Duration | None = Field(default=None, description="Seconds until Ready.")
    ready: bool = Field(default=True, description="False: pods never become Ready.")
    error_rate: Series | None = None
    request_rate: Series | None = None  # requests/s, for judge metrics (default 10 with errorRate)
    latency: dict[str, Series] | None = None
    circuit_breaker: Series | None = None
    series: dict[str, Series] = Field(default_factory=dict)

    @field_validator("ready_after")
    @classmethod
    def _ready_after(cls, value: Duration | None) -> Duration | None:
        return None if value is None else _duration(value)

    @field_validator("latency", mode="before")
    @classmethod
    def _latency(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict) or "points" in value:
            return {ANY_QUANTILE: value}  # one series for every quantile
        for key in value:
            if key != ANY_QUANTILE:
                quantile_key(str(key))
        return value


class Action(Model):
    at: Duration
    action: str

    @field_validator("at")
    @classmethod
    def _at(cls, value: Duration) -> Duration:
        return _duration(value)

    @field_validator("action")
    @classmethod
    def _action(cls, value: str) -> str:
        try:
            check_action(value)
        except InvalidSpec as exc:
            raise ValueError(str(exc).split(": ", 1)[-1]) from None
        return value


class ScenarioSpec(Model):
    model_config = ConfigDict(frozen=True)

    ready_after: Duration = 2
    max_duration: Duration = "4h"
    interpolation: Interpolation = "step"
    canary_ready: bool | None = Field(default=None, description="Old spelling of canary.ready.")
    canary: Version = Field(default_factory=Version)
    stable: Version = Field(default_factory=Version)
    actions: list[Action] = Field(default_factory=list)
    secrets: dict[str, dict[str, str]] = Field(default_factory=dict)

    @field_validator("ready_after", "max_duration")
    @classmethod
    def _durations(cls, value: Duration) -> Duration:
        return _duration(value)


def _where(loc: tuple[int | str, ...]) -> str:
    path = "scenario"
    for part in loc:
        if part in ("points", "function-after[_shorthand(), Series]"):
            continue
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


class Scenario:
    """A parsed scenario: times in seconds, series compiled."""

    def __init__(self, spec: ScenarioSpec | None = None) -> None:
        spec = spec or ScenarioSpec()
        self.spec = spec
        self.ready_after = parse_duration(spec.ready_after)
        self.max_seconds = parse_duration(spec.max_duration)
        ready = spec.canary.ready if spec.canary_ready is None else spec.canary_ready
        self.canary_ready = ready and spec.canary.ready
        self.actions = sorted((parse_duration(a.at), a.action) for a in spec.actions)
        self.secrets = spec.secrets
        self.delays = {
            who: parse_duration(v.ready_after) if v.ready_after is not None else self.ready_after
            for who, v in (("canary", spec.canary), ("stable", spec.stable))
        }
        how = spec.interpolation
        self.curves: dict[tuple[str, str, str], Curve] = {}
        for who, version in (("canary", spec.canary), ("stable", spec.stable)):
            if version.error_rate is not None:
                self.curves[(who, "errorRate", "")] = version.error_rate.compiled(how)
            if version.request_rate is not None:
                self.curves[(who, "requestRate", "")] = version.request_rate.compiled(how)
            if version.circuit_breaker is not None:
                self.curves[(who, "circuitBreaker", "")] = version.circuit_breaker.compiled(how)
            for key, series in (version.latency or {}).items():
                q = key if key == ANY_QUANTILE else repr(quantile_key(key))
                self.curves[(who, "latency", q)] = series.compiled(how)
            for name, series in version.series.items():
                self.curves[(who, "series", name)] = series.compiled(how)

    @classmethod
    def parse(cls, data: Any) -> Scenario:
        """From the YAML document; InvalidSpec names the field (`scenario.canary.errorRate`)."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InvalidSpec(f"scenario: expected a mapping, found {type(data).__name__}")
        try:
            spec = ScenarioSpec.model_validate(data)
        except ValidationError as exc:
            problems = []
            for e in exc.errors():
                msg = e["msg"].removeprefix("Value error, ")
                problems.append(f"{_where(e['loc'])}: {msg}")
            raise InvalidSpec("; ".join(dict.fromkeys(problems))) from None
        return cls(spec)

    def curve(self, who: str, kind: str, key: str = "") -> Curve | None:
        found = self.curves.get((who, kind, key))
        if found is None and kind == "latency":
            found = self.curves.get((who, kind, ANY_QUANTILE))
        return found
