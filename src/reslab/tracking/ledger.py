"""Stage runs that survive a kill: a small JSON ledger beside a stage's resume state records each attempt before
its MLflow run exists, so the next start can continue that run or mark it KILLED (`start_stage_run`)."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

ATTEMPT_TAG = "stage_attempt"  # set when a run is created; names the ledger entry that created it


def _read_ledger(path: Path) -> dict | None:
    """The ledger's entry; None when there is none (or a kill left an unreadable one, which `_write_ledger` avoids)."""
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
                    fingerprint: str = "", resume: bool = True,
                    system_metrics: bool = False) -> tuple[mlflow.ActiveRun, bool]:
    """Start a stage's MLflow run so that no kill, at any moment, leaves a run RUNNING that nobody will finish.

    Before the run is created, `ledger` (a small JSON file beside the stage's resume state) records a fresh attempt
    token, and the run carries that token as a tag; its id is recorded as soon as it exists. The next start reads
    the ledger: with `resume` and the same `fingerprint` it continues that run (a training stage resumed from its
    checkpoint, or killed before its first epoch ended, or killed after its run ended but before the caller deleted
    its resume state: a FINISHED run, which is then reopened rather than duplicated); otherwise the previous
    attempt's run, if still RUNNING, is marked KILLED. The caller deletes `ledger` once the stage's outputs are
    written, after its other resume state.

    Args:
        ledger: the stage's ledger file, e.g. .reslab/checkpoints/train_resnet.mlflow.json.
        experiment_id: where a new run goes (a ledger run in another experiment is not resumed).
        run_name: the new run's name.
        tags: tags of a new run; set again on a resumed one.
        fingerprint: identifies the configuration; only a run of the same configuration is resumed.
        resume: False for stages that always start a new run (evaluate).
        system_metrics: record MLflow's system metrics (CPU, memory, disk, GPU when present) while the run is open.

    Returns:
        The active run (use it as a context manager) and whether it is a resumed one.
    """
    client = MlflowClient()
    state = _read_ledger(ledger)
    resumed = None
    if state is not None:
        for run in _ledger_runs(client, state):
            if (resume and resumed is None and state.get("fingerprint") == fingerprint
                    and run.info.experiment_id == experiment_id):
                resumed = run
            elif run.info.status == "RUNNING":  # killed, and never to be continued
                client.set_terminated(run.info.run_id, status="KILLED")
    if resumed is not None:
        _write_ledger(ledger, {**state, "run_id": resumed.info.run_id})
        active = mlflow.start_run(run_id=resumed.info.run_id, log_system_metrics=system_metrics)
        mlflow.set_tags(tags)
        return active, True
    entry = {"fingerprint": fingerprint, "experiment_id": experiment_id, "attempt": uuid.uuid4().hex, "run_id": None}
    _write_ledger(ledger, entry)
    active = mlflow.start_run(experiment_id=experiment_id, run_name=run_name,
                              tags={**tags, ATTEMPT_TAG: entry["attempt"]}, log_system_metrics=system_metrics)
    _write_ledger(ledger, {**entry, "run_id": active.info.run_id})
    return active, False


def adopt_run(ledger: Path, run, fingerprint: str) -> None:
    """Write `ledger` so that the next `start_stage_run` with `fingerprint` continues `run` (an MLflow Run): how a
    replicate resumed on another machine, with no ledger of its own, takes over the run its killed attempt began
    (`tracking.resume`)."""
    _write_ledger(ledger, {"fingerprint": fingerprint, "experiment_id": run.info.experiment_id,
                           "attempt": run.data.tags.get(ATTEMPT_TAG), "run_id": run.info.run_id})
