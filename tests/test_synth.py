"""Tests for the synthetic cartoon data set generator (small scales only; fast)."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import replace
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, UnidentifiedImageError

from reslab.data import synth
from reslab.data.synth.character import ACCESSORIES, HAIR_BEHIND, HAIR_IN_FRONT, draw_character
from reslab.data.synth.pen import HEAD_SHAPES, Pen

SCALE = 0.06


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _decodes(p: Path) -> bool:
    try:
        with Image.open(p) as im:
            im.load()
        return True
    except (OSError, UnidentifiedImageError, SyntaxError):
        return False


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "ds"
    summary = synth.generate_dataset(out, seed=0, scale=SCALE, workers=1)
    return out, summary


def test_count_table_long_tailed_at_scale_1():
    counts = synth.class_counts(1.0)
    assert len(counts) >= 16 and list(counts) == synth.CLASS_NAMES
    values = list(counts.values())
    assert values == sorted(values, reverse=True)
    kept = [n for n, c in counts.items() if c >= synth.KEEP_MIN_IMAGES]
    assert len(kept) == 10 and len(counts) - len(kept) == 6
    # margin so a few bad/duplicate files can never push a kept class under the threshold
    assert min(counts[n] for n in kept) >= synth.KEEP_MIN_IMAGES + 3
    # extras never lift a dropped class over the threshold
    dups = synth.duplicate_counts(1.0)
    for n, c in counts.items():
        if n not in kept:
            assert c + dups[n] + 2 < synth.KEEP_MIN_IMAGES
    assert 3000 <= sum(values) <= 4500
    assert max(values) / min(values) >= 20
    total_dups = sum(dups.values())
    assert 0.005 * sum(values) <= total_dups <= 0.02 * sum(values)


def test_count_table_scaling():
    base = synth.class_counts(1.0)
    small = synth.class_counts(0.1)
    for name, n in base.items():
        assert small[name] == max(2, round(n * 0.1))
    assert min(synth.class_counts(0.001).values()) == 2
    with pytest.raises(ValueError):
        synth.class_counts(0)


def test_layout_and_summary(small_set):
    out, summary = small_set
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(dirs) >= 16 and dirs == sorted(synth.CLASS_NAMES)
    counts = synth.class_counts(SCALE)
    assert summary["n_images"] == sum(counts.values())
    assert summary["n_corrupt"] == 3
    assert summary["n_duplicates"] >= 1
    n_files = sum(summary["classes"].values())
    assert n_files == summary["n_images"] + summary["n_corrupt"] + summary["n_duplicates"]
    for name in synth.CLASS_NAMES:
        files = sorted((out / name).iterdir())
        assert len(files) == summary["classes"][name]
        assert all(p.suffix == ".jpg" and p.name.startswith("pic_") for p in files)
        for i in range(counts[name]):
            assert (out / name / f"pic_{i:04d}.jpg").is_file()
    assert (out / synth.MARKER_NAME).is_file()


def test_images_decode_and_vary(small_set):
    out, _ = small_set
    sizes = set()
    for name, n in synth.class_counts(SCALE).items():
        for i in range(n):
            with Image.open(out / name / f"pic_{i:04d}.jpg") as im:
                im.load()
                assert im.format == "JPEG" and im.mode == "RGB"
                w, h = im.size
                assert 72 <= w <= 220 and 72 <= h <= 220
                sizes.add(im.size)
    assert len(sizes) > 20
    assert len({w / h for w, h in sizes}) > 20


def test_corrupt_files(small_set):
    out, summary = small_set
    bad = [p for p in sorted(out.rglob("*.jpg")) if not _decodes(p)]
    assert len(bad) == summary["n_corrupt"] == 3
    assert len({p.parent.name for p in bad}) >= 2
    truncated = [p for p in bad if p.read_bytes()[:2] == b"\xff\xd8"]
    texts = [p for p in bad if p.read_bytes()[:2] != b"\xff\xd8"]
    assert len(truncated) == 2 and len({p.parent.name for p in truncated}) == 2
    assert len(texts) == 1 and texts[0].read_text(encoding="ascii").strip()
    with pytest.raises(UnidentifiedImageError):
        Image.open(texts[0])
    for p in truncated:  # header parses, pixel data does not
        with Image.open(p) as im, pytest.raises(OSError):
            im.load()


def test_duplicates_are_byte_identical(small_set):
    out, summary = small_set
    n_dups = 0
    for name in synth.CLASS_NAMES:
        seen: dict[str, str] = {}
        for p in sorted((out / name).iterdir()):
            h = hashlib.sha256(p.read_bytes()).hexdigest()
            if h in seen:
                n_dups += 1
                assert (out / name / seen[h]).read_bytes() == p.read_bytes()
            else:
                seen[h] = p.name
    assert n_dups == summary["n_duplicates"] == sum(synth.duplicate_counts(SCALE).values())


def test_deterministic_across_runs_and_workers(small_set, tmp_path):
    out1, summary1 = small_set
    summary2 = synth.generate_dataset(tmp_path / "b", seed=0, scale=SCALE, workers=2)
    assert summary2 == summary1
    assert _tree(tmp_path / "b") == _tree(out1)
    synth.generate_dataset(tmp_path / "c", seed=1, scale=SCALE, workers=1)
    t1, t3 = _tree(out1), _tree(tmp_path / "c")
    assert set(t1) == set(t3) and t1 != t3


def test_render_is_pure():
    a = synth.render_image(3, 7, seed=5)
    synth.render_image(4, 1, seed=5)
    assert synth.render_image(3, 7, seed=5) == a
    assert synth.render_image(3, 8, seed=5) != a


def test_refuses_foreign_non_empty_dir(tmp_path):
    out = tmp_path / "foreign"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="non-empty"):
        synth.generate_dataset(out, scale=0.01, workers=1)
    synth.generate_dataset(out, scale=0.01, workers=1, overwrite=True)
    assert (out / "notes.txt").read_text() == "keep me"
    assert len([p for p in out.iterdir() if p.is_dir()]) == 16


def test_regenerates_own_dir(tmp_path):
    out = tmp_path / "own"
    synth.generate_dataset(out, scale=0.01, workers=1)
    before = _tree(out)
    (out / synth.CLASS_NAMES[0] / "stray.jpg").write_bytes(b"junk")
    summary = synth.generate_dataset(out, scale=0.01, workers=1)
    assert _tree(out) == before
    meta = json.loads((out / synth.MARKER_NAME).read_text())
    assert meta["generator"] == "reslab.data.synth" and meta["n_images"] == summary["n_images"]


def test_nuisance_override_changes_output_and_rejects_unknown(tmp_path):
    with pytest.raises(ValueError, match="unknown nuisance"):
        synth.generate_dataset(tmp_path / "x", scale=0.01, workers=1, nuisance={"nope": 1})
    assert not (tmp_path / "x").exists()
    hard = dict(synth.NUISANCE, occlusion_prob=1.0, noise_prob=1.0)
    data = synth.render_image(0, 0, 0, hard)
    assert data != synth.render_image(0, 0, 0)
    with Image.open(BytesIO(data)) as img:
        img.load()


def test_catalogue_only_names_known_drawers():
    for spec in synth.CLASSES:
        assert spec.head in HEAD_SHAPES, spec.name
        assert spec.hair == "none" or spec.hair in HAIR_BEHIND or spec.hair in HAIR_IN_FRONT, spec.name
        assert set(spec.accessories) <= ACCESSORIES, spec.name
    used = {a for spec in synth.CLASSES for a in spec.accessories}
    assert used == ACCESSORIES  # no drawer without a class that wears it


def _drawn(spec: synth.Character) -> bytes:
    img = Image.new("RGB", (120, 200), (255, 255, 255))
    draw_character(Pen(ImageDraw.Draw(img), 60, 80, 25, 0.0, False), spec, random.Random(0), synth.NUISANCE)
    return img.tobytes()


_PLAIN = synth.Character("plain", "circle", (200, 200, 200), "none", (90, 60, 30), (100, 100, 100),
                         acc_color=(10, 200, 10), beard_color=(200, 10, 10))


@pytest.mark.parametrize("name", sorted(ACCESSORIES))
def test_every_accessory_drawer_draws(name):
    assert _drawn(replace(_PLAIN, accessories=(name,))) != _drawn(_PLAIN)


@pytest.mark.parametrize("style", sorted(set(HAIR_BEHIND) | set(HAIR_IN_FRONT)))
def test_every_hair_style_draws(style):
    assert _drawn(replace(_PLAIN, hair=style)) != _drawn(_PLAIN)
