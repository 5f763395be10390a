"""The committed data.dvc is exactly what the generator writes, so `make run` on a fresh clone leaves it unchanged,
and the built-in set meets the ">= 100 keeps about 10 classes, drops about 6" design."""
import json

import pytest
import yaml

from conftest import REPO, run

pytestmark = pytest.mark.slow


def test_generator_output_matches_committed_data_dvc(tmp_path):
    run(["git", "init", "-q"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    run(["reslab", "data", "synth", "--out", "data"], tmp_path)
    run(["dvc", "add", "-q", "data"], tmp_path)
    generated = yaml.safe_load((tmp_path / "data.dvc").read_text())["outs"][0]
    committed = yaml.safe_load((REPO / "data.dvc").read_text())["outs"][0]
    assert (generated["md5"], generated["nfiles"], generated["size"]) == \
        (committed["md5"], committed["nfiles"], committed["size"])

    # the filter rule on the full built-in set
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    run(["reslab", "filter"], tmp_path)
    report = json.loads((tmp_path / "reports/data_report.json").read_text())
    assert report["n_classes_found"] >= 16
    assert report["n_classes_kept"] == 10 and len(report["dropped"]) == 6
    assert report["n_skipped"] >= 3  # the generator's truncated JPEGs and text file named .jpg


def test_synth_refuses_to_overwrite_foreign_data(tmp_path):
    (tmp_path / "data" / "mine").mkdir(parents=True)
    (tmp_path / "data" / "mine" / "a.jpg").write_bytes(b"x")
    proc = run(["reslab", "data", "synth", "--out", "data"], tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (tmp_path / "data" / "mine" / "a.jpg").exists()
