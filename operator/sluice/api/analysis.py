"""Analysis API: AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun, and the metric.

A metric asks a provider (Prometheus) a question at an interval and judges each
answer with `successCondition` / `failureCondition`; limits turn the judgements
into a verdict. Built-in triggers (`errorRate`, `latency`, `circuitBreaker`)
write the PromQL for the common cases.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, PrivateAttr, model_validator
from pydantic.config import JsonDict

from sluice.api.base import Model
from sluice.api.duration import parse_duration
from sluice.api.judge import JudgeMetric, JudgeResult, JudgeScore, JudgeState

Duration = int | str
_DURATION: JsonDict = {"x-kubernetes-int-or-string": True}

# Bounds: past them a value is a mistake (or an attack), and datetime arithmetic would
# overflow or a provider would be asked the impossible. Enforced here, so a template
# beyond them is InvalidSpec before any run exists.
HOUR, DAY = 3600.0, 86400.0
MAX_INTERVAL = DAY  # interval, initialDelay
MAX_TIMEOUT = 300.0  # a provider query; also a hard cap in the executor
MAX_WINDOW = 7 * DAY  # a range query's window, a trigger's rate() window
MAX_STEP = HOUR
MAX_COUNT = 10_000  # count and every limit
MAX_METRICS = 50
MAX_ARGS = 100


def _shown(seconds: float) -> str:
    return f"{seconds / HOUR:g}h" if seconds >= HOUR else f"{seconds:g}s"


def within(most: float, least: float = 0.0) -> AfterValidator:
    """A duration of at least `least` and at most `most` seconds."""

    def check(value: Duration) -> Duration:
        seconds = parse_duration(value)
        if seconds > most:
            raise ValueError(f"duration {str(value)[:40]!r} is longer than {_shown(most)}")
        if seconds < least:
            raise ValueError(f"duration {str(value)[:40]!r} is shorter than {_shown(least)}")
        return value

    return AfterValidator(check)


# ---------------------------------------------------------------- arguments


class SecretKeyRef(Model):
    """A key of a Secret in the Rollout's namespace."""

    name: str = Field(description="Secret name.")
    key: str = Field(description="Key within the Secret.")


class FieldRef(Model):
    """A field of the Rollout, e.g. metadata.labels['team'] or spec.replicas."""

    field_path: str = Field(description="Path of the field in the Rollout, dot-separated.")


class ArgValueFrom(Model):
    """Where an argument's value comes from when it is not a literal."""

    secret_key_ref: SecretKeyRef | None = Field(default=None, description="From a Secret.")
    field_ref: FieldRef | None = Field(default=None, description="From the Rollout's fields.")


