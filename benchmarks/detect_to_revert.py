"""From the instant the demo canary starts failing to the instant its weight is 0 in the cluster.

Three paths, each run --runs times (median reported):
- polling: background analysis, errorRate over a 2 s window, interval 5 s,
  consecutiveFailureLimit 1 (target: <= interval + 1 s);
- alert: an Alertmanager-style webhook post to the operator at the fault instant
  (target: <= 2 s beyond Prometheus' own 1 s scrape; here the post is immediate, so the
  figure is the operator's share of the fast path);
- alertmanager: the real chain. Prometheus (scrape and rule evaluation every 1 s, an alert
  like examples/alerting/prometheus-rule.yaml with `for: 0s` on the canary's error ratio
  over [3s]) -> Alertmanager (Debian's prometheus-alertmanager, group_wait 0s,
  group_interval 1s, a webhook receiver with the operator's bearer token) -> Sluice. The
  clock starts when the canary's error rate is switched on (target: <= 1 s scrape + 2 s).

The weight is 0 when the root Service selects one slot. For the alertmanager path each run
also prints where the time went, in seconds after the fault: the first two scrapes that
hold the canary's 5xx series (rate() needs two samples of it), the evaluation that made the
alert active (Prometheus' activeAt = Alertmanager's startsAt), Alertmanager's receipt
(updatedAt in /api/v2/alerts), Sluice's "alert" log line (the failed AnalysisRun written,
just before it answers), Alertmanager's "Notify success" for that answer (its debug log, ms
resolution) and weight 0.

Needs the local control plane (KUBECONFIG) and Debian's prometheus (and, for the
alertmanager path, prometheus-alertmanager: installed with apt-get when missing and root);
run from the repo root:
    python benchmarks/detect_to_revert.py --runs 5 --paths polling,alert,alertmanager
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kubernetes  # noqa: E402
import yaml  # noqa: E402
from tests.e2e.conftest import Cluster, wait_for  # noqa: E402
from tests.e2e.test_analysis import TOKEN, Stage, alert, post_alert  # noqa: E402
from tests.support.prometheus import (  # noqa: E402
    PrometheusServer,
    _die_with_parent,
    free_port,
)

ALERT = "CanaryErrorRateHigh"
APT_INSTALL = (
    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
    "apt-get install -y --no-install-recommends prometheus-alertmanager"
)
TARGETS = {"polling": 5 + 1, "alert": 2, "alertmanager": 1 + 2}
# The breakdown of the alertmanager path, in the order the chain goes.
STAGES = ("scrape1", "scrape2", "active", "am_received", "sluice", "am_notified", "weight0")


def get_json(url: str, timeout: float = 2) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return json.loads(answer.read())


def wall(text: str) -> float:
    """Epoch seconds of an RFC 3339 time (Z or offset, any number of fraction digits)."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.strip()).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


def alertmanager_binary() -> str:
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("prometheus-alertmanager is missing: apt-get install it (as root)")
    done = subprocess.run(["sh", "-c", APT_INSTALL], capture_output=True, text=True)
    found = shutil.which("prometheus-alertmanager")
    if done.returncode != 0 or not found:
        raise SystemExit(f"installing prometheus-alertmanager failed:\n{done.stderr[-2000:]}")
    return found


