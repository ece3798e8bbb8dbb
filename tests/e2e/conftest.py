"""End-to-end fixtures: a real API server (SLUICE_E2E_KUBECONFIG), kubectl, a real operator.

The cluster comes from the environment so that the same tests run on the local
control plane (../shared/k8s), on kind, or on any test cluster. Without it the
tests skip with the reason, unless SLUICE_E2E_REQUIRED=1 (CI), where they fail.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import api_calls

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
GROUP, VERSION = "sluice.dev", "v1alpha1"


def _kubeconfig() -> str:
    path = os.environ.get("SLUICE_E2E_KUBECONFIG")
    if not path:
        why = "SLUICE_E2E_KUBECONFIG is not set (point it at a test cluster's kubeconfig)"
        if os.environ.get("SLUICE_E2E_REQUIRED") == "1":
            pytest.fail(f"e2e tests are mandatory here but {why}", pytrace=False)
        pytest.skip(why)
    return path


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0, every: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last: {last!r}", pytrace=False)


class Cluster:
    """kubectl and small reads in one namespace."""

    def __init__(self, kubeconfig: str, namespace: str) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> str:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig}
        proc = subprocess.run(
            ["kubectl", "-n", self.namespace, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout + (proc.stderr if proc.returncode else "")

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        out = subprocess.run(
            ["kubectl", "-n", self.namespace, "get", kind, name, "-o", "json"],
            capture_output=True,
            text=True,
            env={**os.environ, "KUBECONFIG": self.kubeconfig},
            timeout=60,
        )
        return json.loads(out.stdout) if out.returncode == 0 else None

    def rollout(self, name: str = "web") -> dict[str, Any]:
        body = self.get("rollouts.sluice.dev", name)
        assert body is not None, f"rollout {name} not found"
        return body

    def status(self, name: str = "web") -> dict[str, Any]:
        return self.rollout(name).get("status") or {}

    def condition(self, type_: str, name: str = "web") -> dict[str, Any]:
        for cond in self.status(name).get("conditions", []):
            if cond["type"] == type_:
                return dict(cond)
        return {}

    def replicas(self, deployment: str) -> tuple[int, int]:
        """(spec.replicas, status.readyReplicas) of a Deployment; (-1, -1) if absent."""
        body = self.get("deployment", deployment)
        if body is None:
            return (-1, -1)
        return body["spec"].get("replicas", 0), (body.get("status") or {}).get("readyReplicas", 0)

    def selector(self, service: str) -> dict[str, str]:
        body = self.get("service", service)
        assert body is not None, f"service {service} not found"
        return dict(body["spec"].get("selector") or {})

    def events(self, name: str = "web") -> list[dict[str, Any]]:
        out = self.kubectl(
            "get",
            "events",
            "-o",
            "json",
            "--field-selector",
            f"involvedObject.kind=Rollout,involvedObject.name={name}",
        )
        items = json.loads(out)["items"]
        return sorted(items, key=lambda e: (e.get("firstTimestamp") or "", e["metadata"]["name"]))

    def reasons(self, name: str = "web") -> list[str]:
        return [e["reason"] for e in self.events(name)]

    def apply_example(self, file: str) -> None:
        self.kubectl("apply", "-f", str(EXAMPLES / file))

    def set_image(self, image: str, name: str = "web") -> None:
        patch = [
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}
        ]
        self.kubectl("patch", "rollout", name, "--type", "json", "-p", json.dumps(patch))

    def action(self, action: str, name: str = "web") -> None:
        self.kubectl("annotate", "--overwrite", "rollout", name, f"sluice.dev/action={action}")


class Operator:
    """`sluice run` as a child process watching one namespace."""

    def __init__(self, kubeconfig: str, namespace: str, log: Path) -> None:
        self.kubeconfig, self.namespace, self.log = kubeconfig, namespace, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.args: list[str] = []  # extra `sluice run` flags, set before start()
        self.cluster_wide = False  # True: no --namespace (pair it with --instance)
        self.env: dict[str, str] = {}  # extra environment (e.g. POD_NAME), set before start()

    def start(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, **self.env}
        handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sluice",
                "run",
                *([] if self.cluster_wide else ["--namespace", self.namespace]),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-json",
                *self.args,
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
        wait_for("the operator's /readyz", self._ready, timeout=30)

    def _ready(self) -> bool:
        import urllib.request

        assert self.proc is not None and self.proc.poll() is None, "operator exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
            return str(r.read().decode())

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye; the state must be in the cluster."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            api_calls.record(self)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def install_router_crds(kubeconfig: str) -> None:
    """The real Istio, Gateway API and SMI CRDs (../shared/crds), installed once.

    `create --validate=false`: v1.20's kubectl refuses their CEL rules, which the server
    drops. Already installed (another run) is fine.
    """
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    for folder in ROUTER_CRDS:
        path = SHARED / "crds" / folder
        if not path.is_dir():
            pytest.fail(f"router CRDs not found in {path} (set SLUICE_SHARED)", pytrace=False)
        proc = subprocess.run(
            ["kubectl", "create", "--validate=false", "-f", str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0 and "AlreadyExists" not in proc.stderr:
            pytest.fail(f"installing {path} failed: {proc.stderr[-2000:]}", pytrace=False)
    jsonpath = '{.status.conditions[?(@.type=="Established")].status}'
    for crd in [c for crds in ROUTER_CRDS.values() for c in crds]:
        wait_for(
            f"CRD {crd} Established",
            lambda crd=crd: (
                subprocess.run(
                    ["kubectl", "get", "crd", crd, "-o", f"jsonpath={jsonpath}"],
                    env=env,
                    capture_output=True,
                    text=True,
                ).stdout.strip()
                == "True"
            ),
            timeout=60,
        )


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    path = _kubeconfig()
    env = {**os.environ, "KUBECONFIG": path}
    subprocess.run(
        ["kubectl", "apply", "-f", str(ROOT / "crds")],
        check=True,
        env=env,
        capture_output=True,
        timeout=60,
    )
    # Polled rather than `kubectl wait`: a newer kubectl fails on a CRD with no conditions yet.
    jsonpath = '{.status.conditions[?(@.type=="Established")].status}'
    for crd in ("rollouts", "analysisruns", "analysistemplates", "clusteranalysistemplates"):
        wait_for(
            f"CRD {crd}.sluice.dev Established",
            lambda crd=crd: (
                subprocess.run(
                    ["kubectl", "get", "crd", f"{crd}.sluice.dev", "-o", f"jsonpath={jsonpath}"],
                    env=env,
                    capture_output=True,
                    text=True,
                ).stdout.strip()
                == "True"
            ),
        )
    # Before any operator starts: a namespaced operator watches the kinds it finds at start.
    install_router_crds(path)
    return path


SHARED = Path(os.environ.get("SLUICE_SHARED", ROOT.parent / "shared"))
ROUTER_CRDS = {
    "istio": ["virtualservices.networking.istio.io", "destinationrules.networking.istio.io"],
    "gateway-api": ["httproutes.gateway.networking.k8s.io"],
    "smi": ["trafficsplits.split.smi-spec.io"],
}


@pytest.fixture(scope="session")
def router_crds(kubeconfig: str) -> str:
    """The router CRDs: installed with the cluster (see `kubeconfig`)."""
    return kubeconfig


@functools.cache
def server_minor(kubeconfig: str) -> int:
    """The API server's minor version (20 here; kind's is newer)."""
    out = subprocess.run(
        ["kubectl", "version", "-o", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": kubeconfig},
        timeout=60,
    )
    minor = json.loads(out.stdout or "{}").get("serverVersion", {}).get("minor", "0")
    return int("".join(ch for ch in minor if ch.isdigit()) or 0)


@pytest.fixture
def cluster(kubeconfig: str) -> Iterator[Cluster]:
    namespace = f"e2e-{uuid.uuid4().hex[:6]}"
    c = Cluster(kubeconfig, namespace)
    subprocess.run(
        ["kubectl", "create", "namespace", namespace],
        check=True,
        env={**os.environ, "KUBECONFIG": kubeconfig},
        capture_output=True,
    )
    if server_minor(kubeconfig) < 24:
        # v1.20 refuses pods until the namespace's default ServiceAccount token exists
        # (1.24 and later, kind's, make no such Secret: pods get projected tokens).
        wait_for(
            "the default ServiceAccount token",
            lambda: "default-token" in c.kubectl("get", "secrets", "-o", "name"),
            timeout=30,
        )
    yield c
    subprocess.run(
        ["kubectl", "delete", "namespace", namespace, "--wait=false"],
        env={**os.environ, "KUBECONFIG": kubeconfig},
        capture_output=True,
    )


@pytest.fixture
def operator(
    cluster: Cluster, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Operator]:
    op = Operator(cluster.kubeconfig, cluster.namespace, tmp_path / "operator.log")
    op.start()
    yield op
    op.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        sys.stderr.write(f"\n--- operator log ({op.log}) ---\n")
        sys.stderr.write(op.log.read_text()[-20000:])


def pytest_configure(config: pytest.Config) -> None:
    api_calls.open_session()


def pytest_unconfigure(config: pytest.Config) -> None:
    api_calls.close_session()


def pytest_deselected(items: list[pytest.Item]) -> None:
    api_calls.note_deselected(items)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
