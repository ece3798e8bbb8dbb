"""The chart's RBAC is enough: a whole rollout with analysis, an abort, a retry and an
alert, by an operator whose only identity is the chart's ServiceAccount. Zero 403s.

(That it is not wider than the calls made is test_zz_rbac_used.py: every grant was
used by a request some e2e operator made.) Also: Sluice never writes the `.spec` of a Rollout,
which Git owns: an abort and a retry leave it and `metadata.generation` unchanged.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.e2e import test_analysis
from tests.e2e.chart_identity import ChartIdentity
from tests.e2e.conftest import Cluster, Operator, wait_for
from tests.e2e.test_analysis import Stage, aborted, alert, post_alert

pytestmark = pytest.mark.e2e
pytest.importorskip("helm_python")


def test_a_rollout_with_analysis_abort_retry_and_alert_as_the_chart_identity(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = ChartIdentity(cluster, tmp_path, {"alerts": {"enabled": True}})
    kubeconfig = identity.install()
    args = identity.deployment_args()
    assert any(a.startswith("--alert-token-secret=") for a in args)
    monkeypatch.setattr(
        test_analysis, "Operator", lambda _kc, ns, log: Operator(kubeconfig, ns, log)
    )
    s = Stage(cluster, tmp_path, args)
    try:
        s.start_canary()
        wait_for("canary at 50", lambda: cluster.status("shop").get("canaryWeight") == 50)
        before = cluster.rollout("shop")
        s.canary.set(error_rate=0.2)
        aborted(s, "AnalysisFailed")
        after = cluster.rollout("shop")
        assert after["spec"] == before["spec"]
        assert after["metadata"]["generation"] == before["metadata"]["generation"]

        s.canary.set(error_rate=0.0)
        cluster.action("retry", "shop")
        wait_for(
            "retried: canary at 50 again",
            lambda: (
                cluster.status("shop").get("canaryWeight") == 50
                and not cluster.status("shop").get("abort")
            ),
            timeout=90,
        )
        secret = cluster.get("secret", f"{identity.release}-sluice-alert-token")
        assert secret is not None
        token = base64.b64decode(secret["data"]["token"]).decode()
        code, body = post_alert(s, token, alert(cluster.namespace))
        assert code == 200, body
        aborted(s, "AlertFired")
        assert cluster.rollout("shop")["spec"] == before["spec"]

        log = s.operator.log.read_text()
        denied = [line for line in log.splitlines() if "Forbidden" in line or "forbidden" in line]
        assert denied == [], "\n".join(denied[:5])
    finally:
        s.close()
        identity.close()


def test_job_gates_and_webhooks_as_the_chart_identity(cluster: Cluster, tmp_path: Path) -> None:
    """A Job step (created, watched, pruned after promotion) and a webhook gate, with the
    chart's rules only: no 403 in the operator's log."""
    from tests.e2e.test_job_gate import apply, jobs
    from tests.e2e.test_webhooks import Gates

    identity = ChartIdentity(cluster, tmp_path, {})
    kubeconfig = identity.install()
    op = Operator(kubeconfig, cluster.namespace, tmp_path / "operator.log")
    op.args = identity.deployment_args()
    gates = Gates()
    gates.answers["/ok"] = 200
    try:
        op.start()
        apply(cluster, "Succeeded")
        wait_for("past the job step", lambda: cluster.status().get("currentStepIndex") == 2)
        hooks = [{"name": "ok", "type": "confirm-promotion", "url": f"{gates.url}/ok"}]
        patch = {"spec": {"strategy": {"canary": {"webhooks": hooks}}}}
        cluster.kubectl("patch", "rollout", "web", "--type", "merge", "-p", json.dumps(patch))
        cluster.action("promote")
        wait_for("Healthy on v2", lambda: cluster.status().get("stableSlot") == "b", timeout=60)
        assert gates.called("/ok")
        wait_for("the Job cleaned up", lambda: jobs(cluster) == [], timeout=30)
        denied = [line for line in op.log.read_text().splitlines() if "orbidden" in line]
        assert denied == [], "\n".join(denied[:5])
    finally:
        op.stop()
        gates.server.shutdown()
        identity.close()


def test_cluster_wide_mode_with_track_config_and_blue_green_as_the_chart_identity(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The chart's default, cluster-wide mode, run by a real process watching every
    namespace (kept to this test's Rollouts by a shard label): trackConfig's watch,
    labelling, copies and pruning, and a blue-green switch of the user's Service, with the
    rendered ClusterRole only. No 403 anywhere in the log (403s that the code would
    otherwise swallow are logged as forbidden)."""
    from tests.e2e import test_bluegreen as bg
    from tests.e2e import test_track_config as tc

    identity = ChartIdentity(cluster, tmp_path, {"watchNamespaces": []})
    kubeconfig = identity.install()
    assert identity.cluster_scoped, "cluster-wide mode renders a ClusterRole"
    shard = {"sluice.dev/controller-instance": cluster.namespace}
    op = Operator(kubeconfig, cluster.namespace, tmp_path / "operator.log")
    op.cluster_wide = True
    op.args = [*identity.deployment_args(), "--instance", cluster.namespace]
    try:
        op.start()
        tc.config_map(cluster, "v1")
        web = tc.rollout(track=True)
        web["metadata"]["labels"] = shard
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(web))
        wait_for("v1 Healthy", lambda: cluster.status().get("phase") == "Healthy", timeout=90)
        first = tc.env_source(cluster, "web-a")
        tc.config_map(cluster, "v2", {"sluice.dev/track-config": "auto"})
        wait_for("a canary of the new config", lambda: tc.at_pause(cluster), timeout=60)
        cluster.action("promote")
        wait_for("v2 promoted", lambda: cluster.status().get("stableSlot") == "b", timeout=60)
        tc.config_map(cluster, "v3", {"sluice.dev/track-config": "auto"})
        wait_for("v3 at the pause", lambda: tc.at_pause(cluster), timeout=60)
        wait_for("v1's copy pruned", lambda: cluster.get("configmap", first) is None)

        blue = bg.rollout(name="shop")
        blue["metadata"]["labels"] = shard
        blue["spec"]["template"]["metadata"]["labels"] = {"app": "web"}
        blue["spec"]["selector"] = {"matchLabels": {"app": "web", "tier": "shop"}}
        blue["spec"]["template"]["metadata"]["labels"]["tier"] = "shop"
        bg.apply(cluster, *bg.services(), blue)
        wait_for("shop Healthy", lambda: cluster.status("shop").get("phase") == "Healthy")
        wait_for("active on a", lambda: cluster.selector("web-active").get(bg.SLOT) == "a")
        cluster.set_image("nginx:1.28", name="shop")
        wait_for("switched", lambda: cluster.selector("web-active").get(bg.SLOT) == "b", 90)
        denied = [line for line in op.log.read_text().splitlines() if "orbidden" in line]
        assert denied == [], "\n".join(denied[:5])
    finally:
        op.stop()
        identity.close()


