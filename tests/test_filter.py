"""filter stage: every entry under data/ becomes a sample or a report line with a reason; nothing crashes."""
import ctypes
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from odd_files import (animated_gif, cmyk_jpeg, corrupt_exif_jpeg, exif_rotated_jpeg, fifo, img, link,
                       palette_transparent_png, recording_opens, sixteen_bit_png, socket_file, undecodable_name)
from reslab.data.errors import DataError
from reslab.data.filtering import SKIP_REASONS, check_image, filter_dataset, report_markdown
from reslab.data.images import CONVERSIONS


@pytest.fixture
def wild(tmp_path):
    """A data folder as collected from the wild; returns (root, {entry: label} kept, {entry: reason} skipped)."""
    root = tmp_path / "data"
    outside = tmp_path / "outside"
    img(outside / "secret.jpg")
    kept, skipped = {}, {}

    def keep(rel, label, make=img):
        make(root / rel)
        kept[rel] = label

    for i in range(4):
        keep(f"cat/c{i}.jpg", "cat")
    keep("cat/sub/deep.jpg", "cat")  # files in sub-folders belong to the class
    keep("cat/a_dir.jpg/inner.png", "cat")  # a folder named like an image is a folder
    keep("cat/gray.png", "cat", lambda p: img(p, mode="L"))
    for name, make in (("sixteen.png", sixteen_bit_png), ("palette.png", palette_transparent_png),
                       ("cmyk.jpg", cmyk_jpeg), ("rotated.jpg", exif_rotated_jpeg), ("animated.gif", animated_gif),
                       ("corrupt_exif.jpg", corrupt_exif_jpeg)):
        keep(f"cat/{name}", "cat", make)
    whole = img(root / "cat" / "c0.jpg").read_bytes()
    (root / "cat" / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    skipped["cat/truncated.jpg"] = "cannot decode"
    (root / "cat" / "empty.jpg").write_bytes(b"")
    skipped["cat/empty.jpg"] = "empty file"
    (root / "cat" / "notes.jpg").write_text("this is not a picture\n")
    skipped["cat/notes.jpg"] = "not an image"
    img(root / "cat" / ".hidden.jpg")
    skipped["cat/.hidden.jpg"] = "hidden"
    img(root / "cat" / "tiny.png", size=(4, 4))
    img(root / "cat" / "thin.png", size=(100, 3))
    skipped |= {"cat/tiny.png": "too small", "cat/thin.png": "too small"}
    img(root / "cat" / "shared.png", seed=7)
    img(root / "dog" / "shared_copy.png", seed=7)  # the same pixels under two classes
    skipped |= {"cat/shared.png": "label conflict", "dog/shared_copy.png": "label conflict"}
    skipped[f"cat/{undecodable_name(root / 'cat', whole)}"] = "name not UTF-8"
    fifo(root / "cat" / "pipe.jpg")
    socket_file(root / "cat" / "sock")
    skipped |= {"cat/pipe.jpg": "special file", "cat/sock": "special file"}

    link(root / "cat" / "alias.jpg", "c0.jpg")
    skipped["cat/alias.jpg"] = "duplicate via a link"
    link(root / "cat" / "self", "self")
    link(root / "cat" / "up", "..")
    link(root / "cat" / "back", "../cat")
    skipped |= {"cat/self": "link loop", "cat/up": "link loop", "cat/back": "link loop"}
    link(root / "cat" / "gone.jpg", "nowhere.jpg")
    skipped["cat/gone.jpg"] = "dangling link"
    link(root / "cat" / "outside.jpg", outside / "secret.jpg")
    link(root / "cat" / "outside_dir", "../../outside")
    link(root / "cat" / "outside_gone.jpg", outside / "missing.jpg")
    skipped |= {"cat/outside.jpg": "link outside the data folder", "cat/outside_dir": "link outside the data folder",
                "cat/outside_gone.jpg": "link outside the data folder"}
    img(root / ".store" / "more_cats" / "m0.jpg")
    img(root / ".store" / "more_cats" / "m1.jpg")
    img(root / ".store" / "birds" / "b0.jpg")
    skipped[".store"] = "hidden"
    link(root / "cat" / "more", "../.store/more_cats")  # read through the link only: its files are cats
    kept |= {"cat/more/m0.jpg": "cat", "cat/more/m1.jpg": "cat"}

    for i in range(3):
        keep(f"dog/d{i}.png", "dog")
    link(root / "dog" / "cats", "../cat")
    link(root / "dog" / "c0.jpg", "../cat/c0.jpg")
    skipped |= {"dog/cats": "duplicate via a link", "dog/c0.jpg": "duplicate via a link"}

    for i in range(3):
        img(root / ".cats" / f"h{i}.jpg")  # a hidden class folder: one report line, never silence
    skipped[".cats"] = "hidden"
    link(root / "birds", ".store/birds")  # a class read through a link; too small a class
    skipped["birds/b0.jpg"] = "class dropped"
    (root / "empty_class").mkdir()
    img(root / "stray.jpg")
    link(root / "top.jpg", "cat/c1.jpg")
    skipped |= {"stray.jpg": "not in a class folder", "top.jpg": "not in a class folder"}
    return root, kept, skipped


def rel(path, root):
    return os.path.relpath(path, root)


def test_every_entry_of_a_wild_tree_is_accounted_for(wild):
    root, kept, skipped = wild
    manifest, report = filter_dataset(root, min_images_per_class=3, min_image_size=8)

    assert {rel(p, root): label for p, label in zip(manifest["path"], manifest["label"])} == kept
    assert {rel(s["path"], root): s["reason"] for s in report["skipped"]} == skipped
    assert report["n_entries_seen"] == len(manifest) + report["n_skipped"] == len(kept) + len(skipped)
    # folders read: cat, cat/sub, cat/a_dir.jpg, cat/more (a link), dog, birds (a link), empty_class
    assert report["n_folders_read"] == 7
    assert report["kept"] == {"cat": 15, "dog": 3} and report["dropped"] == {"birds": 1, "empty_class": 0}
    assert report["skipped_by_reason"] == {r: n for r in SKIP_REASONS if (n := list(skipped.values()).count(r))}
    assert report["conversions"] == {name: 1 for name in CONVERSIONS} | {"transparency (composited over white)": 0}
    assert [(rel(w["path"], root), w["warning"].split(".")[0]) for w in report["warnings"]] == \
        [("cat/corrupt_exif.jpg", "UserWarning: Corrupt EXIF data")]
    details = {rel(s["path"], root): s["detail"] for s in report["skipped"]}
    assert details["dog/c0.jpg"] == f"the same file as {root}/cat/c0.jpg"
    assert details["cat/shared.png"] == f"the same image as {root}/dog/shared_copy.png (dog)"
    assert "4x4 px" in details["cat/tiny.png"] and details["cat/pipe.jpg"] == "FIFO"
    assert "secret.jpg" in details["cat/outside.jpg"]

    md = report_markdown(report)
    for entry in skipped:
        assert f"`{root}/{entry}`" in md
    assert "| label conflict (skipped) | 2 |" in md and "| EXIF-rotated | 1 |" in md


def test_the_manifest_is_the_same_whatever_the_worker_count(wild):
    root, _, _ = wild
    for i in range(120):  # enough files for the process pool to be used
        img(root / "dog" / f"more{i}.png")
    one, report_one = filter_dataset(root, min_images_per_class=3, min_image_size=8, workers=1)
    two, report_two = filter_dataset(root, min_images_per_class=3, min_image_size=8, workers=2)
    pd.testing.assert_frame_equal(one, two)
    assert report_one == report_two


def test_nothing_outside_the_data_folder_is_opened(wild, tmp_path):
    root, _, _ = wild
    with recording_opens() as opened:
        filter_dataset(root, min_images_per_class=3, workers=1)
    assert any(p.endswith("cat/c0.jpg") for p in opened)  # the hook sees the filter's reads
    outside = str(tmp_path / "outside")
    assert [p for p in opened if os.path.realpath(p).startswith(outside)] == []


def test_links_into_the_dvc_cache_count_as_files(tmp_path):
    """`dvc checkout` with cache.type symlink links data/ files (identical ones to one object) into .dvc/cache."""
    cache = tmp_path / ".dvc" / "cache" / "files" / "md5"
    a, b = img(cache / "ab" / "cdef"), img(cache / "12" / "3456")
    for i, target in enumerate((a, a, b)):
        link(tmp_path / "data" / "cat" / f"c{i}.jpg", target)
    link(tmp_path / "data" / "dog" / "d0.jpg", b)
    img(tmp_path / "data" / "dog" / "d1.png")
    manifest, report = filter_dataset(tmp_path / "data", 1, link_roots=(str(tmp_path / ".dvc" / "cache"),))
    assert sorted(rel(p, tmp_path) for p in manifest["path"]) == ["data/cat/c0.jpg", "data/cat/c1.jpg",
                                                                   "data/dog/d1.png"]
    assert {rel(s["path"], tmp_path): s["reason"] for s in report["skipped"]} == \
        {"data/cat/c2.jpg": "label conflict", "data/dog/d0.jpg": "label conflict"}
    _, report = filter_dataset(tmp_path / "data", 1)  # without the cache as a link root: outside
    assert report["skipped_by_reason"] == {"link outside the data folder": 4}


def test_a_data_folder_that_is_itself_a_link(tmp_path):
    """data/ linked to shared storage: read there, named by data/ paths; links inside it may point around it."""
    store = tmp_path / "storage" / "data"
    for i in range(2):
        img(store / "cat" / f"c{i}.jpg")
    link(store / "cat" / "again.jpg", "c0.jpg")
    link(store / "cat" / "leave.jpg", tmp_path / "elsewhere.jpg")
    link(tmp_path / "data", store)
    manifest, report = filter_dataset(tmp_path / "data", 1)
    assert [rel(p, tmp_path) for p in manifest["path"]] == ["data/cat/c0.jpg", "data/cat/c1.jpg"]
    assert {rel(s["path"], tmp_path): s["reason"] for s in report["skipped"]} == {
        "data/cat/again.jpg": "duplicate via a link", "data/cat/leave.jpg": "link outside the data folder"}


def test_very_deep_and_very_wide_trees(tmp_path):
    root = tmp_path / "data"
    deep = root / "deep" / "/".join(["d"] * 300)
    img(deep / "bottom.jpg")
    img(root / "deep" / "top.jpg")
    # a path longer than PATH_MAX can only be made one folder at a time, relative to an open folder
    (root / "long").mkdir(parents=True)
    fd = os.open(root / "long", os.O_RDONLY)
    for _ in range(25):
        os.mkdir("x" * 200, dir_fd=fd)
        fd, parent = os.open("x" * 200, os.O_RDONLY, dir_fd=fd), fd
        os.close(parent)
    os.close(fd)
    img(root / "long" / "a.jpg")
    img(root / "long" / "b.jpg")
    png = img(root / "wide" / "w0.png").read_bytes()
    for i in range(1, 1500):
        (root / "wide" / f"w{i}.png").write_bytes(png)
    manifest, report = filter_dataset(root, min_images_per_class=2)
    assert manifest.groupby("label").size().to_dict() == {"deep": 2, "long": 2, "wide": 1500}
    (too_long,) = report["skipped"]
    assert too_long["reason"] == "unreadable" and "File name too long" in too_long["detail"]
    assert report["n_entries_seen"] == 1505


def test_check_image_never_blocks_or_raises_on_what_is_not_a_file(tmp_path):
    """The decoder is handed paths the walk saw as files; one replaced since must fail as a reason, not hang."""
    checks = {
        "fifo": check_image(str(fifo(tmp_path / "pipe"))),
        "missing": check_image(str(tmp_path / "gone.jpg")),
        "folder": check_image(str(tmp_path)),
    }
    assert {k: (c.ok, c.reason) for k, c in checks.items()} == {
        "fifo": (False, "special file"), "missing": (False, "unreadable"), "folder": (False, "special file")}
    assert checks["missing"].detail == "No such file or directory"


def _drop_file_permission_override():
    """preexec_fn: as root, drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set, so the child
    (root, with no inheritable capabilities) is refused by permission bits like any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_unreadable_files_and_folders_are_report_lines(tmp_path):
    """Permission bits do not stop root, and CI runs as root: the filter then runs in a child process that has
    given up root's permission override."""
    from conftest import BIN, write_params

    root = tmp_path / "data"
    for i in range(3):
        img(root / "cat" / f"c{i}.jpg")
        img(root / "dog" / f"d{i}.jpg")
    img(root / "cat" / "locked.jpg").chmod(0)
    img(root / "cat" / "closed" / "inside.jpg")
    (root / "cat" / "closed").chmod(0)
    (root / "secret_class").mkdir()
    img(root / "secret_class" / "s.jpg")
    (root / "secret_class").chmod(0)
    write_params(tmp_path / "params.yaml", {"filter.min_images_per_class": 3})
    probe = "import sys\ntry:\n    open(sys.argv[1], 'rb')\nexcept PermissionError:\n    sys.exit(0)\nsys.exit(3)"
    drop = _drop_file_permission_override if os.geteuid() == 0 else None
    try:
        denied = subprocess.run([sys.executable, "-c", probe, root / "cat" / "locked.jpg"], preexec_fn=drop)
    except subprocess.SubprocessError:  # prctl refused: no CAP_SETPCAP
        denied = None
    if denied is None or denied.returncode:
        pytest.skip("this machine does not let a process give up reading files whatever their permissions")
    proc = subprocess.run([BIN / "reslab", "filter"], cwd=tmp_path, preexec_fn=drop, capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    for p in (root / "cat" / "closed", root / "secret_class"):
        p.chmod(0o755)  # so tmp_path can be cleaned up
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "reports" / "data_report.json").read_text())
    assert {s["path"]: (s["reason"], s["detail"]) for s in report["skipped"]} == {
        "data/cat/locked.jpg": ("unreadable", "Permission denied"),
        "data/cat/closed": ("unreadable", "folder: Permission denied"),
        "data/secret_class": ("unreadable", "folder: Permission denied"),
    }
    assert report["kept"] == {"cat": 3, "dog": 3}


