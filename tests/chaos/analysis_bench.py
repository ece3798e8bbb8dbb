"""A real Prometheus and two demo apps for the kill fleet's background analyses.

The demo app (examples/demo-app, local processes: pods here run no containers) exports
`circuit_breaker_open`. One instance is healthy (0 open), one has 2 breakers open; a
"healthy" scenario's analysis asks Prometheus for the first, a "failing" one for the
second, so its canary fails analysis at the first measurement and is aborted
(AnalysisFailed) whatever step it is at. The "finite" templates ask the same but end: a
step or post-promotion analysis must reach a verdict; the healthy one after 5 measurements,
the failing one at its third failure (failureLimit 2), so each measures for a few seconds
and the kills can land in the middle of it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.e2e.conftest import wait_for
from tests.e2e.test_analysis import DEMO, DemoApp
from tests.support.prometheus import PrometheusServer, free_port

Body = dict[str, Any]
JOBS = {"healthy": "demo-healthy", "failing": "demo-broken"}


FINITE = 5  # measurements of a step or post-promotion analysis (interval 1 s)


def template_name(analysis: str) -> str:
    return f"breakers-{analysis}"


def finite_template_name(analysis: str) -> str:
    return f"breakers-{analysis}-finite"


def template(analysis: str, address: str, finite: bool = False) -> Body:
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
    if finite:
        metric["count"] = FINITE
        if analysis == "failing":
            metric["failureLimit"] = 2
    name = finite_template_name(analysis) if finite else template_name(analysis)
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": name},
        "spec": {"metrics": [metric]},
    }


class QuietDemoApp(DemoApp):
    """The demo app without its self-load: a gauge needs no requests, and the machine
    running the kills has little CPU to spare."""

    def __init__(self, name: str, breakers: int) -> None:
        self.name, self.port = name, free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(DEMO), "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(f"demo app {name}", self._up, timeout=15)
        self.set(breakers=breakers)


class AnalysisBench:
    """Started only when a fleet has an analysis scenario; closed in reverse order."""

    def __init__(self, workdir: Path) -> None:
        self.apps = {
            kind: QuietDemoApp(job, 2 if kind == "failing" else 0) for kind, job in JOBS.items()
        }
        self.prometheus = PrometheusServer(
            [(JOBS[kind], f"127.0.0.1:{app.port}", {}) for kind, app in self.apps.items()],
            workdir=workdir,
        )
        self.prometheus.start()
        for job in JOBS.values():
            self.prometheus.wait_scraped(job)

    def templates(self) -> list[Body]:
        url = self.prometheus.url
        return [template(kind, url, finite) for kind in JOBS for finite in (False, True)]

    def close(self) -> None:
        self.prometheus.close()
        for app in self.apps.values():
            app.stop()
