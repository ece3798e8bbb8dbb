"""`kubectl sluice dashboard` in headless Chromium (DevTools protocol): the page follows a
live rollout's weight without being reloaded."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import Cluster, Operator, wait_for
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


def test_the_page_follows_a_rollout_without_reload(
    cluster: Cluster, operator: Operator, tmp_path: Path
) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    healthy_v1(cluster)
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

        ws_url = wait_for("Chromium's DevTools", target, timeout=60)

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
    finally:
        if browser is not None:
            browser.terminate()
            browser.wait(timeout=10)
        server.terminate()
        server.wait(timeout=10)