class Arg(Model):
    """An argument a template's queries use as {{args.NAME}}."""

    name: str = Field(description="Argument name.", pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")
    value: str | None = Field(default=None, description="Literal value.")
    value_from: ArgValueFrom | None = Field(default=None, description="Value from elsewhere.")


# ---------------------------------------------------------------- provider


class SecretRef(Model):
    """A Secret holding credentials (never inline in a spec)."""

    name: str = Field(description="Secret name, in the Rollout's namespace.")
    key: str = Field(default="token", description="Key holding the bearer token. Default token.")


class BasicAuthRef(Model):
    """A Secret with a user name and a password."""

    name: str = Field(description="Secret name, in the Rollout's namespace.")
    username_key: str = Field(default="username", description="Key of the user name.")
    password_key: str = Field(default="password", description="Key of the password.")


class Header(Model):
    """An extra HTTP header sent with every query."""

    name: str = Field(description="Header name.")
    value: str = Field(description="Header value.")


class RangeQuery(Model):
    """Ask over a window instead of at an instant; `result` gets every point."""

    window: Annotated[Duration, within(MAX_WINDOW, 1.0)] = Field(
        description="How far back from the measurement time, e.g. 5m. At most 7 days.",
        json_schema_extra=_DURATION,
    )
    step: Annotated[Duration, within(MAX_STEP, 1.0)] = Field(
        default="15s",
        description="Resolution of the range query, 1s to 1h. Default 15s.",
        json_schema_extra=_DURATION,
    )


class PrometheusProvider(Model):
    """Where and how to ask Prometheus."""

    address: str = Field(
        description="Base URL of Prometheus, e.g. http://prometheus:9090.",
        pattern=r"^https?://[^/\s]",
        max_length=2048,
    )
    query: str | None = Field(
        default=None,
        description=(
            "PromQL, templated with {{args.NAME}} and the built-ins {{rollout.name}}, "
            "{{rollout.namespace}}, {{canary.revision}}, {{stable.revision}}, {{canary.service}}, "
            "{{stable.service}}, {{canary.slot}}, {{stable.slot}}. Substituted values are "
            "escaped for PromQL label strings. Omit it when a built-in trigger is used."
        ),
    )
    range: RangeQuery | None = Field(default=None, description="Make it a range query.")
    timeout: Annotated[Duration, within(MAX_TIMEOUT, 0.001)] = Field(
        default="10s",
        description="Per-query timeout, at most 5m. Default 10s.",
        json_schema_extra=_DURATION,
    )
    insecure: bool = Field(default=False, description="Skip TLS verification. Default false.")
    ca_secret_ref: SecretKeyRef | None = Field(
        default=None, description="A CA bundle (PEM) to verify Prometheus' certificate."
    )
    bearer_token_secret_ref: SecretRef | None = Field(
        default=None, description="Send Authorization: Bearer with this Secret's token."
    )
    basic_auth_secret_ref: BasicAuthRef | None = Field(
        default=None, description="Send basic auth from this Secret."
    )
    headers: list[Header] = Field(
        default_factory=list, max_length=50, description="Extra HTTP headers."
    )


class Provider(Model):
    """The metric source. One provider per metric."""

    prometheus: PrometheusProvider = Field(description="A Prometheus server.")


# ---------------------------------------------------------------- built-in triggers


class ErrorRate(Model):
    """Fail when the canary's ratio of 5xx responses to all responses exceeds `max`."""

    max: float = Field(ge=0, le=1, description="Highest acceptable ratio, e.g. 0.02 for 2 %.")
    preset: Literal["istio", "prometheus-client"] = Field(
        default="prometheus-client",
        description=(
            "Metric and label names: istio (istio_requests_total, response_code, "
            "destination_workload) or prometheus-client (http_requests_total, code, "
            "sluice_dev_revision). Default prometheus-client."
        ),
    )
    metric: str | None = Field(default=None, description="Override the request counter name.")
    code_label: str | None = Field(default=None, description="Override the status code label.")
    selector: str | None = Field(
        default=None,
        description="Label matchers selecting the canary's series, without braces. "
        'Default from the preset, e.g. sluice_dev_revision="{{canary.revision}}".',
    )
    window: Annotated[Duration, within(MAX_WINDOW, 0.001)] = Field(
        default="1m",
        description="rate() window, at most 7 days. Default 1m.",
        json_schema_extra=_DURATION,
    )


class Latency(Model):
    """Fail when a latency quantile of the canary, from a histogram, exceeds `maxSeconds`."""

    quantile: float = Field(default=0.99, gt=0, lt=1, description="E.g. 0.99. Default 0.99.")
    max_seconds: float = Field(gt=0, description="Highest acceptable latency in seconds.")
    preset: Literal["istio", "prometheus-client"] = Field(
        default="prometheus-client",
        description="istio (istio_request_duration_milliseconds) or prometheus-client "
        "(http_request_duration_seconds). Default prometheus-client.",
    )
    metric: str | None = Field(
        default=None, description="Override the histogram name (no _bucket)."
    )
    selector: str | None = Field(default=None, description="Label matchers of the canary's series.")
    window: Annotated[Duration, within(MAX_WINDOW, 0.001)] = Field(
        default="1m",
        description="rate() window, at most 7 days. Default 1m.",
        json_schema_extra=_DURATION,
    )


class CircuitBreaker(Model):
    """Fail when open breakers, outlier ejections or overflows of the canary go above `max`."""

    max: float = Field(default=0, ge=0, description="Highest acceptable count. Default 0.")
    preset: Literal["istio", "prometheus-client"] = Field(
        default="prometheus-client",
        description="istio (envoy outlier ejections and overflows) or prometheus-client "
        "(circuit_breaker_open). Default prometheus-client.",
    )
    metric: str | None = Field(default=None, description="Override the metric name.")
    selector: str | None = Field(default=None, description="Label matchers of the canary's series.")


class Baseline(Model):
    """A second query for the stable version; conditions see it as `baseline`."""

    query: str = Field(description="PromQL for the stable, templated like the main query.")


# ---------------------------------------------------------------- metric


class Metric(Model):
    """One question asked at an interval, and how to judge the answers."""

    name: str = Field(description="Metric name, unique within the analysis.")
    provider: Provider = Field(description="Where to ask.")
    error_rate: ErrorRate | None = Field(default=None, description="Built-in error-rate trigger.")
    latency: Latency | None = Field(default=None, description="Built-in latency trigger.")
    circuit_breaker: CircuitBreaker | None = Field(
        default=None, description="Built-in circuit-breaker trigger."
    )
    baseline: Baseline | None = Field(default=None, description="Compare with the stable.")
    judge: JudgeMetric | None = Field(
        default=None,
        description="Compare the canary with a baseline by an anytime-valid sequential test: "
        "measured every interval, it fails on evidence of a regression and passes after "
        "maxDuration without it (no successCondition, failureCondition or count).",
    )
    interval: Annotated[Duration, within(MAX_INTERVAL, 0.001)] | None = Field(
        default=None,
        description="Time between measurements, e.g. 30s, at most 24h. Omitted: a single "
        "measurement.",
        json_schema_extra=_DURATION,
    )
    initial_delay: Annotated[Duration, within(MAX_INTERVAL)] | None = Field(
        default=None,
        description="Wait before the first measurement, at most 24h.",
        json_schema_extra=_DURATION,
    )
    count: int | None = Field(
        default=None,
        ge=1,
        le=MAX_COUNT,
        description="Measurements to take. Omitted: 1 without an interval; with one, until "
        "the analysis ends (background) — a step analysis then needs a count.",
    )
    success_condition: str | None = Field(
        default=None,
        description="Expression over `result` (and `baseline`) that must hold, e.g. result < 0.02.",
    )
    failure_condition: str | None = Field(
        default=None, description="Expression that marks a measurement failed, e.g. result > 0.05."
    )
    failure_limit: int | None = Field(
        default=None,
        ge=0,
        le=MAX_COUNT,
        description="Failed measurements tolerated in total. Default 0, or no total limit "
        "when consecutiveFailureLimit is set.",
    )
    consecutive_failure_limit: int | None = Field(
        default=None,
        ge=1,
        le=MAX_COUNT,
        description="Fail as soon as this many measurements in a row failed "
        "(interval 30s and 4: 'bad for 2 minutes').",
    )
    inconclusive_limit: int = Field(
        default=0, ge=0, le=MAX_COUNT, description="Inconclusive measurements tolerated. Default 0."
    )
    consecutive_error_limit: int = Field(
        default=4, ge=0, le=MAX_COUNT, description="Provider errors in a row tolerated. Default 4."
    )
    on_provider_error: Literal["abort", "pause", "ignore"] = Field(
        default="abort",
        description="When errors exceed consecutiveErrorLimit (e.g. Prometheus is down): "
        "abort the rollout, pause it (holding, and going on by itself if the provider answers "
        "again within maxOutage), or ignore errors. Default abort.",
    )
    max_outage: Annotated[Duration, within(MAX_INTERVAL)] = Field(
        default="10m",
        description="With onProviderError: pause, how long the rollout holds for a provider "
        "that does not answer before it pauses for a human; measuring goes on meanwhile and "
        "an answer resumes the rollout. At most 24h. Default 10m.",
        json_schema_extra=_DURATION,
    )
    empty_result: Literal["inconclusive", "failure", "success"] = Field(
        default="inconclusive",
        description="How to judge an empty or NaN answer. Default inconclusive: no data is "
        "never a success unless you say so.",
    )

    @model_validator(mode="after")
    def _one_question(self) -> Metric:
        asked = [
            n
            for n, v in (
                ("provider.prometheus.query", self.provider.prometheus.query),
                ("errorRate", self.error_rate),
                ("latency", self.latency),
                ("circuitBreaker", self.circuit_breaker),
                ("judge", self.judge),
            )
            if v is not None
        ]
        if len(asked) != 1:
            raise ValueError(
                "exactly one of provider.prometheus.query, errorRate, latency, circuitBreaker, "
                f"judge must be set (found {', '.join(asked) or 'none'})"
            )
        if asked[0] == "judge":
            self._judge_fields()
        if asked[0] == "provider.prometheus.query" and not (
            self.success_condition or self.failure_condition
        ):
            raise ValueError("a query needs successCondition or failureCondition")
        return self

    def _judge_fields(self) -> None:
        """A judge asks about one interval at a time and ends on its own verdict."""
        if self.interval is None:
            raise ValueError("a judge metric needs an interval (it judges one at a time)")
        extra = [
            n
            for n, v in (
                ("successCondition", self.success_condition),
                ("failureCondition", self.failure_condition),
                ("count", self.count),
                ("baseline", self.baseline),
                ("provider.prometheus.range", self.provider.prometheus.range),
            )
            if v is not None
        ]
        if extra:
            raise ValueError(
                f"a judge metric ends on its own verdict and takes no {', '.join(extra)}"
            )

    def total_failure_limit(self) -> int | None:
        if self.failure_limit is not None:
            return self.failure_limit
        return None if self.consecutive_failure_limit else 0

    def measurements_wanted(self) -> int | None:
        """How many measurements make the metric complete; None: until the analysis ends."""
        if self.count is not None:
            return self.count
        return 1 if self.interval is None else None


class TemplateRef(Model):
    """An AnalysisTemplate (or ClusterAnalysisTemplate) to run."""

    template_name: str = Field(description="Name of the template.")
    cluster_scope: bool = Field(
        default=False, description="A ClusterAnalysisTemplate instead. Default false."
    )


class RolloutAnalysis(Model):
    """Analysis a Rollout runs: templates and/or inline metrics, with arguments."""

    templates: list[TemplateRef] = Field(
        default_factory=list, max_length=MAX_METRICS, description="Templates to run."
    )
    metrics: list[Metric] = Field(
        default_factory=list, max_length=MAX_METRICS, description="Inline metrics."
    )
    args: list[Arg] = Field(
        default_factory=list, max_length=MAX_ARGS, description="Values for the templates' args."
    )


class BackgroundAnalysis(RolloutAnalysis):
    """Analysis across all steps from `startingStep` until promotion."""

    starting_step: int = Field(default=0, ge=0, description="First step it runs at. Default 0.")


# ---------------------------------------------------------------- templates


class AnalysisTemplateSpec(Model):
    """Metrics and the arguments they expect."""

    args: list[Arg] = Field(
        default_factory=list, max_length=MAX_ARGS, description="Arguments, with defaults."
    )
    metrics: list[Metric] = Field(min_length=1, max_length=MAX_METRICS, description="The metrics.")
    measurement_retention: int = Field(
        default=10, ge=1, le=1000, description="Measurements kept per metric. Default 10."
    )
    judge_score: JudgeScore | None = Field(
        default=None,
        description="Combine the judge metrics' verdicts, by their weights, into one score "
        "(a critical one's failure fails at once). Omitted: each judge metric decides alone.",
    )


class AnalysisTemplate(Model):
    """Reusable analysis, namespaced."""

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["sluice.dev/v1alpha1"] = Field(
        default="sluice.dev/v1alpha1", description="sluice.dev/v1alpha1"
    )
    kind: Literal["AnalysisTemplate", "ClusterAnalysisTemplate"] = Field(
        default="AnalysisTemplate", description="AnalysisTemplate"
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: AnalysisTemplateSpec = Field(description="The metrics.")


# ---------------------------------------------------------------- runs

# Holding: a provider is down (onProviderError: pause, within maxOutage); not a verdict.
RunPhase = Literal["Pending", "Running", "Holding", "Successful", "Failed", "Error", "Inconclusive"]
MeasurementPhase = Literal["Successful", "Failed", "Inconclusive", "Error"]


class AnalysisRunSpec(Model):
    """What the run measures: the templates' metrics, resolved, and the arguments."""

    metrics: list[Metric] = Field(description="Metrics, from templates and inline.")
    args: list[Arg] = Field(default_factory=list, description="Arguments (Secrets stay refs).")
    measurement_retention: int = Field(
        default=10, ge=1, le=1000, description="Measurements kept per metric."
    )
    kind: Literal["step", "background", "prePromotion", "postPromotion", "alert"] = Field(
        description="What started the run."
    )
    step: int | None = Field(default=None, description="Step index, for a step analysis.")
    revision: str = Field(description="Canary revision analysed.")
    terminate: bool = Field(default=False, description="Stop measuring; the run ends Successful.")
    judge_score: JudgeScore | None = Field(
        default=None, description="The scorecard over the judge metrics, from the templates."
    )


class Measurement(Model):
    """One answer and its judgement."""

    phase: MeasurementPhase = Field(description="Successful, Failed, Inconclusive or Error.")
    value: str = Field(default="", description="The value(s) as returned, e.g. 0.031 or [0.1,0.2].")
    baseline: str | None = Field(default=None, description="The baseline value(s), if any.")
    query: str = Field(default="", description="The query exactly as sent.")
    window: str | None = Field(default=None, description="Start/end of a range query.")
    started_at: str = Field(description="When it was taken (RFC 3339).")
    finished_at: str | None = Field(default=None, description="When the answer came.")
    message: str = Field(default="", description="The condition, threshold or error.")
    # A judge metric's answers for this interval, until `runstate.record` adds them to
    # the evidence (never written: the evidence is, in MetricResult.judge).
    _observation: Any = PrivateAttr(default=None)


class MetricResult(Model):
    """Counters and recent measurements of one metric."""

    name: str = Field(description="Metric name.")
    phase: RunPhase = Field(description="The metric's verdict so far.")
    count: int = Field(default=0, description="Measurements taken.")
    successful: int = Field(default=0, description="Successful measurements.")
    failed: int = Field(default=0, description="Failed measurements.")
    inconclusive: int = Field(default=0, description="Inconclusive measurements.")
    error: int = Field(default=0, description="Provider errors.")
    consecutive_failed: int = Field(default=0, description="Failed in a row, now.")
    consecutive_error: int = Field(default=0, description="Errors in a row, now.")
    error_since: str | None = Field(
        default=None, description="When the current run of provider errors began (RFC 3339)."
    )
    message: str = Field(default="", description="Why the verdict, for humans.")
    next_at: str | None = Field(default=None, description="When the next measurement is due.")
    measurements: list[Measurement] = Field(
        default_factory=list, description="The most recent measurements, oldest first."
    )
    judge: JudgeState | None = Field(
        default=None,
        description="A judge metric's evidence so far, written after every measurement: "
        "an operator restarted mid-run resumes it.",
    )
    judge_result: JudgeResult | None = Field(
        default=None,
        description="A judge metric's latest verdict: sample sizes, estimate with its "
        "interval, e-value and why.",
    )


class AnalysisRunStatus(Model):
    """Progress and verdict."""

    model_config = ConfigDict(extra="ignore")

    phase: RunPhase = Field(default="Pending", description="The run's verdict so far.")
    message: str = Field(default="", description="Why, naming metric, value, threshold, query.")
    started_at: str | None = Field(default=None, description="When measuring began.")
    finished_at: str | None = Field(default=None, description="When the verdict was reached.")
    on_error: Literal["abort", "pause", "ignore"] | None = Field(
        default=None, description="The failing metric's onProviderError, when phase is Error."
    )
    metric_results: list[MetricResult] = Field(
        default_factory=list, description="One entry per metric."
    )


class AnalysisRun(Model):
    """One execution of an analysis for one canary revision. Owned by the Rollout."""

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["sluice.dev/v1alpha1"] = Field(
        default="sluice.dev/v1alpha1", description="sluice.dev/v1alpha1"
    )
    kind: Literal["AnalysisRun"] = Field(default="AnalysisRun", description="AnalysisRun")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: AnalysisRunSpec = Field(description="What is measured.")
    status: AnalysisRunStatus | None = Field(default=None, description="Progress and verdict.")
