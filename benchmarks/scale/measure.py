"""The scale benchmark: a fleet of Rollouts through real operators on a real API server.

    bash tests/tools/k8s-ns.sh scale run nice -n 5 .venv/bin/python \\
        benchmarks/scale/measure.py --rollouts 1000 --shards 1

Phases, each printed as it ends (and all figures as one JSON line at the end):

1. fill: the operator(s) start on an empty fleet; `fleet.py` creates N Rollouts (per
   shard) and N foreign Deployments; time until every Rollout is Healthy. A timeline every
   10 s: Rollouts Healthy, ReplicaSets and pods in the cluster (the controller-manager's
   progress), the operator's CPU and work queue: who sets the pace.
2. idle: 30 s to settle, then 60 s untouched: RSS, CPU, every API request of the operator
   (`sluice_api_requests_total`), reconciles, watch events (foreign ones must be 0).
3. progressing: 1 % of the Rollouts get a new image (steps: 50 %, pause 10 s, 100 %, pause
   10 s; background analysis every 10 s against the fake Prometheus this script serves);
   CPU and the reconcile histogram until they have all completed.
4. restart: SIGTERM the operator(s), start them again: time to /readyz, time until every
   Rollout has been reconciled and the queue is empty, and the writes made (status,
   Events, Deployments): with nothing changed, there should be none.

The operators run under `nice -n 5` (the machine is shared); their logs (warnings only)
go to --log-dir.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fleet

ROOT = Path(__file__).resolve().parents[2]
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------ the operator process


@dataclass
class Proc:
    cpu: float  # CPU seconds (user + system)
    rss: int  # bytes
    hwm: int  # bytes, peak RSS so far


def read_proc(pid: int) -> Proc:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / TICKS
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    kb = lambda k: int(status[k].split()[0]) * 1024  # noqa: E731
    return Proc(cpu, kb("VmRSS"), kb("VmHWM"))


class Operator:
    def __init__(self, name: str, port: int, instance: str | None, logdir: Path, args: Any):
        self.name, self.port, self.instance = name, port, instance
        self.logdir, self.args = logdir, args
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> None:
        cmd = ["nice", "-n", "5", str(ROOT / ".venv/bin/sluice"), "run"]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "WARNING"]
        cmd += self.args.operator_args.split()
        if self.instance:
            cmd += ["--instance", self.instance]
        if self.args.leader_elect:
            cmd += ["--leader-elect", "--lease-name", f"sluice-{self.instance or 'default'}"]
            cmd += ["--lease-namespace", "default"]
        out = (self.logdir / f"{self.name}.log").open("ab")
        self.started = time.monotonic()
        env = {**os.environ}
        if self.args.tracemalloc:
            env["SLUICE_TRACEMALLOC"] = str(self.logdir / f"{self.name}.tracemalloc")
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def wait_ready(self, timeout: float = 300) -> float:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"operator {self.name} exited: see {self.logdir}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"operator {self.name} not ready after {timeout} s")
            time.sleep(0.1)
        return time.monotonic() - self.started

    def metrics(self) -> dict[str, float]:
        # A scrape at 10,000 Rollouts on a saturated machine can take longer than a minute:
        # waited for (a few tries), never the end of the run.
        for attempt in range(5):
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/metrics", timeout=120
                ) as r:
                    text = r.read().decode()
                break
            except OSError as exc:
                log(f"  /metrics of {self.name}: {exc} (try {attempt + 1})")
        else:
            raise RuntimeError(f"/metrics of {self.name} did not answer")
        out: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line[0] == "#" or line.startswith("sluice_rollout_"):
                continue  # per-Rollout series: 10,000s of lines nobody sums here
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
        return out

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ------------------------------------------------------------------ figures from /metrics


def total(m: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in m.items() if k.startswith(prefix))


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


def by_label(m: dict[str, float], prefix: str) -> dict[str, float]:
    return {k[len(prefix) :]: v for k, v in m.items() if k.startswith(prefix) and v}


def histogram(m: dict[str, float], name: str) -> list[tuple[float, float]]:
    """Cumulative (edge, count) of a histogram, +Inf last."""
    buckets = []
    for k, v in m.items():
        if k.startswith(f"{name}_bucket{{le="):
            edge = k.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if edge == "+Inf" else float(edge), v))
    return sorted(buckets)


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """histogram_quantile: linear within the bucket holding the q-th observation."""
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    rank = q * buckets[-1][1]
    low_edge, low_count = 0.0, 0.0
    for edge, count in buckets:
        if count >= rank:
            if edge == float("inf"):
                return low_edge
            share = (rank - low_count) / (count - low_count) if count > low_count else 1.0
            return low_edge + (edge - low_edge) * share
        low_edge, low_count = edge, count
    return low_edge


def share_at_most(buckets: list[tuple[float, float]], edge: float) -> float:
    counts = dict(buckets)
    return counts.get(edge, float("nan")) / buckets[-1][1] if buckets and buckets[-1][1] else 0.0


def sum_metrics(ops: list[Operator]) -> dict[str, float]:
    out: dict[str, float] = {}
    for op in ops:
        for k, v in op.metrics().items():
            out[k] = out.get(k, 0.0) + v
    return out


# ------------------------------------------------------------------ a fake Prometheus


class FakePrometheus(http.server.ThreadingHTTPServer):
    """Answers every query with one series of value 0: what the analysis costs Sluice, not
    what a real Prometheus costs."""

    queries = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._answer()

    def _answer(self) -> None:
        FakePrometheus.queries += 1
        body = json.dumps(
            {
                "status": "success",
                "data": {
                    "resultType": "vector",
                    "result": [{"metric": {}, "value": [time.time(), "0"]}],
                },
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


# ------------------------------------------------------------------ phases


@dataclass
class Result:
    figures: dict[str, Any] = field(default_factory=dict)

    def put(self, **kw: Any) -> None:
        self.figures.update(kw)
        for k, v in kw.items():
            log(f"  {k} = {v}")


def healthy(
    api: kubernetes.client.ApiClient,
    generation_of: dict[str, int] | None = None,
    degraded: list[int] | None = None,
) -> int:
    """Healthy Rollouts (of their latest generation, when given); Degraded ones, which
    stay so until someone acts, are counted into `degraded`."""
    n = 0
    for body in fleet.rollouts(api):
        st = body.get("status") or {}
        if degraded is not None and st.get("phase") == "Degraded":
            degraded[0] += 1
        if st.get("phase") != "Healthy" or st.get("canaryRevision"):
            continue
        if generation_of is not None:
            key = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
            if st.get("observedGeneration", 0) < generation_of.get(key, 0):
                continue
        n += 1
    return n


def cpu_of(ops: list[Operator], before: list[Proc], after: list[Proc], seconds: float) -> float:
    return 100 * sum(a.cpu - b.cpu for a, b in zip(after, before, strict=True)) / seconds


def fill(ops: list[Operator], api: kubernetes.client.ApiClient, args: Any, res: Result) -> None:
    total_rollouts = args.rollouts * args.shards
    log(f"fill: {total_rollouts} Rollouts ({args.shards} shard(s)), {args.foreign} foreign")
    started = time.monotonic()
    creators = []
    for i, op in enumerate(ops):
        fa = argparse.Namespace(**vars(args))
        fa.instance = op.instance
        fa.foreign = args.foreign if i == 0 else 0
        creators.append(
            threading.Thread(
                target=lambda a=fa: res.put(
                    **{f"create_s_{a.instance or 'default'}": round(fleet.create(a), 1)}
                )
            )
        )
    if args.reuse:  # the fleet is there (a run cut short): wait for it to settle
        creators = []
    for t in creators:
        t.start()
    timeline = []
    last = [read_proc(op.pid) for op in ops]
    last_t = time.monotonic()
    last_m = sum_metrics(ops)
    creating = True
    while True:
        time.sleep(args.every)
        creating = any(t.is_alive() for t in creators)
        now = time.monotonic()
        procs = [read_proc(op.pid) for op in ops]
        m = sum_metrics(ops)
        reconcile_s = m.get("sluice_reconcile_duration_seconds_sum", 0) - last_m.get(
            "sluice_reconcile_duration_seconds_sum", 0
        )
        stuck = [0]
        row = {
            "t": round(now - started),
            "healthy": healthy(api, degraded=stuck),
            "degraded": stuck[0],
            "rollouts": fleet.count("rollouts", api),
            "replicasets": fleet.count("replicasets", api),
            "pods": fleet.count("pods", api),
            "cpu_pct": round(cpu_of(ops, last, procs, now - last_t), 1),
            "rss_mib": round(sum(p.rss for p in procs) / 2**20),
            "queue": m.get("sluice_workqueue_depth", 0),
            "reconcile_busy_pct": round(100 * reconcile_s / (now - last_t) / args.workers, 1),
        }
        timeline.append(row)
        log("  " + " ".join(f"{k}={v}" for k, v in row.items()))
        last, last_t, last_m = procs, now, m
        if not creating and row["healthy"] + row["degraded"] >= total_rollouts:
            break
        if now - started > args.fill_timeout:
            log("  fill timeout: going on with what is Healthy")
            break
    took = time.monotonic() - started
    busy = [r["reconcile_busy_pct"] for r in timeline]
    res.put(
        all_healthy_s=round(took),
        fill_peak_cpu_pct=max(r["cpu_pct"] for r in timeline),
        fill_mean_cpu_pct=round(sum(r["cpu_pct"] for r in timeline) / len(timeline), 1),
        fill_mean_reconcile_busy_pct=round(sum(busy) / len(busy), 1),
        fill_max_queue=max(r["queue"] for r in timeline),
        fill_degraded=timeline[-1]["degraded"],
    )
    res.figures["timeline"] = timeline


def idle(ops: list[Operator], args: Any, res: Result) -> None:
    log(f"idle: {args.settle} s to settle, then {args.idle} s untouched")
    time.sleep(args.settle)
    m0, p0, t0 = sum_metrics(ops), [read_proc(op.pid) for op in ops], time.monotonic()
    time.sleep(args.idle)
    # The CPU is read before the closing scrape: a /metrics scrape of N Rollouts' series
    # is the scraper's cost, measured on its own below (Prometheus pays it every interval).
    p1, t1 = [read_proc(op.pid) for op in ops], time.monotonic()
    m1 = sum_metrics(ops)
    p2 = [read_proc(op.pid) for op in ops]
    d = delta(m1, m0)
    res.put(
        idle_rss_mib=[round(p.rss / 2**20) for p in p1],
        peak_rss_mib=[round(p.hwm / 2**20) for p in p1],
        idle_cpu_pct=round(cpu_of(ops, p0, p1, t1 - t0), 2),
        scrape_cpu_s=round(sum(b.cpu - a.cpu for a, b in zip(p1, p2, strict=True)), 2),
        idle_api_requests=total(d, "sluice_api_requests_total"),
        idle_reconciles=total(d, "sluice_reconcile_total"),
        idle_watch_events=total(d, "sluice_watch_events_total"),
        watch_events_foreign_total=total(
            m1, 'sluice_watch_events_total{kind="Deployment",origin="foreign"'
        )
        + total(m1, 'sluice_watch_events_total{kind="Service",origin="foreign"'),
        watch_events=by_label(m1, "sluice_watch_events_total"),
        api_requests_total=by_label(m1, "sluice_api_requests_total"),
    )


def progressing(
    ops: list[Operator], api: kubernetes.client.ApiClient, args: Any, res: Result
) -> None:
    bodies = fleet.rollouts(api)
    chosen = random.Random(7).sample(bodies, max(1, len(bodies) * args.progress_pct // 100))
    log(f"progressing: {len(chosen)} Rollouts get a new image")
    custom = kubernetes.client.CustomObjectsApi(api)
    m0, p0, t0 = sum_metrics(ops), [read_proc(op.pid) for op in ops], time.monotonic()
    generation_of: dict[str, int] = {}
    for body in chosen:
        meta = body["metadata"]
        patch = {
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.28"}]}}}
        }
        written = custom.patch_namespaced_custom_object(
            fleet.GROUP, fleet.VERSION, meta["namespace"], "rollouts", meta["name"], patch
        )
        generation_of[f"{meta['namespace']}/{meta['name']}"] = written["metadata"]["generation"]
    wanted = set(generation_of)
    while True:
        time.sleep(2)
        done = 0
        for body in fleet.rollouts(api):
            key = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
            st = body.get("status") or {}
            if (
                key in wanted
                and st.get("phase") == "Healthy"
                and not st.get("canaryRevision")
                and st.get("observedGeneration", 0) >= generation_of[key]
            ):
                done += 1
        if done == len(wanted) or time.monotonic() - t0 > args.progress_timeout:
            break
    m1, p1, t1 = sum_metrics(ops), [read_proc(op.pid) for op in ops], time.monotonic()
    d = delta(m1, m0)

    def of(name: str) -> list[tuple[float, float]]:
        before = dict(histogram(m0, name))
        return [(edge, count - before.get(edge, 0.0)) for edge, count in histogram(m1, name)]

    hist = of("sluice_reconcile_duration_seconds")
    own = of("sluice_reconcile_own_seconds")  # less the API waits (empty on older code)
    res.put(
        progress_rollouts=len(wanted),
        progress_completed=done,
        progress_s=round(t1 - t0, 1),
        progress_cpu_pct=round(cpu_of(ops, p0, p1, t1 - t0), 1),
        progress_reconciles=round(hist[-1][1]) if hist else 0,
        reconcile_p50_ms=round(1000 * quantile(hist, 0.5), 1),
        reconcile_p99_ms=round(1000 * quantile(hist, 0.99), 1),
        reconcile_share_le_100ms=round(share_at_most(hist, 0.1), 4),
        own_p50_ms=round(1000 * quantile(own, 0.5), 1),
        own_p99_ms=round(1000 * quantile(own, 0.99), 1),
        own_share_le_100ms=round(share_at_most(own, 0.1), 4),
        progress_writes=by_label(d, "sluice_api_calls_total"),
        progress_prometheus_queries=FakePrometheus.queries,
    )


def restart(ops: list[Operator], api: kubernetes.client.ApiClient, args: Any, res: Result) -> None:
    log("restart: SIGTERM, start again, until every Rollout is reconciled")
    for op in ops:
        op.stop()
    for op in ops:
        op.start()
    ready = [op.wait_ready() for op in ops]
    expected = args.rollouts  # per operator
    while True:
        # /metrics holds series per Rollout: scraping it often would itself slow the operator
        time.sleep(args.restart_poll)
        ms = [op.metrics() for op in ops]
        done = all(
            total(m, "sluice_reconcile_total") >= expected
            and m.get("sluice_workqueue_depth", 1) == 0
            for m in ms
        )
        if done or time.monotonic() - ops[0].started > args.restart_timeout:
            break
    caught_up = max(time.monotonic() - op.started for op in ops)
    time.sleep(5)
    m = sum_metrics(ops)
    res.put(
        restart_ready_s=[round(r, 1) for r in ready],
        restart_caught_up_s=round(caught_up, 1),
        restart_reconciles=total(m, "sluice_reconcile_total"),
        restart_writes=by_label(m, "sluice_api_calls_total"),
        restart_status_writes=m.get('sluice_api_calls_total{call="status"}', 0.0),
        restart_requests=by_label(m, "sluice_api_requests_total"),
        restart_rss_mib=[round(read_proc(op.pid).rss / 2**20) for op in ops],
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--kubeconfig", default=None)
    fleet.add_fleet_args(p)
    p.add_argument("--shards", type=int, default=1, help="1: one operator; 2: default + blue")
    p.add_argument("--leader-elect", action="store_true", help="each operator holds its Lease")
    p.add_argument("--workers", type=int, default=8, help="the operator's --workers")
    p.add_argument("--api-limit", type=int, default=8, help="the operator's --api-limit")
    p.add_argument("--every", type=float, default=10.0, help="timeline period during the fill")
    p.add_argument("--settle", type=float, default=30.0)
    p.add_argument("--idle", type=float, default=60.0)
    p.add_argument("--progress-pct", type=int, default=1)
    p.add_argument("--progress-timeout", type=float, default=600.0)
    p.add_argument("--fill-timeout", type=float, default=7200.0)
    p.add_argument(
        "--reuse", action="store_true", help="the fleet exists: the fill only waits for it"
    )
    p.add_argument("--restart-timeout", type=float, default=600.0)
    p.add_argument("--restart-poll", type=float, default=3.0, help="seconds between scrapes")
    p.add_argument("--phases", default="fill,idle,progressing,restart")
    p.add_argument("--tracemalloc", action="store_true", help="SLUICE_TRACEMALLOC in the operator")
    p.add_argument("--log-dir", default=None)
    args = p.parse_args()
    args.operator_args = f"--workers {args.workers} --api-limit {args.api_limit}"
    # SIGTERM (and SIGINT, which a background job ignores) end the run through `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    if args.foreign is None:
        args.foreign = args.rollouts
    logdir = Path(args.log_dir or tempfile.mkdtemp(prefix="sluice-scale-"))
    logdir.mkdir(parents=True, exist_ok=True)
    log(f"logs in {logdir}; load average {os.getloadavg()}")
    prom_port = int(args.prometheus.rsplit(":", 1)[1])
    prom = FakePrometheus(("127.0.0.1", prom_port), _Handler)
    threading.Thread(target=prom.serve_forever, daemon=True).start()
    subprocess.run(["kubectl", "apply", "-f", str(ROOT / "crds")], check=True, capture_output=True)
    api = fleet.client(args.kubeconfig)
    instances: list[str | None] = [None, "blue"][: args.shards]
    ops = [Operator(i or "default", 18300 + n, i, logdir, args) for n, i in enumerate(instances)]
    res = Result()
    res.put(operator_args=args.operator_args, rollouts_per_shard=args.rollouts,
            shards=args.shards, foreign=args.foreign, foreign_replicas=args.foreign_replicas,
            replicas=args.replicas)  # fmt: skip
    phases = args.phases.split(",")
    try:
        for op in ops:
            op.start()
        res.put(start_ready_s=[round(op.wait_ready(), 1) for op in ops])
        if "fill" in phases:
            fill(ops, api, args, res)
        if "idle" in phases:
            idle(ops, args, res)
        if "progressing" in phases:
            progressing(ops, api, args, res)
            idle_after = argparse.Namespace(**{**vars(args), "settle": 20.0, "idle": 30.0})
            log("idle again after the progressing phase:")
            sub = Result()
            idle(ops, idle_after, sub)
            res.figures["idle_after_progress"] = {
                k: sub.figures[k] for k in ("idle_rss_mib", "idle_cpu_pct", "idle_api_requests")
            }
        if "restart" in phases:
            restart(ops, api, args, res)
    finally:
        for op in ops:
            op.stop()
        prom.shutdown()
        res.figures["load_average_end"] = os.getloadavg()
        print("RESULT " + json.dumps(res.figures), flush=True)


if __name__ == "__main__":
    main()
