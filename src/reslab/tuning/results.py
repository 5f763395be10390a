"""A study's result: the best trial as tuning/best_params_<role>.yaml and the equivalent `dvc exp run -S` command."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import yaml

from .space import trial_overrides
from .study import OBJECTIVE


def best_params_file(role: str) -> str:
    """The best trial's file under tuning/, one per role (each role's study and `--apply` are independent)."""
    return f"best_params_{role}.yaml"


def best_record(study: optuna.Study, role: str) -> dict[str, Any] | None:
    """The best trial as the contents of tuning/best_params_<role>.yaml (None before any trial completes)."""
    try:
        best = study.best_trial
    except ValueError:
        return None
    overrides = best.user_attrs.get("overrides") or trial_overrides(best.params, role)
    return {"study_name": study.study_name, "role": role, "trial_number": best.number, "objective": OBJECTIVE,
            "val_accuracy": best.value, "optuna_params": dict(best.params), "params": overrides,
            "dvc_exp_run": dvc_exp_run_command(overrides)}


def dvc_exp_run_command(overrides: dict[str, Any]) -> str:
    """The `dvc exp run -S` equivalent of `--apply` (`++` adds keys that params.yaml lacks, e.g. under
    model_args: {})."""
    return "dvc exp run " + " ".join(f"-S '++{k}={json.dumps(v)}'" for k, v in overrides.items())


def write_best_params(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    command = f"reslab tune --role {record['role']}"
    header = (f"# Best trial of Optuna study {record['study_name']!r} (the {record['role']} model), written by "
              f"`{command}`.\n# `{command} --apply` writes `params` into params.yaml; `dvc exp run -S ...` below "
              f"does the same\n# as an experiment.\n")
    path.write_text(header + yaml.safe_dump(record, sort_keys=False, width=4096))
