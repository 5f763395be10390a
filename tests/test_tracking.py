"""`reslab.tracking` is a face: its `__init__` only imports and re-exports; every job lives in a module named for
it, and every name the package offered before the split is still importable from it."""
import ast
import importlib
from pathlib import Path

import reslab.tracking as tracking

FACE = Path(tracking.__file__)
NAMES = ("ATTEMPT_TAG", "DATABASE_SCHEMES", "EPOCH_METRICS", "SERVER_PROBE_TIMEOUT_S", "MlflowClient",
         "TrackingServerError", "check_store", "data_version", "git_commit", "git_dirty", "log_dataset", "log_epoch",
         "log_figure", "log_metrics_to_run", "log_model", "log_params_flat", "log_test_dataset", "logged_epochs",
         "mlflow", "run_label", "set_champion", "setup", "standard_tags", "start_stage_run", "tracking_uri")
JOBS = {"store": "setup", "lineage": "standard_tags", "records": "log_params_flat", "registry": "set_champion",
        "ledger": "start_stage_run", "evaluation_run": "evaluation_run", "training_run": "training_run"}


def test_the_face_holds_no_logic():
    body = ast.parse(FACE.read_text()).body
    for node in body[1:]:  # after the docstring
        is_all = isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["__all__"]
        assert isinstance(node, (ast.Import, ast.ImportFrom)) or is_all, f"line {node.lineno}: not an import"


def test_every_name_is_importable_from_the_face_and_defined_in_its_jobs_module():
    assert set(NAMES) <= set(tracking.__all__)
    for name in tracking.__all__:
        assert getattr(tracking, name) is not None, name
    for module, name in JOBS.items():
        job = importlib.import_module(f"reslab.tracking.{module}")
        assert getattr(job, name).__module__ == job.__name__
