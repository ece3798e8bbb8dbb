"""Rollout manifests the e2e tests build on: one nginx container, two replicas."""

from __future__ import annotations

from typing import Any


def canary_rollout(
    canary: dict[str, Any], image: str = "nginx:1.27", replicas: int = 2, name: str = "web"
) -> dict[str, Any]:
    """A Rollout `name` (pods labelled app=web) with `canary` as its strategy.canary."""
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
            "strategy": {"canary": canary},
        },
    }
