"""schemathesis fuzzes POST /v1/alerts from its OpenAPI description, against the real
HTTP server and receiver on 127.0.0.1: no 5xx, only documented answers, and nothing
aborted that no valid alert asked for."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.case import Case
from schemathesis.generation.modes import GenerationMode
from tests.support.webhook import NAMESPACE, ROLLOUT, TOKEN, webhook

SPEC = Path(__file__).resolve().parents[2] / "operator/sluice/openapi/alerts.yaml"
SCHEMA = schemathesis.openapi.from_dict(yaml.safe_load(SPEC.read_text()))
OPERATION = SCHEMA["/v1/alerts"]["POST"]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_alert_webhook_survives_fuzzing(mode: GenerationMode) -> None:
    """Valid bodies: every documented check. Invalid ones: never a 5xx (what the
    receiver tolerates, e.g. an extra field of another type, may still be a 200)."""
    negative = mode == GenerationMode.NEGATIVE
    with webhook() as hook:
        calls = {"n": 0}

        @settings(
            max_examples=150,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=OPERATION.as_strategy(generation_mode=mode))
        def fuzz(case: Case) -> None:
            calls["n"] += 1
            case.call_and_validate(
                base_url=hook.url,
                headers={"Authorization": f"Bearer {TOKEN}"},
                checks=[not_a_server_error] if negative else None,
            )

        fuzz()
        assert calls["n"] >= 50
        # Only alerts that asked to abort this Rollout, firing, were recorded.
        for alert in hook.recorded:
            assert alert.labels.get("sluice_action") == "abort"
            assert (alert.namespace, alert.rollout) == (NAMESPACE, ROLLOUT)
        assert len(hook.kube.runs) <= 1


def test_the_description_matches_the_receiver() -> None:
    """Every status the receiver answers with is documented."""
    documented = set(yaml.safe_load(SPEC.read_text())["paths"]["/v1/alerts"]["post"]["responses"])
    assert {"200", "400", "401", "408", "413", "503"} <= documented
