"""Count every request of the kubernetes client by the permission it uses.

Counted at the HTTP level (`call_api` gets the method and the full URL with its query),
so what is counted is exactly what the API server's authorizer decides on:
`sluice_api_access_total{group,resource,verb,scope}`. kopf's own client is counted the
same way (sluice/kopf_requests.py); the e2e suite compares the two with the chart's
RBAC (tests/e2e/test_zz_rbac_used.py).
"""

from __future__ import annotations

from typing import Any

import kubernetes

from sluice import telemetry as M
from sluice.cluster.access import classify


def count(method: str, url: str) -> None:
    access = classify(method, url)
    M.API_ACCESS.labels(access.group, access.resource, access.verb, access.scope).inc()


def install(client: kubernetes.client.ApiClient) -> None:
    original = client.call_api

    def call_api(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        count(method, url)
        return original(method, url, *args, **kwargs)

    client.call_api = call_api  # type: ignore[method-assign]
