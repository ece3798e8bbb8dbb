"""The kubectl plugin without a cluster: fast help, offline lint, undo's template, the view."""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from sluice.cli.main import main
from sluice.cli.undo import restore
from sluice.cli.view import Snapshot, render
from sluice.engine.hashing import template_hash

ROOT = Path(__file__).resolve().parents[2]
GOOD = ROOT / "examples" / "rollout-basic.yaml"


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from sluice.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'kubernetes', 'rich', 'pydantic', 'yaml', 'kopf', 'structlog', 'aiohttp'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "get" in out.stdout and "undo" in out.stdout and "lint" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_lint_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", str(GOOD)]) == 0
    assert capsys.readouterr().out == f"{GOOD}: Rollout web: ok\n"


def test_lint_names_each_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = GOOD.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        text.replace("setWeight: 50", "setWeight: 10").replace(
            "app: web\n  template", "app: x\n  template"
        )
        + "---\n"
        + text.replace("name: web", "name: api").replace("replicas: 10", "replicas: -1")
    )
    assert main(["lint", str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert out[0].startswith(f"{bad}: Rollout web: ")
    assert "spec.strategy.canary.steps[2]" in out[0]  # weights that go down
    assert out[1].startswith(f"{bad}: Rollout api: spec.replicas")


def test_lint_of_a_broken_or_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: Rollout\nspec: [\n")
    empty = tmp_path / "empty.yaml"
    empty.write_text("kind: ConfigMap\n")
    assert main(["lint", str(broken), str(empty)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{broken}: ") and "while parsing" in out[0]
    assert out[1] == f"{empty}: no Rollout or AnalysisTemplate in it"


def test_usage_errors_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["status"])
    assert info.value.code == 3
    assert "the following arguments are required: name" in capsys.readouterr().err


TEMPLATE = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {
        "containers": [
            {
                "name": "web",
                "image": "nginx:1.27",
                "imagePullPolicy": "IfNotPresent",  # the user wrote this default: it stays
                "ports": [{"name": "http", "containerPort": 80}],
                "readinessProbe": {"httpGet": {"path": "/", "port": 80}},
            }
        ]
    },
}


def defaulted(template: dict[str, object]) -> dict[str, object]:
    """What the Deployment API hands back: Sluice's labels and the server's defaults."""
    out = json.loads(json.dumps(template))
    out["metadata"]["labels"].update(
        {"sluice.dev/rollout": "web", "sluice.dev/slot": "a", "sluice.dev/revision": "x"}
    )
    out["metadata"]["creationTimestamp"] = None
    spec = out["spec"]
    spec.update(restartPolicy="Always", terminationGracePeriodSeconds=30, dnsPolicy="ClusterFirst")
    spec.update(securityContext={}, schedulerName="default-scheduler")
    container = spec["containers"][0]
    container.update(terminationMessagePath="/dev/termination-log", resources={})
    container["terminationMessagePolicy"] = "File"
    container["ports"][0]["protocol"] = "TCP"
    container["readinessProbe"].update(
        timeoutSeconds=1, periodSeconds=10, successThreshold=1, failureThreshold=3
    )
    return out


def test_undo_restores_the_template_hash_for_hash() -> None:
    revision = template_hash(TEMPLATE)
    restored = restore(defaulted(TEMPLATE), revision)
    assert restored == TEMPLATE
    written = copy.deepcopy(TEMPLATE)
    written["spec"]["dnsPolicy"] = "ClusterFirst"  # type: ignore[index]
    assert restore(defaulted(written), template_hash(written)) == written


def snapshot(weight: int, step: int) -> Snapshot:
    rollout = {
        "metadata": {"name": "web", "namespace": "team", "generation": 2},
        "spec": {
            "strategy": {
                "canary": {
                    "steps": [{"setWeight": 20}, {"pause": {"duration": "5s"}}, {"setWeight": 50}],
                    "trafficRouting": {"istio": {"virtualService": {"name": "web-vs"}}},
                }
            }
        },
        "status": {
            "phase": "Progressing",
            "currentStepIndex": step,
            "canaryWeight": weight,
            "stableRevision": "aaaa",
            "canaryRevision": "bbbb",
            "stable": {"slot": "a", "revision": "aaaa", "replicas": 8, "readyReplicas": 8},
            "canary": {"slot": "b", "revision": "bbbb", "replicas": 2, "readyReplicas": 1},
        },
    }
    run = {
        "metadata": {"name": "web-bbbb-1-step-2", "creationTimestamp": "2026-12-01T10:00:00Z"},
        "spec": {
            "kind": "step",
            "metrics": [{"name": "error-rate", "errorRate": {"max": 0.02}}],
        },
        "status": {
            "phase": "Running",
            "metricResults": [
                {
                    "name": "error-rate",
                    "phase": "Running",
                    "successful": 3,
                    "failed": 1,
                    "measurements": [{"value": "0.031", "message": "0.031 > max 0.02"}],
                }
            ],
        },
    }
    event = {"lastTimestamp": "2026-12-01T10:00:05Z", "type": "Normal", "reason": "StepReached"}
    return Snapshot(rollout, [run], [{**event, "message": "step 1/3: pause 5s"}])


def text_of(snap: Snapshot) -> str:
    console = Console(file=io.StringIO(), width=120, record=True)
    console.print(render(snap))
    return console.export_text()


def test_view_marks_the_step_and_draws_the_weight() -> None:
    text = text_of(snapshot(20, 1))
    assert "Rollout team/web  Progressing" in text
    assert "█" * 8 + "░" * 32 + " canary 20% / stable 80%" in text
    lines = text.splitlines()
    assert any(line.split() == ["✓", "0", "setWeight", "20"] for line in lines)
    assert any(line.split() == ["▶", "1", "pause", "5s"] for line in lines)
    assert any(line.split() == ["2", "setWeight", "50"] for line in lines)
    assert any(line.split() == ["canary", "b", "bbbb", "2", "1"] for line in lines)
    assert "Traffic  VirtualService/web-vs" in text
    row = next(line for line in lines if line.split()[:1] == ["error-rate"])
    assert row.split()[:8] == [
        "error-rate",
        "Running",
        "0.031",
        "error",
        "rate",
        "<=",
        "0.02",
        "3/1/0/0",
    ]
    assert "0.031 > max 0.02" in row
    assert "10:00:05  Normal  StepReached  step 1/3: pause 5s" in text
    assert "█" * 20 + "░" * 20 in text_of(snapshot(50, 2))


class FakeClient:
    """Answers `rollout()` from a script: bodies, or exceptions to raise."""

    script: list[object] = []

    def __init__(self, args: object) -> None:
        self.namespace = "team"

    def rollout(self, name: str) -> dict[str, object]:
        item = FakeClient.script.pop(0)
        if isinstance(item, Exception):
            raise item
        assert isinstance(item, dict)
        return item


def body(phase: str, generation: int = 2, observed: int = 2, canary: str = "") -> dict[str, object]:
    return {
        "metadata": {"name": "web", "generation": generation},
        "status": {"phase": phase, "observedGeneration": observed, "canaryRevision": canary,
                   "canaryWeight": 20 if canary else 0},
    }  # fmt: skip


def test_status_watch_waits_out_a_passing_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sluice.cli import commands

    monkeypatch.setattr(commands, "Client", FakeClient)
    monkeypatch.setattr(commands, "POLL", 0.0)
    FakeClient.script = [
        body("Healthy", generation=3, observed=2),  # the operator has not seen the change
        body("Paused", generation=3, observed=3, canary="bbbb"),
        ConnectionRefusedError(111, "Connection refused"),
        body("Healthy", generation=3, observed=3),
    ]
    assert main(["status", "web", "--watch", "--timeout", "1m"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "web: Healthy weight 0%",
        "web: Paused weight 20%",
        "web: Healthy weight 0%",
    ]
    assert "error: cannot reach the Kubernetes API server" in err
    FakeClient.script = [body("Degraded")]
    assert main(["status", "web"]) == 1
    FakeClient.script = [body("Paused", canary="bbbb")]
    assert main(["status", "web"]) == 2


def test_dashboard_answers_only_to_its_own_address() -> None:
    import argparse
    import threading
    import urllib.error
    import urllib.request
    from http.server import ThreadingHTTPServer

    from sluice.cli import dashboard

    class NoCluster:
        def __init__(self, args: object) -> None:
            self.namespace = "team"

        def rollouts(self, all_namespaces: bool = False) -> list[dict[str, object]]:
            return [{"metadata": {"namespace": "team", "name": "web"}, "status": {}}]

    original = dashboard.Client
    dashboard.Client = NoCluster  # type: ignore[assignment,misc]
    try:
        server = ThreadingHTTPServer(("127.0.0.1", 0), dashboard.handler(argparse.Namespace()))
    finally:
        dashboard.Client = original  # type: ignore[misc]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/rollouts") as answer:
            assert json.loads(answer.read())[0]["name"] == "web"
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/").read().decode()
        assert "<title>Sluice</title>" in page and "innerHTML" not in page
        rebound = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/rollouts", headers={"Host": f"evil.test:{port}"}
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(rebound)
        assert info.value.code == 403
    finally:
        server.shutdown()


class UndoClient:
    """Two slots: a holds revision r1 (stable), b holds r2 (the previous, scaled down)."""

    patches: list[object] = []

    def __init__(self, args: object) -> None:
        self.namespace = "team"

    def rollout(self, name: str) -> dict[str, object]:
        return {"metadata": {"name": name}, "status": {"stableSlot": "a", "stableRevision": "r1"}}

    def deployment(self, name: str) -> dict[str, object] | None:
        if name == "web-b":
            template, revision = defaulted(TEMPLATE), template_hash(TEMPLATE)
        else:
            newer = copy.deepcopy(TEMPLATE)
            newer["spec"]["containers"][0]["image"] = "nginx:1.28"  # type: ignore[index]
            template, revision = defaulted(newer), "r1"
        return {"metadata": {"labels": {"sluice.dev/revision": revision}},
                "spec": {"template": template}}  # fmt: skip

    def patch(self, name: str, patch: object, kind: str = "merge") -> dict[str, object]:
        UndoClient.patches.append((kind, patch))
        return {}


def test_undo_picks_the_slot_and_names_a_missing_revision(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sluice.cli import commands

    monkeypatch.setattr(commands, "Client", UndoClient)
    revision = template_hash(TEMPLATE)
    assert main(["undo", "web"]) == 0  # no canary: the previous slot (b)
    kind, ops = UndoClient.patches[-1]  # type: ignore[misc]
    assert kind == "json" and ops == [
        {"op": "replace", "path": "/spec/template", "value": TEMPLATE}
    ]
    assert (
        capsys.readouterr().out == f"rollout team/web: template set back to revision {revision}\n"
    )
    assert main(["undo", "web", "--to-revision", "r1"]) == 0  # the stable slot (a)
    image = UndoClient.patches[-1][1][0]["value"]["spec"]["containers"][0]["image"]  # type: ignore[index]
    assert image == "nginx:1.28"
    assert main(["undo", "web", "--to-revision", "nope"]) == 3
    assert capsys.readouterr().err == "error: no slot of rollout web holds revision nope\n"


def test_view_names_the_blue_green_services_and_lint_accepts_the_example(
    capsys: pytest.CaptureFixture[str],
) -> None:
    snap = snapshot(0, 0)
    snap.rollout["spec"]["strategy"] = {
        "blueGreen": {"activeService": "web-active", "previewService": "web-preview"}
    }
    text = text_of(snap)
    assert "Traffic  blue-green: active Service/web-active, preview Service/web-preview" in text
    example = GOOD.parent / "rollout-bluegreen.yaml"
    assert main(["lint", str(example)]) == 0
    assert capsys.readouterr().out == f"{example}: Rollout web: ok\n"


def test_the_live_view_states_a_judge_metric_as_its_test_not_a_threshold() -> None:
    from sluice.cli.view import threshold

    metric = {"name": "errors-vs-stable", "judge": {"errors": {}, "tolerance": 0.1}}
    assert threshold(metric) == "judge errors vs stable: increase beyond 0.1, alpha 0.05"
    latency = {"judge": {"latency": {}, "baseline": "baseline", "alpha": 0.01}}
    assert threshold(latency) == "judge latency vs baseline: increase beyond 0, alpha 0.01"


class FakeApi(ThreadingHTTPServer):
    """A Kubernetes API server on 127.0.0.1 that records requests and gives set answers."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FakeHandler)
        self.requests: list[tuple[str, str, Any]] = []
        self.status = 200  # every answer's status; 401/403 answer with a Status body
        self.rollouts: list[dict[str, Any]] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class FakeHandler(BaseHTTPRequestHandler):
    server: FakeApi

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.server.requests.append((self.command, self.path, json.loads(raw) if raw else None))
        if self.server.status != 200:
            reason = {401: "Unauthorized", 403: "Forbidden"}[self.server.status]
            message = (
                'rollouts.sluice.dev "web" is forbidden: User "dev" cannot get resource'
                if self.server.status == 403
                else "Unauthorized"
            )
            body: dict[str, Any] = {"kind": "Status", "status": "Failure", "reason": reason,
                                    "message": message, "code": self.server.status}  # fmt: skip
        elif self.path.split("?")[0].endswith("/rollouts"):
            body = {"kind": "RolloutList", "items": self.server.rollouts}
        else:
            body = next(
                r for r in self.server.rollouts if self.path.split("?")[0].endswith(
                    f"/namespaces/{r['metadata']['namespace']}/rollouts/{r['metadata']['name']}"
                )
            )  # fmt: skip
        data = json.dumps(body).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PATCH = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[FakeApi, Path]]:
    """The fake API server, and a kubeconfig whose current context is unreachable and whose
    context "b" reaches it with namespace team-b."""
    server = FakeApi()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "a",
                "clusters": [
                    {"name": "a", "cluster": {"server": "http://127.0.0.1:1"}},
                    {"name": "b", "cluster": {"server": server.url}},
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "a", "context": {"cluster": "a", "user": "u", "namespace": "x"}},
                    {"name": "b", "context": {"cluster": "b", "user": "u", "namespace": "team-b"}},
                ],
            }
        )
    )
    yield server, kubeconfig
    server.shutdown()
    server.server_close()


def rollout(namespace: str, name: str, phase: str = "Healthy") -> dict[str, Any]:
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"replicas": 2, "strategy": {"canary": {"steps": [{"setWeight": 50}]}}},
        "status": {"phase": phase, "currentStepIndex": 1, "canaryWeight": 0,
                   "stableRevision": "aaaa", "readyReplicas": 2},
    }  # fmt: skip


def test_context_after_the_command_picks_the_cluster_and_its_namespace(
    api: tuple[FakeApi, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    server, kubeconfig = api
    server.rollouts = [rollout("team-b", "web")]
    assert main(["list", "--kubeconfig", str(kubeconfig), "--context", "b"]) == 0
    assert server.requests == [
        ("GET", "/apis/sluice.dev/v1alpha1/namespaces/team-b/rollouts", None)
    ]
    assert capsys.readouterr().out.split("\n")[1].split()[:4] == ["web", "Healthy", "1/1", "0%"]
    # before the command too; and -n after it wins over the context's namespace
    assert main(["--context", "b", "list", "--kubeconfig", str(kubeconfig), "-n", "other"]) == 0
    assert server.requests[-1][1] == "/apis/sluice.dev/v1alpha1/namespaces/other/rollouts"


def test_list_all_namespaces_names_each_namespace(
    api: tuple[FakeApi, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    server, kubeconfig = api
    server.rollouts = [rollout("team-b", "web"), rollout("team-a", "api", "Degraded")]
    assert main(["list", "-A", "--kubeconfig", str(kubeconfig), "--context", "b"]) == 0
    assert server.requests[-1][1] == "/apis/sluice.dev/v1alpha1/rollouts"
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["NAMESPACE", "NAME", "PHASE"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["team-a", "api", "Degraded"],  # sorted by namespace, then name
        ["team-b", "web", "Healthy"],
    ]


@pytest.mark.parametrize(
    ("argv", "action"),
    [
        (["promote", "web", "--full"], "promote-full"),
        (["promote", "web"], "promote"),
        (["retry", "web"], "retry"),
        (["pause", "web"], "pause"),
        (["resume", "web"], "resume"),
    ],
)
def test_actions_set_the_annotation_the_operator_reads(
    api: tuple[FakeApi, Path], capsys: pytest.CaptureFixture[str], argv: list[str], action: str
) -> None:
    server, kubeconfig = api
    server.rollouts = [rollout("team-b", "web")]
    assert main([*argv, "--context", "b", "--kubeconfig", str(kubeconfig)]) == 0
    method, path, patch = server.requests[-1]
    assert (method, path) == ("PATCH", "/apis/sluice.dev/v1alpha1/namespaces/team-b/rollouts/web")
    assert patch == {"metadata": {"annotations": {"sluice.dev/action": action}}}
    assert capsys.readouterr().out == f"rollout team-b/web: {action} requested\n"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (403, 'error: forbidden: rollouts.sluice.dev "web" is forbidden: '
              'User "dev" cannot get resource\n'),
        (401, "error: unauthorized (check the kubeconfig's credentials): Unauthorized\n"),
    ],
)  # fmt: skip
def test_forbidden_and_unauthorized_are_one_line(
    api: tuple[FakeApi, Path], status: int, expected: str
) -> None:
    server, kubeconfig = api
    server.status = status
    for argv in (["get", "rollout", "web"], ["list"], ["abort", "web"]):
        proc = subprocess.run(
            [sys.executable, "-m", "sluice.cli.main", *argv, "--context", "b",
             "--kubeconfig", str(kubeconfig)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert (proc.returncode, proc.stdout, proc.stderr) == (3, "", expected), argv


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from sluice import __version__

    assert main(["version"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "plugin": "kubectl-sluice",
        "version": __version__,
    }
    assert main(["version", "--short"]) == 0
    assert capsys.readouterr().out == f"{__version__}\n"
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == f"sluice {__version__}\n"


TEMPLATE_FILE = ROOT / "examples" / "analysis" / "http-health-template.yaml"


def test_lint_checks_analysis_templates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", str(TEMPLATE_FILE)]) == 0
    assert capsys.readouterr().out == f"{TEMPLATE_FILE}: AnalysisTemplate http-health: ok\n"
    text = TEMPLATE_FILE.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        text.replace("errorRate: {max: 0.05", "errorRate: {max: lots")
        + "---\n"
        + text.replace("kind: AnalysisTemplate", "kind: ClusterAnalysisTemplate")
    )
    assert main(["lint", str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2, out
    assert out[0].startswith(f"{bad}: AnalysisTemplate http-health: spec.metrics.0.errorRate.max")
    assert out[1] == f"{bad}: ClusterAnalysisTemplate http-health: ok"
