"""A shared server that lets in only its team (issue 23; docs/security.md), on real servers bound to 127.0.0.1:
`scripts/mlflow_server.sh start --auth` runs `mlflow server --app-name basic-auth` on a PostgreSQL that takes only
its SCRAM password (scripts/pg_server.sh); the admin makes a pipeline and a viewer account
(scripts/mlflow_accounts.py); the pipeline's account runs `dvc repro` and `reslab tune` through it. Then: no login
gets 401, a viewer reads but cannot write or move @champion, a wrong login fails a stage at once with one line, a
tampered weights file is refused by `reslab predict` and by the served model, a password given in a URL reaches no
record, and a TLS proxy with a self-signed certificate works with MLFLOW_TRACKING_SERVER_CERT_PATH only.

The server, its accounts and the pipeline's run are made once for the module (one xdist worker holds it all).
"""
from __future__ import annotations

import datetime
import http.client
import http.server
import ipaddress
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from conftest import REPO, copy_project, make_project, run, write_params
from reslab import cli, tracking
from reslab.models.serialization import model_file_sha256
from reslab.tracking.registry import verified_weights

SCRIPT = REPO / "scripts" / "mlflow_server.sh"
PG_SCRIPT = REPO / "scripts" / "pg_server.sh"
ACCOUNTS = REPO / "scripts" / "mlflow_accounts.py"
MODEL = "reslab-classifier"
ADMIN_PASSWORD = f"admin-{secrets.token_hex(8)}"
PIPELINE = ("pipeline", f"pipeline-{secrets.token_hex(8)}")
VIEWER = ("viewer", f"viewer-{secrets.token_hex(8)}")
PG_PASSWORD = f"pg-{secrets.token_hex(8)}"  # distinctive: searched for in every record and log


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_file(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def login(user: tuple[str, str] | None, **more: str) -> dict[str, str]:
    """The environment of a client logged in as `user` (MLflow's own variables)."""
    return {"MLFLOW_TRACKING_USERNAME": user[0], "MLFLOW_TRACKING_PASSWORD": user[1], **more} if user else more


@pytest.fixture
def as_user(monkeypatch, tmp_path):
    """Log this process's MLflow client in as a user (None: no login), with a HOME of its own (no
    ~/.mlflow/credentials but the test's)."""
    def use(user: tuple[str, str] | None, uri: str) -> MlflowClient:
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.delenv(key, raising=False)
        for key, value in login(user).items():
            monkeypatch.setenv(key, value)
        return MlflowClient(uri)
    return use


# ----------------------------------------------------------------------------- the scripts' refusals (no server)

def test_the_server_script_refuses_other_machines_without_authentication(tmp_path):
    """--host 0.0.0.0 turns authentication on and needs the admin's password (MLflow has none by default); --no-auth
    serves without it, after a warning; a password file others may read, and a password in a URL, are refused.
    Nothing starts and nothing listens: every case stops before the server would."""
    state = tmp_path / "server"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_AUTH_ADMIN_PASSWORD", "PGPASSWORD")}

    def start(*args: str, **more: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), "start", str(state), *args], capture_output=True, text=True,
                              env={**env, **more}, timeout=60)

    refused = start("--host", "0.0.0.0", "--port", "5999")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        "mlflow_server.sh: --host 0.0.0.0 serves other machines, so authentication is on, and its first start needs "
        "the admin's password (MLflow has no default): set MLFLOW_AUTH_ADMIN_PASSWORD or pass --admin-password-file "
        "FILE (mode 0600, 12 characters or more); or --no-auth to let everyone who reaches the port read, change and "
        "delete every run and model (docs/security.md)"]
    assert not state.exists()

    open_file = tmp_path / "admin.pw"
    open_file.write_text(ADMIN_PASSWORD + "\n")
    open_file.chmod(0o644)
    loose = start("--host", "0.0.0.0", "--admin-password-file", str(open_file))
    assert loose.returncode == 2
    assert f"--admin-password-file {open_file} has mode 644: others may read it; chmod 600" in loose.stderr

    local = start("--auth")  # on 127.0.0.1 too, when asked
    assert local.returncode == 2
    assert local.stderr.startswith("mlflow_server.sh: --auth: the first start needs the admin's password")

    in_url = start("--backend-store-uri", f"postgresql://reslab:{PG_PASSWORD}@db-host/mlflow")
    assert in_url.returncode == 2 and "holds a password" in in_url.stderr and PG_PASSWORD not in in_url.stderr

    # --no-auth: the warning, then the next check (an mlflow that is not there) stops it before anything starts
    warned = start("--host", "0.0.0.0", "--port", "5999", "--no-auth", MLFLOW=str(tmp_path / "no-mlflow"))
    assert warned.returncode == 3
    assert warned.stderr.splitlines() == [
        "mlflow_server.sh: warning: --no-auth on 0.0.0.0: everyone who can reach port 5999 may read, change and "
        "delete every run, artifact and registered model, and move @champion (docs/security.md)",
        f"mlflow_server.sh: MLFLOW={tmp_path / 'no-mlflow'} is not an executable"]
    assert not state.exists()


