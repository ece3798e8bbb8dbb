"""Job gates as the engine sees them: the Job's name, and which Jobs are no longer needed."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from sluice.engine.types import DeleteJob

if TYPE_CHECKING:
    from sluice.engine.decide import _Decider


def job_name(rollout: str, revision: str, attempt: int, step: int) -> str:
    """Fixed per canary revision, attempt and step (a retry runs a new Job), and short
    enough for the job-name label Kubernetes puts on its pods (63 characters)."""
    digest = hashlib.sha256(f"{rollout}/{revision}/{attempt}/{step}".encode()).hexdigest()
    return f"{rollout[:40]}-job-{digest[:10]}"


def prune_jobs(d: _Decider) -> None:
    """Jobs of another canary or attempt go (with their pods); the current attempt's stay,
    also when it was aborted, so that a failed smoke test can be read."""
    s = d.s
    for name, job in sorted(d.obs.jobs.items()):
        current = s.canary_revision and job.revision == s.canary_revision
        if job.phase != "Terminating" and (not current or job.attempt != s.attempt):
            d.actions.append(DeleteJob(name))
