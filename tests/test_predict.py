"""`reslab predict` on what a user passes: every problem is one clear line, the rest is still classified, and no
link leads it outside what the user named."""
import os

import pytest

from odd_files import exif_rotated_jpeg, fifo, img, link, recording_opens
from reslab.predict import collect, main


@pytest.fixture
def model_file(tmp_path):
    from reslab.models import create_model
    from reslab.models.serialization import save_model_file

    path = tmp_path / "model.pt"
    model = create_model("baseline", num_classes=2, image_size=32)
    save_model_file(path, model, name="baseline", model_args={}, classes=["cat", "dog"], image_size=32)
    return path


@pytest.fixture
def handed(tmp_path):
    """A folder a user hands to predict, plus files and links named one by one."""
    folder = tmp_path / "photos"
    elsewhere = tmp_path / "elsewhere"
    img(elsewhere / "secret.jpg")
    img(elsewhere / "named.jpg")
    img(folder / "a.jpg")
    img(folder / "b.png")
    img(folder / "sub" / "c.jpg")
    exif_rotated_jpeg(folder / "rotated.jpg")
    (folder / "notes.txt").write_text("not an image, not an image suffix\n")
    img(folder / ".hidden.jpg")
    (folder / "broken.jpg").write_text("<html>404</html>\n")
    fifo(folder / "pipe.jpg")
    link(folder / "out.jpg", elsewhere / "secret.jpg")
    link(folder / "loop.jpg", "loop.jpg")
    link(folder / "gone.jpg", "nothing.jpg")
    link(folder / "again.jpg", "a.jpg")
    named = {
        "link": link(tmp_path / "named_link.jpg", elsewhere / "named.jpg"),  # named by the user: followed
        "fifo": fifo(tmp_path / "named_pipe.jpg"),
        "missing": tmp_path / "missing.jpg",
        "dangling": link(tmp_path / "dangling.jpg", "nowhere.jpg"),
    }
    return folder, named


def test_collect_follows_the_filter_rules(handed):
    folder, named = handed
    files, problems = collect([folder, *named.values()])
    assert sorted(os.path.relpath(f, folder.parent) for f in files) == [
        "named_link.jpg", "photos/a.jpg", "photos/b.png", "photos/broken.jpg", "photos/rotated.jpg",
        "photos/sub/c.jpg"]
    assert {os.path.relpath(p, folder.parent): why.split(" (")[0] for p, why in problems} == {
        "photos/pipe.jpg": "special file",
        "photos/out.jpg": "link outside the data folder",
        "photos/loop.jpg": "link loop",
        "photos/gone.jpg": "dangling link",
        "named_pipe.jpg": "special file",
        "missing.jpg": "file not found",
        "dangling.jpg": "file not found",
    }
    assert dict(problems)[str(named["dangling"])] == "file not found (dangling link)"


def test_predict_reports_each_problem_and_classifies_the_rest(handed, model_file, tmp_path, capsys):
    folder, named = handed
    with recording_opens() as opened:
        code = main(tmp_path, tmp_path / "params.yaml", [folder, *named.values()], str(model_file), top=1)
    out, err = capsys.readouterr()
    assert code == 1
    classified = {line.split(": ")[0] for line in out.splitlines()[1:]}
    assert classified == {str(named["link"]), *(str(folder / n) for n in ("a.jpg", "b.png", "rotated.jpg",
                                                                          "sub/c.jpg"))}
    problems = {line.split(": ")[0]: line.split(": ", 1)[1] for line in err.splitlines()}
    assert problems[str(folder / "broken.jpg")].startswith("error: not a readable image")
    assert problems[str(folder / "pipe.jpg")] == "skipped: special file (FIFO)"
    assert problems[str(folder / "out.jpg")].startswith("skipped: link outside the data folder")
    assert problems[str(named["missing"])] == "skipped: file not found"
    assert len(problems) == 8 and "Traceback" not in err, err
    assert not [p for p in opened if p.endswith("secret.jpg")]  # the folder's link out was never followed


def test_a_folder_with_nothing_to_classify_is_exit_code_2(tmp_path, model_file, capsys):
    link(tmp_path / "photos" / "out.jpg", "/etc/hostname")
    assert main(tmp_path, tmp_path / "params.yaml", [tmp_path / "photos"], str(model_file), top=1) == 2
    err = capsys.readouterr().err
    assert "out.jpg: skipped: link outside the data folder" in err and "no image files given" in err
