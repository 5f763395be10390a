"""params.yaml is strict: unknown keys, wrong types and out-of-range values fail with the key's name."""
import typing
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from reslab.config import (PRECISIONS, ConfigError, Params, TuneConfig, TrainConfig, field_type, load_params,
                           with_overrides, write_params)


def write(tmp_path, tree) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_repository_params_load():
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert params.filter.min_images_per_class == 100
    assert params.data.image_size == 32
    assert params.train.batch_size == 32 and params.train.lr == pytest.approx(1e-3)
    # the replicated study's defaults: 3 seeds, a budget that lets both models converge, no stop in the first epochs
    assert params.replicates.seeds == (1, 2, 3)
    assert (params.train.epochs, params.train.patience, params.train.min_epochs) == (40, 10, 20)
    # the fair comparison: both models get the same augmentation by default
    assert params.train_baseline.augment and params.train_resnet.augment
    # reslab's own recipe; every switch null (the recipe's value), the study's `original` only when asked for
    assert params.train.recipe == "fair" and params.data.interpolation is None
    assert (params.train.init, params.train.adam_eps, params.train.bn_momentum, params.train.bn_eps) == (None,) * 4
    for stage in (params.train_baseline, params.train_resnet):
        assert (stage.epochs, stage.patience, stage.min_epochs, stage.restore_best, stage.bn_frozen) == (None,) * 5


def test_tune_section_is_typed():
    tune = load_params(REPO / "params.yaml").tune
    assert isinstance(tune, TuneConfig) and tune.pruner == "median" and tune.grace_period is None
    assert set(tune.search_space) == {"baseline", "resnet"}  # one space per role, keys are dotted params keys
    assert "train_resnet.lr" in tune.search_space["resnet"] and "train_baseline.lr" in tune.search_space["baseline"]


def test_a_file_without_tune_section_gets_the_defaults(tmp_path):
    assert load_params(write(tmp_path, {"seed": 1})).tune == TuneConfig()


@pytest.mark.parametrize("override, match", [
    ("train.epochz=3", r"unknown key train\.epochz; valid keys of train: epochs"),
    ("bogus=1", "unknown key bogus"),
    ("train.epochs=two", r"train\.epochs: expected an integer, got 'two'"),
    ("train.epochs=2.5", r"train\.epochs: expected an integer"),
    ("augment.hflip=1", r"augment\.hflip: expected true or false"),
    ("train.precision=int8", r"train\.precision: 'int8' is not one of 'auto' \| 'fp32' \| 'bf16' \| 'fp16'"),
    ("data.image_size=8", r"data\.image_size: 8 is out of range"),
    ("split.val_fraction=0.9", r"split\.val_fraction"),
    ("augment.magnitude=-1", r"augment\.magnitude: -1.0 is out of range"),
    ("filter=3", "filter: expected a mapping"),
    ("tune.pruner=asha", r"tune\.pruner: 'asha' is not one of 'median'"),
    ("tune.n_trials=0", r"tune\.n_trials: 0 is out of range"),
    ("tune.grace_period=10", r"tune\.grace_period: 10 is out of range; accepted: null or an integer >= "
                             r"heartbeat_interval \(60\)"),
    ("tune.pruner_percentile=100", r"tune\.pruner_percentile"),
    ("tune.study_name=' '", r"tune\.study_name"),
    ("train.recipe=study", r"train\.recipe: 'study' is not one of 'fair' \| 'original'"),
    ("train_baseline.restore_best=maybe",
     r"train_baseline\.restore_best: 'maybe' is not a valid true \| false \| null"),
])
def test_bad_values_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        load_params(REPO / "params.yaml", [override])


def test_ints_widen_to_float_and_null_is_accepted_where_optional():
    p = load_params(REPO / "params.yaml", ["train.lr=1", "split.test_per_class=50", "train_resnet.lr=null"])
    assert p.train.lr == 1.0 and isinstance(p.train.lr, float)
    assert p.split.test_per_class == 50 and p.train_resnet.lr is None


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(ConfigError, match=r"params\.yaml: unknown key train\.optimizer"):
        load_params(write(tmp_path, {"train": {"optimizer": "sgd"}}))


def test_precision_choices_are_the_annotations():
    assert field_type(Params, "train.precision") == field_type(TrainConfig, "precision")
    assert tuple(typing.get_args(field_type(Params, "train.precision"))) == PRECISIONS


@pytest.mark.parametrize("key, match", [("augment.magnitud", r"unknown key augment\.magnitud; valid keys of augment"),
                                        ("train_resnet.model_args.depths", r"train_resnet\.model_args is not a")])
def test_field_type_names_the_key(key, match):
    with pytest.raises(ConfigError, match=match):
        field_type(Params, key)


def test_overrides_are_validated_as_params_yaml():
    params = load_params(REPO / "params.yaml")
    assert with_overrides(params, {"augment.magnitude": 1}).augment.magnitude == 1.0  # widened as on load
    assert with_overrides(params, {"train_resnet.model_args.depths": [2, 2]}).train_resnet.model_args == \
        {**params.train_resnet.model_args, "depths": [2, 2]}
    with pytest.raises(ConfigError, match=r"augment\.magnitude: 4\.0 is out of range"):
        with_overrides(params, {"augment.magnitude": 4.0})


def test_write_params_keeps_comments_and_rejects_invalid_values(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    write_params(path, {"train_resnet.model_args.depths": [2, 2], "train_resnet.lr": 0.002})
    text = path.read_text()
    assert "depths: [2, 2]" in text and "# the study's plain CNN" in text and "tune --apply` writes here" in text
    params = load_params(path)
    assert params.train_resnet.model_args == {"depths": [2, 2]} and params.train_resnet.lr == 0.002
    assert params.train_baseline.lr is None and "lr: null" in text  # other keys untouched
    with pytest.raises(ConfigError, match=r"augment\.magnitude"):
        write_params(path, {"augment.magnitude": 9.0})
    assert path.read_text() == text and not (tmp_path / ".params.yaml.tmp").exists()
