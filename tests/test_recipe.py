"""`config.resolve` turns every null into its value (an explicit key first, then train's, then the recipe's
preset), `train.recipe: original` resolves to the study's notebook per role, and each switch of the resolved
`TrainingConfig` does what it says in training. The params are the dataclasses' defaults (`Params()`), not
params.yaml's current values, so editing params.yaml cannot break these tests."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from reslab.config import (FAIR, ORIGINAL, PRESETS, ConfigError, Params, TrainingConfig, load_params, resolve,
                           resolve_interpolation, resolve_runtime, with_overrides)
from reslab.data.prepared import ImageArrays, load_resized
from reslab.models import create_model
from reslab.models.init import BATCH_NORMS, keras_init_, set_batchnorm_
from reslab.training import (ArrayLoader, fit, loop, resolve_precision, seed_everything, setup_runtime, to_device,
                             train_classifier, training_params)

FP32 = resolve_precision("fp32", torch.device("cpu"))
ROLES = ("baseline", "resnet")


@pytest.fixture(scope="module")
def params() -> Params:
    return Params()


@pytest.fixture
def params_file(tmp_path):
    """A params file of defaults only (every section's dataclass defaults)."""
    path = tmp_path / "params.yaml"
    path.write_text("train: {}\n")
    return path


def arrays(n: int, seed: int) -> ImageArrays:
    rng = np.random.default_rng(seed)
    return ImageArrays(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 3, ["a", "b", "c"])


TRAIN, VAL = arrays(24, 0), arrays(9, 1)


def tiny(config: TrainingConfig, **changes) -> TrainingConfig:
    """`config` shrunk to one quick epoch on TRAIN."""
    return dataclasses.replace(config, epochs=1, min_epochs=0, batch_size=8, **changes)


def states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def batchnorms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, BATCH_NORMS)]


def history(result) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in result.history]


# ----------------------------------------------------------------------------- resolution


@pytest.mark.parametrize("role", ROLES)
def test_fair_resolves_nulls_to_the_shared_budget_and_its_preset(params, role):
    """Under fair, a role with every switch null takes train's budget and rate and the fair preset's switches;
    the runtime and the resize are train's and data's, with their nulls resolved."""
    p = with_overrides(params, {"train.epochs": 13, "train.patience": 4, "train.min_epochs": 2, "train.lr": 0.002})
    config, preset = resolve(p, role, seed=7), FAIR[role]
    assert (config.epochs, config.patience, config.min_epochs, config.lr, config.seed) == (13, 4, 2, 0.002, 7)
    assert (config.init, config.adam_eps, config.bn_momentum, config.bn_eps, config.restore_best,
            config.bn_frozen) == (preset.init, preset.adam_eps, preset.bn_momentum, preset.bn_eps,
                                  preset.restore_best, preset.bn_frozen)
    assert config.interpolation == resolve_interpolation(p) == preset.interpolation
    assert config.runtime == resolve_runtime(p) and config.runtime.precision == p.train.precision
    assert resolve(p, role).seed == p.replicates.seeds[0]
    assert config.augment == p.augment  # augmented roles get the shared ranges


def test_fair_initialisation_differs_by_role_and_the_dataclass_default_is_pytorchs():
    """fair's initialisation is each model's better one (plain CNN: Keras' glorot; ResNet: PyTorch's layers');
    a config built directly (the depth study's cells) keeps PyTorch's."""
    assert (FAIR["baseline"].init, FAIR["resnet"].init) == ("keras", "torch")
    assert TrainingConfig(model="resnet", model_args={}, image_size=32, seed=0, batch_size=8, lr=1e-3, epochs=1,
                          patience=0).init == "torch"


def test_a_roles_magnitude_scales_only_its_own_augmentation(params):
    p = with_overrides(params, {"train_baseline.augment_magnitude": 0.25, "train_resnet.augment": False})
    baseline, resnet = resolve(p, "baseline"), resolve(p, "resnet")
    assert baseline.augment == dataclasses.replace(p.augment, magnitude=0.25) and resnet.augment is None


