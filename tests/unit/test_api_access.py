"""Requests mapped to the permission the API server's authorizer checks, and both
clients of the operator counted in sluice_api_access_total."""

from __future__ import annotations

import asyncio
from typing import Any

import kubernetes
import pytest
from kopf._cogs.clients import api

import sluice.handlers  # noqa: F401  (installs kopf's wrapper)
from sluice import kopf_requests
from sluice import telemetry as M
from sluice.cluster import access, recording
from sluice.cluster.access import Access

NS = "/apis/sluice.dev/v1alpha1/namespaces/shop"
S = "sluice.dev"


@pytest.mark.parametrize(
    ("method", "url", "expected"),
    [
        ("GET", f"{NS}/rollouts", Access(S, "rollouts", "list", "namespaced")),
        ("GET", f"{NS}/rollouts?watch=true&resourceVersion=5",
         Access(S, "rollouts", "watch", "namespaced")),
        ("GET", f"{NS}/rollouts?watch=1", Access(S, "rollouts", "watch", "namespaced")),
        ("GET", f"{NS}/rollouts?watch=false", Access(S, "rollouts", "list", "namespaced")),
        ("GET", f"{NS}/rollouts/web", Access(S, "rollouts", "get", "namespaced")),
        ("GET", f"{NS}/rollouts/web?watch=true", Access(S, "rollouts", "get", "namespaced")),
        ("PATCH", f"{NS}/rollouts/web", Access(S, "rollouts", "patch", "namespaced")),
        ("PUT", f"{NS}/rollouts/web/status",
         Access(S, "rollouts/status", "update", "namespaced")),
        ("POST", f"{NS}/analysisruns", Access(S, "analysisruns", "create", "namespaced")),
        ("DELETE", f"{NS}/analysisruns/r1",
         Access(S, "analysisruns", "delete", "namespaced")),
        ("DELETE", f"{NS}/analysisruns?labelSelector=a%3Db",
         Access(S, "analysisruns", "deletecollection", "namespaced")),
        ("GET", "/apis/sluice.dev/v1alpha1/rollouts?watch=true",
         Access(S, "rollouts", "watch", "cluster")),
        ("GET", "/apis/sluice.dev/v1alpha1/clusteranalysistemplates/t",
         Access(S, "clusteranalysistemplates", "get", "cluster")),
        ("get", "https://10.0.0.1:6443/api/v1/namespaces/shop/services/web",
         Access("", "services", "get", "namespaced")),
        ("POST", "/api/v1/namespaces/shop/events", Access("", "events", "create", "namespaced")),
        ("GET", "/api/v1/watch/namespaces/shop/configmaps",
         Access("", "configmaps", "watch", "namespaced")),
        ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/web/scale",
         Access("apps", "deployments/scale", "patch", "namespaced")),
        # A namespace is itself the resource; its status is a subresource of it.
        ("GET", "/api/v1/namespaces/shop", Access("", "namespaces", "get", "namespaced")),
        ("PUT", "/api/v1/namespaces/shop/status",
         Access("", "namespaces/status", "update", "namespaced")),
        ("GET", "/api/v1/namespaces", Access("", "namespaces", "list", "cluster")),
        ("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions?watch=true",
         Access("apiextensions.k8s.io", "customresourcedefinitions", "watch", "cluster")),
        # Discovery names no resource.
        ("GET", "/api", Access("", "", "get", "nonresource")),
        ("GET", "/apis/networking.istio.io/v1beta1", Access("", "", "get", "nonresource")),
        ("GET", "/version", Access("", "", "get", "nonresource")),
    ],
)  # fmt: skip
def test_a_request_is_the_permission_the_authorizer_checks(
    method: str, url: str, expected: Access
) -> None:
    assert access.classify(method, url) == expected


def _count(group: str, resource: str, verb: str, scope: str) -> float:
    value = M.REGISTRY.get_sample_value(
        "sluice_api_access_total",
        {"group": group, "resource": resource, "verb": verb, "scope": scope},
    )
    return value or 0.0


def test_the_kubernetes_client_counts_each_request_it_sends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = kubernetes.client.ApiClient(kubernetes.client.Configuration(host="http://x"))
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(
        client.rest_client, "request", lambda method, url, **_: sent.append((method, url))
    )
    recording.install(client)
    before = _count("apps", "deployments", "patch", "namespaced")
    client.call_api("PATCH", "http://x/apis/apps/v1/namespaces/shop/deployments/web")
    assert sent == [("PATCH", "http://x/apis/apps/v1/namespaces/shop/deployments/web")]
    assert _count("apps", "deployments", "patch", "namespaced") == before + 1


def test_kopf_calls_the_wrapper_for_all_its_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    # If the pinned kopf moves or renames its request function, kopf's requests go
    # uncounted and the e2e RBAC check would miss them: fail here first.
    assert api.request is kopf_requests.request
    assert kopf_requests._original.__module__ == "kopf._cogs.clients.api"
    assert kopf_requests._original.__name__ == "request"
    for helper in (api.get, api.post, api.patch, api.delete, api.stream):
        assert "request" in helper.__code__.co_names, f"kopf's {helper.__name__} sends itself"

    async def fake(method: str, url: str, **_: Any) -> str:
        return f"{method} {url}"

    monkeypatch.setattr(kopf_requests, "_original", fake)
    before = _count("sluice.dev", "rollouts", "watch", "cluster")
    got = asyncio.run(kopf_requests.request("get", "/apis/sluice.dev/v1alpha1/rollouts?watch=true"))
    assert got == "get /apis/sluice.dev/v1alpha1/rollouts?watch=true"
    assert _count("sluice.dev", "rollouts", "watch", "cluster") == before + 1
