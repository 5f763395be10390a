"""Shared fixtures: a tiny generated ImageFolder data set and a shrunken copy of the real project.

The project fixture copies the repository's own dvc.yaml, params.yaml and sources into a temp git repo and
overrides only what makes it small (few images, 32 px, 2 epochs) - the lightning-hydra-template idea of running
the real configuration with `fast_dev_run`, not a mock of it. The session-wide projects are shared by many tests:
a test that changes one works on its own `copy_project` of it.
"""
from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Overrides that shrink the real params.yaml for tests.
TINY_PARAMS = {
    "data.image_size": 32,
    "filter.min_images_per_class": 20,
    "train.epochs": 2,
    "train.min_epochs": 0,
    "replicates.seeds": [1, 2],
    "replicates.folds": 2,  # kfold (the default): 1 repeat x 2 folds
    "evaluate.n_bootstrap": 200,
    "evaluate.n_prediction_examples": 3,
}
TINY_SCALE = 0.15  # built-in data set scaled: ~560 images, 9 classes kept at min_images_per_class=20


def run(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True,
        timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command with the venv's tools first on PATH; show its output when it fails."""
    inherited = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the project's own store
    full_env = {**inherited, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "DVC_NO_ANALYTICS": "1",
                **(env or {})}
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
                             f"\n--- stderr\n{proc.stderr[-6000:]}")
    return proc


def write_params(path: Path, overrides: dict) -> None:
    """The repository's params.yaml at `path` with dotted-key overrides, its comments kept (as `reslab tune
    --apply` writes it); not validated, so a test can write one that must fail."""
    from reslab.config import write_params as set_keys

    shutil.copy(REPO / "params.yaml", path)
    set_keys(path, overrides, validate=lambda _: None)


def training_run_id(root: Path, role: str, seed: int) -> str:
    """The FINISHED MLflow training run (in the project's own store) that produced models/<role>/seed_<seed>.pt, found
    as evaluate finds it: by the weights file's SHA-256 tag."""
    from mlflow.tracking import MlflowClient

    from reslab.models.serialization import model_file_sha256

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    sha = model_file_sha256(root / "models" / role / f"seed_{seed}.pt")
    found = client.search_runs([client.get_experiment_by_name("reslab").experiment_id],
                               f"tags.weights_sha256 = '{sha}' and attributes.status = 'FINISHED'",
                               order_by=["attributes.start_time DESC"])
    assert found, f"no FINISHED run holds the weights of models/{role}/seed_{seed}.pt"
    return found[0].info.run_id


def load_benchmark(name: str) -> ModuleType:
    """benchmarks/<name>.py as a module, importing its sibling modules as `python benchmarks/<name>.py` does (the
    script's folder first on sys.path, here only while it is imported)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(REPO / "benchmarks"))
        return importlib.import_module(name)


def pytest_configure(config):
    """Under CI (CI=true, as .ci/run sets) every test must run: a skip there fails the run."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        config.pluginmanager.register(SkipsFailCI(), "reslab-skips-fail-ci")


class SkipsFailCI:
    """Turns skipped tests into a failed session and lists them with their reasons.

    A skip in CI means a claim went unchecked (e.g. the PostgreSQL tests on a machine without the server), so the
    run must not pass. Expected failures (xfail) and deselected tests are not skips.
    """

    def __init__(self):
        self.skipped: list[tuple[str, str]] = []

    def _note(self, report) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            self.skipped.append((report.nodeid, reason.removeprefix("Skipped: ")))

    def pytest_runtest_logreport(self, report):
        self._note(report)

    def pytest_collectreport(self, report):
        self._note(report)

    def pytest_sessionfinish(self, session):
        if self.skipped and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter):
        if not self.skipped:
            return
        terminalreporter.section("skipped under CI: the run fails", sep="=", red=True, bold=True)
        for nodeid, reason in self.skipped:
            terminalreporter.line(f"{nodeid}: {reason}", red=True)
        terminalreporter.line(f"CI=true: {len(self.skipped)} test(s) skipped; CI runs every test, so give them what "
                              "they need (.ci/run installs it) instead of skipping.", red=True)


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory) -> Path:
    """The built-in generator at a small scale (session-wide, read-only for tests)."""
    from reslab.data.synth import generate_dataset

    out = tmp_path_factory.mktemp("tiny") / "data"
    generate_dataset(out, seed=0, scale=TINY_SCALE, workers=1)
    return out


