"""The embedded metric source of `sluice simulate`: analysis queries answered from a scenario.

A small evaluator for the query shapes the built-in triggers write
(`sluice.analysis.triggers`), not a PromQL engine:

* errorRate   `(sum(rate(M{SEL, code=~"5.."}[W])) or vector(0)) / sum(rate(M{SEL}[W]))`
  -> the version's `errorRate` series; none: no data (a version without traffic);
* latency     `histogram_quantile(Q, sum by (le) (rate(M_bucket{SEL}[W])))` (`/ 1000`)
  -> the version's `latency` series for quantile Q, in seconds; none: no data;
* circuitBreaker `sum(M{SEL}) or vector(0)` -> the version's `circuitBreaker` series;
  none: 0, as `or vector(0)` makes of an absent series.
* judge errors `sum(increase(M{SEL, code=~"5.."}[W])) or vector(0)` and
  `sum(increase(M{SEL}[W]))` -> `requestRate` (default 10/s) x W requests, of which the
  `errorRate` share are errors (expected counts, no noise); no errorRate: no data.
* judge latency `sum(increase(M_bucket{SEL, le=~"B"}[W])) or vector(0)` -> of those
  requests, the share at most B seconds under a log-normal latency fitted to the version's
  `latency` quantiles (two or more: through the lowest and the highest; one: a spread of
  sigma 0.5 around it); no latency: no data.

Any query, built-in or not, is first answered from the version's `series` entry named
like the metric, when there is one. Other queries get an empty answer (no data). For
arbitrary PromQL use a real Prometheus (`--prometheus URL`).

Which version a query is about comes from its label matchers: a value that is a
revision, a Deployment (`<rollout>-a|b`, or a pod regex of it), a Service
(`<rollout>-canary|stable`) or, for labels named `*slot*`, a slot letter, denotes the
version that holds it now. The previous version's series are `stable`; anything
else (the new template's, or nothing recognised) is `canary`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from statistics import NormalDist

from sluice.metrics.base import QueryResult
from sluice.sim.scenario import Scenario

MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_NAME = r"[A-Za-z_:][A-Za-z0-9_:]*"
_ERROR = re.compile(
    rf"^\(sum\(rate\((?P<m>{_NAME})\{{(?P<sel>.*), (?P<code>[A-Za-z_][A-Za-z0-9_]*)"
    rf'=~"5\.\."\}}\[(?P<w>[^\]]+)\]\)\) or vector\(0\)\) / '
    rf"sum\(rate\((?P=m)\{{(?P<sel2>.*)\}}\[(?P=w)\]\)\)$",
    re.S,
)
_LATENCY = re.compile(
    rf"^histogram_quantile\((?P<q>[^,]+), sum by \(le\) "
    rf"\(rate\((?P<m>{_NAME})_bucket\{{(?P<sel>.*)\}}\[(?P<w>[^\]]+)\]\)\)\)(?P<ms> / 1000)?$",
    re.S,
)
_JUDGE_BAD = re.compile(
    rf"^sum\(increase\((?P<m>{_NAME})\{{(?P<sel>.*), [A-Za-z_][A-Za-z0-9_]*=~\"5\.\.\"\}}"
    rf"\[(?P<w>\d+)s\]\)\) or vector\(0\)$",
    re.S,
)
_JUDGE_ALL = re.compile(
    rf"^sum\(increase\((?P<m>{_NAME})\{{(?P<sel>.*)\}}\[(?P<w>\d+)s\]\)\)$", re.S
)
_JUDGE_BUCKET = re.compile(
    rf"^sum\(increase\((?P<m>{_NAME})_bucket\{{(?P<sel>.*), le=~?\"(?P<le>(?:[^\"\\]|\\.)*)\"\}}"
    rf"\[(?P<w>\d+)s\]\)\) or vector\(0\)$",
    re.S,
)
DEFAULT_SIGMA = 0.5  # log-normal spread when the scenario gives one latency quantile
_BREAKER = re.compile(rf"^sum\((?P<m>{_NAME})\{{(?P<sel>.*)\}}\) or vector\(0\)$", re.S)
_UNESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Shape:
    kind: str  # errorRate | latency | circuitBreaker | other
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value), unescaped
    quantile: str = ""  # latency: repr of the quantile
    seconds: float = 0.0  # judge counts: the increase() window
    bound: float = 0.0  # judge latency: the bucket's upper bound, in seconds


def _matchers(text: str) -> tuple[tuple[str, str, str], ...]:
    return tuple(
        (label, op, _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), raw))
        for label, op, raw in MATCHER.findall(text)
    )


@lru_cache(maxsize=1024)
def shape(query: str) -> Shape:
    """Which built-in trigger wrote `query` (kind `other`: none of them)."""
    text = query.strip()
    found = _ERROR.match(text)
    if found and found.group("sel") == found.group("sel2"):
        return Shape("errorRate", _matchers(found.group("sel")))
    found = _LATENCY.match(text)
    if found:
        try:
            q = repr(float(found.group("q")))
        except ValueError:
            q = found.group("q")
        return Shape("latency", _matchers(found.group("sel")), q)
    found = _JUDGE_BUCKET.match(text)
    if found:
        first = _UNESCAPE.sub(r"\1", found.group("le")).split("|")[0].replace("\\", "")
        try:
            bound = math.inf if first == "+Inf" else float(first)
        except ValueError:
            return Shape("other", _matchers(text))
        if found.group("m").endswith("_milliseconds"):
            bound /= 1000
        return Shape(
            "judgeBucket", _matchers(found.group("sel")), seconds=float(found.group("w")),
            bound=bound,
        )  # fmt: skip
    for kind, rx in (("judgeErrors", _JUDGE_BAD), ("judgeRequests", _JUDGE_ALL)):
        found = rx.match(text)
        if found:
            return Shape(kind, _matchers(found.group("sel")), seconds=float(found.group("w")))
    found = _BREAKER.match(text)
    if found:
        return Shape("circuitBreaker", _matchers(found.group("sel")))
    return Shape("other", _matchers(text))


@dataclass(frozen=True)
class Cast:
    """Who is who at the moment of a measurement: label values -> canary | stable."""

    names: dict[str, str] = field(default_factory=dict)  # revision, Deployment, Service
    slots: dict[str, str] = field(default_factory=dict)  # slot letter (labels named *slot*)

    def version(self, matchers: tuple[tuple[str, str, str], ...]) -> str:
        found: set[str] = set()
        for label, op, value in matchers:
            who: str | None = None
            if op == "=":
                who = self.names.get(value)
                if who is None and "slot" in label.lower():
                    who = self.slots.get(value)
            elif op == "=~":
                who = next(
                    (w for name, w in self.names.items() if _regex_matches(value, name)), None
                )
            if who is not None:
                found.add(who)
        return "stable" if found == {"stable"} else "canary"


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _regex_matches(pattern: str, name: str) -> bool:
    rx = _compiled(pattern)
    return rx is not None and bool(rx.fullmatch(name) or rx.fullmatch(f"{name}-0"))


class EmbeddedProvider:
    """A MetricProvider for one metric at one moment of the simulation."""

    def __init__(self, scenario: Scenario, metric: str, cast: Cast, epoch: datetime) -> None:
        self.scenario, self.metric, self.cast, self.epoch = scenario, metric, cast, epoch

    def values(self, query: str, t: float) -> list[float]:
        """The answer at `t` seconds of the simulation."""
        found = shape(query)
        who = self.cast.version(found.matchers)
        curve = self.scenario.curve(who, "series", self.metric)
        if curve is None and found.kind.startswith("judge"):
            return self._counted(found, who, t)
        if curve is None and found.kind != "other":
            curve = self.scenario.curve(who, found.kind, found.quantile)
        value = curve.at(t) if curve is not None else None
        if value is None:
            return [0.0] if found.kind == "circuitBreaker" else []
        return [value]

    def _counted(self, found: Shape, who: str, t: float) -> list[float]:
        """A judge's count over the window ending at `t`: expected requests (or errors)."""
        if found.kind == "judgeBucket":
            share = self._at_most(who, found.bound, t)
            return [] if share is None else [self._requests(who, found.seconds, t) * share]
        ratio = self.scenario.curve(who, "errorRate")
        share = ratio.at(t) if ratio is not None else None
        if share is None:
            return []
        total = self._requests(who, found.seconds, t)
        return [total * share if found.kind == "judgeErrors" else total]

    def _requests(self, who: str, seconds: float, t: float) -> float:
        rate = self.scenario.curve(who, "requestRate")
        per_second = rate.at(t) if rate is not None else 10.0
        return max(0.0, per_second or 0.0) * seconds

    def _at_most(self, who: str, bound: float, t: float) -> float | None:
        """The share of requests answered within `bound` seconds (None: no latency data)."""
        if math.isinf(bound):
            return 1.0
        points = sorted(
            (float(q), value)
            for (version, kind, q), curve in self.scenario.curves.items()
            if version == who and kind == "latency" and q.replace(".", "", 1).isdigit()
            for value in [curve.at(t)]
            if value is not None and value > 0
        )
        if not points:
            return None
        normal = NormalDist()
        (q1, x1), (q2, x2) = points[0], points[-1]
        if q2 > q1 and x2 > x1:
            sigma = (math.log(x2) - math.log(x1)) / (normal.inv_cdf(q2) - normal.inv_cdf(q1))
        else:
            sigma = DEFAULT_SIGMA
        mu = math.log(x1) - sigma * normal.inv_cdf(q1)
        return normal.cdf((math.log(bound) - mu) / sigma) if bound > 0 else 0.0

    def _t(self, at: datetime | None) -> float:
        return 0.0 if at is None else (at - self.epoch).total_seconds()

    async def query(self, query: str, at: datetime | None = None) -> QueryResult:
        values = self.values(query, self._t(at))
        return QueryResult("vector", values, len(values), query, at=at)

    async def query_range(
        self, query: str, start: datetime, end: datetime, step_seconds: float
    ) -> QueryResult:
        values: list[float] = []
        t, last = self._t(start), self._t(end)
        while t <= last + 1e-9:
            values += self.values(query, t)
            t += step_seconds
        return QueryResult("matrix", values, 1 if values else 0, query, start=start, end=end)