def test_postgres_beyond_localhost_needs_a_password(tmp_path):
    """pg_server.sh --host 0.0.0.0 refuses to start without a password, and says where one goes; a password file
    others may read is refused as libpq would ignore it."""
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    none = subprocess.run(["bash", str(PG_SCRIPT), "start", str(tmp_path / "pg"), "55999", "--host", "0.0.0.0"],
                          capture_output=True, text=True, env={**env, "PGPASSFILE": str(tmp_path / "none")})
    assert none.returncode == 1 and none.stderr.splitlines() == [
        "pg_server.sh: a server on 0.0.0.0 needs a password for user reslab (SCRAM-SHA-256), and none is set: set "
        f"PGPASSWORD, or add a line *:55999:*:reslab:PASSWORD to {tmp_path / 'none'} (mode 0600)"]
    loose = tmp_path / "pgpass"
    loose.write_text(f"*:55999:*:reslab:{PG_PASSWORD}\n")
    loose.chmod(0o644)
    refused = subprocess.run(["bash", str(PG_SCRIPT), "start", str(tmp_path / "pg"), "55999", "--host", "0.0.0.0"],
                             capture_output=True, text=True, env={**env, "PGPASSFILE": str(loose)})
    assert refused.returncode == 1 and "mode 644" in refused.stderr and PG_PASSWORD not in refused.stderr
    assert not (tmp_path / "pg").exists()


def test_reslab_never_turns_tls_verification_off():
    """MLFLOW_TRACKING_INSECURE_TLS appears in no code or script of reslab (the docs say it is never set)."""
    code = [*(REPO / "src").rglob("*.py"), *(REPO / "scripts").glob("*"), REPO / "Makefile", REPO / "dvc.yaml",
            REPO / "params.yaml", *(REPO / ".ci").glob("*")]
    assert [p for p in code if p.is_file() and "MLFLOW_TRACKING_INSECURE_TLS" in p.read_text(errors="replace")] == []
    assert "MLFLOW_TRACKING_INSECURE_TLS" in (REPO / "docs" / "security.md").read_text()


