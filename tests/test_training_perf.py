"""The fast training path is still the right one: precision and thread choices, reproducible batches, batched
augmentation with the study's distribution, images decoded exactly once. Speed itself is measured by the scripts
in benchmarks/, not asserted here."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import stats

from reslab import hardware
from reslab.config import AugmentConfig, ConfigError, TrainConfig, TrainingConfig
from reslab.data import prepared
from reslab.data.augment import BatchAugment, affine_grid, study_transforms
from reslab.data.prepared import ImageArrays, load_prepared, prepare_split
from reslab.models import create_model
from reslab.training import (ArrayLoader, DivergedError, Precision, default_threads, fit, resolve_precision,
                             setup_runtime, to_input, train_one_epoch)
from reslab.training import runtime

CPU = torch.device("cpu")
# one epoch's switches for train_one_epoch (bn_frozen off)
EPOCH_CONFIG = TrainingConfig(model="resnet", model_args={}, image_size=32, seed=0, batch_size=16, lr=1e-3, epochs=1,
                             patience=0)


def arrays(n: int = 50, size: int = 16, classes: int = 4, seed: int = 0) -> ImageArrays:
    """A prepared split in memory whose pixel (0, 0, 0) and label both encode the row number."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(n) % 256
    return ImageArrays(images, np.arange(n) % classes, [f"c{i}" for i in range(classes)])


# ----------------------------------------------------------------------------- precision


X86_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
X86_AVX512_NO_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize("text, native", [(X86_BF16, True), (X86_AVX512_NO_BF16, False), (ARM_BF16, True),
                                          ("processor\t: 0\n", False), ("", False)])
def test_native_bf16_is_read_from_the_cpu_flags(text, native):
    assert hardware._native_bf16_in_cpuinfo(text) is native


@pytest.mark.parametrize("native, name, dtype", [(True, "bf16", torch.bfloat16), (False, "fp32", None)])
def test_auto_precision_on_cpu_follows_native_bf16(monkeypatch, native, name, dtype):
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: native)
    p = resolve_precision("auto", CPU)
    assert (p.name, p.dtype, p.device) == (name, dtype, CPU)
    assert p.channels_last is torch.backends.mkldnn.is_available()  # oneDNN convolutions are NHWC-native


@pytest.mark.parametrize("native_bf16, name", [(True, "bf16"), (False, "fp16")])
def test_auto_precision_on_cuda_is_amp(monkeypatch, native_bf16, name):
    def is_bf16_supported(including_emulation: bool = True) -> bool:
        return native_bf16 or including_emulation  # a T4 / V100 emulates bf16: slow, so fp16 is wanted there

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    p = resolve_precision("auto", torch.device("cuda"))
    assert p.name == name and p.channels_last
    assert not resolve_precision("fp32", torch.device("cuda")).channels_last


