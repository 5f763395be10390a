"""MLflow glue: where runs go, what every run carries, and how a stage's run survives a kill. Training and
evaluation code call this; it trains nothing. This face only re-exports; each job lives in its own module:

- `store`: the tracking URI, the check that a tracking server answers and takes the login (`TrackingServerError`),
  the experiment.
- `lineage`: git commit and dirty state, data.dvc's md5, the standard tags and run names.
- `records`: what a run records (params, epochs, datasets, figures, the served model, metrics added later).
- `registry`: the registered model, its `@champion` alias, and the weights hash each version is checked against.
- `accounts`: a tracking server's accounts and their roles (pipeline, viewer), for its admin.
- `ledger`: stage runs that survive a kill (`start_stage_run`).
- `training_run`, `evaluation_run`: the runs of the training stages and of `evaluate`; `sweep`: `reslab tune`'s;
  `study_run`: the depth study's.
"""
from __future__ import annotations

from .. import offline  # noqa: F401  (before mlflow: no telemetry)

import mlflow  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from .ledger import ATTEMPT_TAG, start_stage_run  # noqa: E402
from .lineage import data_version, git_commit, git_dirty, run_label, standard_tags  # noqa: E402
from .records import (EPOCH_METRICS, log_dataset, log_epoch, log_figure, log_metrics_to_run, log_model,  # noqa: E402
                      log_params_flat, log_test_dataset, logged_epochs)
from .registry import set_champion  # noqa: E402
from .store import (DATABASE_SCHEMES, SERVER_PROBE_TIMEOUT_S, TrackingServerError, check_store, setup,  # noqa: E402
                    tracking_uri)

__all__ = [
    "ATTEMPT_TAG", "DATABASE_SCHEMES", "EPOCH_METRICS", "SERVER_PROBE_TIMEOUT_S", "MlflowClient",
    "TrackingServerError", "check_store", "data_version", "git_commit", "git_dirty", "log_dataset", "log_epoch",
    "log_figure", "log_metrics_to_run", "log_model", "log_params_flat", "log_test_dataset", "logged_epochs",
    "mlflow", "run_label", "set_champion", "setup", "standard_tags", "start_stage_run", "tracking_uri",
]
