"""filter stage: every file is opened; bad files are skipped with a reason; small classes are dropped."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reslab.data.errors import DataError
from reslab.data.filtering import filter_dataset


def img(path, mode="RGB", size=(20, 16), color=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    arr = rng.integers(0, 255, (size[1], size[0], len(mode) if mode != "L" else 1), dtype=np.uint8)
    Image.fromarray(arr.squeeze(-1) if mode == "L" else arr, mode).save(path)
    return path


@pytest.fixture
def messy(tmp_path):
    root = tmp_path / "data"
    for i in range(4):
        img(root / "cat" / f"c{i}.jpg")
    img(root / "cat" / "gray.png", mode="L")
    img(root / "cat" / "rgba.png", mode="RGBA")
    good = img(root / "cat" / "whole.jpg")
    (root / "cat" / "truncated.jpg").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    (root / "cat" / "empty.jpg").write_bytes(b"")
    (root / "cat" / "notes.jpg").write_text("this is not a picture\n")
    img(root / "cat" / ".hidden.jpg")
    for i in range(3):
        img(root / "dog" / f"d{i}.png")
    (root / "empty_class").mkdir()
    img(root / "stray.jpg")
    return root


def test_bad_files_are_skipped_with_reasons(messy):
    manifest, report = filter_dataset(messy, min_images_per_class=3)
    reasons = {r["path"].split("/data/")[-1]: r["reason"] for r in report["skipped"]}
    assert "cannot decode" in reasons["cat/truncated.jpg"]
    assert reasons["cat/empty.jpg"] == "empty file (0 bytes)"
    assert "not an image" in reasons["cat/notes.jpg"]
    assert reasons["cat/.hidden.jpg"] == "hidden file"
    assert reasons["stray.jpg"] == "not inside a class folder"
    kept = manifest.groupby("label").size().to_dict()
    assert kept == {"cat": 7, "dog": 3}  # 4 jpg + gray + rgba + whole; grayscale and RGBA are valid images
    assert set(manifest.columns) >= {"path", "label", "sha256", "pixel_hash"}
    assert report["dropped"] == {"empty_class": 0}


def test_classes_below_the_threshold_are_dropped(messy):
    manifest, report = filter_dataset(messy, min_images_per_class=5)
    assert set(manifest["label"]) == {"cat"}
    assert report["dropped"] == {"dog": 3, "empty_class": 0}
    assert report["kept"] == {"cat": 7}


def test_grayscale_and_rgba_hash_as_rgb(messy):
    manifest, _ = filter_dataset(messy, min_images_per_class=1)
    row = manifest[manifest.path.str.endswith("gray.png")].iloc[0]
    assert (row.width, row.height) == (20, 16)


@pytest.mark.parametrize("setup, match", [
    (lambda root: None, "data folder not found"),
    (lambda root: root.mkdir(), "no class folders found"),
    (lambda root: (root.mkdir(), img(root / "a" / "x.jpg")), "no class has at least"),
    (lambda root: root.write_text("x"), "is a file"),
])
def test_unusable_data_folders_are_clear_errors(tmp_path, setup, match):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(DataError, match=match):
        filter_dataset(root, min_images_per_class=2)


def test_filter_stage_cli_writes_manifest_and_reports(tmp_path, messy):
    from conftest import REPO, run, write_params

    root = messy.parent
    write_params(root / "params.yaml", {"filter.min_images_per_class": 3})
    proc = run(["reslab", "filter"], root)
    assert "kept 2 classes" in proc.stdout
    manifest = pd.read_csv(root / "artifacts/filter/manifest.csv")
    assert manifest["path"].str.startswith("data/").all()  # relative to the project root
    report = json.loads((root / "reports/data_report.json").read_text())
    assert report["n_classes_kept"] == 2
    assert "notes.jpg" in (root / "reports/data_report.md").read_text()
    assert REPO.exists()


def test_filter_stage_cli_error_is_one_clear_line(tmp_path):
    from conftest import run, write_params

    write_params(tmp_path / "params.yaml", {})
    proc = run(["reslab", "filter"], tmp_path, check=False)
    assert proc.returncode == 2
    assert "reslab filter: error:" in proc.stderr and "data folder not found" in proc.stderr
    assert "Traceback" not in proc.stderr