@pytest.mark.parametrize("setting, dtype", [("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_explicit_precision_is_obeyed(setting, dtype):
    p = resolve_precision(setting, CPU)
    assert p.name == setting and p.dtype == dtype


def test_unknown_precision_names_the_choices():
    with pytest.raises(ValueError, match="auto | fp32 | bf16 | fp16"):
        resolve_precision("int8", CPU)


def test_to_input_scales_and_lays_out_in_one_pass():
    x = torch.from_numpy(arrays(4).images).permute(0, 3, 1, 2)  # as ArrayLoader yields it
    for p in (resolve_precision("bf16", CPU), Precision("fp32", CPU, None, channels_last=False)):
        out = to_input(x, p)
        assert out.dtype == torch.float32 and torch.equal(out, x.float() / 255)
        fmt = torch.channels_last if p.channels_last else torch.contiguous_format
        assert out.is_contiguous(memory_format=fmt)


# ----------------------------------------------------------------------------- threads


@pytest.mark.parametrize("cores, workers, threads", [(8, 1, 8), (8, 2, 4), (8, 3, 2), (2, 2, 1), (2, 4, 1),
                                                     (2, 0, 2), (1, 1, 1)])
def test_default_threads_never_oversubscribe(monkeypatch, cores, workers, threads):
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(hardware, "_cgroup_cpu_limit", lambda: None)
    assert default_threads(workers) == threads
    assert default_threads(workers) * max(1, workers) <= max(cores, max(1, workers))


@pytest.mark.parametrize("num_threads, workers, warns", [(0, 2, False), (1, 2, False), (2, 1, False), (2, 2, True),
                                                         (3, 1, True)])
def test_explicit_threads_that_oversubscribe_are_named(monkeypatch, num_threads, workers, warns):
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(hardware, "_cgroup_cpu_limit", lambda: None)
    warning = hardware.oversubscription(num_threads, workers)
    assert (warning is not None) == warns
    if warns:
        assert f"train.num_threads {num_threads} x {workers} worker(s)" in warning and "2 cores" in warning


def test_setup_runtime_sets_threads_device_and_precision_and_names_oversubscription(monkeypatch, capsys):
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(hardware, "_cgroup_cpu_limit", lambda: None)
    before = torch.get_num_threads()
    try:
        p = setup_runtime(TrainConfig(num_threads=0, precision="fp32", device="cpu"), workers=2, who="tune")
        assert torch.get_num_threads() == 1 and (p.name, p.device, p.dtype) == ("fp32", CPU, None)
        assert capsys.readouterr().err == ""
        setup_runtime(TrainConfig(num_threads=2, precision="bf16", device="cpu"), workers=2, who="tune")
        assert torch.get_num_threads() == 2
        assert "tune: warning: train.num_threads 2 x 2 worker(s) = 4 threads on 2 cores" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


def test_default_threads_respects_a_container_cpu_quota(monkeypatch):
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setattr(hardware, "_cgroup_cpu_limit", lambda: 2)
    assert default_threads() == 2 and default_threads(2) == 1


@pytest.mark.parametrize("files, limit", [
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu.max": "250000 100000\n"}, 2),
    ({"cpu.max": "50000 100000\n"}, 1),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4),
    ({}, None),
])
def test_cgroup_cpu_quota_is_parsed(tmp_path, monkeypatch, files, limit):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    real_path = hardware.Path
    monkeypatch.setattr(hardware, "Path", lambda p: real_path(str(p).replace("/sys/fs/cgroup", str(tmp_path))))
    assert hardware._cgroup_cpu_limit() == limit


# ----------------------------------------------------------------------------- ArrayLoader


def rows_of(loader: ArrayLoader) -> list[list[int]]:
    """The row numbers in each batch, read back from the pixels."""
    out = []
    for x, y in loader:
        assert x.shape[1] == 3 and x.dtype == torch.uint8
        assert x.is_contiguous(memory_format=torch.channels_last)  # NHWC rows, viewed as NCHW without a copy
        rows = x[:, 0, 0, 0].tolist()
        assert y.tolist() == [r % 4 for r in rows]  # labels travel with their images
        out.append(rows)
    return out


def test_array_loader_order_depends_only_on_seed_and_epoch():
    data = arrays(50)
    a, b = ArrayLoader(data, 8, shuffle=True, seed=3), ArrayLoader(data, 8, shuffle=True, seed=3)
    a.set_epoch(2)
    for epoch in (1, 2):  # b visits epoch 1 first: history must not matter
        b.set_epoch(epoch)
        first = rows_of(b)
    assert rows_of(a) == first
    assert len(first) == len(a) == math.ceil(50 / 8) and [len(r) for r in first][-1] == 50 % 8
    assert sorted(sum(first, [])) == list(range(50))  # every image exactly once
    a.set_epoch(3)
    assert rows_of(a) != first
    assert rows_of(ArrayLoader(data, 8, shuffle=True, seed=4)) != rows_of(ArrayLoader(data, 8, shuffle=True, seed=3))


def test_array_loader_without_shuffle_keeps_the_split_order():
    assert sum(rows_of(ArrayLoader(arrays(20), 6, shuffle=False)), []) == list(range(20))


def test_array_loader_reads_a_memory_map_without_loading_it(tmp_path):
    data = arrays(30)
    np.save(tmp_path / "train_images.npy", data.images)
    np.save(tmp_path / "train_labels.npy", data.labels)
    (tmp_path / "classes.json").write_text('["c0", "c1", "c2", "c3"]')
    mapped = load_prepared(tmp_path, "train")
    assert isinstance(mapped.images, np.memmap) and not mapped.images.flags.writeable
    assert rows_of(ArrayLoader(mapped, 7, shuffle=True, seed=1)) == rows_of(ArrayLoader(data, 7, shuffle=True, seed=1))


def test_empty_split_is_refused():
    with pytest.raises(ValueError, match="empty"):
        ArrayLoader(arrays(0), 4, shuffle=False)


# ----------------------------------------------------------------------------- BatchAugment


def test_affine_grid_equals_torch():
    matrix = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0))
    for h, w in ((16, 16), (7, 12)):
        torch.testing.assert_close(affine_grid(matrix, h, w),
                                   torch.nn.functional.affine_grid(matrix, [5, 3, h, w], align_corners=False))


