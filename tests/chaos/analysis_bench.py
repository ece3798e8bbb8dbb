"""A real Prometheus and two demo apps for the kill fleet's background analyses.

The demo app (examples/demo-app, local processes: pods here run no containers) exports
`circuit_breaker_open`. One instance is healthy (0 open), one has 2 breakers open; a
"healthy" scenario's analysis asks Prometheus for the first, a "failing" one for the
second, so its canary fails analysis at the first measurement and is aborted
(AnalysisFailed) whatever step it is at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.test_analysis import DemoApp
from tests.support.prometheus import PrometheusServer

Body = dict[str, Any]
JOBS = {"healthy": "demo-healthy", "failing": "demo-broken"}


def template_name(analysis: str) -> str:
    return f"breakers-{analysis}"


def template(analysis: str, address: str) -> Body:
    query = f'max(circuit_breaker_open{{job="{JOBS[analysis]}"}})'
    metric = {
        "name": "circuit-breakers",
        "provider": {"prometheus": {"address": address, "query": query, "timeout": "3s"}},
        "successCondition": "result == 0",
        "interval": "1s",
        # A kill mid-measurement, or a slow answer under load, is not a verdict.
        "consecutiveErrorLimit": 10,
        "inconclusiveLimit": 50,
    }
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": template_name(analysis)},
        "spec": {"metrics": [metric]},
    }


class AnalysisBench:
    """Started only when a fleet has an analysis scenario; closed in reverse order."""

    def __init__(self, workdir: Path) -> None:
        self.apps = {kind: DemoApp(job) for kind, job in JOBS.items()}
        self.apps["failing"].set(breakers=2)
        self.prometheus = PrometheusServer(
            [(JOBS[kind], f"127.0.0.1:{app.port}", {}) for kind, app in self.apps.items()],
            workdir=workdir,
        )
        self.prometheus.start()
        for job in JOBS.values():
            self.prometheus.wait_scraped(job)

    def templates(self) -> list[Body]:
        return [template(kind, self.prometheus.url) for kind in JOBS]

    def close(self) -> None:
        self.prometheus.close()
        for app in self.apps.values():
            app.stop()
