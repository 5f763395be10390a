"""Tests for reslab.plots: right axes count, what each axes draws, PNG written via save_figure."""

import numpy as np
import pytest

from reslab.plots import (
    comparison_bar,
    confusion_matrix_figure,
    image_grid,
    learning_curves,
    prediction_figure,
    replicate_learning_curves,
    replicate_strip_plot,
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
    assert len(fig.axes) == 2
    for ax in fig.axes:  # train, val and the best-epoch marker
        assert [len(line.get_xdata()) for line in ax.lines] == [6, 6, 2]
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


def _gid(ax, gid):
    """Artists of `ax` (lines and collections) with this gid."""
    return [a for a in [*ax.lines, *ax.collections] if a.get_gid() == gid]


def test_replicate_strip_plot(tmp_path):
    a = np.array([0.71, 0.74, 0.69, 0.80, 0.77])
    b = np.array([0.75, 0.74, 0.72, 0.78, 0.83])
    fig = replicate_strip_plot(a, b, name_a="CNN", name_b="ResNet", difference_interval=(-0.01, 0.05),
                               difference_label="95 % two-level bootstrap CI")
    ax, ax_diff = fig.axes
    pairs = _gid(ax, "pair")
    assert len(pairs) == 5
    assert [tuple(p.get_ydata()) for p in pairs] == list(zip(a, b))
    assert [p.get_color() for p in pairs[:3]] == ["tab:green", "tab:gray", "tab:green"]
    for name, scores in (("CNN", a), ("ResNet", b)):
        (pts,) = _gid(ax, f"replicates:{name}")
        np.testing.assert_allclose(pts.get_offsets()[:, 1], scores)
        (mean,) = _gid(ax, f"mean:{name}")
        assert mean.get_ydata()[0] == pytest.approx(scores.mean())
    (diffs,) = _gid(ax_diff, "differences")
    np.testing.assert_allclose(diffs.get_offsets()[:, 0], b - a)
    assert _gid(ax_diff, "mean:difference")[0].get_xdata()[0] == pytest.approx((b - a).mean())
    # The difference's error bar spans the given interval.
    segs = [c for c in ax_diff.collections if c.get_gid() != "differences"][0].get_segments()
    assert segs[0][:, 0].tolist() == pytest.approx([-0.01, 0.05])
    assert "two-level" in " ".join(t.get_text() for t in ax_diff.get_legend().get_texts())
    _save_ok(fig, tmp_path, "strip")


def test_replicate_strip_plot_one_replicate_has_no_interval():
    fig = replicate_strip_plot([0.7], [0.8])
    ax, ax_diff = fig.axes
    assert len(_gid(ax, "pair")) == 1
    # A single replicate has no t-interval: the scatters and mean markers, but no error bars.
    assert len(ax.collections) == 2 and len(ax_diff.collections) == 1
    assert len(replicate_strip_plot([0.7, 0.8], [0.8, 0.8]).axes[0].collections) == 4


@pytest.mark.parametrize("kw, match", [
    (dict(scores_a=[0.7, 0.8], scores_b=[0.7]), "same length"),
    (dict(scores_a=[0.7, float("nan")], scores_b=[0.7, 0.8]), "finite"),
    (dict(scores_a=[0.7], scores_b=[0.8], interval_a=(0.9, 0.1)), "low <= high"),
    (dict(scores_a=[0.7], scores_b=[0.8], replicate_labels=["a", "b"]), "label"),
])
def test_replicate_strip_plot_rejects_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        replicate_strip_plot(**kw)


def _replicate_histories(lengths, offset=0.0):
    return [[{"epoch": e, "val_accuracy": 0.5 + 0.04 * e + offset + 0.01 * r, "val_loss": 1.5 - 0.1 * e - offset}
             for e in range(1, n + 1)] for r, n in enumerate(lengths)]


def test_replicate_learning_curves_ragged_histories(tmp_path):
    runs = {"CNN": _replicate_histories([5, 3, 4]), "ResNet": _replicate_histories([6, 6], offset=0.05)}
    fig = replicate_learning_curves(runs, title="replicates")
    assert len(fig.axes) == 2
    ax_acc, ax_loss = fig.axes
    for ax in fig.axes:
        assert len(ax.lines) == 2 and len(ax.collections) == 4  # per model: mean line; band, stop crosses
        for artist in ax.lines:
            assert np.isfinite(artist.get_ydata()).all()
        for band in (_gid(ax, "band:CNN")[0], _gid(ax, "band:ResNet")[0]):
            assert np.isfinite(band.get_paths()[0].vertices).all()
    (cnn,) = _gid(ax_acc, "mean:CNN")
    assert cnn.get_xdata().tolist() == [1, 2, 3, 4, 5]
    # Epoch 5: only replicate 0 still trains, so the mean is its value; epochs 1-3 average all three.
    assert cnn.get_ydata()[4] == pytest.approx(0.5 + 0.2)
    assert cnn.get_ydata()[0] == pytest.approx(0.54 + 0.01)
    assert len(_gid(ax_acc, "mean:ResNet")[0].get_xdata()) == 6
    assert len(_gid(ax_loss, "stops:CNN")[0].get_offsets()) == 3
    assert _gid(ax_loss, "stops:CNN")[0].get_offsets()[:, 0].tolist() == [5, 3, 4]
    assert "still training at each epoch" in fig.get_suptitle()
    _save_ok(fig, tmp_path, "replicate_curves")


def test_replicate_learning_curves_minmax_band_and_nan_epochs():
    hist = _replicate_histories([3, 3])
    hist[1][0]["val_loss"] = float("nan")  # a diverged epoch is left out of the mean and band
    fig = replicate_learning_curves({"CNN": hist}, band="minmax")
    ax_acc, ax_loss = fig.axes
    verts = _gid(ax_acc, "band:CNN")[0].get_paths()[0].vertices
    assert verts[:, 1].min() == pytest.approx(0.54) and verts[:, 1].max() == pytest.approx(0.63)
    loss = _gid(ax_loss, "mean:CNN")[0].get_ydata()
    assert np.isfinite(loss).all() and loss[0] == pytest.approx(1.4)
    assert "min-max" in fig.get_suptitle()


@pytest.mark.parametrize("runs, kw, match", [
    ({}, {}, "at least one model"),
    ({"CNN": []}, {}, "at least one replicate"),
    ({"CNN": [[{"epoch": 1, "val_accuracy": 0.5}]]}, {}, "val_loss"),
    ({"CNN": _replicate_histories([2])}, {"band": "iqr"}, "band"),
])
def test_replicate_learning_curves_rejects_bad_input(runs, kw, match):
    with pytest.raises(ValueError, match=match):
        replicate_learning_curves(runs, **kw)
