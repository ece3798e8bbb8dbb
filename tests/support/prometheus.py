"""A real Prometheus server for tests: installed from Debian, run as a child process.

Use the fixtures from a conftest or a test module (import them explicitly):

    from tests.support.prometheus import prometheus, prometheus_with

* ``prometheus`` -- a running, empty server (function scope).
* ``prometheus_with(openmetrics_text, targets=())`` -- a factory: a server whose data
  directory was backfilled with the text before it started.

Backfilling (``promtool tsdb create-blocks-from openmetrics``) has rules that are easy to
trip over:

* The input is OpenMetrics text and must end with a ``# EOF`` line; sample timestamps
  are in **seconds** (not milliseconds as in the Prometheus text format). Samples of one
  series must be in time order.
* Blocks are read when Prometheus starts. A running server only notices new blocks at its
  once-a-minute block reload (measured on Debian's 2.42: about a minute), so
  :meth:`PrometheusServer.backfill` restarts a running server instead of waiting.
* Samples older than the retention (``--storage.tsdb.retention.time=30d`` here) are
  deleted at start. On a fresh data directory 2.42 also serves backfilled data that
  overlaps the head's time range, but a server that has been ingesting (or an older
  Prometheus) may not: keep backfilled data at least ~3 hours in the past
  (:data:`BACKFILL_AGE`, :func:`hours_ago`) and choose query times inside that window,
  never "now".

Scrape targets are scraped every second, but Prometheus 2.x applies its targets on the
scrape manager's first 5-second tick: the first sample of a target comes ~5 s after start.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if pytest dies without its teardown (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


READY_TIMEOUT = 30.0
RETENTION = "30d"
BACKFILL_AGE = timedelta(hours=4)
APT_INSTALL = (
    "apt-get update -qq && "
    "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus"
)

# (job name, "127.0.0.1:port", extra target labels)
Target = tuple[str, str, Mapping[str, str]]


class PrometheusUnavailable(RuntimeError):
    """Prometheus is not installed and cannot be installed from here, or did not start."""


@cache
def ensure_installed() -> tuple[str, str]:
    """Paths of ``prometheus`` and ``promtool``; installs Debian's package when root."""
    found = shutil.which("prometheus"), shutil.which("promtool")
    if found[0] and found[1]:
        return found[0], found[1]
    if os.geteuid() != 0:
        raise PrometheusUnavailable(
            "prometheus/promtool are not on PATH and this is not root, so they cannot be "
            "installed here: run `sudo make system-deps` (or `sudo apt-get install "
            "prometheus`) and try again"
        )
    # The package's postinst may try to start the prometheus service; whether that works
    # (systemd) or is refused (containers, policy-rc.d) does not matter: tests run their own.
    done = subprocess.run(["sh", "-c", APT_INSTALL], capture_output=True, text=True)
    found = shutil.which("prometheus"), shutil.which("promtool")
    if done.returncode != 0 or not (found[0] and found[1]):
        raise PrometheusUnavailable(
            f"installing Debian's prometheus package failed (exit {done.returncode}):\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return found[0], found[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hours_ago(hours: float, *, now: datetime | None = None, align_seconds: int = 15) -> datetime:
    """``now - hours``, in UTC, rounded down to a multiple of ``align_seconds``."""
    moment = (now or datetime.now(UTC)) - timedelta(hours=hours)
    epoch = math.floor(moment.timestamp() / align_seconds) * align_seconds
    return datetime.fromtimestamp(epoch, UTC)


def _om_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _om_labels(labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{_om_label_value(v)}"' for k, v in labels.items())
    return "{" + inner + "}" if inner else ""


def counter_openmetrics(
    name: str,
    series: Iterable[tuple[Mapping[str, str], float]],
    start: datetime,
    end: datetime,
    step_seconds: int = 15,
    help_text: str = "",
) -> str:
    """OpenMetrics text of one counter family for backfilling (ends with ``# EOF``).

    ``name`` is the family name without ``_total``; each series is (labels, increase per
    second), starting at 0 at ``start`` and sampled every ``step_seconds`` through ``end``
    (inclusive). Timestamps are written in seconds.
    """
    family = name.removesuffix("_total")
    lines = [f"# HELP {family} {help_text or family}", f"# TYPE {family} counter"]
    t0, t1 = int(start.timestamp()), int(end.timestamp())
    for labels, per_second in series:
        rendered = _om_labels(labels)
        for ts in range(t0, t1 + 1, step_seconds):
            lines.append(f"{family}_total{rendered} {per_second * (ts - t0):g} {ts}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def backfill(data_dir: Path | str, openmetrics_text: str) -> str:
    """Turn OpenMetrics text into TSDB blocks in ``data_dir``; returns promtool's output.

    Run it before the server starts (a running server only notices new blocks at its
    minute-long reload: use :meth:`PrometheusServer.backfill`, which restarts it).
    """
    _, promtool = ensure_installed()
    if not openmetrics_text.rstrip().endswith("# EOF"):
        raise ValueError("OpenMetrics text for backfilling must end with a '# EOF' line")
    data = Path(data_dir)
    data.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", suffix=".om", prefix="backfill-", dir=data.parent, delete=False
    ) as handle:
        handle.write(openmetrics_text)
        source = Path(handle.name)
    try:
        done = subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        source.unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"promtool create-blocks-from openmetrics failed (exit {done.returncode}):\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done.stdout


class PrometheusServer:
    """One Prometheus process on 127.0.0.1 with its own working directory.

    The port is chosen once, so :attr:`url` stays the same across :meth:`stop` /
    :meth:`kill` and :meth:`start` (which reuses the data directory).
    """

    def __init__(
        self,
        targets: Sequence[Target] = (),
        *,
        workdir: Path | str | None = None,
        port: int | None = None,
        scrape_interval: str = "1s",
    ) -> None:
        self.prometheus_bin, self.promtool_bin = ensure_installed()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="sluice-prometheus-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.config_file = self.workdir / "prometheus.yml"
        self.log_file = self.workdir / "prometheus.log"
        self.port = port or free_port()
        self.targets = list(targets)
        self.scrape_interval = scrape_interval
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self._write_config()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _write_config(self) -> None:
        jobs: dict[str, list[dict[str, object]]] = {}
        for job, address, labels in self.targets:
            jobs.setdefault(job, []).append({"targets": [address], "labels": dict(labels)})
        config = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "scrape_configs": [
                {"job_name": job, "static_configs": groups} for job, groups in jobs.items()
            ],
        }
        # JSON is YAML: no YAML writer needed.
        self.config_file.write_text(json.dumps(config, indent=2))

    def start(self, timeout: float = READY_TIMEOUT) -> PrometheusServer:
        """Start (or restart after stop/kill) and wait until ``/-/ready`` answers 200."""
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    self.prometheus_bin,
                    f"--config.file={self.config_file}",
                    f"--storage.tsdb.path={self.data_dir}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    f"--storage.tsdb.retention.time={RETENTION}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # a Ctrl-C of pytest does not hit it mid-shutdown
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        try:
            self._wait_ready(began + timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _wait_ready(self, deadline: float) -> None:
        last = "no answer yet"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise PrometheusUnavailable(
                    f"prometheus exited with {self.process.returncode} before it was ready "
                    f"(port {self.port} taken?); log:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return
                    last = f"HTTP {answer.status}"
            except urllib.error.HTTPError as exc:  # 503 while the TSDB loads
                last = f"HTTP {exc.code}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.05)
        raise PrometheusUnavailable(
            f"prometheus at {self.url} not ready in time ({last}); log:\n{self.log_tail()}"
        )

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Safe to call twice."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def kill(self) -> None:
        """SIGKILL without a clean shutdown (outage tests); :meth:`start` recovers."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL)
        process.wait(5)

    def restart(self) -> PrometheusServer:
        self.stop()
        return self.start()

    def backfill(self, openmetrics_text: str) -> str:
        """Backfill into this server's data directory; a running server is restarted."""
        was_running = self.running
        self.stop()
        out = backfill(self.data_dir, openmetrics_text)
        if was_running:
            self.start()
        return out

    def set_targets(self, targets: Sequence[Target]) -> None:
        """Replace the scrape targets; a running server is restarted to read them."""
        self.targets = list(targets)
        self._write_config()
        if self.running:
            self.restart()

    def series_count(self, selector: str, ago: float = 0.0) -> int:
        """How many series match ``selector`` now, or ``ago`` seconds before now (0 when
        Prometheus does not answer)."""
        params = {"query": f"count({selector})"}
        if ago:
            params["time"] = f"{time.time() - ago:.3f}"
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=2) as answer:
                result = json.loads(answer.read())["data"]["result"]
        except (OSError, ValueError, KeyError):
            return 0
        return int(float(result[0]["value"][1])) if result else 0

    def wait_scraped(self, job: str, timeout: float = 30.0) -> None:
        """Wait until every target of ``job`` has been scraped once (its `up` series exists):
        a query counting the job's series is only stable from then on. Counted 2 s in the
        past: the operator sends its evaluation time rounded down to its 1 s query-sharing
        window, so "scraped now" could still read one series short (seen in CI)."""
        wanted = sum(1 for target_job, _, _ in self.targets if target_job == job)
        deadline = time.monotonic() + timeout
        while self.series_count(f'up{{job="{job}"}}', ago=2.0) < wanted:
            if time.monotonic() > deadline:
                raise PrometheusUnavailable(f"{job}: not all {wanted} targets scraped in time")
            time.sleep(0.2)

    def log_tail(self, chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_file.read_text(errors="replace")[-chars:]
        return ""

    def close(self) -> None:
        """Stop, and remove the working directory when this object created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A running Prometheus with no data and no scrape targets."""
    server = PrometheusServer(workdir=tmp_path_factory.mktemp("prometheus"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


PrometheusFactory = Callable[..., PrometheusServer]


@pytest.fixture
def prometheus_with(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusFactory]:
    """Factory ``(openmetrics_text, targets=()) -> PrometheusServer``: backfilled, started."""
    servers: list[PrometheusServer] = []

    def make(openmetrics_text: str, targets: Sequence[Target] = ()) -> PrometheusServer:
        server = PrometheusServer(targets, workdir=tmp_path_factory.mktemp("prometheus"))
        servers.append(server)
        server.backfill(openmetrics_text)
        return server.start()

    try:
        yield make
    finally:
        for server in servers:
            server.stop()