@pytest.mark.parametrize("role", ROLES)
def test_default_training_is_bit_identical_to_the_switches_written_out_and_to_the_plain_loop(params, role):
    """Training with every switch null = every switch written out at the fair preset's values (the BatchNorm
    constants at PyTorch's) = building the model and calling `fit` by hand."""
    default = tiny(resolve(params, role, seed=2))
    explicit_params = with_overrides(params, {
        "train.recipe": "fair", f"train_{role}.init": FAIR[role].init, "train.adam_eps": FAIR[role].adam_eps,
        "train.bn_momentum": 0.1, "train.bn_eps": 1e-5, "data.interpolation": FAIR[role].interpolation,
        f"train_{role}.restore_best": True, f"train_{role}.bn_frozen": False,
        f"train_{role}.epochs": params.train.epochs, f"train_{role}.patience": params.train.patience,
        f"train_{role}.min_epochs": params.train.min_epochs})
    explicit = tiny(resolve(explicit_params, role, seed=2))
    assert explicit.bn_momentum == 0.1 and explicit.bn_eps == 1e-5  # applied to the modules, not skipped
    model_a, result_a = train_classifier(default, TRAIN, VAL, precision=FP32, progress=False)
    model_b, result_b = train_classifier(explicit, TRAIN, VAL, precision=FP32, progress=False)

    seed_everything(default.seed)  # the plain path: model, init, loaders, fit
    model_c = create_model(default.model, num_classes=3, image_size=32)
    model_c = to_device(keras_init_(model_c) if default.init == "keras" else model_c, FP32)
    fit(model_c, (ArrayLoader(TRAIN, 8, shuffle=True, seed=default.seed), ArrayLoader(VAL, 256, shuffle=False)),
        default, precision=FP32, progress=False)
    assert states_equal(model_a, model_b) and states_equal(model_a, model_c)
    assert history(result_a) == history(result_b)


# ----------------------------------------------------------------------------- each switch


@pytest.mark.parametrize("name", ["baseline", "resnet"])
def test_keras_init_is_glorot_uniform_with_zero_biases(name):
    torch.manual_seed(0)
    model = keras_init_(create_model(name, num_classes=5, image_size=64))
    weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert weighted
    for m in weighted:
        w = m.weight.detach()
        receptive = w[0, 0].numel()
        limit = math.sqrt(6 / (w.shape[1] * receptive + w.shape[0] * receptive))
        assert w.abs().max() <= limit
        if w.numel() >= 2000:  # uniform(-limit, limit): sd limit / sqrt(3), the support filled
            assert w.std().item() == pytest.approx(limit / math.sqrt(3), rel=0.05)
            assert w.abs().max() > 0.95 * limit
        assert torch.count_nonzero(m.bias) == 0
    for bn in batchnorms(model):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def test_keras_init_is_drawn_from_the_seed():
    def drawn() -> torch.Tensor:
        torch.manual_seed(3)
        return keras_init_(create_model("resnet", num_classes=2, image_size=32)).stem.weight.detach().clone()

    first = drawn()
    assert torch.equal(first, drawn())
    torch.manual_seed(3)
    assert not torch.equal(first, create_model("resnet", num_classes=2, image_size=32).stem.weight)  # re-drawn


def test_adam_eps_reaches_the_optimizer(params, tmp_path):
    config = tiny(resolve(with_overrides(params, {"train.adam_eps": 1e-7}), "baseline"))
    assert config.adam_eps == 1e-7
    train_classifier(config, TRAIN, VAL, precision=FP32, progress=False, checkpoint=tmp_path / "c.pt")
    state = torch.load(tmp_path / "c.pt", weights_only=True)  # the optimizer as it trained
    assert {group["eps"] for group in state["optimizer"]["param_groups"]} == {1e-7}


def test_batchnorm_constants_reach_every_batchnorm(params):
    keras = resolve(with_overrides(params, {"train.bn_momentum": 0.01, "train.bn_eps": 1e-3}), "resnet")
    model, _ = train_classifier(tiny(keras), TRAIN, VAL, precision=FP32, progress=False)
    assert batchnorms(model) and all((bn.momentum, bn.eps) == (0.01, 1e-3) for bn in batchnorms(model))
    model = set_batchnorm_(create_model("resnet", num_classes=2, image_size=32), eps=1e-4)  # None keeps the own
    assert all((bn.momentum, bn.eps) == (0.1, 1e-4) for bn in batchnorms(model))