class Alertmanager:
    """prometheus-alertmanager in the foreground on 127.0.0.1, gossip (HA mode) off, with one
    route to the operator's webhook: group_wait 0s, group_interval 1s."""

    def __init__(self, workdir: Path, webhook: str, token: str) -> None:
        self.binary = alertmanager_binary()
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = workdir / "alertmanager.log"
        self.process: subprocess.Popen[bytes] | None = None
        fast = {"group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"}
        config = {
            "route": {
                "receiver": "default",
                **fast,
                "routes": [{"matchers": ['sluice_action="abort"'], "receiver": "sluice", **fast}],
            },
            "receivers": [
                {"name": "default"},
                {
                    "name": "sluice",
                    "webhook_configs": [
                        {
                            "url": webhook,
                            "send_resolved": False,
                            "http_config": {
                                "authorization": {"type": "Bearer", "credentials": token}
                            },
                        }
                    ],
                },
            ],
        }
        (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.workdir / 'alertmanager.yml'}",
                    f"--storage.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",  # no gossip: no peers to settle with
                    "--log.level=debug",  # for the "Notify success" lines
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        wait_for("Alertmanager ready", self._ready, timeout=30, every=0.05)

    def _ready(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, f"alertmanager exited:\n{self.log.read_text()}"
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def alerts(self) -> list[dict[str, Any]]:
        return list(get_json(f"{self.url}/api/v2/alerts"))

    def notified(self) -> list[float]:
        """Epoch seconds of each successful webhook post (debug log, ms resolution)."""
        found = re.findall(r'^ts=(\S+) .*msg="Notify success"', self.log.read_text(), re.M)
        return [wall(ts) for ts in found]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class AlertingPrometheus(PrometheusServer):
    """PrometheusServer whose config also loads rule files and sends alerts to one
    Alertmanager (evaluation_interval is the scrape interval, 1 s)."""

    def __init__(self, *args: Any, rules: Path, alertmanager: str, **kwargs: Any) -> None:
        self.rules, self.alertmanager = rules, alertmanager  # read by _write_config
        super().__init__(*args, **kwargs)

    def _write_config(self) -> None:
        super()._write_config()
        config = json.loads(self.config_file.read_text())
        config["rule_files"] = [str(self.rules)]
        config["alerting"] = {
            "alertmanagers": [
                {"api_version": "v2", "static_configs": [{"targets": [self.alertmanager]}]}
            ]
        }
        self.config_file.write_text(json.dumps(config, indent=2))


def write_rules(path: Path, revision: str, namespace: str) -> None:
    """examples/alerting/prometheus-rule.yaml, fast: the canary's series, [3s], for: 0s."""
    canary = f'sluice_dev_revision="{revision}"'
    expr = (
        f'sum(rate(http_requests_total{{{canary}, code=~"5.."}}[3s]))\n'
        f"  / sum(rate(http_requests_total{{{canary}}}[3s])) > 0.05"
    )
    rule = {
        "alert": ALERT,
        "expr": expr,
        "for": "0s",
        "labels": {"sluice_action": "abort", "namespace": namespace, "rollout": "shop"},
        "annotations": {"summary": "canary error ratio above 5 % over 3 s"},
    }
    groups = {"groups": [{"name": "canary", "interval": "1s", "rules": [rule]}]}
    path.write_text(yaml.safe_dump(groups, sort_keys=False))


def with_alerting(stage: Stage, alertmanager: Alertmanager) -> None:
    """Restart the stage's Prometheus (same port, data and targets) with the alert rule and
    Alertmanager added to its config."""
    old = stage.prometheus
    rules = old.workdir / "rules.yml"
    write_rules(rules, stage.revisions[1], stage.cluster.namespace)
    old.stop()
    stage.prometheus = AlertingPrometheus(
        old.targets,
        workdir=old.workdir,
        port=old.port,
        rules=rules,
        alertmanager=f"127.0.0.1:{alertmanager.port}",
    )
    stage.prometheus.start()


def armed(stage: Stage) -> bool:
    """Prometheus knows its Alertmanager, scrapes the canary and evaluates the rule (inactive)."""
    url = stage.prometheus.url
    query = urllib.parse.quote(f'http_requests_total{{sluice_dev_revision="{stage.revisions[1]}"}}')
    try:
        managers = get_json(f"{url}/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
        series = get_json(f"{url}/api/v1/query?query={query}")["data"]["result"]
        rules = get_json(f"{url}/api/v1/rules")["data"]["groups"][0]["rules"]
    except (OSError, KeyError, IndexError):
        return False
    evaluated = rules[0]["health"] == "ok" and rules[0]["state"] == "inactive"
    return bool(managers and series and evaluated)


def error_scrapes(stage: Stage) -> list[float]:
    """Epoch seconds of the samples of the canary's 5xx series (there is none before the
    fault: prometheus_client makes the code="500" child at the first 500)."""
    selector = f'http_requests_total{{sluice_dev_revision="{stage.revisions[1]}", code=~"5.."}}'
    query = urllib.parse.quote(f"{selector}[2m]")
    result = get_json(f"{stage.prometheus.url}/api/v1/query?query={query}")["data"]["result"]
    return sorted(float(ts) for series in result for ts, _ in series["values"])


def sluice_alert_lines(log: Path) -> list[float]:
    found = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("event") == "alert":
                found.append(wall(entry["timestamp"]))
    return found


def breakdown(
    stage: Stage, alertmanager: Alertmanager, fault_wall: float, seconds: float
) -> dict[str, float]:
    """Where the time of one alertmanager run went, in seconds after the fault (NaN: unseen)."""
    nan = float("nan")
    scrapes = [*error_scrapes(stage), nan, nan]
    fired = [a for a in alertmanager.alerts() if a["labels"].get("alertname") == ALERT]
    notified, sluice = alertmanager.notified(), sluice_alert_lines(stage.operator.log)
    moments = {
        "scrape1": scrapes[0],
        "scrape2": scrapes[1],
        "active": wall(fired[0]["startsAt"]) if fired else nan,
        "am_received": wall(fired[0]["updatedAt"]) if fired else nan,
        "am_notified": notified[0] if notified else nan,
        "sluice": sluice[0] if sluice else nan,
    }
    result = {k: v - fault_wall for k, v in moments.items()}
    result["weight0"] = seconds
    result["notifications"] = len(notified)
    return result


def polling_template(stage: Stage) -> None:
    metric = stage.templates[0]["spec"]["metrics"][0]
    metric.update(interval="5s", consecutiveFailureLimit=1, inconclusiveLimit=10)
    metric["errorRate"]["window"] = "2s"
    stage.templates[0]["spec"]["metrics"] = [metric]


def weight_zero_at(api: Any, namespace: str, deadline: float) -> float:
    """Poll the root Service (what carries the traffic) at 50 Hz until it selects one slot."""
    core = kubernetes.client.CoreV1Api(api)
    while time.monotonic() < deadline:
        svc = core.read_namespaced_service("shop", namespace)
        if "sluice.dev/slot" in (svc.spec.selector or {}):
            return time.monotonic()
        time.sleep(0.02)
    raise TimeoutError("the canary weight never went to 0")


def children() -> set[int]:
    """PIDs of this process's children (from /proc: no psutil needed)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == os.getpid():
                found.add(int(stat.parent.name))
    return found


def open_stage(cluster: Cluster, tmp: Path, args: list[str]) -> Stage:
    """Stage(...), but a failure half-way (say Prometheus not ready) does not leave the demo
    apps or the operator it already started running: they are terminated by PID."""
    before = children()
    try:
        return Stage(cluster, tmp, args)
    except BaseException:
        for pid in children() - before:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        raise


def one(kind: str, kubeconfig: str, tmp: Path) -> tuple[float, dict[str, float]]:
    namespace = f"bench-revert-{uuid.uuid4().hex[:6]}"
    cluster = Cluster(kubeconfig, namespace)
    os.environ["KUBECONFIG"] = kubeconfig
    with contextlib.ExitStack() as cleanup:  # undone in reverse, also on errors and signals
        cluster.kubectl("create", "namespace", namespace)
        cleanup.callback(
            cluster.kubectl, "delete", "namespace", namespace, "--wait=false", check=False
        )
        wait_for(
            "token", lambda: "default-token" in cluster.kubectl("get", "secrets", "-o", "name")
        )
        args: list[str] = []
        if kind in ("alert", "alertmanager"):
            cluster.kubectl(
                "create", "secret", "generic", "sluice-alerts", f"--from-literal=token={TOKEN}"
            )
            args = ["--alert-token-secret", f"{namespace}/sluice-alerts"]
        stage = open_stage(cluster, tmp, args)
        cleanup.callback(stage.close)
        if kind == "alertmanager":
            am = Alertmanager(
                tmp / "alertmanager", f"http://127.0.0.1:{stage.operator.port}/v1/alerts", TOKEN
            )
            am.start()
            cleanup.callback(am.stop)
            with_alerting(stage, am)
        if kind == "polling":
            polling_template(stage)
        else:
            for metric in stage.templates[0]["spec"]["metrics"]:
                metric["interval"] = "1h"
        stage.rollout["spec"]["strategy"]["canary"]["steps"] = [{"setWeight": 50}, {"pause": {}}]
        stage.start_canary()
        wait_for(
            "canary at 50", lambda: cluster.status("shop").get("canaryWeight") == 50, timeout=120
        )
        if kind == "polling":  # let some healthy measurements pass first
            time.sleep(6)
        if kind == "alertmanager":
            wait_for("the alert rule armed", lambda: armed(stage), timeout=30)
            # A full [3s] window of healthy samples, then a random phase: `armed` may turn
            # true just after a scrape, which would put every fault at the same point of
            # the scrape cycle (measured: always ~0.9 s before the next scrape).
            time.sleep(3 + random.random())
        api = cleanup.enter_context(kubernetes.config.new_client_from_config(kubeconfig))
        fault, fault_wall = time.monotonic(), time.time()
        if kind == "alert":
            code, body = post_alert(stage, TOKEN, alert(namespace))
            assert code == 200, body
        else:
            stage.canary.set(error_rate=1.0)
        seconds = weight_zero_at(api, namespace, fault + 60) - fault
        if kind == "alertmanager":
            time.sleep(0.5)  # Sluice's log line may be written just after the Service changed
            return seconds, breakdown(stage, am, fault_wall, seconds)
    return seconds, {}


def on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: every run's cleanup stops what it started


def fmt_breakdown(parts: dict[str, float]) -> str:
    return "  ".join(f"{k} {parts[k]:+.2f}" for k in STAGES if k in parts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--paths", default="polling,alert,alertmanager")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    kubeconfig = os.environ.get("SLUICE_E2E_KUBECONFIG") or os.environ["KUBECONFIG"]
    paths = args.paths.split(",")
    if "alertmanager" in paths:
        binary = alertmanager_binary()
        version = subprocess.run([binary, "--version"], capture_output=True, text=True)
        print((version.stdout + version.stderr).splitlines()[0], flush=True)
    results: dict[str, list[float]] = {}
    parts: list[dict[str, float]] = []
    for kind in paths:
        for i in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                seconds, detail = one(kind, kubeconfig, Path(tmp))
            results.setdefault(kind, []).append(seconds)
            print(f"{kind} run {i + 1}: {seconds:.2f} s", flush=True)
            if detail:
                parts.append(detail)
                extra = int(detail["notifications"]) - 1
                more = f"  ({extra} more webhook posts)" if extra > 0 else ""
                print(f"  after the fault: {fmt_breakdown(detail)}{more}", flush=True)
    print(json.dumps({k: [round(v, 3) for v in vs] for k, vs in results.items()}))
    for kind, values in results.items():
        target = TARGETS[kind]
        median = statistics.median(values)
        print(
            f"{kind:12} median {median:.2f} s  min {min(values):.2f}  max {max(values):.2f}  "
            f"target <= {target} s  ratio {median / target:.2f}"
        )
    if parts:
        medians = {k: statistics.median(p[k] for p in parts) for k in STAGES}
        print(f"alertmanager medians after the fault: {fmt_breakdown(medians)}")


if __name__ == "__main__":
    main()
