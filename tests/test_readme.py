"""The README's commands work as printed: every line of its ```bash blocks runs, in order, in a fresh shell whose
only set-up is the README's own `source .venv/bin/activate`, in a copy of the tiny pipeline project (a real git repo
with the real dvc.yaml and sources; params shrunk as everywhere in the tests). ```sh blocks are illustrations
(servers, other machines, your own data) and are not run."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run

pytestmark = pytest.mark.slow


def bash_commands(markdown: str) -> list[str]:
    """The command lines of the ```bash blocks, continuation lines joined, comments and blanks dropped."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", markdown, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip() if not line.lstrip().startswith("#") else ""
            if line:
                commands.append(line)
    return commands


def test_the_readme_has_runnable_blocks():
    commands = bash_commands((REPO / "README.md").read_text())
    assert any(c.startswith("dvc exp run") for c in commands) and any(c.startswith("optuna") for c in commands)
    assert not any("~/" in c or "db-host" in c for c in commands), "bash blocks must run here; use ```sh otherwise"


def test_readme_commands_run_as_printed(pipeline_project, tmp_path):
    root = tmp_path / "clone"
    shutil.copytree(pipeline_project, root, symlinks=True)
    (root / ".venv").symlink_to(Path(sys.prefix))  # the project's environment, where `make` puts it
    tree = yaml.safe_load((root / "params.yaml").read_text())
    tree["tune"].update({"n_trials": 2, "epochs": 1})  # the tiny project's sweep
    (root / "params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    (root / ".gitignore").write_text("/mlflow.db\n/mlartifacts/\n/.reslab/\n/data\n/dvc_plots/\n/.venv\n/tuning/\n")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "a user's clone after make run"], root)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "MLFLOW_DISABLE_TELEMETRY": "true",
           "DO_NOT_TRACK": "true", "DVC_NO_ANALYTICS": "1", "LANG": os.environ.get("LANG", "C.UTF-8")}
    for command in bash_commands((REPO / "README.md").read_text()):
        proc = subprocess.run(["bash", "-c", f"source .venv/bin/activate && {command}"], cwd=root, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{command!r} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert (root / "dvc_plots" / "index.html").is_file()