# ----------------------------------------------------------------------------- the real server

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow_server.sh start --auth` (127.0.0.1) with its own PostgreSQL (PGPASSWORD: its SCRAM password), the
    admin's password from a 0600 file; always stopped."""
    state = Path(tempfile.mkdtemp(prefix="reslab-auth-", dir="/tmp"))
    state.chmod(0o755)  # PostgreSQL runs as user postgres when the tests run as root
    secrets_dir = tmp_path_factory.mktemp("secrets")
    admin_file = private_file(secrets_dir / "admin.pw", ADMIN_PASSWORD)
    pg_port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, "PGPASSWORD": PG_PASSWORD}
    try:
        start = subprocess.run(["bash", str(SCRIPT), "start", str(state), "--auth", "--admin-password-file",
                                str(admin_file), "--port", str(free_port()), "--pg-port", str(pg_port),
                                "--workers", "1"], capture_output=True, text=True, env=env, timeout=400)
        if start.returncode == 3:
            pytest.skip(start.stderr.strip())  # no PostgreSQL here (under CI=true a skip fails the run)
        assert start.returncode == 0, start.stderr
        uri = start.stdout.strip()
        assert uri.startswith("http://127.0.0.1:")
        yield SimpleNamespace(uri=uri, state=state, artifacts=state / "artifacts", pg_port=pg_port,
                              pg_url=f"postgresql://reslab@127.0.0.1:{pg_port}", secrets=secrets_dir)
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def accounts(server):
    """The pipeline's account (made with scripts/mlflow_accounts.py) and a viewer's (reslab.tracking.accounts), by
    the admin; returns the outputs of the script."""
    from reslab.tracking.accounts import add_account

    admin = login(("admin", ADMIN_PASSWORD), MLFLOW_TRACKING_URI=server.uri, HOME=str(server.secrets))
    made = run([sys.executable, str(ACCOUNTS), "--params", str(REPO / "params.yaml"), "add", PIPELINE[0],
                "--role", "pipeline", "--password-file", str(private_file(server.secrets / "p.pw", PIPELINE[1]))],
               REPO, env=admin)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in admin.items():
            mp.setenv(key, value)
        add_account(server.uri, *VIEWER, "viewer", "reslab", MODEL)
    return made


@pytest.fixture(scope="module")
def pipeline(server, accounts, tiny_images, tmp_path_factory):
    """The pipeline's account runs the tiny pipeline (`dvc repro`) and a one-trial `reslab tune` through the server;
    the study is in the same PostgreSQL, its URL holding the password (masked wherever reslab shows it)."""
    root = make_project(tmp_path_factory.mktemp("auth") / "proj", tiny_images,
                        {"train.epochs": 1, "replicates.seeds": [1], "replicates.design": "holdout",
                         "tune.epochs": 1, "tune.heartbeat_interval": 5})
    run(["psql", f"{server.pg_url}/postgres", "-wqc", "CREATE DATABASE optuna"], root,
        env={"PGPASSWORD": PG_PASSWORD})
    env = login(PIPELINE, MLFLOW_TRACKING_URI=server.uri, HOME=str(root.parent))
    run(["dvc", "add", "-q", "data"], root)
    repro = run(["dvc", "repro"], root, env=env, timeout=900)
    storage = f"postgresql://reslab:{PG_PASSWORD}@127.0.0.1:{server.pg_port}/optuna"
    tune = run(["reslab", "tune", "--role", "baseline", "--n-trials", "1", "--no-progress", "--storage", storage],
               root, env=env, timeout=600)
    return SimpleNamespace(root=root, outputs=[accounts, repro, tune], storage=storage)


@pytest.mark.slow
def test_without_a_login_the_server_answers_401(server):
    reads = [("GET", "/api/2.0/mlflow/experiments/search?max_results=10"),
             ("GET", f"/api/2.0/mlflow/registered-models/get?name={MODEL}"),
             ("POST", "/api/2.0/mlflow/runs/create"), ("GET", "/api/2.0/mlflow-artifacts/artifacts"),
             ("GET", "/api/2.0/mlflow/users/current")]
    for method, path in reads:
        for auth in (None, ("admin", "wrong-password"), ("nobody", ADMIN_PASSWORD)):
            answer = requests.request(method, server.uri + path, auth=auth, json={} if method == "POST" else None,
                                      timeout=30)
            assert answer.status_code == 401, (method, path, auth, answer.status_code)
    assert requests.get(f"{server.uri}/health", timeout=30).status_code == 200  # the readiness check needs no login
    assert requests.get(f"{server.uri}/api/2.0/mlflow/users/current", auth=("admin", ADMIN_PASSWORD),
                        timeout=30).status_code == 200


@pytest.mark.slow
def test_the_pipeline_account_runs_dvc_repro_and_tune_through_the_server(server, pipeline):
    assert "pipeline: pipeline: MANAGE on experiment 'reslab'" in pipeline.outputs[0].stdout
    client = MlflowClient(server.uri)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in login(VIEWER).items():
            mp.setenv(key, value)
        exp = client.get_experiment_by_name("reslab")
        runs = client.search_runs([exp.experiment_id], max_results=100)
        training = {r.data.tags["role"]: r for r in runs if r.data.tags.get("stage", "").startswith("train_")
                    and r.data.tags.get("kind") != "family"}
        assert set(training) == {"baseline", "resnet"}
        assert all(r.info.status == "FINISHED" and r.info.user_id == PIPELINE[0] for r in training.values())
        assert [r for r in runs if r.data.tags.get("stage") == "evaluate"]
        assert [r for r in runs if "trial_number" in r.data.tags]  # reslab tune's trial
        champion = client.get_model_version_by_alias(MODEL, "champion")
    # the version records its weights' hash: the training run's, the file's the stage wrote
    role = next(role for role, r in training.items() if r.info.run_id == champion.tags["source_run_id"])
    assert champion.tags["weights_sha256"] == training[role].data.tags["weights_sha256"] == model_file_sha256(
        pipeline.root / "models" / role / "seed_1.pt")
    assert not (pipeline.root / "mlflow.db").exists() and not (pipeline.root / "mlartifacts").exists()


@pytest.mark.slow
def test_a_viewer_reads_but_cannot_write_or_move_the_alias(server, pipeline, as_user):
    client = as_user(VIEWER, server.uri)
    exp = client.get_experiment_by_name("reslab")
    run_id = client.search_runs([exp.experiment_id], "tags.stage = 'evaluate'")[0].info.run_id
    champion = client.get_model_version_by_alias(MODEL, "champion")
    source = client.get_model_version_download_uri(MODEL, champion.version)
    from mlflow.server import get_app_client

    writes = {
        "create a run": lambda: client.create_run(exp.experiment_id),
        "tag a run": lambda: client.set_tag(run_id, "verdict", "forged"),
        "delete a run": lambda: client.delete_run(run_id),
        "register a version": lambda: client.create_model_version(MODEL, source, run_id=run_id),
        "move @champion": lambda: client.set_registered_model_alias(MODEL, "champion", champion.version),
        "delete @champion": lambda: client.delete_registered_model_alias(MODEL, "champion"),
        "retag the version": lambda: client.set_model_version_tag(MODEL, champion.version, "weights_sha256", "0"),
        "make an account": lambda: get_app_client("basic-auth", tracking_uri=server.uri).create_user(
            "intruder", "intruder-password-1"),
    }
    for what, write in writes.items():
        with pytest.raises(MlflowException, match="403|PERMISSION_DENIED|Permission denied"):
            write()
            pytest.fail(f"a viewer could {what}")
    # nor can it put a file into the champion's artifacts through the server's proxy
    path = source.removeprefix("mlflow-artifacts:/")
    put = requests.put(f"{server.uri}/api/2.0/mlflow-artifacts/artifacts/{path}/artifacts/evil.pt", data=b"x",
                       auth=VIEWER, timeout=30)
    assert put.status_code == 403
    after = client.get_model_version_by_alias(MODEL, "champion")
    assert (after.version, after.tags) == (champion.version, champion.tags)


@pytest.mark.slow
def test_a_wrong_or_missing_login_fails_a_stage_at_once_with_one_line(server, pipeline, as_user, tmp_path, capsys):
    """train, tune and predict fail on the login before they read anything (the project has no data at all), in
    one line that names where the login came from and never the password."""
    root = tmp_path / "proj"
    root.mkdir()
    write_params(root / "params.yaml", {})
    wrong = (PIPELINE[0], "not-the-password")
    commands = [["train", "baseline", "--seed", "1", "--no-progress"], ["tune", "--role", "baseline"],
                ["predict", str(root / "params.yaml")]]
    for command in commands:
        as_user(wrong, server.uri)
        start = time.monotonic()
        assert cli.main([*command, "--root", str(root)]) == 2
        assert time.monotonic() - start < tracking.SERVER_PROBE_TIMEOUT_S
        err = capsys.readouterr().err
        assert err.splitlines() == [
            f"reslab {command[0]}: error: the MLflow tracking server MLFLOW_TRACKING_URI={server.uri} refused the "
            f"login of user 'pipeline' (HTTP 401: a wrong password, or no such account): correct it in "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, where it came from; accounts are the server "
            "admin's (scripts/mlflow_accounts.py)"], command
    assert sorted(p.name for p in root.iterdir()) == ["params.yaml"]

    as_user(None, server.uri)  # no login at all
    assert cli.main(["train", "baseline", "--seed", "1", "--root", str(root), "--no-progress"]) == 2
    assert "asks for a login (HTTP 401) and no login is set: set MLFLOW_TRACKING_USERNAME and " \
           "MLFLOW_TRACKING_PASSWORD" in capsys.readouterr().err
    (tmp_path / ".mlflow").mkdir()  # MLflow's credentials file (HOME is tmp_path), with a wrong password
    private_file(tmp_path / ".mlflow" / "credentials", f"[mlflow]\nmlflow_tracking_username = {VIEWER[0]}\n"
                                                       f"mlflow_tracking_password = {wrong[1]}")
    assert cli.main(["train", "baseline", "--seed", "1", "--root", str(root), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "refused the login of user 'viewer'" in err and "correct it in ~/.mlflow/credentials" in err
    assert wrong[1] not in err


@pytest.mark.slow
def test_a_viewer_running_a_stage_is_refused_in_one_line(server, pipeline, tmp_path):
    root = copy_project(pipeline.root, tmp_path / "proj", outputs=True)
    env = login(VIEWER, MLFLOW_TRACKING_URI=server.uri, HOME=str(tmp_path))
    refused = run(["reslab", "train", "baseline", "--seed", "1", "--no-progress"], root, env=env, check=False)
    assert refused.returncode == 2, refused.stderr
    lines = [line for line in refused.stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and lines[0].startswith("reslab train: error: the MLflow tracking server refused this "
                                                   "account (PERMISSION_DENIED)"), refused.stderr
    assert "Traceback" not in refused.stderr and VIEWER[1] not in refused.stderr


@pytest.mark.slow
def test_a_tampered_weights_file_is_refused_by_predict_and_by_the_served_model(server, pipeline, as_user, monkeypatch,
                                                                               tmp_path, capsys):
    from PIL import Image

    client = as_user(VIEWER, server.uri)  # reading the champion is a viewer's right
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    image = tmp_path / "image.png"
    Image.new("RGB", (40, 40), (200, 30, 30)).save(image)
    args = ["predict", str(image), "--root", str(pipeline.root), "--params", str(pipeline.root / "params.yaml")]
    assert cli.main(args) == 0
    assert "models:/reslab-classifier@champion, version" in capsys.readouterr().out

    champion = client.get_model_version_by_alias(MODEL, "champion")
    stored = server.artifacts / client.get_model_version_download_uri(MODEL, champion.version).removeprefix(
        "mlflow-artifacts:/")
    (weights,) = stored.rglob("*.pt")
    original = weights.read_bytes()
    other = next(p for p in (pipeline.root / "models").rglob("seed_1.pt") if p.read_bytes() != original)
    try:
        shutil.copyfile(other, weights)  # a real model file of the same project: it would load and answer
        assert cli.main(args) == 2
        err = capsys.readouterr().err
        assert err.splitlines() == [
            f"reslab predict: error: models:/{MODEL}/{champion.version} (@champion): its weights file {weights.name} "
            f"has SHA-256 {model_file_sha256(other)}, not the {champion.tags['weights_sha256']} recorded when the "
            "version was registered (weights_sha256 tag): it was changed since; not loaded"]
        with pytest.raises(ValueError, match="not the .* recorded when the model was logged: it was changed since; "
                                             "not served"):
            tracking.mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    finally:
        weights.write_bytes(original)
    assert tracking.mlflow.pyfunc.load_model(f"models:/{MODEL}@champion").metadata is not None


@pytest.mark.slow
def test_postgres_takes_only_its_password(server, tmp_path):
    """The server's PostgreSQL (scram-sha-256 in the pg_hba.conf the script wrote) lets in no one without the
    password; a standalone pg_server.sh takes it from ~/.pgpass (PGPASSFILE) as well as from PGPASSWORD."""
    hba = (server.state / "postgres" / "data" / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line and not line.startswith("#")]
    assert rules and {rule[-1] for rule in rules} == {"scram-sha-256"}
    env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE")}
    url = f"{server.pg_url}/mlflow"

    def psql(**more: str) -> subprocess.CompletedProcess:
        return subprocess.run(["psql", url, "-wqtAc", "SELECT 1"], capture_output=True, text=True,
                              env={**env, "PGPASSFILE": str(tmp_path / "none"), **more})

    assert psql().returncode != 0 and "no password supplied" in psql().stderr
    assert "password authentication failed" in psql(PGPASSWORD="wrong").stderr
    assert psql(PGPASSWORD=PG_PASSWORD).stdout.strip() == "1"

    port = free_port()
    pgpass = private_file(tmp_path / "pgpass", f"# host:port:database:user:password\n*:{port}:*:reslab:{PG_PASSWORD}")
    base = Path(tempfile.mkdtemp(prefix="reslab-pgpass-", dir="/tmp"))
    base.chmod(0o755)
    try:
        started = subprocess.run(["bash", str(PG_SCRIPT), "start", str(base), str(port), "--password"],
                                 capture_output=True, text=True, env={**env, "PGPASSFILE": str(pgpass)}, timeout=120)
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip() == f"postgresql://reslab@127.0.0.1:{port}/postgres"  # no password in it
        url = started.stdout.strip()
        assert psql(PGPASSFILE=str(pgpass)).stdout.strip() == "1"
        assert psql().returncode != 0
        assert PG_PASSWORD not in (base / "server.log").read_text()
    finally:
        subprocess.run(["bash", str(PG_SCRIPT), "stop", str(base)], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_a_password_in_a_url_reaches_no_record(server, pipeline, as_user):
    """The study's storage URL held PostgreSQL's password: it is in no MLflow param, tag or registry entry, no
    Optuna attribute, no output of the commands, no project file and no server log; the admin's password neither."""
    from reslab.config import ConfigError
    from reslab.tuning.storage import open_storage

    client = as_user(("admin", ADMIN_PASSWORD), server.uri)
    exp = client.get_experiment_by_name("reslab")
    tags = [t for r in client.search_runs([exp.experiment_id], max_results=1000) for t in r.data.tags.values()]
    assert f"postgresql://reslab:***@127.0.0.1:{server.pg_port}/optuna" in tags  # the study's storage, masked
    # every record: both databases whole (MLflow's runs, params, tags, registry; Optuna's studies, trials, attributes)
    records = [run(["pg_dump", "-w", "--data-only", f"{server.pg_url}/{db}"], pipeline.root,
                   env={"PGPASSWORD": PG_PASSWORD}).stdout for db in ("mlflow", "optuna")]
    assert "weights_sha256" in records[0] and "trial" in records[1]
    records += [p.stdout + p.stderr for p in pipeline.outputs]  # what the commands printed
    skipped = {".git", "data", "artifacts", "models"}  # binary: images, arrays, weights
    records += [p.read_text(errors="replace") for p in pipeline.root.rglob("*")  # params.yaml, dvc.yaml, dvc.lock, ...
                if p.is_file() and not skipped & set(p.relative_to(pipeline.root).parts)]
    records += [(server.state / name).read_text(errors="replace")  # the servers' logs, the auth config and database
                for name in ("server.log", "postgres/server.log", "auth/auth.ini", "auth/users.db")]
    for secret in (PG_PASSWORD, ADMIN_PASSWORD, PIPELINE[1], VIEWER[1]):
        assert [x[:200] for x in records if secret in x] == [], secret

    # a wrong password in the URL: the error masks it
    with pytest.raises(ConfigError) as caught:
        open_storage(pipeline.storage.replace(PG_PASSWORD, "wrong-Pa55word"), pipeline.root)
    assert "wrong-Pa55word" not in str(caught.value) and "password authentication failed" in str(caught.value)


# ----------------------------------------------------------------------------- TLS in front of the server

def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "reslab test proxy")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file


class TlsProxy(http.server.BaseHTTPRequestHandler):
    """A TLS-terminating reverse proxy (as nginx in docs/security.md): HTTPS in, plain HTTP to `upstream`."""
    upstream: tuple[str, int]
    protocol_version = "HTTP/1.1"

    def forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        upstream = http.client.HTTPConnection(*self.upstream, timeout=120)
        upstream.request(self.command, self.path, body=body, headers={**headers, "X-Forwarded-Proto": "https"})
        answer = upstream.getresponse()
        data = answer.read()
        self.send_response(answer.status, answer.reason)
        for key, value in answer.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        upstream.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_behind_a_tls_proxy_the_client_needs_the_certificate(server, pipeline, as_user, monkeypatch, tmp_path):
    """With MLFLOW_TRACKING_SERVER_CERT_PATH the client checks the proxy's self-signed certificate and works (the
    check, the registry, artifacts); without it a stage fails at once, saying which variable to set."""
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    host, port = server.uri.removeprefix("http://").split(":")
    handler = type("Proxy", (TlsProxy,), {"upstream": (host, int(port))})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    proxy.socket = context.wrap_socket(proxy.socket, server_side=True)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    uri = f"https://127.0.0.1:{proxy.server_address[1]}"
    try:
        client = as_user(VIEWER, uri)
        with pytest.raises(tracking.TrackingServerError) as caught:
            tracking.check_store(tmp_path)
        assert str(caught.value) == (
            f"the MLflow tracking server MLFLOW_TRACKING_URI={uri} is not reachable: its TLS certificate is not "
            "trusted ([SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate). A "
            "certificate of your own CA or a self-signed one: set MLFLOW_TRACKING_SERVER_CERT_PATH to its PEM file "
            "(docs/security.md)")

        monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(cert))
        assert tracking.check_store(tmp_path) == uri
        champion = client.get_model_version_by_alias(MODEL, "champion")
        weights = verified_weights(champion, tmp_path / "download")  # the artifacts come through the proxy
        assert model_file_sha256(weights) == champion.tags["weights_sha256"]
        as_user(("viewer", "wrong-password"), uri)
        with pytest.raises(tracking.TrackingServerError, match="refused the login of user 'viewer'"):
            tracking.check_store(tmp_path)
    finally:
        proxy.shutdown()
        proxy.server_close()
