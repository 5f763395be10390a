"""MLflow glue: where runs go, what every run carries, and how a stage's run survives a kill (`start_stage_run`).
Training and evaluation code call this; it trains nothing. The training stages' run bookkeeping is in
`tracking.training_run`."""
from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
import warnings
from pathlib import Path
from typing import Any

import yaml

from ..config.sections import ConfigError

from .. import offline  # noqa: F401  (before mlflow: no telemetry)

import mlflow  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

EPOCH_METRICS = ("lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_time_s")


def tracking_uri(root: Path) -> str:
    """An explicit MLFLOW_TRACKING_URI wins; else an absolute sqlite:///<root>/mlflow.db (MLflow 3's default store)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow.db').resolve()}"


SERVER_PROBE_TIMEOUT_S = 10.0  # one bounded request: MLflow's own client retries a dead server for minutes
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")  # SQLAlchemy stores other than SQLite, e.g. postgresql+psycopg


class TrackingServerError(ConfigError):
    """MLFLOW_TRACKING_URI names an MLflow tracking server that does not answer (or cannot reach its store)."""


def _is_local(uri: str) -> bool:
    """A store that lives in one folder of this machine: an SQLite file, a file: store, a plain path.

    A database server (postgresql://...) is not: runs may come from several machines, and no project folder is
    theirs to share; see `check_store`."""
    return uri.startswith(("sqlite:", "file:")) or ("://" not in uri and not uri.startswith("databricks"))


def _scheme(uri: str) -> str:
    """'http', 'postgresql', ... ('postgresql+psycopg' -> 'postgresql'); '' for a plain path."""
    return uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""


def _redacted(uri: str) -> str:
    """The URI without a password, for messages."""
    return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", uri)


def _probe_server(uri: str, timeout: float = SERVER_PROBE_TIMEOUT_S) -> None:
    """One request to the tracking server that also reaches its backend store; raise TrackingServerError unless
    it answers. A refusal of credentials (401/403) counts as an answer: MLflow's client sends them later."""
    url = f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return
    except urllib.error.HTTPError as e:
        if e.code < 500:  # 404: no such experiment; 401/403: credentials wanted
            return
        problem = f"it answered HTTP {e.code} ({e.reason}): its backend store may be down; see the server's log"
    except urllib.error.URLError as e:
        if isinstance(e.reason, ssl.SSLError):  # certificates: MLflow's client has its own TLS settings
            return
        problem = f"no answer ({e.reason})"
    except OSError as e:  # a timeout while reading, a reset connection
        problem = f"no answer within {timeout:g} s ({e})"
    raise TrackingServerError(
        f"the MLflow tracking server MLFLOW_TRACKING_URI={_redacted(uri)} is not reachable: {problem}. Start it "
        "(on the server machine: scripts/mlflow_server.sh start DIR, which prints the URI to use), or unset "
        "MLFLOW_TRACKING_URI to record runs in this project's own mlflow.db")


_warned_database: set[str] = set()


def check_store(root: Path) -> str:
    """Check the tracking store before a stage does any work, and return its URI.

    A tracking server (http, https) must answer one bounded request, else TrackingServerError: a stage never
    trains for nothing because its results cannot be recorded. A database URI (postgresql://...) with no server in
    front is allowed, with a warning: runs and metrics are shared, but artifacts (models, figures) go to MLflow's
    default folder, ./mlruns, on whichever machine creates the experiment, where other machines cannot reach them.
    Several machines need scripts/mlflow_server.sh (a server on the same database, with proxied artifacts).
    """
    uri = tracking_uri(root)
    scheme = _scheme(uri)
    if scheme in ("http", "https"):
        _probe_server(uri)
    elif scheme in DATABASE_SCHEMES and uri not in _warned_database:
        _warned_database.add(uri)
        print(f"reslab: warning: MLFLOW_TRACKING_URI is a {scheme} database with no MLflow server in front: "
              "artifacts (models, figures) stay on the machine that creates the experiment (MLflow's default "
              "./mlruns). For several machines, start scripts/mlflow_server.sh on this database and set "
              "MLFLOW_TRACKING_URI=http://HOST:PORT instead.", file=sys.stderr)
    return uri


def setup(root: Path, experiment_name: str) -> str:
    """Point MLflow at the project's store (checked by `check_store`) and return the experiment id (created on
    first use).

    Artifacts of a local store go to <root>/mlartifacts. A tracking server keeps them where its
    --artifacts-destination says (nothing is written into the project); a database without a server leaves them
    to MLflow's default location.
    """
    uri = check_store(root)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment_name)
    if exp is not None:
        return exp.experiment_id
    location = (root / "mlartifacts").resolve().as_uri() if _is_local(uri) else None
    try:
        return client.create_experiment(experiment_name, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # another process created it first
        exp = client.get_experiment_by_name(experiment_name)
        if exp is None:
            raise
        return exp.experiment_id


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit(root: Path) -> str:
    return _git(root, "rev-parse", "HEAD") or "unknown"


def git_dirty(root: Path) -> str:
    """'true' when tracked files differ from the commit (the run's code is not exactly git_commit's)."""
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return "unknown" if status is None else str(bool(status)).lower()


def data_version(root: Path) -> str:
    """The md5 that data.dvc records for data/ ('untracked' when the data set is not under DVC)."""
    path = root / "data.dvc"
    try:
        outs = yaml.safe_load(path.read_text()).get("outs", [])
        return str(outs[0].get("md5", "unknown"))
    except (OSError, AttributeError, IndexError, yaml.YAMLError):
        return "untracked"


def standard_tags(root: Path, **extra: str) -> dict[str, str]:
    """What a user filters runs on: code (git commit, dirty state), data (data.dvc's md5), the DVC experiment
    (`dvc exp run` sets DVC_EXP_NAME), library versions; plus the caller's tags (stage, role, seed, device, ...)."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    try:
        reslab_version = version("reslab")
    except PackageNotFoundError:
        reslab_version = "unknown"
    tags = {"git_commit": git_commit(root), "git_dirty": git_dirty(root), "data_dvc_md5": data_version(root),
            "torch_version": torch.__version__, "torch_threads": str(torch.get_num_threads()),
            "reslab_version": reslab_version}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    return {**tags, **extra}


def run_label(stage: str, root: Path, seed: int | None = None) -> str:
    """A run name a user can tell apart in the MLflow UI: the stage, the seed, and the DVC experiment (under
    `dvc exp run`) or else the short git commit."""
    where = os.environ.get("DVC_EXP_NAME") or git_commit(root)[:7]
    return f"{stage}{f' seed {seed}' if seed is not None else ''} ({where})"


def log_test_dataset(split_dir: Path) -> None:
    """Record the test split's manifest as the evaluation run's dataset input (context "testing")."""
    import pandas as pd

    log_dataset(pd.read_csv(split_dir / "test.csv"), split_dir / "test.csv", name="test", context="testing")


def log_params_flat(params: dict[str, Any]) -> None:
    """Log a flat {key: value} dict; MLflow caps values at 6000 chars, so long values are truncated."""
    mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})


def logged_epochs(run_id: str, metric: str = "val_loss") -> set[int]:
    """Steps already logged for `metric` in a run (to resume without duplicating epochs)."""
    return {m.step for m in MlflowClient().get_metric_history(run_id, metric)}


def log_epoch(row: dict[str, float], prefix: str = "") -> None:
    """Log one epoch's metrics at step=epoch into the active run."""
    mlflow.log_metrics({f"{prefix}{k}": float(row[k]) for k in EPOCH_METRICS if k in row}, step=int(row["epoch"]))


def log_dataset(df, source: Path, name: str, context: str) -> None:
    """Record a split manifest as an MLflow dataset input.

    Two MLflow hints are silenced here, as they do not apply: the integer `label` column has no missing values, and
    a local path is meant as a local file source."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Inferred schema contains integer column", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways", category=UserWarning)
        dataset = mlflow.data.from_pandas(df, source=str(source), name=name, targets="label")
        mlflow.log_input(dataset, context=context)


def log_model(model_file: Path, name: str = "model") -> str:
    """Log the served model (`reslab.serving`): a pyfunc logged from code (`serving.MODEL_CODE`, no pickle) whose
    one artifact is the weights-only `model_file`; encoded images in, class names and probabilities out, with that
    signature and a real PNG as input example. Returns the model URI."""
    import tempfile
    from importlib.metadata import version

    from .. import serving

    # Explicit requirements skip MLflow's slow inference; reslab itself must be installed where the model loads.
    requirements = [f"{dist}=={version(dist).split('+')[0]}" for dist in ("torch", "pillow", "numpy", "pandas")]
    with tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp) / serving.MODEL_CODE_FILE
        code.write_text(serving.MODEL_CODE)
        info = mlflow.pyfunc.log_model(
            name=name, python_model=str(code), artifacts={serving.MODEL_FILE: str(model_file)},
            signature=serving.SIGNATURE, input_example=serving.input_example(), pip_requirements=requirements,
        )
    return info.model_uri


def log_metrics_to_run(run_id: str, metrics: dict[str, float]) -> None:
    """Add metrics to a (possibly finished) run, e.g. test metrics into each training run; a metric the run already
    holds with the same value is not logged again (a rerun after a kill adds no duplicate points)."""
    client = MlflowClient()
    held = client.get_run(run_id).data.metrics
    for k, v in metrics.items():
        if held.get(k) != float(v):
            client.log_metric(run_id, k, float(v))


def set_champion(model_uri: str, registered_name: str, run_id: str, alias: str = "champion") -> str:
    """Register `model_uri` as a new version of `registered_name` and point `alias` at it; returns the version."""
    client = MlflowClient()
    try:
        client.get_registered_model(registered_name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(registered_name, description="reslab: best model on the held-out test split")
    version = mlflow.register_model(model_uri, registered_name, tags={"source_run_id": run_id})
    client.set_registered_model_alias(registered_name, alias, version.version)
    return str(version.version)


def log_figure(fig, artifact_file: str) -> None:
    """Log a matplotlib figure into the active run and close it."""
    import matplotlib.pyplot as plt

    mlflow.log_figure(fig, artifact_file)
    plt.close(fig)


# ----------------------------------------------------------------------------- stage runs that survive a kill

ATTEMPT_TAG = "stage_attempt"  # set when a run is created; names the ledger entry that created it


def _read_ledger(path: Path) -> dict | None:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _write_ledger(path: Path, state: dict) -> None:
    """Atomic write: a kill leaves the previous ledger or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state) + "\n")
    tmp.replace(path)


