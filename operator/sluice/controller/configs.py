"""trackConfig in the controller: the tracked ConfigMaps and Secrets (watched by label),
the template the engine decides on (pointed at copies), the copies made before a Deployment
runs them, and the copies no Deployment runs any more pruned."""

from __future__ import annotations

from typing import Any

from kubernetes.client.exceptions import ApiException

from sluice import logs
from sluice import telemetry as M
from sluice.cluster import configs as C
from sluice.cluster import labels as L
from sluice.cluster.kube import Kube
from sluice.controller.cache import Body, Key, newer

log = logs.get("sluice.configs")
Where = tuple[str, str, str]  # (kind, namespace, name)
KINDS: dict[str, str] = {"ConfigMap": "config_map", "Secret": "secret"}


def _tracks(raw: dict[str, Any]) -> bool:
    strategy = raw.get("strategy") or {}
    for name in ("blueGreen", "canary"):
        part = strategy.get(name)
        if isinstance(part, dict):
            return part.get("trackConfig") is True
    return False


class Configs:
    """Tracked ConfigMaps/Secrets by (kind, namespace, name), and which Rollouts read each."""

    def __init__(self, kube: Kube, secrets: bool = False) -> None:
        self.kube = kube
        self.secrets = secrets  # --track-secrets: the operator may watch and copy Secrets
        self.bodies: dict[Where, Body] = {}
        self.readers: dict[Where, set[Key]] = {}
        self.reads: dict[Key, set[Where]] = {}  # the reverse of readers, so a reconcile
        # forgets only its own (not a scan of every tracked object)
        self.wanted: dict[Key, dict[str, Where]] = {}  # copy name -> source, per Rollout

    def kinds(self) -> list[str]:
        return ["ConfigMap", "Secret"] if self.secrets else ["ConfigMap"]

    # ------------------------------------------------------------ watch

    def event(self, kind: str, etype: str | None, body: Body) -> list[Key]:
        """A tracked ConfigMap/Secret changed: the Rollouts that read it."""
        meta = body.get("metadata") or {}
        where = (kind, str(meta.get("namespace", "")), str(meta.get("name", "")))
        if etype == "DELETED":
            self.bodies.pop(where, None)
        else:
            self.put(kind, body)
        return sorted(self.readers.get(where, ()))

    def put(self, kind: str, body: Body) -> None:
        meta = body["metadata"]
        where = (kind, meta["namespace"], meta["name"])
        if newer(body, self.bodies.get(where)):
            self.bodies[where] = {
                "metadata": {
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "resourceVersion": meta.get("resourceVersion"),
                    "labels": dict(meta.get("labels") or {}),
                },
                **{k: body[k] for k in ("data", "binaryData", "type") if k in body},
            }

    def forget(self, key: Key) -> None:
        self.wanted.pop(key, None)
        for where in self.reads.pop(key, set()):
            readers = self.readers.get(where)
            if readers is not None:
                readers.discard(key)
                if not readers:
                    del self.readers[where]

    # ------------------------------------------------------------ before decide

    async def resolve(
        self, key: Key, raw: dict[str, Any], adopt: bool = True
    ) -> tuple[dict[str, Any], bool]:
        """The spec with the template pointed at copies of what it tracks, and whether a
        ConfigMap/Secret a trackConfig Rollout names is missing (looked at again later: an
        unlabelled object's creation reaches no watch). Tracked: every referenced ConfigMap
        (and Secret, with --track-secrets) when trackConfig is set (labelled "auto", so the
        watch brings its changes), and any labelled "true"."""
        template = raw.get("template")
        if not isinstance(template, dict):
            return raw, False
        namespace = key[0]
        track_all = _tracks(raw)
        self.forget(key)
        copies: dict[C.Source, str] = {}
        wanted: dict[str, Where] = {}
        missing = False
        for kind, name in sorted(C.references(template)):
            if kind not in self.kinds():
                continue
            where = (kind, namespace, name)
            body = self.bodies.get(where)
            if body is None and track_all and adopt:
                body = await self._adopt(where)
            if body is None:
                missing = missing or track_all
                continue  # missing (the pods say so) or not tracked
            label = body["metadata"]["labels"].get(L.TRACK_CONFIG)
            if not (track_all or label == "true"):
                continue
            self.readers.setdefault(where, set()).add(key)
            self.reads.setdefault(key, set()).add(where)
            target = C.copy_name(name, C.content_hash(kind, body))
            copies[(kind, name)] = target
            wanted[target] = where
        if wanted:
            self.wanted[key] = wanted
        if not copies:
            return raw, missing
        return {**raw, "template": C.rewritten(template, copies)}, missing

    async def _adopt(self, where: Where) -> Body | None:
        """Read an unlabelled ConfigMap/Secret a trackConfig Rollout names and label it
        (metadata only: no drift for GitOps), so its next change comes by the watch."""
        kind, namespace, name = where
        api = self.kube.core
        M.API_CALLS.labels("label_config").inc()
        patch = {"metadata": {"labels": {L.TRACK_CONFIG: "auto"}}}
        try:
            body = await self.kube.raw(
                getattr(api, f"patch_namespaced_{KINDS[kind]}"), name, namespace, patch
            )
        except ApiException as exc:
            if exc.status == 403:  # said, not swallowed: RBAC narrower than trackConfig
                log.warning("forbidden: cannot label a tracked config", kind=kind, name=name,
                            namespace=namespace)  # fmt: skip
            if exc.status in (403, 404):
                return None
            raise
        self.put(kind, body)
        return self.bodies.get(where)

    # ------------------------------------------------------------ around a Deployment write

    async def ensure(self, key: Key, template: Body, owner: Body, rollout: Body) -> None:
        """Make the copies the template runs that do not exist yet (already there: fine;
        copies are immutable and named after their content)."""
        wanted = self.wanted.get(key, {})
        for kind, name in sorted(C.references(template)):
            where = wanted.get(name)
            if where is None or where[0] != kind:
                continue
            source = self.bodies.get(where)
            if source is None:
                continue
            manifest = C.copy_manifest(kind, source, rollout, owner)
            if manifest["metadata"]["name"] != name:
                continue  # changed since this reconcile began: the next one rolls it
            M.API_CALLS.labels("create_config_copy").inc()
            create = getattr(self.kube.core, f"create_namespaced_{KINDS[kind]}")
            try:
                await self.kube.call(create, key[0], manifest)
            except ApiException as exc:
                if exc.status != 409:
                    raise

    async def prune(self, key: Key, running: list[Body]) -> int:
        """Delete this Rollout's copies that none of `running` (pod templates) names."""
        kept = set().union(*(C.references(t) for t in running)) if running else set()
        removed = 0
        for kind in self.kinds():
            suffix = KINDS[kind]
            M.API_CALLS.labels("list_config_copies").inc()
            found = await self.kube.raw(
                getattr(self.kube.core, f"list_namespaced_{suffix}"),
                key[0],
                label_selector=f"{L.ROLLOUT}={key[1]},{L.COPY_OF}",
            )
            for item in found.get("items") or []:
                name = item["metadata"]["name"]
                if (kind, name) in kept:
                    continue
                M.API_CALLS.labels("delete_config_copy").inc()
                try:
                    await self.kube.call(
                        getattr(self.kube.core, f"delete_namespaced_{suffix}"), name, key[0]
                    )
                    removed += 1
                except ApiException as exc:
                    if exc.status != 404:
                        raise
        return removed
