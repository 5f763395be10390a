"""Smoke tests for reslab.plots: right axes count, PNG written via save_figure."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from reslab.plots import (
    comparison_bar,
    confusion_matrix_figure,
    image_grid,
    learning_curves,
    prediction_figure,
    save_figure,
)

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog"]


def _save_ok(fig, tmp_path, name):
    out = save_figure(fig, tmp_path / "nested" / "dir" / f"{name}.png")
    assert out.exists() and out.stat().st_size > 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _history(n=6):
    return [
        {
            "epoch": e,
            "train_loss": 2.0 / (e + 1),
            "val_loss": 2.0 / (e + 1) + 0.05 * max(0, e - 3),
            "train_accuracy": 1 - 1 / (e + 2),
            "val_accuracy": 1 - 1.2 / (e + 2),
        }
        for e in range(1, n + 1)
    ]


def test_learning_curves(tmp_path):
    fig = learning_curves(_history(), title="baseline")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    _save_ok(fig, tmp_path, "curves")


def test_learning_curves_rejects_empty():
    with pytest.raises(ValueError):
        learning_curves([])


def test_image_grid_uint8_hwc(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, size=(10, 16, 16, 3), dtype=np.uint8)
    fig = image_grid(imgs, [f"l{i}" for i in range(10)], ncols=4, title="samples")
    assert len(fig.axes) == 12  # 3 rows x 4 cols
    assert len(fig.axes[0].images) == 1 and len(fig.axes[11].images) == 0
    _save_ok(fig, tmp_path, "grid_u8")


def test_image_grid_float_chw(tmp_path):
    imgs = np.random.default_rng(0).random((3, 3, 16, 16)).astype(np.float32)
    fig = image_grid(imgs, ["a", "b", "c"])
    assert len(fig.axes) == 3  # ncols capped at N
    assert fig.axes[0].images[0].get_array().shape == (16, 16, 3)
    _save_ok(fig, tmp_path, "grid_f")


def test_image_grid_label_count_mismatch():
    imgs = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="label"):
        image_grid(imgs, ["only one"])


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix_figure(tmp_path, normalize):
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 0]])
    fig = confusion_matrix_figure(cm, ["a", "b", "c"], normalize=normalize)
    assert len(fig.axes) == 2  # matrix + colour bar
    _save_ok(fig, tmp_path, f"cm_{normalize}")


def test_prediction_figure(tmp_path):
    rng = np.random.default_rng(0)
    n = 3
    imgs = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    probs = {
        "baseline": rng.dirichlet(np.ones(len(CLASSES)), size=n),
        "resnet": rng.dirichlet(np.ones(len(CLASSES)), size=n),
    }
    fig = prediction_figure(imgs, ["cat", "dog", "bird"], probs, CLASSES, top_k=3)
    assert len(fig.axes) == n * 3
    # Each bar panel shows exactly top_k bars.
    assert len(fig.axes[1].patches) == 3
    _save_ok(fig, tmp_path, "pred")


def test_prediction_figure_bad_probs_shape():
    imgs = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="shape"):
        prediction_figure(imgs, ["cat", "dog"], {"m": np.ones((2, 3)) / 3}, CLASSES)


def test_comparison_bar(tmp_path):
    metrics = {
        "baseline": {"accuracy": 0.71, "macro_f1": 0.70, "accuracy_ci_low": 0.69, "accuracy_ci_high": 0.73},
        "resnet": {"accuracy": 0.80, "macro_f1": 0.79, "accuracy_ci_low": 0.78, "accuracy_ci_high": 0.82},
    }
    fig = comparison_bar(metrics)
    assert len(fig.axes) == 1
    assert len(fig.axes[0].patches) == 4  # 2 models x 2 metrics
    _save_ok(fig, tmp_path, "bar")


def test_comparison_bar_missing_key():
    with pytest.raises(ValueError, match="missing"):
        comparison_bar({"m": {"accuracy": 0.5}})