def test_magnitude_zero_is_the_identity_in_both_implementations():
    x = torch.from_numpy(arrays(6).images).permute(0, 3, 1, 2)
    cfg = AugmentConfig(magnitude=0.0)
    out = BatchAugment(cfg)(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, x.float() / 255)
    per_image = torch.stack([study_transforms(cfg)(img) for img in x])
    torch.testing.assert_close(out, per_image, atol=1e-6, rtol=0)  # v2 scales by a reciprocal: last-bit rounding


def test_zero_ranges_resample_the_image_exactly():
    x = torch.from_numpy(arrays(6).images).permute(0, 3, 1, 2)
    cfg = AugmentConfig(magnitude=1.0, rotation=0, shift=0, shear=0, zoom=0, brightness=0, hflip=False)
    torch.testing.assert_close(BatchAugment(cfg)(x), x.float() / 255, atol=1e-5, rtol=0)


def test_flip_only_gives_the_image_or_its_mirror():
    x = torch.from_numpy(arrays(64).images).permute(0, 3, 1, 2).float() / 255
    cfg = AugmentConfig(magnitude=1.0, rotation=0, shift=0, shear=0, zoom=0, brightness=0, hflip=True)
    out = BatchAugment(cfg)(x, torch.Generator().manual_seed(0))
    same = (out - x).abs().amax((1, 2, 3)) < 1e-5
    mirrored = (out - x.flip(-1)).abs().amax((1, 2, 3)) < 1e-5
    assert bool((same | mirrored).all()) and 16 < int(mirrored.sum()) < 48


def test_batch_augment_is_reproducible_from_its_generator():
    x = torch.from_numpy(arrays(8).images).permute(0, 3, 1, 2)
    aug = BatchAugment(AugmentConfig())
    a, b = aug(x, torch.Generator().manual_seed(5)), aug(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, aug(x, torch.Generator().manual_seed(6)))


SIDE, N_DRAWS = 48, 600


def probe_image() -> torch.Tensor:
    """(3, S, S) float: channel 0 encodes the input x coordinate, channel 1 the y coordinate, channel 2 is flat."""
    ramp = 0.25 + 0.5 * (torch.arange(SIDE, dtype=torch.float32) + 0.5) / SIDE
    return torch.stack([ramp.expand(SIDE, SIDE), ramp[:, None].expand(SIDE, SIDE), torch.full((SIDE, SIDE), 0.5)])