@pytest.mark.parametrize("frozen", [True, False])
def test_bn_frozen_keeps_the_running_statistics_while_gamma_and_beta_train(params, frozen):
    config = tiny(resolve(with_overrides(params, {"train_resnet.bn_frozen": frozen}), "resnet"))
    assert config.bn_frozen is frozen
    model, _ = train_classifier(config, TRAIN, VAL, precision=FP32, progress=False)
    bns = batchnorms(model)
    stats_fixed = all(torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1)
                      and bn.num_batches_tracked.item() == 0 for bn in bns)
    assert stats_fixed is frozen
    assert all(not torch.all(bn.weight == 1) and not torch.all(bn.bias == 0) for bn in bns)  # trained either way


def test_restore_best_false_keeps_the_last_epochs_weights(params, monkeypatch, tmp_path):
    """Validation losses 1.0, 0.5, 2.0: the best epoch is 2, the last 3."""
    losses = iter([1.0, 0.5, 2.0] * 2)
    real_evaluate = loop.evaluate
    monkeypatch.setattr(loop, "evaluate", lambda m, l, p: {**real_evaluate(m, l, p), "loss": next(losses)})
    finals = {}
    for restore_best in (True, False):
        seed_everything(0)
        model = create_model("baseline", num_classes=3, image_size=32)
        ckpt = tmp_path / f"{restore_best}.pt"
        config = dataclasses.replace(resolve(params, "baseline", seed=0), epochs=3, patience=0, min_epochs=0,
                                     augment=None, restore_best=restore_best)
        result = fit(model, (ArrayLoader(TRAIN, 8, shuffle=True), ArrayLoader(VAL, 9, shuffle=False)), config,
                     precision=FP32, checkpoint=ckpt, progress=False)
        state = torch.load(ckpt, weights_only=True)  # the last epoch's weights and the best epoch's
        assert result.best_epoch == 2 and len(result.history) == 3
        kept = state["best_state"] if restore_best else state["model"]
        assert all(torch.equal(model.state_dict()[k], kept[k]) for k in kept)
        finals[restore_best] = model
    assert not states_equal(finals[True], finals[False])


def test_nearest_interpolation_replicates_pixels(tmp_path):
    pixels = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [250, 250, 250]]], dtype=np.uint8)
    path = tmp_path / "two_by_two.png"
    Image.fromarray(pixels).save(path)
    nearest = load_resized(str(path), 4, "nearest")
    assert np.array_equal(nearest, pixels.repeat(2, axis=0).repeat(2, axis=1))
    bilinear = load_resized(str(path), 4)  # the default blends neighbours
    assert not np.array_equal(bilinear, nearest)
    with pytest.raises(ValueError, match="bilinear | nearest"):
        load_resized(str(path), 4, "bicubic")


# ----------------------------------------------------------------------------- the presets


def test_original_resolves_to_the_notebooks_recipe_per_role(params):
    """The study's notebook (shared/reference/seed_notebook.py): the plain CNN unaugmented, 50 epochs with
    EarlyStopping(patience=3) and its last weights; the ResNet augmented, a fixed 40-epoch loop with BatchNorm in
    inference mode; Keras' constants and initialisation, nearest resizing and fp32 for both."""
    original = with_overrides(params, {"train.recipe": "original"})
    baseline, resnet = (resolve(original, role, seed=0) for role in ROLES)
    assert baseline.augment is None and resnet.augment == params.augment
    assert (baseline.epochs, baseline.patience, baseline.min_epochs, baseline.restore_best) == (50, 3, 0, False)
    assert (resnet.epochs, resnet.patience, resnet.min_epochs, resnet.restore_best) == (40, 0, 0, False)
    assert (baseline.bn_frozen, resnet.bn_frozen) == (False, True)
    for config in (baseline, resnet):
        assert (config.recipe, config.init, config.adam_eps, config.bn_momentum, config.bn_eps,
                config.interpolation, config.runtime.precision) == ("original", "keras", 1e-7, 0.01, 1e-3,
                                                                    "nearest", "fp32")
        assert (config.lr, config.batch_size) == (params.train.lr, params.train.batch_size)  # not the preset's
    cpu = dataclasses.replace(resolve_runtime(original), device="cpu", num_threads=1)
    assert setup_runtime(cpu).name == "fp32"  # precision: auto trains as the notebook did
    assert resolve_interpolation(original) == "nearest"


