"""What CI relies on: .venv holds exactly the pinned versions (requirements/constraints.txt), `make` says which Python
to install when it finds none that the lock names, and under CI (CI=true) a skipped test fails the run
(tests/conftest.py's hook, loaded into a pytest run of a tiny test file)."""
from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO

TESTS = REPO / "tests"
LOCK = REPO / "requirements" / "constraints.txt"


def installed_closure(requirements: list[Requirement]) -> dict[str, str]:
    """Installed version of every distribution that `requirements` pull in here, markers and extras applied."""
    versions: dict[str, str] = {}
    seen: set[tuple[str, frozenset]] = set()
    stack = [r for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]
    while stack:
        req = stack.pop()
        name = canonicalize_name(req.name)
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{req} is required but not installed: run `make setup`")
        versions[name] = dist.version
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in req.extras or {""}):
                stack.append(sub)
    return versions


def test_venv_holds_exactly_the_pinned_versions():
    import tomllib  # Python 3.11+, as the pins are

    text = LOCK.read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+==[^\s;@]+", line) for line in lines), "only name==version pins"
    pins = {canonicalize_name(n): v for n, v in (line.split("==") for line in lines)}
    extras = re.search(r"-e '\.\[([\w,-]+)\]'", text).group(1).split(",")  # what `make setup` installs
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + [r for e in extras for r in project["optional-dependencies"][e]]
    installed = installed_closure([Requirement(r) for r in wanted])
    assert "torch" in installed and "pytest" in installed
    unpinned = sorted(set(installed) - set(pins))
    moved = {n: (pins[n], v) for n, v in installed.items() if n in pins and pins[n] != v}
    assert not unpinned and not moved, (f"not pinned: {unpinned}; pinned != installed: {moved}. After changing "
                                        "dependencies run `make lock`; otherwise `make setup` installs the pins")


def test_make_names_the_python_to_install_when_none_is_found(tmp_path):
    lock = tmp_path / "constraints.txt"
    lock.write_text("# Python 9.99 on Linux x86_64\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    proc = subprocess.run(["make", "--no-print-directory", "setup", f"LOCK={lock}", f"VENV={tmp_path / 'venv'}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and not (tmp_path / "venv").exists(), proc.stdout + proc.stderr
    message = [line for line in proc.stderr.splitlines() if "No Python 9.99 found" in line]
    assert len(message) == 1 and "pyenv install 9.99" in message[0], proc.stderr


PASSING = "def test_runs():\n    pass\n"
XFAIL = "import pytest\n@pytest.mark.xfail(reason='known')\ndef test_known():\n    assert False\n"
SKIPPING = "import pytest\ndef test_needs_server():\n    pytest.skip('server binaries not found')\n"
SKIPPED_MODULE = "import pytest\npytest.skip('no GPU here', allow_module_level=True)\n"


def run_pytest(folder: Path, files: dict[str, str], ci: str | None) -> subprocess.CompletedProcess:
    """pytest on `files` with the project's conftest.py as a plugin, CI set to `ci` (or unset)."""
    for name, text in files.items():
        (folder / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", str(folder)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("files", [{"test_a.py": PASSING + SKIPPING},
                                   {"test_a.py": PASSING, "test_b.py": SKIPPED_MODULE}],
                         ids=["skip in a test", "skipped module"])
def test_a_skip_fails_the_run_under_ci(tmp_path, files):
    proc = run_pytest(tmp_path, files, ci="true")
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, proc.stdout
    assert "skipped under CI: the run fails" in proc.stdout
    if "test_b.py" in files:
        assert "test_b.py: no GPU here" in proc.stdout
    else:
        assert "test_a.py::test_needs_server: server binaries not found" in proc.stdout


@pytest.mark.parametrize("ci", [None, "false"])
def test_a_skip_passes_outside_ci(tmp_path, ci):
    proc = run_pytest(tmp_path, {"test_a.py": PASSING + SKIPPING}, ci=ci)
    assert proc.returncode == pytest.ExitCode.OK, proc.stdout
    assert "1 passed, 1 skipped" in proc.stdout and "skipped under CI" not in proc.stdout


def test_xfail_is_not_a_skip(tmp_path):
    proc = run_pytest(tmp_path, {"test_a.py": PASSING, "test_b.py": XFAIL}, ci="true")
    assert proc.returncode == pytest.ExitCode.OK, proc.stdout
    assert "1 passed, 1 xfailed" in proc.stdout
