"""One cell of the depth study, (family, depth, seed), as plain values: its training config, the summary written to
cells/<cell>.json, and the estimate of the study's remaining time from finished cells."""
from __future__ import annotations

from ..config import RuntimeConfig, TrainingConfig
from .params import FAMILIES, StudyParams


def cell_config(p: StudyParams, family: str, depth: int, seed: int) -> TrainingConfig:
    """The cell's training: every cell gets the same fixed budget (no early stopping, the last epoch's weights) and
    the same optimizer (Adam at a constant rate); only the net (`family`, `depth`) and the seed differ.

    Args:
        p: the study's params.
        family: plain | residual.
        depth: weighted layers (6n + 2).
        seed: weights, batch order and augmentation.
    """
    if family not in FAMILIES:
        raise ValueError(f"family {family!r}: accepted {' | '.join(FAMILIES)}")
    augment = p.augment if p.augment.magnitude > 0 else None
    return TrainingConfig(model=FAMILIES[family], model_args={"depth": depth, "widths": list(p.model.widths)},
                          image_size=p.data.image_size, seed=seed, batch_size=p.train.batch_size, lr=p.train.lr,
                          epochs=p.train.epochs, patience=0, augment=augment, restore_best=False,
                          interpolation=p.data.interpolation, runtime=study_runtime(p))


def study_runtime(p: StudyParams) -> RuntimeConfig:
    """The study's `train.precision / device / num_threads` (no recipe: `auto` is left to the hardware).

    Args:
        p: the study's params.
    """
    return RuntimeConfig(precision=p.train.precision, device=p.train.device, num_threads=p.train.num_threads)


def with_errors(history: list[dict]) -> list[dict]:
    """History rows with train_error and val_error (1 - accuracy) beside the accuracies."""
    return [{**row, "train_error": 1.0 - row["train_accuracy"], "val_error": 1.0 - row["val_accuracy"]}
            for row in history]


def cell_summary(history: list[dict], final_train: dict[str, float], *, family: str, depth: int, seed: int,
                 n_parameters: int, study: str, wall_time_s: float) -> dict:
    """cells/<cell>.json: the final model on the unaugmented train split (eval mode), the best and final
    validation error, the budget used, the time taken.

    Args:
        history: fit's rows, one per epoch.
        final_train: `training.evaluate` of the final model on the train split, without augmentation.
        family, depth, seed: the cell.
        n_parameters: the net's parameter count.
        study: the budget's fingerprint (the study's MLflow parent run); cells of another budget are not counted
            as done by the progress estimate.
        wall_time_s: the stage's time, data loading and MLflow included.
    """
    errors = [1.0 - r["val_accuracy"] for r in history]
    best = min(range(len(errors)), key=errors.__getitem__)  # the first epoch with the lowest val error
    train_time = sum(r["epoch_time_s"] for r in history)
    return {"family": family, "depth": depth, "seed": seed, "n_parameters": n_parameters, "epochs": len(history),
            "final_train_loss": final_train["loss"], "final_train_error": 1.0 - final_train["accuracy"],
            "best_val_error": errors[best], "best_val_epoch": int(history[best]["epoch"]),
            "final_val_error": errors[-1], "final_val_loss": history[-1]["val_loss"],
            "train_time_s": round(train_time, 2), "time_per_epoch_s": round(train_time / len(history), 3),
            "wall_time_s": round(wall_time_s, 2), "study": study}


def remaining_seconds(done: list[dict], todo: list[int], epochs: int) -> float | None:
    """Seconds the cells of depths `todo` still need, from the finished cells (`cell_summary` dicts): time per
    epoch grows with depth (one block costs about the same at any depth), so it is fitted as a * depth through the
    origin (a = sum of times per epoch / sum of depths), plus each finished cell's mean time outside its epochs.
    None when no cell is done yet."""
    if not done:
        return None
    per_layer = sum(c["time_per_epoch_s"] for c in done) / sum(c["depth"] for c in done)
    overhead = sum(max(0.0, c["wall_time_s"] - c["train_time_s"]) for c in done) / len(done)
    return sum(per_layer * depth * epochs + overhead for depth in todo)
