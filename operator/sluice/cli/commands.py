"""The plugin's commands. Each returns the exit code; errors are raised (main says them)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from sluice.cli.errors import CliError
from sluice.cli.kube import Client

Body = dict[str, Any]
ACTION = "sluice.dev/action"
RESTARTED_AT = "sluice.dev/restartedAt"
POLL = 1.0  # seconds between reads while watching


def get(args: argparse.Namespace) -> int:
    from sluice.cli.view import gather, render

    client = Client(args)
    if not args.watch:
        _console().print(render(gather(client, args.name)))
        return 0
    return _watch(client, args.name)


def _console() -> Any:
    from rich.console import Console

    return Console(soft_wrap=False)


def _watch(client: Client, name: str) -> int:
    """On a terminal, one view redrawn in place; in a pipe, a new frame at each change.
    A passing API error is shown and the watch goes on; a missing Rollout ends it."""
    from rich.live import Live
    from rich.text import Text

    from sluice.cli.view import gather, render

    console = _console()
    last = ""
    view = render(gather(client, name))
    if console.is_terminal:
        with Live(view, console=console, auto_refresh=False) as live:
            while True:
                time.sleep(POLL)
                try:
                    view = render(gather(client, name))
                except Exception as exc:
                    why = _passing(exc)
                    live.update(Text(f"{why} (retrying)", style="red"), refresh=True)
                    continue
                live.update(view, refresh=True)
    while True:
        frame = _text(view, console.width)
        if frame != last:
            console.rule(datetime.now(UTC).strftime("%H:%M:%S"))
            console.print(view)
            sys.stdout.flush()
            last = frame
        time.sleep(POLL)
        try:
            view = render(gather(client, name))
        except Exception as exc:
            view = Text(f"{_passing(exc)} (retrying)")


def _passing(exc: Exception) -> str:
    """The message of an error worth waiting out; anything else is raised again."""
    from sluice.cli.errors import describe

    message = describe(exc)
    if message is None or isinstance(exc, CliError):
        raise exc
    return f"error: {message}"


def _text(renderable: Any, width: int) -> str:
    import io

    from rich.console import Console

    out = Console(file=io.StringIO(), width=width, record=True)
    out.print(renderable)
    return str(out.export_text())


def list_rollouts(args: argparse.Namespace) -> int:
    from rich.table import Table

    client = Client(args)
    items = client.rollouts(args.all_namespaces)
    table = Table(box=None, show_edge=False)
    columns = ["NAMESPACE"] if args.all_namespaces else []
    columns += ["NAME", "PHASE", "STEP", "WEIGHT", "STABLE", "CANARY", "READY", "AGE"]
    for column in columns:
        table.add_column(column)
    for body in sorted(items, key=lambda b: (b["metadata"]["namespace"], b["metadata"]["name"])):
        meta, st = body["metadata"], body.get("status") or {}
        steps = len(
            ((body.get("spec") or {}).get("strategy") or {}).get("canary", {}).get("steps") or []
        )
        step = st.get("currentStepIndex")
        row = [meta["namespace"]] if args.all_namespaces else []
        row += [
            meta["name"],
            st.get("phase") or "",
            "-" if step is None else f"{step}/{steps}",
            f"{st.get('canaryWeight', 0)}%",
            st.get("stableRevision", ""),
            st.get("canaryRevision", ""),
            f"{st.get('readyReplicas', 0)}/{(body.get('spec') or {}).get('replicas', '')}",
            _age(meta.get("creationTimestamp")),
        ]
        table.add_row(*row)
    if not items:
        where = "any namespace" if args.all_namespaces else f"namespace {client.namespace}"
        print(f"No Rollouts in {where}.")
        return 0
    _console().print(table)
    return 0


def _age(stamp: str | None) -> str:
    if not stamp:
        return ""
    seconds = (
        datetime.now(UTC) - datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    ).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def verdict(body: Body) -> int | None:
    """0 Healthy (nothing in flight), 1 Degraded, None still progressing."""
    meta, st = body["metadata"], body.get("status") or {}
    if int(st.get("observedGeneration") or -1) < int(meta.get("generation") or 0):
        return None  # the operator has not seen the latest spec yet
    if st.get("phase") == "Degraded":
        return 1
    if st.get("phase") == "Healthy" and not st.get("canaryRevision"):
        return 0
    return None


def status(args: argparse.Namespace) -> int:
    from sluice.api.duration import parse_duration

    client = Client(args)
    try:
        deadline = time.monotonic() + parse_duration(args.timeout)
    except ValueError as exc:
        raise CliError(f"--timeout: {exc}") from None
    body = client.rollout(args.name)
    shown = ""
    while True:
        line = _status_line(body)
        if line != shown:
            print(line, flush=True)
            shown = line
        code = verdict(body)
        if code is not None:
            return code
        if not args.watch or time.monotonic() >= deadline:
            if args.watch:
                print(f"still progressing after {args.timeout}", file=sys.stderr)
            return 2
        time.sleep(POLL)
        try:
            body = client.rollout(args.name)
        except Exception as exc:  # a passing API error: wait it out until the timeout
            print(_passing(exc), file=sys.stderr, flush=True)


def _status_line(body: Body) -> str:
    st = body.get("status") or {}
    step = st.get("currentStepIndex")
    where = "" if step is None else f" step {step}"
    text = f"{body['metadata']['name']}: {st.get('phase') or 'Unknown'}{where}"
    text += f" weight {st.get('canaryWeight', 0)}%"
    return text + (f" - {st['message']}" if st.get("message") else "")


def act(args: argparse.Namespace) -> int:
    action = "promote-full" if getattr(args, "full", False) else args.action
    client = Client(args)
    client.patch(args.name, {"metadata": {"annotations": {ACTION: action}}})
    print(f"rollout {client.namespace}/{args.name}: {action} requested")
    return 0


def restart(args: argparse.Namespace) -> int:
    client = Client(args)
    _template_of_its_own(
        client.rollout(args.name), args.name, "use kubectl rollout restart deployment/{deployment}"
    )
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
    client.patch(args.name, patch)
    print(f"rollout {client.namespace}/{args.name}: restarted at {stamp} (a new canary)")
    return 0


def _template_of_its_own(body: dict[str, Any], name: str, instead: str) -> None:
    """A workloadRef Rollout's template is the user's Deployment's: change it there."""
    ref = (body.get("spec") or {}).get("workloadRef")
    if isinstance(ref, dict):
        target = ref.get("name")
        raise CliError(
            f"rollout {name} takes its pod template from Deployment {target} "
            f"(spec.workloadRef): {instead.format(deployment=target)}"
        )


