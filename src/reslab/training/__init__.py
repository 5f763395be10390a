"""Training: one loop for every model, its batches, its runtime (threads, device, precision) and the reusable
entry point. Knows nothing of MLflow (see reslab.tracking).

    runtime.py   setup_runtime, resolve_device, Precision / resolve_precision, to_device, compile_model, seeding
    loader.py    ArrayLoader (reproducible per-epoch batches of a prepared split), to_input, augmented_examples
    loop.py      train_one_epoch, evaluate, predict_logits, fit (early stopping, atomic per-epoch checkpoint)
    recipe.py    Recipe, recipe_from_params, train_classifier: the entry point of stages and sweeps

CPU and cgroup probing (native bf16, cores, default threads) live in reslab.hardware; they are re-exported here.
"""
from ..hardware import available_cores, cpu_has_native_bf16, default_threads, oversubscription
from .loader import ArrayLoader, augmented_examples, to_input
from .loop import (CHECKPOINT_FORMAT, DivergedError, FitResult, evaluate, fit, load_checkpoint, make_optimizer,
                   predict_logits, resumable_state, save_checkpoint, train_one_epoch)
from .recipe import Recipe, recipe_from_params, train_classifier
from .runtime import (PRECISIONS, Precision, compile_model, resolve_device, resolve_precision, seed_everything,
                      setup_runtime, to_device)

__all__ = [
    "ArrayLoader", "CHECKPOINT_FORMAT", "DivergedError", "FitResult", "PRECISIONS", "Precision", "Recipe",
    "augmented_examples", "available_cores", "compile_model", "cpu_has_native_bf16", "default_threads", "evaluate",
    "fit", "load_checkpoint", "make_optimizer", "oversubscription", "predict_logits", "recipe_from_params",
    "resolve_device", "resolve_precision", "resumable_state", "save_checkpoint", "seed_everything", "setup_runtime",
    "to_device", "to_input", "train_classifier", "train_one_epoch",
]
