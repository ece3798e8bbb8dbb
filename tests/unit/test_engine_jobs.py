"""The Job gate in the engine: one Job per canary attempt and step, its outcome decides.

The Driver plays the cluster; `jobs` plays the Job controller (a test sets the phase).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from driver import Driver, make_spec, revision, with_image

from sluice.engine.jobs import job_name
from sluice.engine.types import CreateJob, DeleteJob, JobObserved, Observed

V2 = revision("web:2")
JOB: dict[str, Any] = {
    "spec": {
        "backoffLimit": 0,
        "template": {
            "spec": {"restartPolicy": "Never", "containers": [{"name": "t", "image": "curl"}]}
        },
    },
    "timeout": "2m",
}
STEPS: list[dict[str, Any]] = [{"setWeight": 25}, {"job": JOB}, {"setWeight": 50}]


class JobDriver(Driver):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.jobs: dict[str, JobObserved] = {}

    def observe(self) -> Observed:
        return dataclasses.replace(super().observe(), jobs=dict(self.jobs))

    def of(self, kind: type) -> list[Any]:
        assert self.last is not None
        return [a for a in self.last.actions if isinstance(a, kind)]


def at_job_step() -> JobDriver:
    spec = make_spec(STEPS, replicas=4)
    d = JobDriver(spec)
    d.step(0)
    d.step(d.cluster.ready_delay)
    d.step(0, spec=with_image(spec, "web:2"))
    d.step(d.cluster.ready_delay)
    assert d.status.current_step_index == 1 and d.status.canary_weight == 25
    return d


def test_a_job_step_creates_one_job_and_waits_for_it() -> None:
    d = at_job_step()
    name = job_name("web", V2, 1, 1)
    assert d.of(CreateJob) == [CreateJob(name, 1, V2, 1)]
    assert len(name) <= 63 and name == job_name("web", V2, 1, 1)
    d.jobs[name] = JobObserved("Running", revision=V2, attempt=1)
    d.step(30)
    assert d.of(CreateJob) == [] and d.status.current_step_index == 1
    assert f"waiting for job {name}" in d.status.message
    d.jobs[name] = JobObserved("Succeeded", "complete", V2, 1)
    d.step(0)
    assert d.status.current_step_index >= 2 and not d.status.abort


def test_a_failed_job_aborts_naming_it() -> None:
    d = at_job_step()
    name = job_name("web", V2, 1, 1)
    d.jobs[name] = JobObserved("Failed", "BackoffLimitExceeded: Job has reached the limit", V2, 1)
    d.step(0)
    abort = d.status.abort
    assert abort is not None and abort.reason == "JobFailed"
    assert name in abort.message and "BackoffLimitExceeded" in abort.message
    assert d.status.canary_weight == 0 and d.of(DeleteJob) == [], "kept to be read"
    d.step(0, action="retry")
    d.step(d.cluster.ready_delay)
    assert DeleteJob(name) in [a for h in d.history[-3:] for a in h.actions]
    assert d.of(CreateJob) == [CreateJob(job_name("web", V2, 2, 1), 1, V2, 2)]


def test_a_job_that_runs_past_its_timeout_aborts() -> None:
    d = at_job_step()
    name = job_name("web", V2, 1, 1)
    d.jobs[name] = JobObserved("Running", revision=V2, attempt=1)
    d.step(60)
    assert d.last is not None and d.last.requeue_after is not None
    d.step(61)
    assert d.status.abort is not None and d.status.abort.reason == "JobTimedOut"


def test_jobs_go_once_the_canary_is_promoted() -> None:
    d = at_job_step()
    name = job_name("web", V2, 1, 1)
    d.jobs[name] = JobObserved("Succeeded", "complete", V2, 1)
    d.step(0)
    for _ in range(5):
        d.step(d.cluster.ready_delay)
    assert d.status.phase == "Healthy" and not d.status.canary_revision
    assert d.of(DeleteJob) == [DeleteJob(name)]


def test_a_job_must_not_restart_always() -> None:
    job = {**JOB, "spec": {**JOB["spec"], "template": {"spec": {"containers": [{"name": "t"}]}}}}
    d = JobDriver(make_spec([{"setWeight": 25}, {"job": job}]))
    d.step(0)
    assert d.status.phase == "Degraded"
    assert "steps[1].job.spec.template.spec.restartPolicy" in d.status.message