def test_explicit_keys_win_over_the_preset(params):
    p = with_overrides(params, {"train.recipe": "original", "train.init": "torch", "train.precision": "bf16",
                                "data.interpolation": "bilinear", "train_resnet.bn_frozen": False,
                                "train_baseline.restore_best": True, "train_baseline.epochs": 5})
    baseline, resnet = resolve(p, "baseline"), resolve(p, "resnet")
    assert baseline.init == resnet.init == "torch"
    assert baseline.adam_eps == ORIGINAL["baseline"].adam_eps  # the rest stays the preset's
    assert (baseline.epochs, baseline.restore_best, baseline.patience) == (5, True, ORIGINAL["baseline"].patience)
    assert resnet.bn_frozen is False and resnet.epochs == ORIGINAL["resnet"].epochs
    assert baseline.interpolation == "bilinear" and baseline.runtime.precision == resnet.runtime.precision == "bf16"


def test_fair_switches_one_at_a_time(params):
    p = with_overrides(params, {"train_resnet.patience": 0, "train_resnet.epochs": 30,
                                "train_baseline.restore_best": False})
    baseline, resnet = resolve(p, "baseline"), resolve(p, "resnet")
    assert (resnet.patience, resnet.epochs, resnet.restore_best) == (0, 30, True)
    assert (baseline.patience, baseline.epochs, baseline.restore_best) == (p.train.patience, p.train.epochs, False)
    assert p.model_stage("resnet").epochs == 30 and p.train.epochs == params.train.epochs  # shared budget untouched


def test_every_preset_sets_every_switch_for_both_roles():
    """A preset's switches are all set (None only where None means "the model's own"), and the values two roles
    must share (one prepare, one runtime per process) agree, so `resolve` never leaves a null for the loop."""
    for recipe, per_role in PRESETS.items():
        assert set(per_role) == set(ROLES), recipe
        for field in ("init", "adam_eps", "interpolation", "restore_best", "bn_frozen"):
            assert all(getattr(per_role[r], field) is not None for r in ROLES), (recipe, field)
        for field in ("precision", "interpolation"):
            assert len({getattr(per_role[r], field) for r in ROLES}) == 1, (recipe, field)


@pytest.mark.parametrize("override, match", [
    (["train.recipe=keras"], r"train\.recipe: 'keras' is not one of 'fair' \| 'original'"),
    (["train.init=jax"], r"train\.init: 'jax' is not a valid 'torch' \| 'keras' \| null"),
    (["data.interpolation=bicubic"], r"data\.interpolation: 'bicubic' is not a valid 'bilinear' \| 'nearest'"),
    (["train.adam_eps=0"], r"train\.adam_eps: 0\.0 is out of range; accepted: null \(the recipe's\) or a number > 0"),
    (["train.bn_momentum=1.5"], r"train\.bn_momentum: 1\.5 is out of range; accepted: null .* from 0 to 1"),
    (["train.bn_eps=-1"], r"train\.bn_eps: -1\.0 is out of range"),
    (["train_resnet.bn_frozen=1"], r"train_resnet\.bn_frozen: 1 is not a valid true \| false \| null"),
    (["train_resnet.epochs=0"], r"train_resnet\.epochs: 0 is out of range; accepted: null \(the recipe's\) or an "
                                r"integer >= 1"),
    (["train_baseline.patience=-2"], r"train_baseline\.patience: -2 is out of range"),
    (["train_resnet.epochs=5"], r"train_resnet\.min_epochs: 20 \(from train\) is out of range; accepted: an integer "
                                r"from 0 to the role's epochs \(5\)"),
    (["train.recipe=original", "train.epochs=30"],
     r"train\.epochs: 30 has no effect with train\.recipe: original, whose per-role budget replaces it \(baseline "
     r"50, resnet 40\); set train_<role>\.epochs instead"),
    (["train.recipe=original", "train.patience=5"], r"train\.patience: 5 has no effect"),
    (["train.recipe=original", "train_resnet.augment=false"],
     r"train_resnet\.augment: false has no effect with train\.recipe: original"),
    (["train.recipe=original", "train_resnet.min_epochs=41"],
     r"train_resnet\.min_epochs: 41 \(from train_resnet\) is out of range"),
])
def test_bad_values_name_the_key_and_the_accepted_values(params_file, override, match):
    with pytest.raises(ConfigError, match=match):
        load_params(params_file, override)