def recovered_draws(images: torch.Tensor) -> dict[str, np.ndarray]:
    """Per augmented probe image: brightness, flip, rotation angle and the shift of the centre, recovered by a
    least-squares fit of the sampled input coordinates over the central 16x16 pixels (never outside the image)."""
    c = slice(SIDE // 2 - 8, SIDE // 2 + 8)
    patch = images[:, :, c, c].double()  # (N, 3, 16, 16)
    bright = patch[:, 2].mean((1, 2)) / 0.5
    coords = (patch[:, :2] / bright[:, None, None, None] - 0.25) / 0.5 * SIDE - 0.5 - (SIDE - 1) / 2  # input px
    oy, ox = torch.meshgrid(torch.arange(16.0) - 7.5, torch.arange(16.0) - 7.5, indexing="ij")
    design = torch.stack([ox.flatten(), oy.flatten(), torch.ones(256)], 1).double()  # (256, 3)
    fit_ = torch.linalg.pinv(design) @ coords.flatten(2).transpose(1, 2)  # (N, 3, 2): rows ox, oy, 1
    a = fit_[:, :2].transpose(1, 2)  # (N, 2, 2): output px -> input px
    flipped = torch.linalg.det(a) < 0
    first = torch.where(flipped[:, None], -a[:, :, 0], a[:, :, 0])
    angle = torch.rad2deg(torch.atan2(first[:, 1], first[:, 0])).abs()  # |rotation|: sign conventions differ
    return {"brightness": bright.numpy(), "flip": flipped.numpy(), "angle": angle.numpy(),
            "shift_x": fit_[:, 2, 0].abs().numpy(), "shift_y": fit_[:, 2, 1].abs().numpy()}


def batch_draws(cfg: AugmentConfig) -> dict[str, np.ndarray]:
    images = probe_image().expand(N_DRAWS, 3, SIDE, SIDE).contiguous()
    return recovered_draws(BatchAugment(cfg)(images, torch.Generator().manual_seed(1)))


def v2_draws(cfg: AugmentConfig) -> dict[str, np.ndarray]:
    torch.manual_seed(2)
    transform, probe = study_transforms(cfg), probe_image()
    return recovered_draws(torch.stack([transform(probe) for _ in range(N_DRAWS)]))


def mismatches(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> list[str]:
    """Names of the recovered quantities whose distributions differ (KS / binomial test at p < 0.001)."""
    bad = [k for k in ("brightness", "angle", "shift_x", "shift_y") if stats.ks_2samp(a[k], b[k]).pvalue < 1e-3]
    flips = stats.fisher_exact([[a["flip"].sum(), (~a["flip"]).sum()], [b["flip"].sum(), (~b["flip"]).sum()]])
    return bad + (["flip"] if flips.pvalue < 1e-3 else [])


def test_batch_augment_draws_the_study_distribution_of_torchvision_v2():
    study = AugmentConfig()
    ours, theirs = batch_draws(study), v2_draws(study)
    assert mismatches(ours, theirs) == []
    # the ranges themselves: |rotation| <= 40 deg, brightness in [0.8, 1.2], about half flipped
    assert ours["angle"].max() < 40.5 and 0.79 < ours["brightness"].min() and ours["brightness"].max() < 1.21
    assert 0.4 < ours["flip"].mean() < 0.6
    # and the comparison has the power to see a wrong range
    assert mismatches(batch_draws(AugmentConfig(magnitude=1.5)), theirs) != []
    assert "flip" in mismatches(batch_draws(AugmentConfig(hflip=False)), theirs)


# ----------------------------------------------------------------------------- one epoch


def tiny_fit(precision: Precision, epochs: int, checkpoint: Path | None = None, seed: int = 0,
             compile: bool = False):
    torch.manual_seed(seed)
    model = create_model("resnet", num_classes=4, image_size=32).to(
        memory_format=torch.channels_last if precision.channels_last else torch.contiguous_format)
    data = arrays(48, size=32)
    config = TrainingConfig(model="resnet", model_args={}, image_size=32, seed=seed, batch_size=16, lr=1e-3,
                            epochs=epochs, patience=0, augment=AugmentConfig(), compile=compile)
    result = fit(model, (ArrayLoader(data, 16, shuffle=True, seed=seed), ArrayLoader(data, 32, shuffle=False)),
                 config, precision=precision, checkpoint=checkpoint, progress=False)
    return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in result.history]


@pytest.mark.parametrize("setting", ["fp32", "bf16"])
def test_training_is_deterministic_and_resumes_identically(tmp_path, setting):
    torch.set_num_threads(1)  # reproducible for a fixed seed *and* thread count
    precision = resolve_precision(setting, CPU)
    whole = tiny_fit(precision, 3)
    assert whole == tiny_fit(precision, 3)
    ckpt = tmp_path / "ckpt.pt"
    tiny_fit(precision, 2, ckpt)  # "killed" after epoch 2
    assert tiny_fit(precision, 3, ckpt) == whole
    assert whole != tiny_fit(precision, 3, seed=1)


@pytest.mark.slow
def test_compiled_training_learns_resumes_and_keeps_parameter_names(tmp_path):
    """train.compile: the compiled step trains the model's own parameters (checkpoint names unprefixed), is
    reproducible and resumes; it is not bit-identical to eager (other kernels), so it is compared with itself."""
    torch.set_num_threads(1)
    precision = resolve_precision("bf16", CPU)
    ckpt = tmp_path / "ckpt.pt"
    tiny_fit(precision, 2, ckpt, compile=True)
    state = torch.load(ckpt, weights_only=True)
    assert not any(k.startswith("_orig_mod") for k in state["model"])
    assert state["model"].keys() == create_model("resnet", num_classes=4, image_size=32).state_dict().keys()
    resumed = tiny_fit(precision, 3, ckpt, compile=True)
    whole = tiny_fit(precision, 3, compile=True)
    assert resumed == whole
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) for r in whole)


