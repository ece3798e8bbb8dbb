"""Installed size of the operator's runtime set: what the image carries on top of Python.

Makes a fresh venv, installs `requirements.lock` and Sluice with `--no-deps` (as the
Dockerfile does), and prints the size of site-packages without pip/setuptools (the image
has none), then after the image's prune (kubernetes/aio: the client's unused asyncio
copy). `--with PKG...` adds packages, e.g. the previous set for comparison:

    .venv/bin/python benchmarks/image_size.py
    .venv/bin/python benchmarks/image_size.py --with prometheus-api-client rich matplotlib
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLING = ("pip", "setuptools", "_distutils_hack", "pkg_resources", "wheel")
PRUNED = ("kubernetes/aio",)  # keep in step with the Dockerfile
TARGET_MB = 150


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--with", dest="extra", nargs="*", default=[], help="more packages")
    ap.add_argument("--top", type=int, default=8, help="largest packages to list")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-size-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps"]
        subprocess.run([*pip, "-r", str(ROOT / "requirements.lock")], check=True)
        subprocess.run([*pip, str(ROOT)], check=True, capture_output=True)
        if args.extra:  # with their dependencies
            subprocess.run([*pip[:-1], *args.extra], check=True)
        site = next((venv / "lib").glob("python3*/site-packages"))
        for name in TOOLING:
            for path in site.glob(f"{name}*"):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
        entries = {p.name: size(p) for p in site.iterdir()}
        installed = sum(entries.values())
        print(f"runtime set, installed (site-packages without pip/setuptools): {mb(installed)}")
        for name, n in sorted(entries.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"  {name:32} {mb(n)}")
        for rel in PRUNED:
            shutil.rmtree(site / rel, ignore_errors=True)
        image = size(site)
        check = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sluice.handlers, sluice.leader"],
            capture_output=True,
            text=True,
        )
        verdict = "imports fine" if check.returncode == 0 else f"BROKEN: {check.stderr[-300:]}"
        print(f"as in the image (pruned {', '.join(PRUNED)}): {mb(image)}; operator {verdict}")
        met = image < TARGET_MB * 1e6
        print(f"target: < {TARGET_MB} MB -> {'met' if met else 'NOT met'}")
        return 0 if check.returncode == 0 and met else 1  # CI's size step fails on a miss


if __name__ == "__main__":
    sys.exit(main())
