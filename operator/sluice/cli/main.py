"""`sluice run` starts the operator; the rest is the kubectl plugin (`kubectl sluice ...`).

Only argparse and the standard library are imported here: `--help` must answer at once.
Each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from sluice import __version__

# Rollout actions: command -> value of the sluice.dev/action annotation.
ACTIONS = {
    "promote": "promote",
    "promote-full": "promote-full",
    "abort": "abort",
    "retry": "retry",
    "pause": "pause",
    "resume": "resume",
    "rollback-gradually": "rollback-gradually",
}
HEAVY = ("simulate", "replay")  # their parsers live beside their (heavy) code
EXIT_ERROR = 3  # usage and cluster errors; 0/1/2 are verdicts (status, lint, simulate)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"error: {message}\n")


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import os

    import kopf

    from sluice import handlers, logs

    logs.configure(args.log_level, json=args.log_json)
    handlers.OPTIONS.namespaces = list(args.watch_namespaces or [])
    handlers.OPTIONS.host = args.host
    handlers.OPTIONS.port = args.port
    handlers.OPTIONS.alerts_port = args.alerts_port
    handlers.OPTIONS.workers = args.workers
    handlers.OPTIONS.api_limit = args.api_limit
    handlers.OPTIONS.webhook_interval = args.webhook_interval
    handlers.OPTIONS.kubeconfig = args.kubeconfig
    handlers.OPTIONS.alert_token_secret = args.alert_token_secret
    handlers.OPTIONS.instance = args.instance
    handlers.OPTIONS.track_secrets = args.track_secrets
    if args.track_secrets:
        handlers.watch_secrets()
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
            clusterwide=not args.watch_namespaces,
            namespaces=args.watch_namespaces or [],
        )
    )
    return 0


def _crds(args: argparse.Namespace) -> int:
    from sluice.api.crd import all_crds, render

    sys.stdout.write("---\n".join(render(crd) for crd in all_crds().values()))
    return 0


def _lazy(module: str, func: str) -> Any:
    def call(args: argparse.Namespace) -> int:
        import importlib

        return int(getattr(importlib.import_module(module), func)(args))

    return call


def _globals(p: argparse.ArgumentParser, top: bool) -> None:
    """kubectl's flags, accepted before and after the command (the subcommand's win)."""
    default: Any = None if top else argparse.SUPPRESS
    p.add_argument("--kubeconfig", default=default, help="kubeconfig file (default: KUBECONFIG)")
    p.add_argument("--context", default=default, help="kubeconfig context to use")
    p.add_argument("-n", "--namespace", default=default, help="namespace (default: the context's)")


def _cmd(sub: Any, name: str, help: str, func: str, **kwargs: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help, **kwargs)
    _globals(p, top=False)
    p.set_defaults(func=_lazy("sluice.cli.commands", func))
    return p


def parser() -> argparse.ArgumentParser:
    top = Parser(
        prog="kubectl sluice",
        description="Progressive canary delivery: run the operator, watch and steer Rollouts.",
        epilog="Exit codes: 0 ok, 1 Degraded / invalid file, 2 still progressing, "
        "3 usage or cluster error (unreachable, not found, forbidden).",
    )
    top.add_argument("--version", action="version", version=f"sluice {__version__}")
    _globals(top, top=True)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    get = _cmd(sub, "get", "live view of a Rollout: steps, weight, pods, analysis, events", "get")
    get.add_argument("kind", choices=("rollout", "rollouts", "ro"), help="rollout")
    get.add_argument("name")
    get.add_argument("-w", "--watch", action="store_true", help="keep the view up to date")
    lst = _cmd(sub, "list", "the Rollouts of a namespace (or all, -A)", "list_rollouts")
    lst.add_argument("kind", nargs="?", choices=("rollouts", "rollout", "ro"), default="rollouts")
    lst.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    status = _cmd(
        sub,
        "status",
        "phase and step; exits 0 Healthy, 1 Degraded, 2 still progressing (a CI gate)",
        "status",
    )
    status.add_argument("name")
    status.add_argument("-w", "--watch", action="store_true", help="wait for Healthy or Degraded")
    status.add_argument("--timeout", default="10m", help="with --watch: give up after (10m)")

    for command, action in ACTIONS.items():
        act = _cmd(sub, command, f"{command} a Rollout (sets sluice.dev/action={action})", "act")
        act.add_argument("name")
        act.set_defaults(action=action)
        if command == "promote":
            act.add_argument("--full", action="store_true", help="skip the remaining steps")

    undo = _cmd(
        sub,
        "undo",
        "set the template back to the previous stable revision",
        "undo",
        epilog="Under GitOps (Argo CD, Flux) the next sync puts the template in Git back: "
        "revert the commit instead, or suspend the sync first.",
    )
    undo.add_argument("name")
    undo.add_argument("--to-revision", metavar="REVISION", help="a revision a slot still holds")
    restart = _cmd(sub, "restart", "re-roll the pods (a new canary of the same version)", "restart")
    restart.add_argument("name")
    setp = _cmd(sub, "set", "change the template", "set_image")
    setp.add_argument("what", choices=("image",))
    setp.add_argument("name")
    setp.add_argument("images", nargs="+", metavar="CONTAINER=IMAGE")
    lint = _cmd(sub, "lint", "check Rollout files offline with the operator's validation", "lint")
    lint.add_argument("files", nargs="+", metavar="FILE")
    dash = _cmd(sub, "dashboard", "a read-only web view on 127.0.0.1, updated live", "dashboard")
    dash.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    dash.add_argument("--port", type=int, default=3100, help="port on 127.0.0.1 (3100; 0: any)")
    dash.set_defaults(func=_lazy("sluice.cli.dashboard", "dashboard"))
    version = _cmd(sub, "version", "the plugin's version", "version")
    version.add_argument("--short", action="store_true")

    run = sub.add_parser("run", help="run the operator against the current kubeconfig")
    run.add_argument(
        "-n",
        "--namespace",
        dest="watch_namespaces",
        action="append",
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    run.add_argument("--kubeconfig", default=argparse.SUPPRESS)
    run.add_argument("--host", default="0.0.0.0", help="address for /healthz, /readyz, /metrics")
    run.add_argument("--port", type=int, default=8080, help="port for /healthz, /readyz, /metrics")
    run.add_argument(
        "--alerts-port",
        type=int,
        default=0,
        help="serve the alert webhook POST /v1/alerts on its own port (so a NetworkPolicy "
        "can admit Alertmanager there only); default: on --port",
    )
    run.add_argument("--workers", type=int, default=8, help="Rollouts reconciled at once")
    run.add_argument("--api-limit", type=int, default=8, help="Kubernetes API calls in flight")
    run.add_argument(
        "--webhook-interval",
        type=float,
        default=10.0,
        help="seconds between two calls of a webhook gate that did not allow",
    )
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
    run.add_argument(
        "--track-secrets",
        action="store_true",
        help="trackConfig copies Secrets too (needs list, watch, create, patch and delete on "
        "Secrets); without it only ConfigMaps are tracked",
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

    sub.add_parser("simulate", help="run a Rollout through the engine without a cluster")
    sub.add_parser("replay", help="a Rollout's analysis against what Prometheus recorded")
    crds = sub.add_parser("crds", help="print the CustomResourceDefinitions")
    crds.set_defaults(func=_crds)
    return top


def _heavy(argv: list[str]) -> argparse.ArgumentParser | None:
    """simulate and replay: their own parsers, loaded only when they are asked for."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in HEAVY:
        return None
    import importlib

    top = Parser(prog="sluice")
    top.add_argument("--kubeconfig", default=None)
    sub = top.add_subparsers(dest="command", required=True, parser_class=Parser)
    try:
        module = importlib.import_module(f"sluice.cli.{command}")
    except ImportError as exc:  # rich: the operator image does not carry it
        stub = sub.add_parser(command)
        stub.add_argument("rest", nargs=argparse.REMAINDER)
        stub.set_defaults(func=_missing_extra, cmd=command, extra="cli", missing=exc.name or exc)
        return top
    module.add_parser(sub)
    return top


EXTRA_HINT = "sluice {cmd} needs the [{extra}] extra: pip install 'sluice[{extra}]' ({missing})"


def _missing_extra(args: argparse.Namespace) -> int:
    sys.stderr.write(EXTRA_HINT.format(cmd=args.cmd, extra=args.extra, missing=args.missing) + "\n")
    return 3


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = (_heavy(argv) or parser()).parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from sluice.cli.errors import describe

        message = describe(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
