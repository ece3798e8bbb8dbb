"""Many Rollouts at once through a real operator on a real API server.

One run:

1. starts dedicated fake nodes for the benchmark's pods (the shared local control plane's
   `fake_kubelet.py`, tainted so that no other pod lands there; see "Nodes" below);
2. deletes namespace `bench` if present and waits until it is gone, then creates it;
3. starts `sluice run --namespace bench --port 18190 --log-level WARNING`;
4. creates N Rollouts (replicas 2; steps setWeight 20, pause 1s, setWeight 60, pause 1s;
   scaleDownDelaySeconds 0) and waits until all are Healthy (the first deploy);
5. leaves them alone for 10 s and measures the operator's CPU meanwhile (idle cost);
6. changes every template at once (a new image) and measures, for each Rollout, the time
   from its apply to condition Completed=True for the new revision, polling the list of
   Rollouts every 0.25 s with one LIST call;
7. stops the operator, deletes the namespace, stops the fake nodes (also on error).

The operator's RSS and CPU are sampled every 0.5 s from /proc; API writes come from its
/metrics (sluice_api_calls_total).

Nodes: the shared node fake-node-1 has room for 110 pods, which other engineers' e2e
tests also use, and one fake kubelet marks pods Ready one at a time. N Rollouts need 2N
to 3N pods, so the benchmark registers its own nodes `sluice-bench-<i>` (tainted
sluice.dev/bench=true:NoSchedule, room for 1000 pods each), runs one fake kubelet per
node, and gives its pods a matching nodeSelector and toleration.

    .venv/bin/python benchmarks/concurrent_rollouts.py [--rollouts 100] [--runs 1]

Needs KUBECONFIG (default ~/.cache/local-k8s/kubeconfig); applies crds/ if a CRD is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from kubernetes.client.exceptions import ApiException

from sluice.cluster import labels as L
from sluice.engine.hashing import template_hash

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import source_version

NAMESPACE = "bench"  # never anything else: other engineers' tests run in e2e-* namespaces
PORT = 18190
GROUP, VERSION, PLURAL = "sluice.dev", "v1alpha1", "rollouts"
ROOT = Path(__file__).resolve().parents[1]
TAINT = {"key": "sluice.dev/bench", "value": "true", "effect": "NoSchedule"}
NODE_LABEL = "sluice.dev/bench-node"
POLL = 0.25
SAMPLE = 0.5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _die_with_parent() -> None:
    """In a child before exec: SIGTERM it if this script dies without its cleanup (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


# ---------------------------------------------------------------- /proc sampling


@dataclass(frozen=True)
class Sample:
    t: float  # time.monotonic()
    cpu: float  # user + system seconds of the process (all its threads)
    rss: int  # bytes


def read_proc(pid: int) -> Sample:
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    rss = int(fields[21]) * PAGE
    return Sample(time.monotonic(), cpu, rss)


def peak_rss(pid: int) -> int:
    """VmHWM: the process's high-water mark of resident memory, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class Sampler(threading.Thread):
    """Reads the operator's CPU time and RSS every `every` seconds."""

    def __init__(self, pid: int, every: float = SAMPLE) -> None:
        super().__init__(daemon=True, name="proc-sampler")
        self.pid, self.every = pid, every
        self.samples: list[Sample] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            with contextlib.suppress(OSError, ValueError):
                self.samples.append(read_proc(self.pid))
            self.stopped.wait(self.every)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.t <= end]


def cpu_percent(a: Sample, b: Sample) -> float:
    """Mean CPU between two samples, in percent of one core."""
    return 100.0 * (b.cpu - a.cpu) / max(b.t - a.t, 1e-9)


# ---------------------------------------------------------------- operator metrics

_LINE = re.compile(r'^sluice_(api_calls|reconcile)_total\{(call|result)="([^"]+)"\} (\S+)$')
_PLAIN = re.compile(r"^sluice_(workqueue_depth|reconcile_duration_seconds_(?:sum|count)) (\S+)$")


