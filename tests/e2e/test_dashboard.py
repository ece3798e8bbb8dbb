"""`kubectl sluice dashboard` in headless Chromium (DevTools protocol): the page follows a
live rollout's weight without being reloaded, and charts a live analysis' measurements
against the metric's threshold."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import Cluster, Operator, wait_for
from tests.e2e.test_analysis import Stage, stage  # noqa: F401  (the fixture)
from tests.e2e.test_canary import at_step, healthy_v1

pytestmark = pytest.mark.e2e
PLUGIN = str(Path(sys.executable).parent / "kubectl-sluice")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Page:
    """One Chromium tab, driven over its DevTools websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.next_id = ws, 0

    async def eval(self, expression: str) -> Any:
        self.next_id += 1
        call = {"id": self.next_id, "method": "Runtime.evaluate",
                "params": {"expression": expression, "returnByValue": True}}  # fmt: skip
        await self.ws.send_str(json.dumps(call))
        while True:
            answer = json.loads((await self.ws.receive()).data)
            if answer.get("id") == self.next_id:
                return answer["result"]["result"].get("value")

    async def until(self, what: str, expression: str, want: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = await self.eval(expression)
            if last == want:
                return
            await asyncio.sleep(0.2)
        pytest.fail(f"page never showed {what}: last {last!r}", pytrace=False)

    async def until_true(
        self, what: str, expression: str, check: Callable[[Any], bool], timeout: float = 60
    ) -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = await self.eval(expression)
            if last is not None and check(last):
                return last
            await asyncio.sleep(0.2)
        pytest.fail(f"page never showed {what}: last {last!r}", pytrace=False)


@contextlib.contextmanager
def dashboard_tab(cluster: Cluster, tmp_path: Path) -> Iterator[str]:
    """`kubectl sluice dashboard -n <namespace>` open in headless Chromium: the tab's
    DevTools websocket URL."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    port, devtools = free_port(), free_port()
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig}
    server = subprocess.Popen(
        [PLUGIN, "dashboard", "--port", str(port), "-n", cluster.namespace],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    browser = None
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith(f"Sluice dashboard on http://127.0.0.1:{port}/")
        browser = subprocess.Popen(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
             f"--remote-debugging-port={devtools}", f"--user-data-dir={tmp_path / 'chromium'}",
             f"http://127.0.0.1:{port}/"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

        def page_target() -> str | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{devtools}/json/list", timeout=2) as r:
                tabs = json.loads(r.read())
            return next((t["webSocketDebuggerUrl"] for t in tabs if t["type"] == "page"), None)

        def target() -> str | None:
            try:
                return page_target()
            except OSError:
                return None

        yield wait_for("Chromium's DevTools", target, timeout=60)
    finally:
        if browser is not None:
            browser.terminate()
            browser.wait(timeout=10)
        server.terminate()
        server.wait(timeout=10)


def test_the_page_follows_a_rollout_without_reload(
    cluster: Cluster, operator: Operator, tmp_path: Path
) -> None:
    healthy_v1(cluster)
    with dashboard_tab(cluster, tmp_path) as ws_url:

        async def drive() -> None:
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(ws_url, max_msg_size=0) as ws,
            ):
                page = Page(ws)
                weight = "document.getElementById('weight')?.textContent ?? null"
                await page.until("the stable Rollout", weight, "0%")
                loaded = await page.eval("window.sluiceLoadedAt")
                title = await page.eval("document.querySelector('h2').textContent")
                assert title == f"{cluster.namespace}/web Healthy"
                await asyncio.to_thread(cluster.set_image, "nginx:1.28")
                await page.until("20 % on the canary", weight, "20%")
                await asyncio.to_thread(at_step, cluster, 3, "Paused", 50, 60)
                await page.until("50 % on the canary", weight, "50%")
                current = "document.querySelector('#steps li.cur')?.textContent ?? null"
                await page.until("the manual pause marked", current, "▶ pause (until promoted)")
                done = "document.querySelectorAll('#steps li.done').length"
                assert await page.eval(done) == 3
                events = "document.body.innerText.includes('RolloutStarted')"
                assert await page.eval(events) is True
                assert await page.eval("window.sluiceLoadedAt") == loaded, "the page reloaded"

        asyncio.run(drive())


# The last error-rate chart on the page: the limit line's y, each dot's x, y and verdict,
# and the metric's caption.
CHART = """(() => {
  const boxes = [...document.querySelectorAll('div.metric[data-metric="error-rate"]')];
  const box = boxes[boxes.length - 1];
  if (!box) return null;
  const line = box.querySelector('svg line.limit');
  return {
    limit: line ? parseFloat(line.getAttribute('y1')) : null,
    caption: box.firstChild.textContent,
    dots: [...box.querySelectorAll('svg circle.measurement')].map(c => [
      parseFloat(c.getAttribute('cx')), parseFloat(c.getAttribute('cy')),
      c.getAttribute('class').replace('measurement', '').trim()]),
  };
})()"""


def charted(run: dict[str, Any]) -> list[str]:
    """The verdicts of the run's error-rate measurements that have a number, oldest first."""
    (result,) = [m for m in run["status"]["metricResults"] if m["name"] == "error-rate"]

    def number(value: str | None) -> bool:
        try:
            return not math.isnan(float(value or ""))
        except ValueError:
            return False

    return [m["phase"] for m in result.get("measurements") or [] if number(m.get("value"))]


def test_the_chart_shows_measurements_against_the_threshold(
    stage: Stage,  # noqa: F811
    tmp_path: Path,
) -> None:
    # held at 50 % until the analysis decides: it measures every 2 s meanwhile
    stage.rollout["spec"]["strategy"]["canary"]["steps"] = [{"setWeight": 50}, {"pause": {}}]
    stage.start_canary()
    cluster = stage.cluster
    wait_for("canary at 50", lambda: cluster.status("shop").get("canaryWeight") == 50, timeout=60)
    with dashboard_tab(cluster, tmp_path) as ws_url:

        async def drive() -> None:
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(ws_url, max_msg_size=0) as ws,
            ):
                page = Page(ws)
                loaded = await page.until_true(
                    "the page", "window.sluiceLoadedAt ?? null", lambda v: v > 0
                )
                healthy = await page.until_true(
                    "three passing measurements",
                    CHART,
                    lambda c: sum(d[2] == "Successful" for d in c["dots"]) >= 3,
                )
                assert "error rate <= 0.05" in healthy["caption"], healthy
                limit = healthy["limit"]
                assert limit is not None, "no threshold line"
                # passing measurements are drawn under the 5 % line (SVG y grows downwards)
                assert all(y >= limit for _, y, phase in healthy["dots"] if phase == "Successful")

                stage.canary.set(error_rate=0.2)
                await page.until_true(
                    "a failed measurement",
                    CHART,
                    lambda c: any(d[2] == "Failed" for d in c["dots"]),
                    timeout=90,
                )
                await asyncio.to_thread(
                    wait_for,
                    "aborted",
                    lambda: cluster.status("shop").get("phase") == "Degraded",
                    60,
                )
                run = await asyncio.to_thread(stage.run, "bg")
                want = charted(run)
                final = await page.until_true(
                    "every measurement of the run",
                    CHART,
                    lambda c: [d[2] for d in c["dots"]] == want,
                    timeout=30,
                )
                limit = final["limit"]  # the scale grew to fit the failures
                assert limit is not None, "no threshold line"
                xs = [x for x, _, _ in final["dots"]]
                assert xs == sorted(xs) and len(set(xs)) == len(xs), "not in time order"
                for _, y, phase in final["dots"]:
                    if phase == "Failed":
                        assert y < limit, final  # above the line
                    elif phase == "Successful":
                        assert y >= limit, final
                assert "Failed" in want and "Successful" in want, want
                assert await page.eval("window.sluiceLoadedAt") == loaded, "the page reloaded"

        asyncio.run(drive())
