"""Two "machines" (two project copies, two `reslab tune` processes) cooperate on one study through a real
PostgreSQL server, started by the project's own scripts/pg_server.sh, that also serves as the MLflow store."""
from __future__ import annotations

import shutil
import time
import socket
import subprocess
import tempfile
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from conftest import REPO
from tuning_project import EXPERIMENT, make_study_project, run_reslab

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """URLs of two databases (optuna, mlflow) on a throwaway server; skipped where PostgreSQL is not installed."""
    base = Path(tempfile.mkdtemp(prefix="reslab-pg-", dir="/tmp"))
    base.chmod(0o755)  # the server runs as user postgres when the tests run as root
    port = free_port()
    start = subprocess.run(["bash", str(REPO / "scripts/pg_server.sh"), "start", str(base), str(port)],
                           capture_output=True, text=True, timeout=120)
    if start.returncode == 3:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(start.stderr.strip())
    assert start.returncode == 0, start.stderr
    url = start.stdout.strip()
    try:
        for db in ("optuna", "mlflow"):
            subprocess.run(["psql", url, "-qc", f"CREATE DATABASE {db}"], check=True, capture_output=True)
        root_url = url.rsplit("/", 1)[0]
        yield {"optuna": f"{root_url}/optuna", "mlflow": f"{root_url}/mlflow"}
    finally:
        subprocess.run(["bash", str(REPO / "scripts/pg_server.sh"), "stop", str(base)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_two_machines_share_one_rdb_study(tmp_path, postgres):
    # longer trials than the other tune tests, so that the second machine joins while the first is still busy
    overrides = {"tune.n_trials": 6, "tune.epochs": 30, "tune.pruner": "none", "tune.heartbeat_interval": 5}
    machines = [make_study_project(tmp_path / f"machine{i}", **overrides) for i in (1, 2)]
    env = {"MLFLOW_TRACKING_URI": postgres["mlflow"]}
    first = run_reslab(machines[0], "--storage", postgres["optuna"], env=env)
    # the second machine joins once the study and its MLflow parent run exist, as a colleague's would
    study = None
    for _ in range(600):
        try:
            study = optuna.load_study(study_name="reslab-resnet", storage=postgres["optuna"])
            if "mlflow_parent_run_id" in study.user_attrs:
                break
        except KeyError:
            pass
        assert first.poll() is None, first.stdout.read()
        time.sleep(0.1)
    second = run_reslab(machines[1], "--storage", postgres["optuna"], env=env)
    outs = [p.communicate(timeout=400)[0] for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], "\n----\n".join(o[-6000:] for o in outs)  # in full

    study = optuna.load_study(study_name="reslab-resnet", storage=postgres["optuna"])
    numbers = [t.number for t in study.trials]
    assert numbers == list(range(len(numbers)))  # no trial lost
    assert 6 <= len(numbers) <= 7, outs  # two workers asking at the same instant may add one
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials), outs

    client = MlflowClient(tracking_uri=postgres["mlflow"])
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1
    assert sorted(int(r.data.tags["trial_number"]) for r in children) == numbers  # each trial ran exactly once
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    workers = {r.data.tags["worker"] for r in children}
    assert len(workers) == 2, f"both machines should have run trials, got {workers}\n" + "\n".join(outs)
