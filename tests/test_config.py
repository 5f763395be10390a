"""params.yaml is strict: unknown keys, wrong types and out-of-range values fail with the key's name."""
from pathlib import Path

import pytest
import yaml

from reslab.config import ConfigError, Params, load_params

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path, tree) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_repository_params_load():
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert params.filter.min_images_per_class == 100
    assert params.data.image_size == 64
    assert params.train.batch_size == 32 and params.train.lr == pytest.approx(1e-3)
    # the fair comparison: both models get the same augmentation by default
    assert params.train_baseline.augment and params.train_resnet.augment


def test_fixed_key_names_exist():
    p = load_params(REPO / "params.yaml")
    for value in (p.filter.min_images_per_class, p.data.image_size, p.augment.magnitude, p.train.epochs,
                  p.train.batch_size, p.train.lr, p.seed):
        assert value is not None


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
