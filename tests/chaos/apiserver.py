"""Stop and start the local control plane's kube-apiserver with the flags it was started with.

The control plane is ../shared/k8s (up.sh records each component's PID in
$LOCAL_K8S_HOME/run/pids). The cache directory is LOCAL_K8S_HOME, else the directory of
the test kubeconfig (a private control plane keeps its kubeconfig there), else
~/.cache/local-k8s. The restarted process replaces the old PID in the pids file, so
down.sh stops it as it would have stopped the first one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode() for part in raw.split(b"\0") if part]


class ApiServer:
    def __init__(self, home: Path, kubeconfig: str) -> None:
        self.home = home
        self.kubeconfig = kubeconfig
        self.pids = home / "run" / "pids"
        self.binary = str(home / "bin" / "kube-apiserver")
        pid = self.pid()
        assert pid is not None
        self.argv = _cmdline(pid)
        self.log = home / "run" / "logs" / "kube-apiserver.log"

    def pid(self) -> int | None:
        for line in self.pids.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "kube-apiserver" and parts[1].isdigit():
                pid = int(parts[1])
                argv = _cmdline(pid)
                if _alive(pid) and argv and argv[0] == self.binary:
                    return pid
        return None

    def stop(self) -> None:
        pid = self.pid()
        assert pid is not None, "the kube-apiserver is not running"
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        assert not _alive(pid), f"kube-apiserver {pid} did not stop"

    def start(self, timeout: float = 180) -> float:
        """Start it again; returns the monotonic time its /readyz first answered ok."""
        with self.log.open("ab") as handle:
            proc = subprocess.Popen(
                self.argv,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        lines = [
            line
            for line in self.pids.read_text().splitlines()
            if not line.startswith("kube-apiserver ")
        ]
        self.pids.write_text("\n".join([*lines, f"kube-apiserver {proc.pid}"]) + "\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"kube-apiserver exited ({proc.returncode}); see {self.log}"
            if self.ready():
                return time.monotonic()
            time.sleep(0.25)
        pytest.fail(f"kube-apiserver not ready {timeout}s after its restart", pytrace=False)

    def ready(self) -> bool:
        out = subprocess.run(
            ["kubectl", "get", "--raw", "/readyz", "--request-timeout=2s"],
            env={**os.environ, "KUBECONFIG": self.kubeconfig},
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.returncode == 0 and out.stdout.strip() == "ok"


def find_apiserver(kubeconfig: str) -> ApiServer:
    """The restartable kube-apiserver behind `kubeconfig`; skip (fail in CI) without one."""
    candidates = [os.environ.get("LOCAL_K8S_HOME"), str(Path(kubeconfig).resolve().parent)]
    candidates.append(str(Path.home() / ".cache" / "local-k8s"))
    for candidate in candidates:
        if not candidate:
            continue
        home = Path(candidate)
        if not (home / "run" / "pids").is_file():
            continue
        server = None
        try:
            server = ApiServer(home, kubeconfig)
        except AssertionError:
            continue
        return server
    why = (
        "no restartable kube-apiserver found (a ../shared/k8s control plane: LOCAL_K8S_HOME, "
        f"the kubeconfig's directory or ~/.cache/local-k8s, tried {candidates})"
    )
    if os.environ.get("SLUICE_E2E_REQUIRED") == "1":
        pytest.fail(f"chaos tests are mandatory here but {why}", pytrace=False)
    pytest.skip(why)