def scrape() -> dict[str, float]:
    """`api:<call>` and `reconcile:<result>` counters from the operator's /metrics, and
    `workqueue_depth`, `reconcile_duration_seconds_sum` and `..._count`."""
    url = f"http://127.0.0.1:{PORT}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            kind = "api" if match.group(1) == "api_calls" else "reconcile"
            out[f"{kind}:{match.group(3)}"] = float(match.group(4))
        plain = _PLAIN.match(line)
        if plain:
            out[plain.group(1)] = float(plain.group(2))
    return out


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {
        k: v - before.get(k, 0.0)
        for k, v in after.items()
        if v - before.get(k, 0.0) and k != "workqueue_depth"
    }


def api_total(counters: dict[str, float]) -> float:
    return sum(v for k, v in counters.items() if k.startswith("api:"))


def fmt_counters(counters: dict[str, float], prefix: str) -> str:
    items = sorted((k.split(":", 1)[1], v) for k, v in counters.items() if k.startswith(prefix))
    return ", ".join(f"{k} {v:.0f}" for k, v in items) or "none"


# ---------------------------------------------------------------- the cluster


class Cluster:
    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=config)
        config.connection_pool_maxsize = 32  # the creates and patches go 16 at a time
        client = kubernetes.client.ApiClient(config)
        self.core = kubernetes.client.CoreV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.ext = kubernetes.client.ApiextensionsV1Api(client)
        self.coord = kubernetes.client.CoordinationV1Api(client)
        self.apps = kubernetes.client.AppsV1Api(client)

    def ensure_crds(self) -> None:
        """Every CRD in crds/ (the operator lists AnalysisRuns at start, too): apply if missing."""
        names = [
            doc["metadata"]["name"]
            for path in sorted((ROOT / "crds").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text())
            if doc and doc.get("kind") == "CustomResourceDefinition"
        ]
        missing = [name for name in names if not self._crd_exists(name)]
        if not missing:
            return
        log(f"CRD(s) missing: {', '.join(missing)}: kubectl apply -f crds/")
        env = {**os.environ, "KUBECONFIG": self.kubeconfig}
        subprocess.run(["kubectl", "apply", "-f", str(ROOT / "crds")], check=True, env=env)
        subprocess.run(
            ["kubectl", "wait", "--for=condition=Established", "--timeout=60s"]
            + [f"crd/{name}" for name in missing],
            check=True,
            env=env,
        )

    def _crd_exists(self, name: str) -> bool:
        try:
            self.ext.read_custom_resource_definition(name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # ------------------------------------------------------------ namespace

    def namespace_gone(self) -> bool:
        try:
            self.core.read_namespace(NAMESPACE)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    def delete_namespace(self, timeout: float = 180) -> None:
        if self.namespace_gone():
            return
        with contextlib.suppress(ApiException):
            self.core.delete_namespace(NAMESPACE)
        wait_for(f"namespace {NAMESPACE} to be gone", self.namespace_gone, timeout, every=0.5)

    def create_namespace(self) -> None:
        self.core.create_namespace({"metadata": {"name": NAMESPACE}})
        # The service account controller fills the namespace in; pods need its account.
        wait_for(
            "the default ServiceAccount",
            lambda: self.core.list_namespaced_service_account(NAMESPACE).items,
            timeout=30,
        )

    # ------------------------------------------------------------ bench nodes

    def create_node(self, name: str, pods: int) -> None:
        with contextlib.suppress(ApiException):
            self.core.delete_node(name)  # a leftover of a run that was killed
        wait_for(f"node {name} deleted", lambda: self._node_gone(name), timeout=30)
        resources = {"cpu": "64", "memory": "256Gi", "pods": str(pods), "ephemeral-storage": "1Ti"}
        self.core.create_node(
            {
                "metadata": {
                    "name": name,
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "node.kubernetes.io/fake": "true",
                        NODE_LABEL: "true",
                    },
                },
                "spec": {"taints": [TAINT]},
                "status": {
                    "capacity": resources,
                    "allocatable": resources,
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                },
            }
        )

    def _node_gone(self, name: str) -> bool:
        try:
            self.core.read_node(name)
        except ApiException as exc:
            return exc.status == 404
        return False

    def delete_node(self, name: str) -> None:
        with contextlib.suppress(ApiException):
            self.core.delete_node(name)
        with contextlib.suppress(ApiException):
            self.coord.delete_namespaced_lease(name, "kube-node-lease")

    # ------------------------------------------------------------ rollouts

    def list_rollouts(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL
        )["items"]
        return items