def set_image(args: argparse.Namespace) -> int:
    client = Client(args)
    body = client.rollout(args.name)
    _template_of_its_own(
        body, args.name, "use kubectl set image deployment/{deployment} CONTAINER=IMAGE"
    )
    containers = ((body.get("spec") or {}).get("template") or {}).get("spec", {}).get(
        "containers"
    ) or []
    names = [c.get("name") for c in containers]
    ops = []
    for item in args.images:
        container, sep, image = item.partition("=")
        if not sep or not image:
            raise CliError(f"{item!r}: use CONTAINER=IMAGE")
        if container not in names:
            raise CliError(f"no container {container!r} in rollout {args.name} (has {names})")
        path = f"/spec/template/spec/containers/{names.index(container)}/image"
        ops.append({"op": "replace", "path": path, "value": image})
    client.patch(args.name, ops, kind="json")
    print(f"rollout {client.namespace}/{args.name}: image updated ({', '.join(args.images)})")
    return 0


def undo(args: argparse.Namespace) -> int:
    from sluice.cli.undo import restore

    client = Client(args)
    body = client.rollout(args.name)
    _template_of_its_own(body, args.name, "set Deployment {deployment}'s template back there")
    st = body.get("status") or {}
    stable_slot = st.get("stableSlot") or "a"
    other = "b" if stable_slot == "a" else "a"
    slots = (
        [stable_slot, other]
        if args.to_revision
        else [stable_slot if st.get("canaryRevision") else other]
    )
    for slot in slots:
        deployment = client.deployment(f"{args.name}-{slot}")
        if deployment is None:
            continue
        revision = (deployment["metadata"].get("labels") or {}).get("sluice.dev/revision", "")
        if args.to_revision and revision != args.to_revision:
            continue
        template = restore(deployment["spec"]["template"], revision)
        client.patch(
            args.name, [{"op": "replace", "path": "/spec/template", "value": template}], kind="json"
        )
        print(f"rollout {client.namespace}/{args.name}: template set back to revision {revision}")
        return 0
    if args.to_revision:
        raise CliError(f"no slot of rollout {args.name} holds revision {args.to_revision}")
    raise CliError(f"rollout {args.name} has no previous revision to go back to")


def lint(args: argparse.Namespace) -> int:
    import yaml
    from pydantic import ValidationError

    from sluice.api.analysis import AnalysisTemplate
    from sluice.engine.validate import InvalidSpec, parse_spec

    bad = 0
    for path in args.files:
        try:
            with open(path) as handle:
                docs = [d for d in yaml.safe_load_all(handle) if d]
        except (OSError, yaml.YAMLError) as exc:
            print(f"{path}: {str(exc).splitlines()[0] if str(exc) else exc}")
            bad += 1
            continue
        checked = 0
        for doc in docs:
            if not isinstance(doc, dict):
                continue
            kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name", "?")
            try:
                if kind == "Rollout":
                    parse_spec(doc.get("spec") or {}, name)
                elif kind in ("AnalysisTemplate", "ClusterAnalysisTemplate"):
                    AnalysisTemplate.model_validate(doc)
                else:
                    continue
            except InvalidSpec as exc:
                print(f"{path}: {kind} {name}: {exc}")
                bad += 1
            except ValidationError as exc:
                problems = "; ".join(
                    ".".join(str(p) for p in e["loc"]) + f": {e['msg']}" for e in exc.errors()[:10]
                )
                print(f"{path}: {kind} {name}: {problems}")
                bad += 1
            else:
                print(f"{path}: {kind} {name}: ok")
            checked += 1
        if not checked:
            print(f"{path}: no Rollout or AnalysisTemplate in it")
            bad += 1
    return 1 if bad else 0


def version(args: argparse.Namespace) -> int:
    from sluice import __version__

    if args.short:
        print(__version__)
    else:
        print(json.dumps({"plugin": "kubectl-sluice", "version": __version__}))
    return 0
