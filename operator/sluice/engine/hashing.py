"""Revision of a pod template: a short, stable hash of its canonical JSON."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def template_hash(template: dict[str, Any]) -> str:
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]
