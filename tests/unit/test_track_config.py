"""trackConfig: which ConfigMaps and Secrets a template reads, the copies it is pointed at,
and what the controller tracks (its own opt-in, or the object's label)."""

from __future__ import annotations

import asyncio
from typing import Any

from sluice.cluster import configs as C
from sluice.cluster import labels as L
from sluice.controller.configs import Configs

TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {
        "volumes": [
            {"name": "conf", "configMap": {"name": "web-conf"}},
            {"name": "tls", "secret": {"secretName": "web-tls"}},
            {
                "name": "all",
                "projected": {
                    "sources": [{"configMap": {"name": "shared"}}, {"secret": {"name": "keys"}}]
                },
            },
        ],
        "initContainers": [
            {"name": "init", "envFrom": [{"configMapRef": {"name": "init-env"}}]},
        ],
        "containers": [
            {
                "name": "web",
                "image": "nginx",
                "env": [
                    {"name": "A", "value": "literal"},
                    {
                        "name": "B",
                        "valueFrom": {"configMapKeyRef": {"name": "web-env", "key": "b"}},
                    },
                    {"name": "C", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                    {"name": "D", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
                "envFrom": [{"secretRef": {"name": "api"}}],
            }
        ],
    },
}


def test_every_kind_of_reference_is_found() -> None:
    assert C.references(TEMPLATE) == {
        ("ConfigMap", "web-conf"),
        ("ConfigMap", "shared"),
        ("ConfigMap", "init-env"),
        ("ConfigMap", "web-env"),
        ("Secret", "web-tls"),
        ("Secret", "keys"),
        ("Secret", "db"),
        ("Secret", "api"),
    }


def test_rewriting_points_only_the_tracked_references_at_copies() -> None:
    out = C.rewritten(TEMPLATE, {("ConfigMap", "web-env"): "web-env-1", ("Secret", "db"): "db-2"})
    refs = C.references(out)
    assert ("ConfigMap", "web-env-1") in refs and ("ConfigMap", "web-env") not in refs
    assert ("Secret", "db-2") in refs and ("Secret", "web-tls") in refs
    assert C.references(TEMPLATE) != refs  # the input is not changed


def test_the_hash_is_of_what_pods_see_not_of_metadata() -> None:
    one = {"metadata": {"name": "x", "resourceVersion": "1"}, "data": {"k": "v"}}
    relabelled = {"metadata": {"name": "x", "resourceVersion": "9", "labels": {"a": "b"}}, **one}
    changed = {**one, "data": {"k": "w"}}
    assert C.content_hash("ConfigMap", one) == C.content_hash("ConfigMap", relabelled)
    assert C.content_hash("ConfigMap", one) != C.content_hash("ConfigMap", changed)
    assert len(C.copy_name("a" * 300, C.content_hash("ConfigMap", one))) == 253


def test_a_copy_is_immutable_owned_and_labelled_for_pruning() -> None:
    source = {"metadata": {"name": "web-env", "namespace": "ns"}, "data": {"k": "v"}}
    owner = {"kind": "Rollout", "name": "web", "uid": "u"}
    copy = C.copy_manifest("ConfigMap", source, {"metadata": {"name": "web"}}, owner)
    assert copy["immutable"] is True and copy["data"] == {"k": "v"}
    assert copy["metadata"]["ownerReferences"] == [owner]
    assert copy["metadata"]["labels"] == {L.ROLLOUT: "web", L.COPY_OF: "web-env"}
    assert copy["metadata"]["name"] == C.copy_name("web-env", C.content_hash("ConfigMap", source))


class FakeCore:
    """Only what Configs calls: a label patch of a ConfigMap that exists."""

    def __init__(self, existing: dict[str, dict[str, Any]]) -> None:
        self.existing = existing
        self.patched: list[str] = []

    def patch_namespaced_config_map(self, name: str, namespace: str, patch: Any) -> Any:
        raise AssertionError("called through Kube.raw")


class FakeKube:
    def __init__(self, existing: dict[str, dict[str, Any]]) -> None:
        self.core = FakeCore(existing)

    async def raw(self, fn: Any, name: str, namespace: str, patch: Any) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        if name not in self.core.existing:
            raise ApiException(status=404)
        self.core.patched.append(name)
        body = self.core.existing[name]
        labels = {**body["metadata"].get("labels", {}), **patch["metadata"]["labels"]}
        return {**body, "metadata": {**body["metadata"], "labels": labels}}


def cm(name: str, data: dict[str, str], label: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "resourceVersion": "1"}
    if label:
        meta["labels"] = {L.TRACK_CONFIG: label}
    return {"metadata": meta, "data": data}


def spec(track: bool) -> dict[str, Any]:
    return {"template": TEMPLATE, "strategy": {"canary": {"trackConfig": track}}}


def test_track_config_labels_what_it_names_and_points_at_copies() -> None:
    kube = FakeKube({"web-env": cm("web-env", {"b": "1"}), "web-conf": cm("web-conf", {})})
    configs = Configs(kube)  # type: ignore[arg-type]
    raw, missing = asyncio.run(configs.resolve(("ns", "web"), spec(True)))
    assert sorted(kube.core.patched) == ["web-conf", "web-env"]  # labelled "auto"
    assert missing  # shared and init-env do not exist: looked at again later
    refs = C.references(raw["template"])
    copy = C.copy_name("web-env", C.content_hash("ConfigMap", cm("web-env", {"b": "1"})))
    assert ("ConfigMap", copy) in refs
    assert ("Secret", "db") in refs  # Secrets only with --track-secrets
    # a change of the content is a new template, so a new revision
    assert configs.event(
        "ConfigMap",
        "MODIFIED",
        {
            **cm("web-env", {"b": "2"}),
            "metadata": {
                **cm("web-env", {})["metadata"],
                "resourceVersion": "2",
                "labels": {L.TRACK_CONFIG: "auto"},
            },
        },
    ) == [("ns", "web")]
    again, _ = asyncio.run(configs.resolve(("ns", "web"), spec(True)))
    assert again["template"] != raw["template"]


def test_without_track_config_only_objects_labelled_true_are_tracked() -> None:
    configs = Configs(FakeKube({}))  # type: ignore[arg-type]
    configs.put("ConfigMap", cm("web-env", {"b": "1"}, label="true"))
    configs.put("ConfigMap", cm("web-conf", {}, label="auto"))  # another Rollout's opt-in
    raw, missing = asyncio.run(configs.resolve(("ns", "web"), spec(False)))
    refs = C.references(raw["template"])
    assert ("ConfigMap", "web-env") not in refs and ("ConfigMap", "web-conf") in refs
    assert not missing
    untouched, _ = asyncio.run(Configs(FakeKube({})).resolve(("ns", "web"), spec(False)))  # type: ignore[arg-type]
    assert untouched["template"] is TEMPLATE
