"""A DVC remote carries a run to a second machine (docs/remote.md): the tiny pipeline, committed to git with the
repository's own .gitignore, is pushed to a directory remote and cloned into a folder that shares nothing with it
but that remote; `dvc pull` there brings data, artifacts and models byte for byte, and DVC has nothing to rerun."""
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from conftest import REPO, copy_project, run

pytestmark = pytest.mark.slow

# Run state that neither git nor DVC carries (MLflow's store, resume checkpoints) and the stores themselves.
NOT_CARRIED = {".git", ".dvc/cache", ".dvc/tmp", ".dvc/config.local", "mlflow.db", "mlartifacts", ".reslab"}


def project_files(root: Path) -> dict[str, str]:
    """Every file of a project but NOT_CARRIED and __pycache__: relative path -> sha256 of its bytes."""
    files = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_dir() or "__pycache__" in path.parts or any(
                rel == skip or rel.startswith(f"{skip}/") for skip in NOT_CARRIED):
            continue
        files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def test_git_clone_and_dvc_pull_restore_the_whole_pipeline(pipeline_project, tmp_path):
    first = copy_project(pipeline_project, tmp_path / "first", outputs=True)
    shutil.copy(REPO / ".gitignore", first / ".gitignore")  # what a user's repository leaves out of git
    run(["git", "add", "-A"], first)
    run(["git", "commit", "-qm", "a run of the pipeline"], first)
    remote = tmp_path / "remote"  # a directory every machine sees (a shared mount)
    run(["dvc", "remote", "add", "-d", "shared", str(remote)], first)
    run(["git", "commit", "-qam", "DVC remote"], first)
    run(["dvc", "push"], first)
    assert run(["dvc", "push"], first).stdout.strip() == "Everything is up to date."
    shutil.rmtree(first / ".dvc" / "cache")  # whatever the clone gets, it gets from the remote

    second = tmp_path / "second"
    run(["git", "clone", "-q", str(first), str(second)], tmp_path)
    assert not (second / "data").exists() and not (second / "artifacts" / "prepared").exists()
    run(["dvc", "pull"], second)

    expected = project_files(first)
    for path in ("data/bald_baker/pic_0000.jpg", "artifacts/filter/manifest.csv", "artifacts/split/images.csv",
                 "artifacts/replicates/seed_2.csv", "artifacts/prepared/all_images.npy",
                 "models/baseline/seed_1.pt", "models/resnet/seed_2.pt", "metrics/evaluate.json",
                 "reports/comparison.md", "dvc.lock"):
        assert path in expected, f"{path}: not in the run pipeline, so the comparison below would not check it"
    arrived = project_files(second)
    assert sorted(set(expected) - set(arrived)) == [], "missing on the second machine"
    assert sorted(set(arrived) - set(expected)) == [], "on the second machine only"
    assert sorted(p for p in expected if arrived[p] != expected[p]) == [], "different bytes"
    assert json.loads(run(["dvc", "status", "--json"], second).stdout) == {}  # dvc repro would run nothing

    # the pulled models serve without the first machine's MLflow store (@champion lives there)
    image = second / "data" / "bald_baker" / "pic_0000.jpg"
    out = run(["reslab", "predict", str(image), "--model", "resnet"], second).stdout
    assert "bald_baker/pic_0000.jpg: " in out and not (second / "mlflow.db").exists()