@pytest.mark.parametrize("recipe", ["fair", "original"])
def test_logged_settings_have_the_same_keys_for_both_roles(params, recipe):
    """MLflow's compare view lines the two models up by key, also when one of them is not augmented."""
    p = with_overrides(params, {"train.recipe": recipe})
    baseline, resnet = (training_params(resolve(p, role)) for role in ROLES)
    assert baseline.keys() == resnet.keys()
    assert {"recipe", "init", "adam_eps", "bn_momentum", "bn_eps", "bn_frozen", "restore_best",
            "interpolation"} <= baseline.keys()
    assert not {"runtime.precision", "precision", "device", "num_threads"} & baseline.keys()  # tags, not params
    if recipe == "original":
        assert baseline["augment.magnitude"] == 0.0 and baseline["augment.hflip"] is False
        assert (baseline["init"], resnet["bn_frozen"], resnet["interpolation"]) == ("keras", True, "nearest")


# ----------------------------------------------------------------------------- the step schedule (train.lr_milestones)


def test_lr_at_is_multistep_per_epoch():
    assert [loop.lr_at(e, 1e-3, (2, 4), 0.5) for e in range(1, 7)] == [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4]
    assert loop.lr_at(99, 1e-3) == 1e-3  # no milestones: the study's constant rate


def test_fit_trains_each_epoch_at_the_scheduled_rate(params):
    config = dataclasses.replace(resolve(params, "resnet", 1), epochs=3, min_epochs=0, batch_size=8,
                                 lr_milestones=(1, 2), lr_gamma=0.1)
    _, result = train_classifier(config, TRAIN, VAL, precision=FP32, progress=False)
    assert [r["lr"] for r in result.history] == pytest.approx([1e-3, 1e-4, 1e-5])


@pytest.mark.parametrize("milestones", [[40], [0], [20, 10], [5, 5]])
def test_bad_lr_milestones_name_the_key(params_file, milestones):
    with pytest.raises(ConfigError, match=r"train\.lr_milestones: .* out of range; accepted: increasing epochs"):
        load_params(params_file, [f"train.lr_milestones={milestones}"])


def test_initialisation_resolves_role_then_train_then_recipe(params):
    """fair gives each role its own (config.presets.FAIR); train.init sets both; train_<role>.init wins over it; original is
    Keras' for both unless a switch says otherwise."""
    def inits(overrides):
        p = with_overrides(params, overrides)
        return tuple(resolve(p, role, seed=1).init for role in ROLES)
    assert inits({}) == ("keras", "torch")
    assert inits({"train.init": "torch"}) == ("torch", "torch")
    assert inits({"train.init": "torch", "train_resnet.init": "keras"}) == ("torch", "keras")
    assert inits({"train.recipe": "original"}) == ("keras", "keras")
    assert inits({"train.recipe": "original", "train_baseline.init": "torch"}) == ("torch", "keras")


def test_every_switch_is_a_params_key_and_a_field_of_the_resolved_config():
    """The contract that lets a new switch touch only its preset value, its params field and the code using it:
    `resolve` gives every name in SWITCHES its value by one rule, so each must exist on both ends."""
    from reslab.config import ModelStageConfig, TrainConfig
    from reslab.config.presets import SWITCHES

    resolved = {f.name for f in dataclasses.fields(TrainingConfig)}
    keys = {f.name for f in dataclasses.fields(TrainConfig)} | {f.name for f in dataclasses.fields(ModelStageConfig)}
    assert SWITCHES and set(SWITCHES) <= resolved and set(SWITCHES) <= keys
