"""What each `train.recipe` sets, per role: one frozen `Preset` per (recipe, role). `config.resolve` applies a
preset's value wherever params.yaml leaves the key null (`train.precision: auto` counts as unset)."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Preset:
    """One role's training switches under one `train.recipe`.

    Args:
        init: torch (the layers' own initialisation) | keras (glorot_uniform kernels, zero biases).
        adam_eps: Adam's epsilon.
        bn_momentum: BatchNorm momentum in PyTorch's convention; None keeps the model's own (PyTorch: 0.1).
        bn_eps: BatchNorm epsilon; None keeps the model's own (PyTorch: 1e-5).
        interpolation: prepare's resize.
        restore_best: end with the best-val-loss epoch's weights (False: the last epoch's).
        bn_frozen: BatchNorm in inference mode while training.
        precision: replaces `train.precision: auto`; None leaves auto to the hardware.
        augment: replaces `train_<role>.augment`; None keeps the role's own.
        epochs, patience, min_epochs: the role's budget; None takes train's shared one.
    """

    init: str
    adam_eps: float
    bn_momentum: float | None
    bn_eps: float | None
    interpolation: str
    restore_best: bool
    bn_frozen: bool
    precision: str | None = None
    augment: bool | None = None
    epochs: int | None = None
    patience: int | None = None
    min_epochs: int | None = None


# `fair`: reslab's own choices (PyTorch's Adam epsilon; bn_* None leaves the constants the model was built with).
# Its budget is the shared train.epochs / patience / min_epochs.
_FAIR = Preset(init="torch", adam_eps=1e-8, bn_momentum=None, bn_eps=None, interpolation="bilinear",
               restore_best=True, bn_frozen=False)
# fair's initialisation, per role, each model's better one on validation (README, "Parity"): PyTorch's layer defaults
# draw U(+-1/sqrt(fan_in)), a third of glorot's variance, and the plain CNN, with no BatchNorm to rescale its
# activations, trains worse from them; the ResNet, with BatchNorm, trains worse from glorot.
FAIR: dict[str, Preset] = {"baseline": replace(_FAIR, init="keras"), "resnet": replace(_FAIR, init="torch")}

# `original`: the study's own Keras notebook (shared/reference/README.md, "What the notebook does that reslab does
# not"; shared/reference/seed_notebook.py), shared by both roles and then per role. Keras' constants in PyTorch's
# terms: BatchNormalization(momentum=0.99) keeps 0.99 of the running value, i.e. PyTorch momentum 0.01; Adam's
# epsilon 1e-7 (Keras adds it to sqrt(v) before the bias correction, PyTorch after: the same value once 0.999**t is
# small). The notebook trained in fp32.
_ORIGINAL = Preset(init="keras", adam_eps=1e-7, bn_momentum=0.01, bn_eps=1e-3, precision="fp32",
                   interpolation="nearest", restore_best=False, bn_frozen=False, min_epochs=0)
ORIGINAL: dict[str, Preset] = {
    # EarlyStopping(patience=3) on val_loss without restore_best_weights, model.fit(epochs=50), no augmentation
    "baseline": replace(_ORIGINAL, augment=False, epochs=50, patience=3),
    # a fixed 40-epoch GradientTape loop (no early stopping, last weights) calling model(x) without training=True,
    # so BatchNormalization runs in inference mode throughout; the augmented generator
    "resnet": replace(_ORIGINAL, augment=True, epochs=40, patience=0, bn_frozen=True),
}

PRESETS: dict[str, dict[str, Preset]] = {"fair": FAIR, "original": ORIGINAL}  # train.recipe -> role -> Preset
RECIPES = tuple(PRESETS)  # train.recipe's choices
# The switches `config.resolve` gives every role by one rule (the role's key, train's when set, the preset's, then
# train's budget): each is a field here, a key of train: or train_<role>:, and a field of TrainingConfig. The
# others are not per role (precision: the process's; interpolation: prepare's) or not a switch (augment: the role's
# own flag, which `original` replaces).
SWITCHES = tuple(f.name for f in fields(Preset) if f.name not in ("precision", "interpolation", "augment"))
