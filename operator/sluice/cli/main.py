"""`sluice run` starts the operator; `sluice promote|abort|...` steer a Rollout; `sluice crds`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from sluice import __version__, logs
from sluice.api.rollout import ACTION_ANNOTATION, ACTIONS, GROUP, VERSION


def _run(args: argparse.Namespace) -> int:
    import kopf

    from sluice import handlers

    logs.configure(args.log_level, json=args.log_json)
    handlers.OPTIONS.namespaces = list(args.namespace or [])
    handlers.OPTIONS.host = args.host
    handlers.OPTIONS.port = args.port
    handlers.OPTIONS.workers = args.workers
    handlers.OPTIONS.api_limit = args.api_limit
    handlers.OPTIONS.kubeconfig = args.kubeconfig
    handlers.OPTIONS.alert_token_secret = args.alert_token_secret
    handlers.OPTIONS.instance = args.instance
    if args.leader_elect:
        if not 0 < args.retry_period < args.renew_deadline < args.lease_duration:
            sys.stderr.write("need --retry-period < --renew-deadline < --lease-duration\n")
            return 2
        namespace = args.lease_namespace or os.environ.get("POD_NAMESPACE") or "default"
        handlers.OPTIONS.leader = handlers.LeaderOptions(
            name=args.lease_name,
            namespace=namespace,
            identity=args.leader_id,
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
        )
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    registry = kopf.get_default_registry()
    asyncio.run(
        kopf.operator(
            registry=registry,
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=args.namespace or [],
        )
    )
    return 0


def _crds(args: argparse.Namespace) -> int:
    from sluice.api.crd import all_crds, render

    sys.stdout.write("---\n".join(render(crd) for crd in all_crds().values()))
    return 0


def _act(args: argparse.Namespace) -> int:
    import kubernetes

    from sluice.cluster.kube import load_config

    api = kubernetes.client.CustomObjectsApi(load_config(args.kubeconfig))
    namespace = args.namespace or _current_namespace()
    patch = {"metadata": {"annotations": {ACTION_ANNOTATION: args.action}}}
    api.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "rollouts",
        args.name,
        patch,
        _content_type="application/merge-patch+json",
    )
    print(f"rollout {namespace}/{args.name}: {args.action} requested")
    return 0


def _status(args: argparse.Namespace) -> int:
    import kubernetes

    from sluice.cluster.kube import load_config

    api = kubernetes.client.CustomObjectsApi(load_config(args.kubeconfig))
    namespace = args.namespace or _current_namespace()
    body = api.get_namespaced_custom_object(GROUP, VERSION, namespace, "rollouts", args.name)
    status = dict(body).get("status") or {}  # type: ignore[call-overload]
    print(f"Rollout {namespace}/{args.name}")
    for field in (
        "phase",
        "message",
        "currentStepIndex",
        "canaryWeight",
        "stableRevision",
        "canaryRevision",
        "readyReplicas",
    ):
        print(f"  {field:17} {status.get(field, '')}")
    for cond in status.get("conditions", []):
        reason, message = cond.get("reason", ""), cond.get("message", "")
        print(f"  {cond['type']:17} {cond['status']:5} {reason} {message}")
    return 0


def _current_namespace() -> str:
    import kubernetes

    try:
        _, active = kubernetes.config.list_kube_config_contexts()
        return str(active["context"].get("namespace") or "default")
    except Exception:
        return "default"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="sluice", description="Progressive canary delivery.")
    top.add_argument("--version", action="version", version=f"sluice {__version__}")
    top.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: in-cluster or KUBECONFIG)"
    )
    sub = top.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator against the current kubeconfig")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    run.add_argument("--host", default="0.0.0.0", help="address for /healthz, /readyz, /metrics")
    run.add_argument("--port", type=int, default=8080, help="port for /healthz, /readyz, /metrics")
    run.add_argument("--workers", type=int, default=8, help="Rollouts reconciled at once")
    run.add_argument("--api-limit", type=int, default=8, help="Kubernetes API calls in flight")
    run.add_argument(
        "--alert-token-secret",
        metavar="NAMESPACE/NAME[/KEY]",
        help="Secret with the bearer token of the alert webhook POST /v1/alerts (key: token)",
    )
    run.add_argument(
        "--instance",
        help="shard: act only on Rollouts labelled sluice.dev/controller-instance=INSTANCE "
        "(default: only on Rollouts without that label)",
    )
    elect = run.add_argument_group("leader election (for more than one replica)")
    elect.add_argument(
        "--leader-elect",
        action="store_true",
        help="act only while holding a coordination.k8s.io Lease; otherwise stand by",
    )
    elect.add_argument("--lease-name", default="sluice-leader", help="the Lease's name")
    elect.add_argument(
        "--lease-namespace", help="the Lease's namespace (default: $POD_NAMESPACE, or default)"
    )
    elect.add_argument(
        "--leader-id", default=None, help="this replica's identity (default: hostname_random)"
    )
    elect.add_argument(
        "--lease-duration", type=float, default=15.0, help="seconds a standby waits to take over"
    )
    elect.add_argument(
        "--renew-deadline",
        type=float,
        default=10.0,
        help="seconds without a renewal after which the leader stops acting",
    )
    elect.add_argument(
        "--retry-period", type=float, default=2.0, help="seconds between acquire/renew attempts"
    )
    run.add_argument("--log-level", default="INFO")
    run.add_argument(
        "--log-json",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="JSON logs (default: when stderr is not a terminal)",
    )
    run.set_defaults(func=_run)

    _add_offline_commands(sub)

    crds = sub.add_parser("crds", help="print the CustomResourceDefinitions")
    crds.set_defaults(func=_crds)

    for action in ACTIONS:
        act = sub.add_parser(action, help=f"{action} a Rollout (sets {ACTION_ANNOTATION})")
        act.add_argument("name")
        act.add_argument("-n", "--namespace")
        act.set_defaults(func=_act, action=action)

    status = sub.add_parser("status", help="show a Rollout's phase, step and conditions")
    status.add_argument("name")
    status.add_argument("-n", "--namespace")
    status.set_defaults(func=_status)
    return top


EXTRA_HINT = "sluice {cmd} needs the [{extra}] extra: pip install 'sluice[{extra}]' ({missing})"


def _add_offline_commands(sub: Any) -> None:
    """simulate and replay print with rich, which the operator image does not carry."""
    try:
        from sluice.cli import replay, simulate
    except ImportError as exc:
        missing = exc.name or str(exc)
        for cmd in ("simulate", "replay"):
            stub = sub.add_parser(cmd, help=f"(needs the [cli] extra: {missing} is missing)")
            stub.add_argument("rest", nargs=argparse.REMAINDER)
            stub.set_defaults(func=_missing_extra, cmd=cmd, extra="cli", missing=missing)
        return
    simulate.add_parser(sub)
    replay.add_parser(sub)


def _missing_extra(args: argparse.Namespace) -> int:
    sys.stderr.write(EXTRA_HINT.format(cmd=args.cmd, extra=args.extra, missing=args.missing) + "\n")
    return 3


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
