"""A shared MLflow server, as teams run it: scripts/mlflow_server.sh starts `mlflow server` on a real PostgreSQL
(scripts/pg_server.sh) with proxied artifacts, the tiny real pipeline and `reslab tune` record everything through
it (nothing in the project's folders), and a server that is down stops a stage with a clear error before it works.
"""
from __future__ import annotations

import http.server
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.artifacts import download_artifacts
from mlflow.tracking import MlflowClient

from conftest import REPO, make_project, run, write_params
from reslab import cli, tracking
from reslab.config import ConfigError
from reslab.tracking.store import _is_local
from reslab.layout import Layout

SCRIPT = REPO / "scripts" / "mlflow_server.sh"
LOCAL_STORE = ("mlflow.db", "mlartifacts", "mlruns")  # where a client-side store would write


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def files_of(root: Path) -> dict[str, int]:
    """Every file under `root` with its modification time."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- the check, without a real server

def test_a_dead_server_fails_train_before_it_reads_anything(tmp_path, monkeypatch, capsys):
    root = tmp_path / "proj"
    root.mkdir()
    write_params(root / "params.yaml", {})
    before = files_of(root)
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("RESLAB_DEBUG", raising=False)
    start = time.monotonic()
    # no prepared data exists: without the early check this would fail on the data instead
    assert cli.main(["train", "baseline", "--seed", "1", "--root", str(root), "--no-progress"]) == 2
    assert time.monotonic() - start < tracking.SERVER_PROBE_TIMEOUT_S
    err = capsys.readouterr().err
    assert f"reslab train: error: the MLflow tracking server MLFLOW_TRACKING_URI={uri} is not reachable" in err
    assert "scripts/mlflow_server.sh start" in err
    assert files_of(root) == before


def test_a_dead_server_is_its_own_error_and_says_what_to_do(tmp_path, monkeypatch):
    """Not a ConfigError (the settings may be right, the server merely down); the message names the URI without its
    password, and both ways out."""
    uri = f"http://u:secret@127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(tracking.TrackingServerError) as caught:
        tracking.setup(tmp_path, "reslab")
    assert isinstance(caught.value, RuntimeError) and not isinstance(caught.value, ConfigError)
    message = str(caught.value)
    assert message.startswith(f"the MLflow tracking server MLFLOW_TRACKING_URI=http://u:***@127.0.0.1:") and (
        "is not reachable: no answer" in message)
    assert "secret" not in message and "scripts/mlflow_server.sh start DIR" in message
    assert "unset MLFLOW_TRACKING_URI" in message
    assert not (tmp_path / "mlflow.db").exists()


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status, fails", [(404, None), (403, None), (401, "asks for a login (HTTP 401)"),
                                           (500, "HTTP 500"), (503, "HTTP 503")])
def test_the_probe_judges_the_servers_answer(tmp_path, monkeypatch, status, fails):
    """404 (no such experiment) and 403 (logged in, not allowed to read it) mean the server is up and takes the login;
    401 is a login it wants (tests/test_security.py: a real server's); 5xx means it cannot reach its store."""
    handler = type("Answer", (_Answer,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
        monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.mlflow/credentials
        if fails:
            with pytest.raises(tracking.TrackingServerError, match=re.escape(fails)):
                tracking.check_store(tmp_path)
        else:
            assert tracking.check_store(tmp_path) == uri
    finally:
        server.shutdown()
        server.server_close()


def test_only_project_stores_are_local(tmp_path, monkeypatch, capsys):
    """A database URI is no folder of this project: its artifacts are not put into <root>/mlartifacts, and the user
    is told to use the server for several machines (once per process); its password is never printed."""
    assert _is_local(f"sqlite:///{tmp_path}/mlflow.db") and _is_local(str(tmp_path / "mlruns"))
    assert _is_local(f"file://{tmp_path}/mlruns")
    for uri in ("postgresql://u:secret@db/mlflow", "postgresql+psycopg://u@db/mlflow", "mysql://db/m",
                "http://127.0.0.1:5000", "https://mlflow.example.com", "databricks"):
        assert not _is_local(uri), uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://u:secret@db-host/mlflow")
    for _ in range(2):
        assert tracking.check_store(tmp_path) == "postgresql://u:secret@db-host/mlflow"
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "scripts/mlflow_server.sh" in err and "secret" not in err


# ----------------------------------------------------------------------------- the real server

@pytest.fixture
def mlflow_server(tmp_path):
    """`scripts/mlflow_server.sh start` on a free port, with its own PostgreSQL and artifacts under tmp_path;
    always stopped. Skipped where PostgreSQL is not installed (under CI=true a skip fails the run)."""
    state = Path(tempfile.mkdtemp(prefix="reslab-mlflow-", dir="/tmp"))
    state.chmod(0o755)  # PostgreSQL runs as user postgres when the tests run as root; tmp_path is private
    artifacts = tmp_path / "server-artifacts"
    try:
        start = subprocess.run(["bash", str(SCRIPT), "start", str(state), "--port", str(free_port()),
                                "--pg-port", str(free_port()), "--artifacts-destination", str(artifacts)],
                               capture_output=True, text=True, timeout=400)
        if start.returncode == 3:
            pytest.skip(start.stderr.strip())
        assert start.returncode == 0, start.stderr
        uri = start.stdout.strip()
        assert uri.startswith("http://127.0.0.1:")
        yield SimpleNamespace(uri=uri, artifacts=artifacts,
                              stop=lambda: subprocess.run(["bash", str(SCRIPT), "stop", str(state)], check=True,
                                                          capture_output=True, timeout=120))
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)


@pytest.mark.slow
def test_pipeline_and_tune_record_through_the_server(tmp_path, tiny_images, mlflow_server):
    root = make_project(tmp_path / "proj", tiny_images, {"train.epochs": 1, "replicates.seeds": [1],
                                                         "replicates.design": "holdout",  # one seed
                                                         "tune.epochs": 1, "tune.heartbeat_interval": 5})
    env = {"MLFLOW_TRACKING_URI": mlflow_server.uri}
    run(["dvc", "add", "-q", "data"], root)
    run(["dvc", "repro"], root, env=env, timeout=900)
    run(["reslab", "tune", "--role", "baseline", "--n-trials", "1", "--no-progress"], root, env=env, timeout=600)

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    exp = client.get_experiment_by_name("reslab")
    assert exp.artifact_location.startswith("mlflow-artifacts:/")  # proxied by the server
    runs = client.search_runs([exp.experiment_id], max_results=100)
    training = {r.data.tags["role"]: r for r in runs
                if r.data.tags.get("stage", "").startswith("train_") and r.data.tags.get("seed") == "1"}
    assert set(training) == {"baseline", "resnet"}
    for r in training.values():
        assert r.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(r.info.run_id, "val_accuracy")] == [1]
        assert "test_accuracy" in r.data.metrics  # written into it by the evaluate stage
        assert {"figures/learning_curves.png", "figures/augmented_examples.png"} <= {
            a.path for a in client.list_artifacts(r.info.run_id, "figures")}
    evaluate = [r for r in runs if r.data.tags.get("stage") == "evaluate"]
    assert len(evaluate) == 1 and "baseline_test_accuracy_mean" in evaluate[0].data.metrics
    assert "figures/replicates.png" in {a.path for a in client.list_artifacts(evaluate[0].info.run_id, "figures")}
    trials = [r for r in runs if "trial_number" in r.data.tags]
    assert len(trials) == 1 and [m.step for m in client.get_metric_history(trials[0].info.run_id, "val_accuracy")]
    study = client.get_run(trials[0].data.tags["mlflow.parentRunId"])  # `reslab tune`'s parent run
    assert "best_params_baseline.yaml" in {a.path for a in client.list_artifacts(study.info.run_id)}

    champion = client.get_model_version_by_alias("reslab-classifier", "champion")
    assert champion.tags["source_run_id"] in {r.info.run_id for r in training.values()}
    model_uri = client.get_model_version_download_uri("reslab-classifier", champion.version)
    assert model_uri.startswith("mlflow-artifacts:/"), model_uri  # proxied by the server
    model_dir = download_artifacts(artifact_uri=model_uri, dst_path=str(tmp_path / "champion"),
                                   tracking_uri=mlflow_server.uri)
    assert (Path(model_dir) / "MLmodel").is_file()

    # the bytes are in the server's --artifacts-destination ...
    stored = mlflow_server.artifacts
    for r in [*training.values(), *evaluate]:
        run_dir = stored / r.info.artifact_uri.removeprefix("mlflow-artifacts:/")
        assert (run_dir / "figures").is_dir(), run_dir
    assert (stored / study.info.artifact_uri.removeprefix("mlflow-artifacts:/") / "best_params_baseline.yaml").is_file()
    assert (stored / model_uri.removeprefix("mlflow-artifacts:/") / "MLmodel").is_file()
    assert len(list(stored.rglob("MLmodel"))) >= len(training)  # the logged models
    # ... and nowhere in the client's project
    assert [p for p in LOCAL_STORE if (root / p).exists()] == []

    # the server goes down: a stage fails at once, with the remedy, and writes nothing
    mlflow_server.stop()
    layout = Layout(root)
    layout.replicate_model("baseline", 1).unlink()
    before = files_of(root)
    start = time.monotonic()
    dead = run(["reslab", "train", "baseline", "--seed", "1", "--no-progress"], root, env=env, check=False,
               timeout=120)
    elapsed = time.monotonic() - start
    assert dead.returncode == 2, dead.stderr
    assert elapsed < 30, elapsed
    assert (f"reslab train: error: the MLflow tracking server MLFLOW_TRACKING_URI={mlflow_server.uri} is not "
            "reachable") in dead.stderr
    assert "scripts/mlflow_server.sh start" in dead.stderr
    assert not layout.replicate_model("baseline", 1).exists()
    assert not layout.replicate_checkpoint("baseline", 1).exists()
    assert files_of(root) == before