def test_compile_without_a_cpp_compiler_is_a_clear_config_error(monkeypatch):
    monkeypatch.setattr(runtime.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match=r"train.compile .* no C\+\+ compiler .* train.compile: false"):
        runtime.compile_model(torch.nn.Linear(2, 2), CPU)


def test_fp16_trains_with_a_grad_scaler():
    torch.manual_seed(0)
    model = create_model("resnet", num_classes=4, image_size=32).to(memory_format=torch.channels_last)
    before = [p.detach().clone() for p in model.parameters()]
    out = train_one_epoch(model, ArrayLoader(arrays(32, size=32), 16, shuffle=True),
                          torch.optim.Adam(model.parameters(), 1e-3), EPOCH_CONFIG, resolve_precision("fp16", CPU),
                          progress=False)
    assert math.isfinite(out["loss"]) and 0 <= out["accuracy"] <= 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_nan_loss_raises_diverged():
    model = create_model("resnet", num_classes=4, image_size=32)
    with torch.no_grad():
        model.head[-1].bias.fill_(float("nan"))
    with pytest.raises(DivergedError, match="nan"):
        train_one_epoch(model, ArrayLoader(arrays(32, size=32), 16, shuffle=True),
                        torch.optim.Adam(model.parameters(), 1e-3), EPOCH_CONFIG, resolve_precision("fp32", CPU),
                        progress=False)


# ----------------------------------------------------------------------------- decode once


def test_each_image_is_decoded_once_by_prepare_and_never_by_training(tmp_path, monkeypatch):
    paths = []
    for i in range(12):
        p = tmp_path / "img" / f"c{i % 3}" / f"{i}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40 + i, 30 + 2 * i), (20 * i, 100, 200)).save(p)
        paths.append(str(p))
    rows = pd.DataFrame({"path": paths, "label": [f"c{i % 3}" for i in range(12)]})
    opened: list[str] = []
    real_open = Image.open

    def counting_open(fp, *args, **kwargs):
        opened.append(str(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(prepared.Image, "open", counting_open)
    prepare_split(rows, ["c0", "c1", "c2"], 32, tmp_path / "prepared", "train", workers=1)
    assert sorted(opened) == sorted(paths)  # each file exactly once

    def no_decoding(*args, **kwargs):
        raise AssertionError("training decoded an image")

    monkeypatch.setattr(Image, "open", no_decoding)
    (tmp_path / "prepared" / "classes.json").write_text('["c0", "c1", "c2"]')
    data = load_prepared(tmp_path / "prepared", "train")
    model = create_model("resnet", num_classes=3, image_size=32)
    config = TrainingConfig(model="resnet", model_args={}, image_size=32, seed=0, batch_size=4, lr=1e-3, epochs=1,
                            patience=0, augment=AugmentConfig())
    fit(model, (ArrayLoader(data, 4, shuffle=True), ArrayLoader(data, 8, shuffle=False)), config,
        precision=resolve_precision("auto", CPU), progress=False)
