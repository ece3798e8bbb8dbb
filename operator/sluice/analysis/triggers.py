"""Built-in triggers: errorRate, latency and circuitBreaker written out as PromQL.

Two presets of metric and label names:
- `prometheus-client`: an app instrumented with the Python prometheus_client (or any
  client using the same names): `http_requests_total{code}`,
  `http_request_duration_seconds_bucket`, `circuit_breaker_open`; pods told apart by
  `sluice_dev_revision`, which a `labelmap` of `__meta_kubernetes_pod_label_(.+)` yields.
- `istio`: Istio/Envoy standard metrics: `istio_requests_total{response_code,
  destination_workload}`, `istio_request_duration_milliseconds_bucket`,
  `envoy_cluster_outlier_detection_ejections_active`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sluice.api.analysis import CircuitBreaker, ErrorRate, Latency, Metric


@dataclass(frozen=True)
class Question:
    """A metric reduced to what is asked and how the answer is judged."""

    query: str
    success: str | None
    failure: str | None
    baseline: str | None = None


_CANARY = {
    "prometheus-client": 'sluice_dev_revision="{{canary.revision}}"',
    "istio": 'destination_workload="{{canary.deployment}}", '
    'destination_workload_namespace="{{rollout.namespace}}"',
}


def _window(value: int | str) -> str:
    return f"{value}s" if isinstance(value, int) or str(value).isdigit() else str(value)


def _selector(trigger: ErrorRate | Latency | CircuitBreaker) -> str:
    return trigger.selector if trigger.selector is not None else _CANARY[trigger.preset]


def error_rate(t: ErrorRate) -> Question:
    metric = t.metric or ("istio_requests_total" if t.preset == "istio" else "http_requests_total")
    code = t.code_label or ("response_code" if t.preset == "istio" else "code")
    sel, window = _selector(t), _window(t.window)
    # No 5xx series at all is a ratio of 0, not "no data"; no traffic at all stays no data.
    query = (
        f'(sum(rate({metric}{{{sel}, {code}=~"5.."}}[{window}])) or vector(0)) / '
        f"sum(rate({metric}{{{sel}}}[{window}]))"
    )
    return Question(query, success=f"result <= {t.max!r}", failure=None)


def latency(t: Latency) -> Question:
    istio = t.preset == "istio"
    metric = t.metric or (
        "istio_request_duration_milliseconds" if istio else "http_request_duration_seconds"
    )
    sel, window = _selector(t), _window(t.window)
    query = (
        f"histogram_quantile({t.quantile!r}, sum by (le) "
        f"(rate({metric}_bucket{{{sel}}}[{window}])))"
    )
    if istio and t.metric is None:
        query = f"{query} / 1000"
    return Question(query, success=f"result <= {t.max_seconds!r}", failure=None)


def circuit_breaker(t: CircuitBreaker) -> Question:
    if t.preset == "istio":
        metric = t.metric or "envoy_cluster_outlier_detection_ejections_active"
        sel = t.selector if t.selector is not None else 'pod=~"{{canary.deployment}}-.*"'
    else:
        metric = t.metric or "circuit_breaker_open"
        sel = _selector(t)
    # An absent series means no breaker ever opened: `or vector(0)` makes that a 0, not "no data".
    query = f"sum({metric}{{{sel}}}) or vector(0)"
    return Question(query, success=f"result <= {t.max!r}", failure=None)


def question(metric: Metric) -> Question:
    """What `metric` asks, with its conditions (a built-in's own, or the user's)."""
    baseline = metric.baseline.query if metric.baseline else None
    if metric.error_rate is not None:
        q = error_rate(metric.error_rate)
    elif metric.latency is not None:
        q = latency(metric.latency)
    elif metric.circuit_breaker is not None:
        q = circuit_breaker(metric.circuit_breaker)
    else:
        assert metric.provider.prometheus.query is not None
        return Question(
            metric.provider.prometheus.query,
            metric.success_condition,
            metric.failure_condition,
            baseline,
        )
    # A user's own conditions, when given, replace the built-in's.
    if metric.success_condition or metric.failure_condition:
        return Question(q.query, metric.success_condition, metric.failure_condition, baseline)
    return Question(q.query, q.success, q.failure, baseline)