def test_a_cluster_analysis_template_as_the_chart_identity(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Rollout of a watched namespace analysed by a ClusterAnalysisTemplate: the chart's
    small ClusterRole lets the namespaced operator read it (the AnalysisRun is made)."""
    identity = ChartIdentity(cluster, tmp_path, {})
    kubeconfig = identity.install()
    monkeypatch.setattr(
        test_analysis, "Operator", lambda _kc, ns, log: Operator(kubeconfig, ns, log)
    )
    s = Stage(cluster, tmp_path, identity.deployment_args())
    name = f"{cluster.namespace}-http-health"
    (template,) = s.templates
    template["kind"] = "ClusterAnalysisTemplate"
    template["metadata"] = {"name": name}
    canary = s.rollout["spec"]["strategy"]["canary"]
    canary["analysis"]["templates"] = [{"templateName": name, "clusterScope": True}]
    try:
        s.start_canary()
        wait_for("canary at 50", lambda: cluster.status("shop").get("canaryWeight") == 50)
        run = s.run("bg")
        assert [m["name"] for m in run["spec"]["metrics"]] == [
            m["name"] for m in template["spec"]["metrics"]
        ]
        log = s.operator.log.read_text()
        denied = [line for line in log.splitlines() if "Forbidden" in line or "forbidden" in line]
        assert denied == [], "\n".join(denied[:5])
    finally:
        s.close()
        cluster.kubectl("delete", "clusteranalysistemplate", name, "--wait=false", check=False)
        identity.close()


def test_a_retry_prunes_the_failed_attempts_run_as_the_chart_identity(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """revisionHistoryLimit 0 keeps no past attempt's AnalysisRuns: after a retry the
    failed run goes (the chart's delete on analysisruns), with no 403."""
    identity = ChartIdentity(cluster, tmp_path, {})
    kubeconfig = identity.install()
    monkeypatch.setattr(
        test_analysis, "Operator", lambda _kc, ns, log: Operator(kubeconfig, ns, log)
    )
    s = Stage(cluster, tmp_path, identity.deployment_args())
    s.rollout["spec"]["revisionHistoryLimit"] = 0
    try:
        s.start_canary()
        wait_for("canary at 50", lambda: cluster.status("shop").get("canaryWeight") == 50)
        s.canary.set(error_rate=0.2)
        aborted(s, "AnalysisFailed")
        failed = s.run("bg")["metadata"]["name"]
        s.canary.set(error_rate=0.0)
        cluster.action("retry", "shop")

        def runs() -> list[str]:
            out = cluster.kubectl("get", "analysisruns.sluice.dev", "-o", "name")
            return [line.split("/", 1)[1] for line in out.split()]

        wait_for(f"the failed run {failed} pruned", lambda: failed not in runs(), timeout=90)
        assert cluster.status("shop")["attempt"] > int(failed.split("-")[-2])
        log = s.operator.log.read_text()
        denied = [line for line in log.splitlines() if "Forbidden" in line or "forbidden" in line]
        assert denied == [], "\n".join(denied[:5])
    finally:
        s.close()
        identity.close()
