"""The served model as a user meets it: logged and registered as the pipeline does, loaded with
`mlflow.pyfunc.load_model`, served by `mlflow models serve` over HTTP, and used by `reslab predict`; encoded images
in, class names and probabilities out, and a bad row answered with its own error. The model also loads and serves in
a fresh environment built from its own requirements.txt alone, where reslab is not installed."""
from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import REPO, run
from odd_files import BLUE, RED, exif_rotated_jpeg
CLASSES = ["blue", "red"]
SIZE = 32
SERVE_DEADLINE_S = 120


def colour_image(path: Path, colour: tuple[int, int, int], seed: int) -> Path:
    """A noisy image of one colour, 40x24 (not the model's size, so the model resizes it)."""
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(colour) + rng.integers(-30, 30, (24, 40, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return path


def colour_classifier(path: Path) -> Path:
    """A real tiny model (the registry's baseline), trained a few steps to tell blue from red; saved weights-only."""
    from reslab.models import create_model
    from reslab.models.serialization import save_model_file

    torch.manual_seed(0)
    model = create_model("baseline", num_classes=2, image_size=SIZE)
    x = torch.zeros(16, 3, SIZE, SIZE)
    x[:8, 2], x[8:, 0] = 1.0, 1.0  # blue, red
    y = torch.tensor([0] * 8 + [1] * 8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x + 0.1 * torch.randn_like(x)), y).backward()
        opt.step()
    save_model_file(path, model.eval(), name="baseline", model_args={}, classes=CLASSES, image_size=SIZE)
    return path


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    """A temp sqlite MLflow store holding the model logged as training logs it, registered @champion as evaluate
    does; yields (project root, params file, registered name, images)."""
    from reslab import tracking
    from reslab.config import load_params

    root = tmp_path_factory.mktemp("serving")
    params_file = REPO / "params.yaml"
    params = load_params(params_file)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        experiment_id = tracking.setup(root, params.mlflow.experiment_name)
        model_file = colour_classifier(root / "models" / "baseline" / "seed_1.pt")
        with tracking.mlflow.start_run(experiment_id=experiment_id) as run:
            uri = tracking.log_model(model_file)
        tracking.set_champion(uri, params.mlflow.registered_model_name, run.info.run_id)
        images = {"red": colour_image(root / "red.png", RED, 1), "blue": colour_image(root / "blue.jpg", BLUE, 2),
                  "rotated": exif_rotated_jpeg(root / "rotated.jpg")}
        (root / "junk.jpg").write_text("<html>404</html>\n")
        images["junk"] = root / "junk.jpg"
        yield root, params_file, params.mlflow.registered_model_name, images


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def test_decoding_matches_prepare_and_turns_exif_upright(tmp_path):
    from reslab.data.prepared import load_resized
    from reslab.serving import ImageError, decode_image, image_bytes

    rotated = exif_rotated_jpeg(tmp_path / "rotated.jpg")
    upright = decode_image(rotated.read_bytes(), SIZE)
    assert np.array_equal(upright, load_resized(str(rotated), SIZE))  # bytes in: what prepare made of the file
    assert tuple(upright[2, SIZE // 2]) == pytest.approx(RED, abs=40)  # stored sideways, shown red on top
    assert tuple(upright[-3, SIZE // 2]) == pytest.approx(BLUE, abs=40)
    assert image_bytes(b64(rotated)) == rotated.read_bytes()
    for bad, why in [(b"", "not a readable image (empty)"), (b"GIF89a\x00", "not a readable image"),
                     (None, "not an image: expected encoded image bytes, got NoneType")]:
        with pytest.raises(ImageError, match=f"^{why.replace('(', '.').replace(')', '.')}"):
            decode_image(image_bytes(bad), SIZE)


@pytest.mark.slow
def test_the_logged_pyfunc_classifies_images_and_answers_bad_rows(champion):
    import mlflow
    from mlflow.models import Model
    from mlflow.types import DataType

    root, _, name, images = champion
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    uri = f"models:/{name}@champion"
    loaded = mlflow.pyfunc.load_model(uri)
    local = Path(mlflow.artifacts.download_artifacts(uri))
    # The serialization is named: a model from code (no pickle), the weights-only file its one artifact.
    flavor = Model.load(local).flavors["python_function"]
    assert "model_code_path" in flavor and "python_model" not in flavor
    assert not list(local.rglob("*.pkl")) and [p.name for p in local.rglob("*.pt")] == ["seed_1.pt"]
    schema = loaded.metadata.get_input_schema()
    assert schema.input_names() == ["image"] and schema.input_types() == [DataType.binary]
    example = Model.load(local).load_input_example(local)
    Image.open(io.BytesIO(example["image"][0])).verify()  # the input example is a real encoded image

    df = pd.DataFrame({"image": [images["red"].read_bytes(), images["junk"].read_bytes(), b64(images["blue"]),
                                 images["rotated"].read_bytes()]})
    out = loaded.predict(df)
    assert list(out.columns) == ["class", "probability", "probabilities", "error"] and len(out) == 4
    assert list(out["class"][:3]) == ["red", None, "blue"]
    assert out["error"][1].startswith("not a readable image") and out["probabilities"][1] is None
    for i in (0, 2, 3):
        assert out["error"][i] is None and list(out["probabilities"][i]) == CLASSES
        assert sum(out["probabilities"][i].values()) == pytest.approx(1.0)
        assert out["probability"][i] == max(out["probabilities"][i].values()) > 0.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_ready(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + SERVE_DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow models serve exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"mlflow models serve not ready within {SERVE_DEADLINE_S}s:\n{log.read_text()[-4000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """End the server: its own process group (mlflow and the web server it starts), which it may have left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            continue


def _post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.mark.slow
def test_mlflow_serves_the_champion_and_predict_answers_the_same(champion, capsys, monkeypatch):
    import mlflow
    from reslab.predict import main as predict_main

    root, params_file, name, images = champion
    uri = f"sqlite:///{root / 'mlflow.db'}"
    port = _free_port()
    bin_dir = Path(sys.executable).parent
    # the venv's bin first on PATH, as after activating it: `mlflow models serve` starts `uvicorn` by name
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "MLFLOW_TRACKING_URI": uri,
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    log = root / "serve.log"
    mlflow_bin = bin_dir / "mlflow"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(mlflow_bin), "models", "serve", "-m", f"models:/{name}@champion",
                                 "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
                                cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until_ready(proc, f"http://127.0.0.1:{port}/ping", log)
        order = ["red", "junk", "blue", "rotated"]
        status, body = _post(f"http://127.0.0.1:{port}/invocations",
                             {"dataframe_split": {"columns": ["image"], "data": [[b64(images[k])] for k in order]}})
        assert status == 200, body
        served = dict(zip(order, body["predictions"]))
        status, records = _post(f"http://127.0.0.1:{port}/invocations",
                                {"dataframe_records": [{"image": b64(images["red"])}]})
        assert status == 200 and records["predictions"] == [served["red"]]
    finally:
        _stop(proc)

    assert served["red"]["class"] == "red" and served["blue"]["class"] == "blue"
    assert served["junk"] == {"class": None, "probability": None, "probabilities": None,
                              "error": served["junk"]["error"]}
    assert served["junk"]["error"].startswith("not a readable image")
    for row in (served["red"], served["blue"], served["rotated"]):
        assert row["error"] is None and list(row["probabilities"]) == CLASSES
        assert row["probability"] == max(row["probabilities"].values())

    # The same model in this process gives the same numbers.
    mlflow.set_tracking_uri(uri)
    local = mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(
        pd.DataFrame({"image": [images[k].read_bytes() for k in served]}))
    for k, row in zip(served, local.to_dict("records")):
        assert row["class"] == served[k]["class"] and row["error"] == served[k]["error"]
        if row["probabilities"] is not None:
            assert row["probabilities"] == pytest.approx(served[k]["probabilities"], abs=1e-6)

    # `reslab predict` (the champion from the registry) prints what the server answered.
    capsys.readouterr()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    code = predict_main(root, params_file, [images[k] for k in served], "champion", top=2)
    out, err = capsys.readouterr()
    assert code == 1  # the junk file
    assert f"models:/{name}@champion" in out.splitlines()[0]
    printed = {line.split(": ")[0]: line.split(": ", 1)[1] for line in out.splitlines()[1:]}
    for k, row in served.items():
        if row["error"] is None:
            best = sorted(row["probabilities"].items(), key=lambda item: -item[1])
            assert printed[str(images[k])] == ", ".join(f"{c} {p:.1%}" for c, p in best)
    assert f"{images['junk']}: error: not a readable image" in err and "Traceback" not in err


# The served model outside the project: an environment built from the model's own requirements.txt alone, as MLflow's
# default env manager builds one (a venv of the base Python, then `pip install -r requirements.txt`), with no reslab.
BARE_PREDICT = """
import json, sys
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
out = model.predict(pd.DataFrame({"image": [open(p, "rb").read() for p in sys.argv[2:]]}))
print(json.dumps({"columns": list(out.columns), "rows": out.to_dict("records"),
                  "reslab": sys.modules["reslab"].__file__}))
"""


@pytest.fixture(scope="module")
def bare_venv(champion, tmp_path_factory):
    """A fresh venv (the project's base Python, no site packages) holding only the champion's requirements.txt;
    yields (its python, the downloaded model). Removed afterwards, it holds torch's several GB, by a detached `rm`:
    deleting its 32k files takes a minute or more on some disks, which the tests after it need not wait for."""
    import mlflow

    root, _, name, _ = champion
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    work = tmp_path_factory.mktemp("bare")
    model = Path(mlflow.artifacts.download_artifacts(f"models:/{name}@champion", dst_path=str(work / "model")))
    venv = work / "venv"
    try:
        run([sys.executable, "-m", "venv", str(venv)], work)  # venv uses the interpreter this one is based on
        python = venv / "bin" / "python"
        # --no-compile: no bytecode up front for every file of torch; Python writes it for what it imports
        run([str(python), "-m", "pip", "install", "-q", "--no-compile", "-r", str(model / "requirements.txt")],
            work, env=_bare_env(venv, root), timeout=1500)
        yield python, model
    finally:
        subprocess.Popen(["rm", "-rf", str(venv)], start_new_session=True, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)


def _bare_env(venv: Path, root: Path) -> dict[str, str]:
    """The bare venv first on PATH, as after activating it, the test's store, and no PYTHONPATH."""
    return {"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", "VIRTUAL_ENV": str(venv),
            "PYTHONPATH": "", "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}


@pytest.mark.slow
def test_the_model_loads_where_only_its_requirements_are_installed(champion, bare_venv):
    from reslab.serving import ImageClassifier

    root, _, name, images = champion
    python, model = bare_venv
    env = _bare_env(python.parent.parent, root)
    # The model carries the classifier's code and no more of reslab (no DVC, Optuna, MLflow tracking behind it).
    carried = {p.relative_to(model / "code").as_posix() for p in (model / "code").rglob("*.py")}
    assert {"reslab/serving.py", "reslab/data/prepared.py", "reslab/models/serialization.py"} <= carried
    assert not {p for p in carried if p.startswith(("reslab/tracking", "reslab/tuning", "reslab/stages"))}
    assert "reslab" not in (model / "requirements.txt").read_text()

    missing = run([str(python), "-c", "import reslab"], root, env=env, check=False)
    assert missing.returncode != 0 and "No module named 'reslab'" in missing.stderr  # reslab is not installed there

    order = ["red", "junk", "blue"]
    proc = run([str(python), "-c", BARE_PREDICT, f"models:/{name}@champion", *(str(images[k]) for k in order)],
               root, env=env)
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["columns"] == ["class", "probability", "probabilities", "error"]
    assert "/code/reslab/" in out["reslab"]  # the model's own copy of the code ran
    bare = dict(zip(order, out["rows"]))
    assert bare["red"]["class"] == "red" and bare["blue"]["class"] == "blue"
    assert bare["junk"]["class"] is None and bare["junk"]["error"].startswith("not a readable image")

    # The project's classifier on the model's weights file gives the same numbers.
    here = ImageClassifier.from_model_file(next(model.rglob("*.pt"))).classify(
        [images[k].read_bytes() for k in order]).to_dict("records")
    for k, row in zip(order, here):
        assert row["class"] == bare[k]["class"] and row["error"] == bare[k]["error"]
        if row["probabilities"] is not None:
            assert row["probabilities"] == pytest.approx(bare[k]["probabilities"], abs=1e-6)


@pytest.mark.slow
def test_mlflow_serves_the_champion_from_the_bare_environment(champion, bare_venv):
    root, _, name, images = champion
    python, _ = bare_venv
    port = _free_port()
    log = root / "serve_bare.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(python.parent / "mlflow"), "models", "serve", "-m", f"models:/{name}@champion",
                                 "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
                                cwd=root, env={**os.environ, **_bare_env(python.parent.parent, root),
                                               "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until_ready(proc, f"http://127.0.0.1:{port}/ping", log)
        status, body = _post(f"http://127.0.0.1:{port}/invocations",
                             {"dataframe_split": {"columns": ["image"],
                                                  "data": [[b64(images["red"])], [b64(images["junk"])]]}})
    finally:
        _stop(proc)
    assert status == 200, body
    red, junk = body["predictions"]
    assert red["class"] == "red" and red["error"] is None and list(red["probabilities"]) == CLASSES
    assert junk["class"] is None and junk["error"].startswith("not a readable image")
