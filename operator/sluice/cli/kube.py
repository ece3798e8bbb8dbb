"""The plugin's view of the cluster: kubeconfig, context and namespace as kubectl picks them."""

from __future__ import annotations

import argparse
import os
from typing import Any

from sluice.cli.errors import CliError

GROUP, VERSION, PLURAL = "sluice.dev", "v1alpha1", "rollouts"
TIMEOUT = (5, 30)  # connect, read: an unreachable server is reported in seconds
Body = dict[str, Any]
SERVER = ""  # the API server in use, for error messages


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        import kubernetes

        kubeconfig = getattr(args, "kubeconfig", None)
        context = getattr(args, "context", None)
        config = kubernetes.client.Configuration()
        default_ns = "default"
        path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        in_cluster = not kubeconfig and "KUBERNETES_SERVICE_HOST" in os.environ
        if in_cluster and not os.path.exists(path):
            kubernetes.config.load_incluster_config(client_configuration=config)
        else:
            if context:
                contexts, _ = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)
                names = [c["name"] for c in contexts]
                if context not in names:
                    raise CliError(f'context "{context}" not found in the kubeconfig ({names})')
            kubernetes.config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=config
            )
            _, active = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)
            if context:
                contexts, _ = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)
                active = next(c for c in contexts if c["name"] == context)
            default_ns = (active.get("context") or {}).get("namespace") or "default"
        config.retries = 0  # one try: the user runs it again
        self.server = config.host
        global SERVER
        SERVER = config.host
        self.namespace: str = getattr(args, "namespace", None) or default_ns
        api = kubernetes.client.ApiClient(config)
        # Any: plain JSON in and out; the client's typed models are not used here.
        self.custom: Any = kubernetes.client.CustomObjectsApi(api)
        self.core: Any = kubernetes.client.CoreV1Api(api)
        self.apps: Any = kubernetes.client.AppsV1Api(api)

    def rollout(self, name: str) -> Body:
        from kubernetes.client.exceptions import ApiException

        try:
            return dict(
                self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, name, _request_timeout=TIMEOUT
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                raise CliError(
                    f'rollout "{name}" not found in namespace "{self.namespace}"'
                ) from None
            raise

    def rollouts(self, all_namespaces: bool = False) -> list[Body]:
        if all_namespaces:
            out = self.custom.list_cluster_custom_object(
                GROUP, VERSION, PLURAL, _request_timeout=TIMEOUT
            )
        else:
            out = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, _request_timeout=TIMEOUT
            )
        return list(out.get("items") or [])

    def patch(self, name: str, patch: Any, kind: str = "merge") -> Body:
        content = {
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
        }[kind]
        self.rollout(name)  # a clear "not found" before a patch's terse one
        return dict(
            self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                name,
                patch,
                _content_type=content,
                _request_timeout=TIMEOUT,
            )
        )

    def runs(self, name: str) -> list[Body]:
        out = self.custom.list_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            "analysisruns",
            label_selector=f"sluice.dev/rollout={name}",
            _request_timeout=TIMEOUT,
        )
        return list(out.get("items") or [])

    def events(self, name: str) -> list[Body]:
        out = self.core.list_namespaced_event(
            self.namespace,
            field_selector=f"involvedObject.kind=Rollout,involvedObject.name={name}",
            _request_timeout=TIMEOUT,
            _preload_content=False,
        )
        import json

        items = json.loads(out.data).get("items") or []
        return sorted(items, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")

    def deployment(self, name: str) -> Body | None:
        from kubernetes.client.exceptions import ApiException

        try:
            out = self.apps.read_namespaced_deployment(
                name, self.namespace, _request_timeout=TIMEOUT, _preload_content=False
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        import json

        body: Body = json.loads(out.data)
        return body