def settled_children(cluster: Cluster) -> dict[str, bool]:
    """Rollout name -> whether all its Deployments have done what they were asked."""
    response = cluster.apps.list_namespaced_deployment(NAMESPACE, _preload_content=False)
    out: dict[str, bool] = {}
    for body in json.loads(response.data)["items"]:
        owner = (body["metadata"].get("labels") or {}).get(L.ROLLOUT)
        if not owner:
            continue
        want = int(body["spec"].get("replicas") or 0)
        st = body.get("status") or {}
        settled = (
            int(st.get("observedGeneration") or 0) >= int(body["metadata"]["generation"])
            and int(st.get("replicas") or 0) == want
            and int(st.get("updatedReplicas") or 0) >= want
            and int(st.get("readyReplicas") or 0) >= want
        )
        out[owner] = out.get(owner, True) and settled
    return out


def template(name: str, image: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {
            "containers": [{"name": "app", "image": image}],
            "nodeSelector": {NODE_LABEL: "true"},
            "tolerations": [{**TAINT, "operator": "Equal"}],
            "terminationGracePeriodSeconds": 0,
        },
    }


def rollout(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": template(name, image),
            "strategy": {
                "canary": {
                    "scaleDownDelaySeconds": 0,
                    "steps": [
                        {"setWeight": 20},
                        {"pause": {"duration": "1s"}},
                        {"setWeight": 60},
                        {"pause": {"duration": "1s"}},
                    ],
                }
            },
        },
    }


def condition(body: dict[str, Any], kind: str) -> str:
    for cond in (body.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return str(cond.get("status"))
    return ""


def done(body: dict[str, Any], generation: int, revision: str) -> bool:
    """Completed=True for the template of `generation` (not the previous one)."""
    status = body.get("status") or {}
    return (
        int(status.get("observedGeneration") or 0) >= generation
        and status.get("stableRevision") == revision
        and not status.get("canaryRevision")
        and condition(body, "Completed") == "True"
    )


def _waits_for(body: dict[str, Any], children_settled: bool) -> str:
    """cluster: a Deployment has not done what it was asked (pods not Ready yet, ...);
    pause: a timed pause step runs; operator: nothing else holds it, Sluice has to act."""
    if not children_settled:
        return "cluster"
    status = body.get("status") or {}
    if status.get("phase") == "Paused":
        return "pause"
    return "operator"


# ---------------------------------------------------------------- processes


@dataclass
class Processes:
    """Children this script started, stopped by their own PIDs."""

    operator: subprocess.Popen[bytes] | None = None
    kubelets: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @staticmethod
    def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def sluice_command() -> list[str]:
    script = Path(sys.executable).parent / "sluice"
    return [str(script)] if script.exists() else [sys.executable, "-m", "sluice"]


def start_operator(kubeconfig: str, logfile: Path) -> subprocess.Popen[bytes]:
    command = [
        *sluice_command(),
        "run",
        "--namespace",
        NAMESPACE,
        "--host",
        "127.0.0.1",
        "--port",
        str(PORT),
        "--log-level",
        "WARNING",
        "--log-json",
    ]
    with logfile.open("ab") as handle:
        proc = subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": kubeconfig},
            preexec_fn=_die_with_parent,
        )

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the operator exited with {proc.returncode}; see {logfile}")
        try:
            url = f"http://127.0.0.1:{PORT}/readyz"
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    wait_for("the operator's /readyz", ready, timeout=60)
    return proc