def _ledger_runs(client: MlflowClient, state: dict) -> list:
    """The live runs a ledger entry created: its recorded run, or (killed before the id was recorded) the runs that
    carry its attempt tag."""
    if state.get("run_id"):
        try:
            run = client.get_run(state["run_id"])
        except mlflow.exceptions.MlflowException:  # the store was wiped or the run purged
            return []
        return [run] if run.info.lifecycle_stage == "active" else []
    if not state.get("attempt") or not state.get("experiment_id"):
        return []
    try:
        return client.search_runs([state["experiment_id"]], f"tags.{ATTEMPT_TAG} = '{state['attempt']}'")
    except mlflow.exceptions.MlflowException:
        return []


def start_stage_run(ledger: Path, *, experiment_id: str, run_name: str, tags: dict[str, str],
                    fingerprint: str = "", resume: bool = True) -> tuple[mlflow.ActiveRun, bool]:
    """Start a stage's MLflow run so that no kill, at any moment, leaves a run RUNNING that nobody will finish.

    Before the run is created, `ledger` (a small JSON file beside the stage's resume state) records a fresh attempt
    token, and the run carries that token as a tag; its id is recorded as soon as it exists. The next start reads
    the ledger: with `resume` and the same `fingerprint` it continues that run (a training stage resumed from its
    checkpoint, or killed before its first epoch ended); otherwise the previous attempt's run, if still RUNNING, is
    marked KILLED. A FINISHED run is never resumed. The caller deletes `ledger` once the stage's outputs are written.

    Args:
        ledger: the stage's ledger file, e.g. .reslab/checkpoints/train_resnet.mlflow.json.
        experiment_id: where a new run goes (a ledger run in another experiment is not resumed).
        run_name: the new run's name.
        tags: tags of a new run; set again on a resumed one.
        fingerprint: identifies the configuration; only a run of the same configuration is resumed.
        resume: False for stages that always start a new run (evaluate).

    Returns:
        The active run (use it as a context manager) and whether it is a resumed one.
    """
    client = MlflowClient()
    state = _read_ledger(ledger)
    resumed = None
    if state is not None:
        for run in _ledger_runs(client, state):
            if (resume and resumed is None and state.get("fingerprint") == fingerprint
                    and run.info.experiment_id == experiment_id and run.info.status != "FINISHED"):
                resumed = run
            elif run.info.status == "RUNNING":  # killed, and never to be continued
                client.set_terminated(run.info.run_id, status="KILLED")
    if resumed is not None:
        _write_ledger(ledger, {**state, "run_id": resumed.info.run_id})
        active = mlflow.start_run(run_id=resumed.info.run_id)
        mlflow.set_tags(tags)
        return active, True
    entry = {"fingerprint": fingerprint, "experiment_id": experiment_id, "attempt": uuid.uuid4().hex, "run_id": None}
    _write_ledger(ledger, entry)
    active = mlflow.start_run(experiment_id=experiment_id, run_name=run_name,
                              tags={**tags, ATTEMPT_TAG: entry["attempt"]})
    _write_ledger(ledger, {**entry, "run_id": active.info.run_id})
    return active, False