@pytest.mark.parametrize("setup, match", [
    (lambda root: None, "data folder not found"),
    (lambda root: root.mkdir(), "no class folders found"),
    (lambda root: img(root / ".hidden_class" / "x.jpg"), r"no class folders found.*\.hidden_class \(hidden\)"),
    (lambda root: (root.mkdir(), img(root / "a" / "x.jpg")), "no class has at least"),
    (lambda root: root.write_text("x"), "is a file"),
])
def test_unusable_data_folders_are_clear_errors(tmp_path, setup, match):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(DataError, match=match):
        filter_dataset(root, min_images_per_class=2)


def test_filter_stage_cli_writes_manifest_and_reports(wild):
    from conftest import run, write_params

    root = wild[0].parent
    write_params(root / "params.yaml", {"filter.min_images_per_class": 3})
    proc = run(["reslab", "filter"], root)
    assert "in 2 classes" in proc.stdout and "link loop 3" in proc.stdout
    assert "1 library warnings on 1 files" in proc.stdout and "Corrupt EXIF" not in proc.stdout + proc.stderr
    manifest = pd.read_csv(root / "artifacts/filter/manifest.csv")
    assert manifest["path"].str.startswith("data/").all()  # relative to the project root, links by their own path
    assert "data/cat/more/m0.jpg" in set(manifest["path"])
    report = json.loads((root / "reports/data_report.json").read_text())
    assert report["n_classes_kept"] == 2 and report["data_dir"] == "data"
    assert {s["path"] for s in report["skipped"]} >= {"data/cat/outside.jpg", "data/.cats", "data/cat/\\xff\\xfe.jpg"}
    assert "`data/cat/notes.jpg`" in (root / "reports/data_report.md").read_text()


def test_filter_stage_cli_error_is_one_clear_line(tmp_path):
    from conftest import run, write_params

    write_params(tmp_path / "params.yaml", {})
    proc = run(["reslab", "filter"], tmp_path, check=False)
    assert proc.returncode == 2
    assert "reslab filter: error:" in proc.stderr and "data folder not found" in proc.stderr
    assert "Traceback" not in proc.stderr
