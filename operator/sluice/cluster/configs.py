"""trackConfig, the pure part: which ConfigMaps and Secrets a pod template references, the
copy of one version of each (`<name>-<content hash>`), and the template pointed at copies.

A canary's pods then read the config as it was when the canary started, the stable's keep
theirs, and a config change becomes a template change: a new revision, rolled out like one.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from typing import Any, Literal

from sluice.cluster import labels as L

Body = dict[str, Any]
ConfigKind = Literal["ConfigMap", "Secret"]
Source = tuple[ConfigKind, str]  # (kind, name) in the Rollout's namespace

MAX_NAME = 253
HASH_LENGTH = 10


def _refs(template: Body) -> Iterator[tuple[ConfigKind, dict[str, Any], str]]:
    """Every reference of the template: (kind, the dict holding the name, the name's key)."""
    spec = template.get("spec")
    if not isinstance(spec, dict):
        return
    for volume in spec.get("volumes") or []:
        if not isinstance(volume, dict):
            continue
        if isinstance(volume.get("configMap"), dict):
            yield "ConfigMap", volume["configMap"], "name"
        if isinstance(volume.get("secret"), dict):
            yield "Secret", volume["secret"], "secretName"
        projected = volume.get("projected")
        for source in (projected or {}).get("sources") or [] if isinstance(projected, dict) else []:
            if isinstance(source, dict) and isinstance(source.get("configMap"), dict):
                yield "ConfigMap", source["configMap"], "name"
            if isinstance(source, dict) and isinstance(source.get("secret"), dict):
                yield "Secret", source["secret"], "name"
    for group in ("initContainers", "containers"):
        for container in spec.get(group) or []:
            if not isinstance(container, dict):
                continue
            for env in container.get("env") or []:
                value_from = env.get("valueFrom") if isinstance(env, dict) else None
                if not isinstance(value_from, dict):
                    continue
                if isinstance(value_from.get("configMapKeyRef"), dict):
                    yield "ConfigMap", value_from["configMapKeyRef"], "name"
                if isinstance(value_from.get("secretKeyRef"), dict):
                    yield "Secret", value_from["secretKeyRef"], "name"
            for env_from in container.get("envFrom") or []:
                if not isinstance(env_from, dict):
                    continue
                if isinstance(env_from.get("configMapRef"), dict):
                    yield "ConfigMap", env_from["configMapRef"], "name"
                if isinstance(env_from.get("secretRef"), dict):
                    yield "Secret", env_from["secretRef"], "name"


def references(template: Body) -> set[Source]:
    """The ConfigMaps and Secrets the template names."""
    return {
        (kind, holder[key])
        for kind, holder, key in _refs(template)
        if isinstance(holder.get(key), str) and holder[key]
    }


def rewritten(template: Body, copies: dict[Source, str]) -> Body:
    """A copy of the template with each reference in `copies` pointed at its copy."""
    out = copy.deepcopy(template)
    for kind, holder, key in _refs(out):
        name = holder.get(key)
        if isinstance(name, str) and (kind, name) in copies:
            holder[key] = copies[(kind, name)]
    return out


def content_hash(kind: ConfigKind, body: Body) -> str:
    """What the pods see of the object: its data (and a Secret's type), nothing else."""
    content = {
        "data": body.get("data") or {},
        "binaryData": body.get("binaryData") or {},
        "type": body.get("type") if kind == "Secret" else None,
    }
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return digest[:HASH_LENGTH]


def copy_name(source: str, digest: str) -> str:
    return f"{source[: MAX_NAME - HASH_LENGTH - 1]}-{digest}"


def copy_manifest(kind: ConfigKind, source: Body, rollout: Body, owner: Body) -> Body:
    """The immutable copy of `source` at its current content, owned by the Rollout (so it
    goes with it) and labelled so a listing finds it for pruning."""
    name = source["metadata"]["name"]
    manifest: Body = {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {
            "name": copy_name(name, content_hash(kind, source)),
            "namespace": source["metadata"]["namespace"],
            "labels": {L.ROLLOUT: rollout["metadata"]["name"], L.COPY_OF: name},
            "ownerReferences": [owner],
        },
        "immutable": True,
    }
    for field in ("data", "binaryData"):
        if source.get(field):
            manifest[field] = source[field]
    if kind == "Secret" and source.get("type"):
        manifest["type"] = source["type"]
    return manifest
