"""The API server answering 429, 500 and 504 to a fraction of the operator's requests.

The operator talks to the API server through a fault-injecting proxy (tests/support/
apiproxy.py); for a window, a seeded fraction of its requests gets 429 (with Retry-After),
500 or 504. It must back off (the requests per second the proxy saw in the window stay
near what it saw before: no storm), lose no state, and every round must end as its
scenario says, with the kill test's history invariants.

SLUICE_CHAOS_FAULT_FRACTION (default 0.3), SLUICE_CHAOS_FAULT_SECONDS (default 20).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.conftest import violations
from tests.chaos.fleet import SCENARIOS, Fleet
from tests.chaos.recording import ChaosRecorder
from tests.e2e.conftest import Cluster, Operator
from tests.support.apiproxy import FaultProxy

pytestmark = pytest.mark.e2e


@pytest.fixture
def proxy(cluster: Cluster) -> Iterator[FaultProxy]:
    p = FaultProxy(cluster.kubeconfig, seed=int(os.environ.get("SLUICE_CHAOS_SEED", 1)))
    p.start()
    yield p
    p.stop()


def test_429_500_504_for_a_while_back_off_and_lose_nothing(
    cluster: Cluster,
    router_crds: str,
    recorder: ChaosRecorder,
    proxy: FaultProxy,
    operators: list[Operator],  # after the proxy: stopped before it
    tmp_path: Path,
) -> None:
    fraction = float(os.environ.get("SLUICE_CHAOS_FAULT_FRACTION", 0.3))
    seconds = float(os.environ.get("SLUICE_CHAOS_FAULT_SECONDS", 20))
    fleet = Fleet(cluster, [SCENARIOS[0], SCENARIOS[1], SCENARIOS[2]])
    op = Operator(proxy.kubeconfig(), cluster.namespace, tmp_path / "operator.log")
    operators.append(op)
    op.start()
    assert op.proc is not None
    pid = op.proc.pid
    fleet.create()
    fleet.wait_healthy()

    done = threading.Event()
    calm: list[tuple[float, float]] = []

    def faults() -> None:
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not all(m.canary for m in fleet.members):
                time.sleep(0.2)
            calm.append((time.monotonic() - seconds, time.monotonic()))
            proxy.open_window(fraction)
            time.sleep(seconds)
            proxy.close_window()
        finally:
            done.set()

    thread = threading.Thread(target=faults, daemon=True)
    thread.start()
    try:
        fleet.run(until=done.is_set, timeout=240)
    finally:
        done.wait(timeout=120)
        proxy.close_window()
        fleet.close()

    assert op.proc.poll() is None and op.proc.pid == pid, "the operator exited"
    injected = sum(proxy.faults.values())
    assert set(proxy.faults) == {429, 500, 504}, proxy.faults
    peak, mean = proxy.rate_in_window()
    start, end = calm[0]
    before = [proxy.per_second.get(s, 0) for s in range(int(start), int(end))]
    calm_peak = max(before or [0])
    recorder.dump(tmp_path / "history.jsonl")
    bad = violations(fleet, recorder, kills=injected)  # an Event refused is not retried
    print(
        f"\napiserver faults: {injected} injected ({dict(proxy.faults)}) in {seconds:.0f}s at "
        f"{fraction:.0%}; requests/s in the window: peak {peak}, mean {mean:.1f} "
        f"(before it: peak {calm_peak}); {sum(m.round for m in fleet.members)} rounds, "
        f"{len(bad)} wrong outcomes"
    )
    assert not bad, "\n".join(bad)
    # Backoff, not a storm: a retry loop without backoff makes hundreds a second.
    assert peak <= max(3 * calm_peak, 30), f"request storm: {peak}/s (before: {calm_peak}/s)"
