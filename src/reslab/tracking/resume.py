"""A training replicate's resume state kept in its MLflow run, where a retry on another machine finds it
(`reslab repro --executor ray`, `cluster.py`); a plain `dvc repro` keeps the same state in the project's
.reslab/checkpoints/ instead (`stages/train.py`).

The run carries the replicate's fingerprint as its `resume_key` tag from the moment it is created until the
coordinator has written the replicate's outputs (`release`), and after each epoch its checkpoint is uploaded as the
artifact resume/<file>. A new attempt of the same replicate (a retried task, a restarted coordinator) adopts that
run and continues from the checkpoint: one FINISHED run per replicate, each epoch logged once.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from .ledger import adopt_run

RESUME_KEY_TAG = "resume_key"  # the replicate's fingerprint, while its outputs are not yet in the workspace
RESUME_DIR = "resume"  # the run's artifact folder holding its last checkpoint


class RunResume:
    """Resume state in the tracking store, for a replicate that may continue on another machine."""

    @staticmethod
    def tags(fingerprint: str) -> dict[str, str]:
        """Tags of the replicate's run, by which a later attempt finds it."""
        return {RESUME_KEY_TAG: fingerprint}

    @staticmethod
    def restore(experiment_id: str, fingerprint: str, checkpoint: Path, ledger: Path) -> str | None:
        """Before training: adopt the newest run an earlier attempt of this replicate left (its ledger written to
        `ledger`, its last checkpoint downloaded to `checkpoint`); older leftovers still RUNNING are marked KILLED.
        Returns the adopted run's id, or None for a first attempt."""
        client = MlflowClient()
        runs = client.search_runs([experiment_id], f"tags.{RESUME_KEY_TAG} = '{fingerprint}'",
                                  order_by=["attributes.start_time DESC"])
        if not runs:
            return None
        run, *older = runs
        for stale in older:
            if stale.info.status == "RUNNING":
                client.set_terminated(stale.info.run_id, status="KILLED")
            client.delete_tag(stale.info.run_id, RESUME_KEY_TAG)
        adopt_run(ledger, run, fingerprint)
        if any(a.path == f"{RESUME_DIR}/{checkpoint.name}" for a in client.list_artifacts(run.info.run_id,
                                                                                          RESUME_DIR)):
            with tempfile.TemporaryDirectory() as tmp:
                got = client.download_artifacts(run.info.run_id, f"{RESUME_DIR}/{checkpoint.name}", tmp)
                checkpoint.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(got, checkpoint)
        return run.info.run_id

    @staticmethod
    def keep(checkpoint: Path) -> None:
        """After an epoch (its checkpoint written and the epoch logged): upload the checkpoint into the active
        run. A kill between the two costs one epoch, retrained identically and not logged again."""
        mlflow.log_artifact(str(checkpoint), RESUME_DIR)


def release(run_id: str) -> None:
    """The replicate's outputs are in the workspace: drop its resume key (a later forced rerun starts a new run)
    and, where the artifact store allows deleting, its checkpoint."""
    client = MlflowClient()
    client.delete_tag(run_id, RESUME_KEY_TAG)
    try:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        get_artifact_repository(client.get_run(run_id).info.artifact_uri).delete_artifacts(RESUME_DIR)
    except Exception:  # noqa: BLE001 (an object store without delete: the checkpoint stays, harmless)
        pass