def make_project(root: Path, data: Path, overrides: dict | None = None, git: bool = True) -> Path:
    """A runnable reslab project at `root`: the repo's dvc.yaml + sources, shrunken params, a copy of `data`."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    write_params(root / "params.yaml", {**TINY_PARAMS, **(overrides or {})})
    shutil.copytree(data, root / "data")
    if git:
        run(["git", "init", "-q"], root)
        run(["git", "config", "user.email", "t@example.com"], root)
        run(["git", "config", "user.name", "t"], root)
        run(["dvc", "init", "-q"], root)
        run(["dvc", "config", "core.analytics", "false"], root)
        run(["dvc", "config", "core.check_update", "false"], root)
        shutil.copytree(REPO / ".dvc" / "plots", root / ".dvc" / "plots")  # the project's plot templates
        run(["dvc", "config", "plots.html_template", "plots/offline_page.html"], root)
    return root


def copy_project(src: Path, dst: Path, overrides: dict | None = None, outputs: bool = False) -> Path:
    """A private copy of a project (a session fixture's, which tests share and must not change).

    Args:
        src: the project.
        dst: where the copy goes.
        overrides: when given, the copy's params.yaml is the repository's with these dotted keys (TINY_PARAMS are
            not added: pass them too); None keeps src's.
        outputs: keep what src's runs wrote (models, metrics, plots, the MLflow store, .reslab); False leaves them
            out, so the copy trains from its prepared data.
    """
    runs = {"mlflow.db", "mlartifacts", ".reslab", "models", "metrics", "plots"}  # at the top only (not src/*/models)
    ignore = None if outputs else (lambda folder, names: [n for n in names if Path(folder) == Path(src) and n in runs])
    shutil.copytree(src, dst, symlinks=True, ignore=ignore)
    if overrides is not None:
        write_params(dst / "params.yaml", overrides)
    return dst


@pytest.fixture
def project(tmp_path, tiny_images) -> Path:
    """A fresh tiny project (git + DVC initialised), nothing run yet."""
    return make_project(tmp_path / "proj", tiny_images)


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch) -> str:
    """A real MLflow store (sqlite) of this test alone, set as MLFLOW_TRACKING_URI; returns its URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def study_project(tmp_path, mlflow_store) -> Path:
    """A fresh project to `reslab tune` in (tuning_project.py: params shrunk for a study, prepared arrays written
    directly, no pipeline run), with its own MLflow store."""
    from tuning_project import make_study_project  # here: it imports the CLI, which most tests do not need

    return make_study_project(tmp_path / "proj")


@pytest.fixture(scope="session")
def prepared_project(tmp_path_factory, tiny_images) -> Path:
    """A tiny project with filter, split and prepare already run (session-wide; don't modify: see copy_project)."""
    root = make_project(tmp_path_factory.mktemp("prepared") / "proj", tiny_images, git=False)
    for stage in ("filter", "split", "prepare"):
        run(["reslab", stage], root)
    return root


@pytest.fixture(scope="session")
def pipeline_project(tmp_path_factory, tiny_images) -> Path:
    """The whole pipeline run once in a tiny project as `make run` runs it, with `reslab repro` (dvc repro, the
    training replicates 2 at a time); its output is in .reslab/repro.out (session-wide; don't modify: a test
    that changes it works on a `copy_project(pipeline_project, ..., outputs=True)`)."""
    root = make_project(tmp_path_factory.mktemp("pipeline") / "proj", tiny_images)
    run(["dvc", "add", "-q", "data"], root)
    out = run(["reslab", "repro", "--jobs", "2"], root, timeout=900).stdout
    (root / ".reslab" / "repro.out").write_text(out)
    return root
