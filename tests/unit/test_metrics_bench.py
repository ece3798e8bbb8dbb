"""benchmarks/metrics_scrape.py runs end to end on a small fleet and prints every figure."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_metrics_scrape_bench_prints_its_figures() -> None:
    if shutil.which("curl") is None:
        pytest.skip("the bench scrapes with curl")
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "metrics_scrape.py"), "--rollouts", "40",
         "--runs", "1"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    figures = {
        name: float(value)
        for name, value in re.findall(
            r"^(series|bytes|build cpu|loop lateness|forget) ([\d.]+)", out, re.M
        )
    }
    assert set(figures) == {"series", "bytes", "build cpu", "loop lateness", "forget"}, out
    assert figures["series"] > 40 and figures["bytes"] > 0, out
