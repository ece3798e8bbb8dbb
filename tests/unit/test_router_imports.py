"""Each router module imports on its own (the engine validates with the routers'
capabilities, and the routers use the engine's types: no cycle may bite either way)."""

from __future__ import annotations

import subprocess
import sys

import pytest

MODULES = [
    "base",
    "factory",
    "nginx",
    "smi",
    "istio",
    "gateway",
    "matching",
    "services",
    "set",
    "owned",
]


@pytest.mark.parametrize("module", MODULES)
def test_a_router_module_imports_first(module: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", f"import sluice.routers.{module}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
