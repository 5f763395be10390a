"""Training: one loop for every model, its batches, its runtime (threads, device, precision) and the reusable
entry point. Knows nothing of MLflow (see reslab.tracking).

    runtime.py   setup_runtime, resolve_device, Precision / resolve_precision, to_device, compile_model, seeding
    loader.py    ArrayLoader (reproducible per-epoch batches of a prepared split), to_input, augmented_examples
    loop.py      train_one_epoch, evaluate, predict_logits, fit (early stopping, atomic per-epoch checkpoint)
    classifier.py train_classifier (the entry point of stages, sweeps and the depth study), training_params,
                 fingerprint; each takes a resolved `config.resolve.TrainingConfig`

CPU and cgroup probing (native bf16, cores, default threads) live in reslab.hardware; they are re-exported here.
"""
from ..hardware import available_cores, cpu_has_native_bf16, default_threads, oversubscription
from .loader import ArrayLoader, augmented_examples, to_input
from .loop import (CHECKPOINT_FORMAT, DivergedError, FitResult, evaluate, fit, load_checkpoint, make_optimizer,
                   predict_logits, resumable_state, save_checkpoint, train_one_epoch)
from .classifier import fingerprint, train_classifier, training_params
from .runtime import (PRECISIONS, Precision, compile_model, resolve_device, resolve_precision, seed_everything,
                      setup_runtime, to_device)

__all__ = [
    "ArrayLoader", "CHECKPOINT_FORMAT", "DivergedError", "FitResult", "PRECISIONS", "Precision",
    "augmented_examples", "available_cores", "compile_model", "cpu_has_native_bf16", "default_threads", "evaluate",
    "fingerprint", "fit", "load_checkpoint", "make_optimizer", "oversubscription", "predict_logits",
    "resolve_device", "resolve_precision", "resumable_state", "save_checkpoint", "seed_everything", "setup_runtime",
    "to_device", "to_input", "train_classifier", "train_one_epoch", "training_params",
]
