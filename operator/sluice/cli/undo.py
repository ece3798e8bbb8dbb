"""The Rollout template a slot's Deployment was made from, hash for hash.

The Deployment carries the template with Sluice's own labels and whatever the API server
defaulted (restartPolicy, imagePullPolicy, ...). The revision is the hash of the template
exactly as the user wrote it, so the defaults the user did not write must go and those
the user did write must stay: the few candidates are tried in every combination until the
hash matches. Matching means the operator sees the stable (or warm) revision and switches
back at once instead of starting a new canary.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from sluice.engine.hashing import template_hash

Body = dict[str, Any]
OWN_LABELS = ("sluice.dev/rollout", "sluice.dev/slot", "sluice.dev/revision")
POD_DEFAULTS = {
    "restartPolicy": "Always",
    "terminationGracePeriodSeconds": 30,
    "dnsPolicy": "ClusterFirst",
    "securityContext": {},
    "schedulerName": "default-scheduler",
}
CONTAINER_DEFAULTS = {
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
    "imagePullPolicy": ("IfNotPresent", "Always"),
    "resources": {},
}
PROBE_DEFAULTS = {
    "timeoutSeconds": 1,
    "periodSeconds": 10,
    "successThreshold": 1,
    "failureThreshold": 3,
}
MAX_CANDIDATES = 14  # 2**14 hashes at most: well under a second


def _is_default(value: Any, default: Any) -> bool:
    return value in default if isinstance(default, tuple) else value == default


def _candidates(template: Body) -> list[list[tuple[Body, str]]]:
    """Groups of (dict, key) that the API server may have added; each group goes together."""
    spec = template.get("spec") or {}
    found: list[list[tuple[Body, str]]] = []
    for key, default in POD_DEFAULTS.items():
        if key in spec and _is_default(spec[key], default):
            found.append([(spec, key)])
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for key, default in CONTAINER_DEFAULTS.items():
            if key in container and _is_default(container[key], default):
                found.append([(container, key)])
        ports = [
            (p, "protocol") for p in container.get("ports") or [] if p.get("protocol") == "TCP"
        ]
        if ports:
            found.append(ports)
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            body = container.get(probe) or {}
            group = [(body, k) for k, v in PROBE_DEFAULTS.items() if body.get(k) == v]
            if group:
                found.append(group)
    return found


def restore(deployed: Body, revision: str) -> Body:
    """The template whose hash is `revision`, or the one with every default removed."""
    template = copy.deepcopy(deployed)
    meta = template.get("metadata") or {}
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in OWN_LABELS}
    meta = {k: v for k, v in meta.items() if k != "creationTimestamp" and v is not None}
    if labels:
        meta["labels"] = labels
    else:
        meta.pop("labels", None)
    template["metadata"] = meta
    if template_hash(template) == revision:
        return template
    groups = _candidates(template)[:MAX_CANDIDATES]
    for size in range(len(groups), 0, -1):  # most removed first: users rarely write defaults
        for chosen in itertools.combinations(range(len(groups)), size):
            trial = copy.deepcopy(template)
            trial_groups = _candidates(trial)[:MAX_CANDIDATES]
            for index in chosen:
                for holder, key in trial_groups[index]:
                    holder.pop(key, None)
            if template_hash(trial) == revision:
                return trial
    for group in groups:  # no match: the user's template had more than defaults changed
        for holder, key in group:
            holder.pop(key, None)
    return template
