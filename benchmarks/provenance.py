"""Which sources a benchmark figure was measured on (the tree may have uncommitted edits)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path


def source_version() -> str:
    """HEAD and a digest of the package's sources: the tree may have uncommitted edits."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted((root / "operator" / "sluice").rglob("*.py")):
        digest.update(path.read_bytes())
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "operator"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head, dirty = "unknown", ""
    edits = " with uncommitted changes" if dirty else ""
    return f"commit {head}{edits}, sources sha256 {digest.hexdigest()[:12]}"
