"""The operator's runtime set carries no numpy, matplotlib or rich: what needs them says so."""

from __future__ import annotations

import subprocess
import sys

BLOCK = (
    "import sys\n"
    "for name in ('rich', 'matplotlib', 'numpy', 'pandas', 'prometheus_api_client'):\n"
    "    sys.modules[name] = None  # import fails as if not installed\n"
)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + code], capture_output=True, text=True, timeout=60
    )


def test_operator_imports_without_the_extras() -> None:
    proc = _python(
        "import sluice.handlers, sluice.leader, sluice.metrics.prometheus\n"
        "from sluice.cli.main import main\n"
        "try:\n"
        "    main(['run', '--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert "--leader-elect" in proc.stdout


def test_simulate_without_the_extra_names_it() -> None:
    proc = _python(
        "from sluice.cli.main import main\n"
        "sys.exit(main(['simulate', 'examples/simulate/healthy.yaml', '--instant']))\n"
    )
    assert proc.returncode == 3, proc.stderr
    assert "pip install 'sluice[cli]'" in proc.stderr


def test_plot_without_matplotlib_names_the_sim_extra() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['matplotlib'] = None\n"
            "from sluice.cli.main import main\n"
            "sys.exit(main(['simulate', 'examples/simulate/healthy.yaml', '--scenario',"
            " 'examples/simulate/healthy-scenario.yaml', '--instant', '--plot', '/tmp/x.png']))\n",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "sluice[sim]" in proc.stdout + proc.stderr


def test_watch_selectors_keep_foreign_objects_and_other_shards_on_the_server() -> None:
    from sluice.handlers import watch_selectors

    default = watch_selectors(None)
    assert default[("sluice.dev", "v1alpha1", "rollouts")] == "!sluice.dev/controller-instance"
    # children of this shard only: the default one's carry no shard label
    unlabelled = ",!sluice.dev/controller-instance"
    assert default[("apps", "v1", "deployments")] == "sluice.dev/rollout" + unlabelled
    # Services by the role key: Sluice's own, and the users' a Rollout names (role=named)
    assert default[("", "v1", "services")] == "sluice.dev/role" + unlabelled
    assert default[("sluice.dev", "v1alpha1", "analysisruns")] == "sluice.dev/rollout" + unlabelled
    assert default[("batch", "v1", "jobs")] == "sluice.dev/rollout"  # few: not sharded
    blue = watch_selectors("blue")
    assert blue[("sluice.dev", "v1alpha1", "rollouts")] == "sluice.dev/controller-instance=blue"
    painted = ",sluice.dev/controller-instance=blue"
    assert blue[("apps", "v1", "deployments")] == "sluice.dev/rollout" + painted
    assert blue[("", "v1", "services")] == "sluice.dev/role" + painted
    assert blue[("sluice.dev", "v1alpha1", "analysisruns")] == "sluice.dev/rollout" + painted