def start_kubelet(
    script: Path, kubeconfig: str, node: str, pods: int, logfile: Path
) -> subprocess.Popen[bytes]:
    with logfile.open("ab") as handle:
        return subprocess.Popen(
            [
                sys.executable,
                str(script),
                "--kubeconfig",
                kubeconfig,
                "--node",
                node,
                "--pods",
                str(pods),
                "--cpu",
                "64",
                "--memory",
                "256Gi",
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )


# ---------------------------------------------------------------- one run


@dataclass
class RunResult:
    p50: float
    p90: float
    max: float
    wall: float
    first_deploy: float
    peak_rss_mib: float
    final_rss_mib: float
    cpu_rollout: float
    cpu_idle: float
    api_calls: float
    api_calls_rollout: float
    api_calls_idle: float
    reconciles_idle: float
    completed: int
    waits_cluster: float
    waits_pause: float
    waits_operator: float
    waits_operator_share: float
    queue_depth_max: float
    reconcile_ms: float
    details: dict[str, str] = field(default_factory=dict)


FIGURES = (
    ("p50", "time to Completed p50 (s)"),
    ("p90", "time to Completed p90 (s)"),
    ("max", "time to Completed max (s)"),
    ("wall", "rollout wall time (s)"),
    ("first_deploy", "first deploy, all Healthy (s)"),
    ("peak_rss_mib", "operator peak RSS (MiB)"),
    ("final_rss_mib", "operator final RSS (MiB)"),
    ("cpu_rollout", "operator CPU during rollout (%)"),
    ("cpu_idle", "operator CPU idle 10 s (%)"),
    ("api_calls", "API writes, whole run"),
    ("api_calls_rollout", "API writes, rollout only"),
    ("api_calls_idle", "API writes while idle"),
    ("reconciles_idle", "reconciles while idle"),
    ("completed", "Rollouts Completed"),
    ("waits_cluster", "per Rollout: waiting on Deployments (s)"),
    ("waits_pause", "per Rollout: in a pause step (s)"),
    ("waits_operator", "per Rollout: operator's turn (s)"),
    ("waits_operator_share", "operator's turn (% of waiting)"),
    ("queue_depth_max", "work queue depth, max sampled"),
    ("reconcile_ms", "mean reconcile, rollout (ms)"),
)


@contextlib.contextmanager
def bench_nodes(
    cluster: Cluster, args: argparse.Namespace, procs: Processes, logdir: Path
) -> Iterator[None]:
    names = [f"sluice-bench-{i}" for i in range(args.nodes)]
    try:
        for name in names:
            cluster.create_node(name, args.pods_per_node)
            procs.kubelets.append(
                start_kubelet(
                    args.fake_kubelet,
                    cluster.kubeconfig,
                    name,
                    args.pods_per_node,
                    logdir / f"{name}.log",
                )
            )
        yield
    finally:
        for proc in procs.kubelets:
            Processes.stop(proc)
        procs.kubelets.clear()
        for name in names:
            cluster.delete_node(name)


def one_run(cluster: Cluster, args: argparse.Namespace, number: int, logdir: Path) -> RunResult:
    procs = Processes()
    oplog = logdir / f"operator-run{number}.log"
    sampler: Sampler | None = None
    try:
        with bench_nodes(cluster, args, procs, logdir):
            try:
                log(f"run {number}: deleting namespace {NAMESPACE} if present")
                cluster.delete_namespace()
                cluster.create_namespace()
                version = source_version()  # the tree may change between runs
                procs.operator = start_operator(cluster.kubeconfig, oplog)
                log(f"operator pid {procs.operator.pid} ready (log {oplog}); sluice {version}")
                sampler = Sampler(procs.operator.pid)
                sampler.start()
                result = measure(cluster, args, procs.operator.pid, sampler)
                result.details["sources"] = version
                return result
            finally:
                if sampler is not None:
                    sampler.stop()
                Processes.stop(procs.operator)
                _report_log(oplog)
                log(f"run {number}: cleaning up namespace {NAMESPACE}")
                cluster.delete_namespace()  # while the fake kubelets still finish pods
    finally:
        for proc in [procs.operator, *procs.kubelets]:
            Processes.stop(proc)


def _report_log(path: Path) -> None:
    """Warnings and errors the operator logged (it runs at WARNING, so all its lines)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return
    if lines:
        log(f"operator logged {len(lines)} line(s); first ones:")
        for line in lines[:5]:
            print("    " + line[:400])


def measure(cluster: Cluster, args: argparse.Namespace, pid: int, sampler: Sampler) -> RunResult:
    names = [f"r{i:03d}" for i in range(args.rollouts)]
    pool = ThreadPoolExecutor(max_workers=16)

    # ------------------------------------------------------------ first deploy
    started = time.monotonic()
    list(
        pool.map(
            lambda n: cluster.custom.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, rollout(n, "app:1")
            ),
            names,
        )
    )
    log(f"created {len(names)} Rollouts in {time.monotonic() - started:.1f} s")

    def all_healthy() -> bool:
        items = cluster.list_rollouts()
        healthy = sum(1 for b in items if condition(b, "Healthy") == "True")
        return healthy == len(names)

    wait_for("all Rollouts Healthy", all_healthy, timeout=args.timeout, every=POLL)
    first_deploy = time.monotonic() - started
    log(f"all {len(names)} Healthy {first_deploy:.1f} s after the first create")

    # ------------------------------------------------------------ idle
    time.sleep(args.settle)
    before_idle = scrape()
    a = read_proc(pid)
    time.sleep(args.idle)
    b = read_proc(pid)
    after_idle = scrape()
    idle = delta(after_idle, before_idle)
    cpu_idle = cpu_percent(a, b)
    log(
        f"idle {args.idle:.0f} s: CPU {cpu_idle:.2f} %, API writes {api_total(idle):.0f}, "
        f"reconciles {fmt_counters(idle, 'reconcile:')}"
    )

    # ------------------------------------------------------------ the rollout
    new_template = {n: template(n, "app:2") for n in names}
    revision = {n: template_hash(t) for n, t in new_template.items()}
    applied: dict[str, float] = {}
    generation: dict[str, int] = {}

    def apply(name: str) -> None:
        patch = {"spec": {"template": new_template[name]}}
        body = cluster.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, name, patch
        )
        applied[name] = time.monotonic()
        generation[name] = int(body["metadata"]["generation"])

    before_rollout = scrape()
    cpu_start = read_proc(pid)
    rollout_start = time.monotonic()
    list(pool.map(apply, names))
    log(f"changed {len(names)} templates in {time.monotonic() - rollout_start:.2f} s")

    completed: dict[str, float] = {}
    degraded: set[str] = set()
    # Who an unfinished Rollout waits for, sampled once a second: Rollout-seconds by class.
    waiting = dict.fromkeys(("cluster", "pause", "operator"), 0.0)
    last_diagnosis = rollout_start
    depths: list[float] = []
    deadline = rollout_start + args.timeout
    ticks = 0
    while len(completed) < len(names) and time.monotonic() < deadline:
        tick = time.monotonic()
        ticks += 1
        diagnose = ticks % 4 == 0 and not args.no_diagnosis
        pending: list[dict[str, Any]] = []
        for body in cluster.list_rollouts():
            name = body["metadata"]["name"]
            if name in completed or name not in applied:
                continue
            if done(body, generation[name], revision[name]):
                completed[name] = time.monotonic()
            else:
                pending.append(body)
                if condition(body, "Degraded") == "True":
                    degraded.add(name)
        if diagnose and pending:
            settled = settled_children(cluster)
            interval, last_diagnosis = tick - last_diagnosis, tick
            for body in pending:
                who = _waits_for(body, settled.get(body["metadata"]["name"], False))
                waiting[who] += interval
            depths.append(scrape().get("workqueue_depth", 0.0))
        time.sleep(max(0.0, POLL - (time.monotonic() - tick)))
    cpu_end = read_proc(pid)
    after_rollout = scrape()
    pool.shutdown()

    times = [completed[n] - applied[n] for n in completed]
    wall = (max(completed.values()) if completed else time.monotonic()) - rollout_start
    missing = sorted(set(names) - set(completed))
    if missing:
        log(f"{len(missing)} Rollout(s) not Completed after {args.timeout:.0f} s: {missing[:10]}")
        if degraded:
            log(f"Degraded among them: {sorted(degraded)[:10]}")
    time.sleep(1)
    final = read_proc(pid)
    rollout_calls = delta(after_rollout, before_rollout)
    reconciles = rollout_calls.get("reconcile_duration_seconds_count", 0.0)
    reconcile_ms = (
        1000 * rollout_calls.get("reconcile_duration_seconds_sum", 0.0) / max(reconciles, 1)
    )
    total_waits = sum(waiting.values()) or 1
    during = sampler.between(rollout_start, cpu_end.t)
    log(
        f"rollout: {len(completed)}/{len(names)} Completed, wall {wall:.1f} s; "
        f"{len(during)} RSS/CPU samples; max sampled RSS "
        f"{max((s.rss for s in during), default=0) / MIB:.0f} MiB"
    )
    return RunResult(
        p50=percentile(times, 50),
        p90=percentile(times, 90),
        max=max(times, default=float("nan")),
        wall=wall,
        first_deploy=first_deploy,
        peak_rss_mib=max(peak_rss(pid), *(s.rss for s in sampler.samples)) / MIB,
        final_rss_mib=final.rss / MIB,
        cpu_rollout=cpu_percent(cpu_start, cpu_end),
        cpu_idle=cpu_idle,
        api_calls=api_total(after_rollout),
        api_calls_rollout=api_total(rollout_calls),
        api_calls_idle=api_total(idle),
        reconciles_idle=sum(v for k, v in idle.items() if k.startswith("reconcile:")),
        completed=len(completed),
        waits_cluster=waiting["cluster"] / len(names),
        waits_pause=waiting["pause"] / len(names),
        waits_operator=waiting["operator"] / len(names),
        waits_operator_share=100 * waiting["operator"] / total_waits,
        queue_depth_max=max(depths, default=0.0),
        reconcile_ms=reconcile_ms,
        details={
            "API writes by call, whole run": fmt_counters(after_rollout, "api:"),
            "API writes by call, rollout": fmt_counters(rollout_calls, "api:"),
            "reconciles by result, rollout": fmt_counters(rollout_calls, "reconcile:"),
        },
    )


# ---------------------------------------------------------------- main


def _terminated(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def report(results: list[RunResult], rollouts: int) -> None:
    print()
    print(f"== {rollouts} Rollouts, {len(results)} run(s)")
    runs = " ".join(f"{'run ' + str(i + 1):>9}" for i in range(len(results)))
    print(f"{'figure':40} {runs} {'median':>9}")
    for attr, label in FIGURES:
        values = [float(getattr(r, attr)) for r in results]
        cells = " ".join(f"{v:>9.2f}" for v in values)
        print(f"{label:40} {cells} {statistics.median(values):>9.2f}")
    med = {attr: statistics.median(float(getattr(r, attr)) for r in results) for attr, _ in FIGURES}
    print()
    print("ratios (medians):")
    print(f"  p90 / p50 time to Completed        {med['p90'] / med['p50']:.2f}")
    print(f"  max time to Completed / wall       {med['max'] / med['wall']:.2f}")
    print(f"  API writes per Rollout (rollout)   {med['api_calls_rollout'] / rollouts:.1f}")
    print(f"  CPU idle / CPU during rollout      {med['cpu_idle'] / med['cpu_rollout']:.4f}")
    print(f"  final / peak RSS                   {med['final_rss_mib'] / med['peak_rss_mib']:.2f}")
    for i, r in enumerate(results, 1):
        for key, value in r.details.items():
            print(f"  run {i}: {key}: {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rollouts", "-n", type=int, default=100, help="Rollouts (default 100)")
    parser.add_argument("--runs", "-k", type=int, default=1, help="runs; medians are printed")
    parser.add_argument("--idle", type=float, default=10.0, help="idle window, s (default 10)")
    parser.add_argument(
        "--settle", type=float, default=2.0, help="wait after all Healthy before the idle window"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="per phase, s")
    parser.add_argument(
        "--no-diagnosis",
        action="store_true",
        help="no Deployment LIST and /metrics scrape each second during the rollout",
    )
    parser.add_argument("--nodes", type=int, default=2, help="fake nodes for the pods")
    parser.add_argument("--pods-per-node", type=int, default=1000)
    parser.add_argument(
        "--fake-kubelet",
        type=Path,
        default=Path(
            os.environ.get("SLUICE_FAKE_KUBELET", ROOT.parent / "shared/k8s/fake_kubelet.py")
        ),
        help="the local control plane's fake_kubelet.py",
    )
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG", os.path.expanduser("~/.cache/local-k8s/kubeconfig")),
    )
    parser.add_argument("--log-dir", type=Path, default=None, help="default: a temporary dir")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)  # clean up on kill, as on Ctrl-C
    if not args.fake_kubelet.exists():
        parser.error(f"{args.fake_kubelet} not found (use --fake-kubelet)")

    logdir = args.log_dir or Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    logdir.mkdir(parents=True, exist_ok=True)
    log(f"logs in {logdir}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    cluster = Cluster(args.kubeconfig)
    cluster.ensure_crds()

    results: list[RunResult] = []
    for number in range(1, args.runs + 1):
        results.append(one_run(cluster, args, number, logdir))
        if args.runs > 1:
            print(json.dumps({k: v for k, v in vars(results[-1]).items() if k != "details"}))
    report(results, args.rollouts)
    log(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
