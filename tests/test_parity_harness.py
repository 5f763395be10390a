"""benchmarks/parity.py, the harness that measures reslab against the study's Keras code: its split rule, that its
ablation really walks from the fair recipe to the original one, and that harness processes run side by side share
the runs. The reference itself needs TensorFlow (make parity-env), which CI does not install: it is not run here."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, load_benchmark


@pytest.fixture(scope="module")
def parity():
    return load_benchmark("parity")


def test_reference_split_is_the_notebooks_rule(parity, tmp_path):
    for label, n in (("a", 10), ("b", 5), ("c", 4)):
        (tmp_path / label).mkdir()
        for i in reversed(range(n)):  # creation order must not matter: the rule sorts names
            (tmp_path / label / f"{i:02d}.png").touch()
    split = parity.reference_split(tmp_path, min_images=4, test_per_class=2, validation_split=0.2)
    assert split["classes"] == ["a", "b"]  # "more than" --min-images: c (4 files) is dropped
    assert split["test"] == [("a", "08.png"), ("a", "09.png"), ("b", "03.png"), ("b", "04.png")]
    # of the rest, Keras' validation_split takes the first int(0.2 n) sorted files of each class
    assert split["val"] == [("a", "00.png")]  # int(0.2 * 8) = 1; int(0.2 * 3) = 0 for b
    assert split["train"] == [("a", f"{i:02d}.png") for i in range(1, 8)] + [("b", f"{i:02d}.png") for i in range(3)]
    with pytest.raises(SystemExit, match="more than --min-images 10"):
        parity.reference_split(tmp_path, min_images=10, test_per_class=2, validation_split=0.2)


def test_the_ablation_reaches_the_original_recipe_and_needs_every_step(parity):
    caps = {"baseline": None, "resnet": None}
    steps = list(parity.STEPS)
    # from the fair recipe with PyTorch's initialisation for both (its default until the parity measurements), every step
    # is a difference the original recipe has: leaving one out must show
    torch_init = parity.load_params(REPO / "params.yaml", ["data.image_size=64", "train.init=torch"])
    parity.check_steps_reach_original(parity.variants(torch_init, steps, caps))
    for missing in steps:
        with pytest.raises(SystemExit, match="not the original recipe"):
            parity.check_steps_reach_original(parity.variants(torch_init, [s for s in steps if s != missing], caps))
    # today's fair recipe gives the plain CNN Keras' initialisation, the ResNet PyTorch's: the init step is still
    # needed (for the ResNet)
    default = parity.load_params(REPO / "params.yaml", ["data.image_size=64"])
    parity.check_steps_reach_original(parity.variants(default, steps, caps))
    with pytest.raises(SystemExit, match="resnet: the ablation's last step is not the original recipe"):
        parity.check_steps_reach_original(parity.variants(default, [s for s in steps if s != "init"], caps))
    # a role's own switch, set by --params or --set, neither defeats a step nor leaks into the original preset
    own = parity.load_params(REPO / "params.yaml", ["data.image_size=64", "train_baseline.init=torch",
                                                    "train_resnet.bn_frozen=false"])
    parity.check_steps_reach_original(parity.variants(own, steps, caps))


def test_a_claim_is_held_by_a_live_process_and_taken_from_a_dead_one(parity, tmp_path):
    path = tmp_path / "seed_0.claim"
    assert parity.claim(path)
    assert path.read_text() == str(os.getpid())
    assert not parity.claim(path)  # this process is alive: a second taker must wait
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path.write_text(dead.stdout.strip())
    assert parity.claim(path) and path.read_text() == str(os.getpid())


@pytest.mark.slow
def test_two_harness_processes_share_the_runs_and_write_the_report(tmp_path):
    rng = np.random.default_rng(0)
    for c in range(3):
        d = tmp_path / "data" / f"class_{c}"
        d.mkdir(parents=True)
        for i in range(24):
            Image.fromarray((rng.random((28, 28, 3)) * 80 + 60 * c).astype("uint8")).save(d / f"{i:03d}.png")
    (tmp_path / "data" / "class_0" / "broken.png").write_bytes(b"not a png")  # the filter drops it
    cmd = [sys.executable, str(REPO / "benchmarks" / "parity.py"), "--data", str(tmp_path / "data"),
           "--min-images", "20", "--test-per-class", "4", "--image-size", "24", "--seeds", "0", "1",
           "--ablation-seeds", "1", "--epochs-cnn", "1", "--epochs-resnet", "1", "--steps", "init", "bn_frozen",
           "--skip-reference", "--threads", "1", "--set", "train.init=torch", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out"),
           "--date", "test"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    trained = [line for log in logs for line in log.splitlines()
               if line.startswith("reslab ") and "(reused" not in line]
    # unique runs: fair and original on 2 seeds, init and bn_frozen on seed 1, per role; bn_frozen leaves the
    # plain CNN's recipe unchanged, so its run is the init step's
    runs = sorted((tmp_path / "work" / "runs" / "reslab").rglob("seed_*.json"))
    assert len(trained) == len(runs) == 4 + 4 + 2 + 1, (trained, runs)
    assert not list((tmp_path / "work").rglob("*.claim"))
    report = json.loads((tmp_path / "out" / "parity-test.json").read_text())
    assert report["meta"]["data_info"]["filter_skipped"] == {"not an image": 1}
    assert report["meta"]["ablation_seeds"] == [1] and report["meta"]["threads"]["reslab"] == [1]
    cnn = {row["step"]: row for row in report["tables"]["ablation"]["baseline"]}
    assert cnn["bn_frozen"]["effect_vs_previous"] == {"mean": 0.0, "same_recipe": True}
    assert [r["seed"] for r in report["reslab"]["fair"]["resnet"]] == [0, 1]
    assert [r["seed"] for r in report["reslab"]["init"]["resnet"]] == [1]
    text = (tmp_path / "out" / "parity-test.md").read_text()
    assert "| + bn_frozen |" in text and "Seeds [1]" in text
    assert (tmp_path / "out" / "parity-test.png").stat().st_size > 10_000


def test_clipart_folder_from_a_package_flattens_transparency_over_white(tmp_path):
    """benchmarks/clipart_data.py on a small .deb laid out as openclipart-png: per-class sampling (subfolders
    included), transparency composited over white, the long side capped; a class short of files is named."""
    pkg = tmp_path / "pkg"
    for c, cls in enumerate(("animals", "food", "people", "tools", "transportation")):
        for i in range(3):
            d = pkg / "usr" / "share" / "openclipart" / "png" / cls / ("sub" if i == 2 else "")
            d.mkdir(parents=True, exist_ok=True)
            rgba = np.zeros((40, 300, 4), np.uint8)  # transparent black, one opaque coloured square
            rgba[10:20, 10:20] = (200, 20 * c, 0, 255)
            Image.fromarray(rgba, "RGBA").save(d / f"{cls}_{i}.png")
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN" / "control").write_text("Package: openclipart-png\nVersion: 1.0\nArchitecture: all\n"
                                            "Maintainer: t <t@localhost>\nDescription: test\n")
    deb = tmp_path / "openclipart-png_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(pkg), str(deb)], check=True,
                   capture_output=True)
    script = [sys.executable, str(REPO / "benchmarks" / "clipart_data.py"), "--deb", str(deb), "--max-side", "60"]
    out = tmp_path / "clipart"
    subprocess.run(script + ["--out", str(out), "--per-class", "3"], check=True, capture_output=True)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert len(files) == 15 and "animals/sub__animals_2.png" in files
    with Image.open(out / "food" / "food_0.png") as im:
        assert im.mode == "RGB" and im.size == (60, 8)  # 300 x 40 shrunk to a 60 px long side
        pixels = np.asarray(im)
    assert (pixels[0, -1] == 255).all()  # transparent -> white, not Keras' black
    assert json.loads((tmp_path / "clipart.json").read_text())["classes"]["tools"] == {"available": 3, "kept": 3}
    short = subprocess.run(script + ["--out", str(tmp_path / "x"), "--per-class", "4"], capture_output=True, text=True)
    assert short.returncode == 1 and "animals: 3 PNGs, fewer than --per-class 4" in short.stderr
