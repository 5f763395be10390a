"""The README's and docs/'s commands work as printed: every line of the ```bash blocks of README.md and of each
docs/*.md page runs, in order, in a fresh shell whose only set-up is the README's own `source .venv/bin/activate`,
in a copy of the tiny pipeline project (a real git repo with the real dvc.yaml and sources; params shrunk as
everywhere in the tests), one copy per page. ```sh blocks are illustrations (servers, other machines, your own data,
hours-long runs) and are not run. Every relative link and image of the pages points at a file (and heading) that
exists."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run

PAGES = ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))]


def bash_commands(markdown: str) -> list[str]:
    """The command lines of the ```bash blocks, continuation lines joined, comments and blanks dropped."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", markdown, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip() if not line.lstrip().startswith("#") else ""
            if line:
                commands.append(line)
    return commands


def code_blocks(markdown: str) -> str:
    """Every fenced block's text (bash, sh or other), for checking what a page shows."""
    return "\n".join(re.findall(r"^```\w*\n(.*?)^```", markdown, flags=re.S | re.M))


def page_commands(page: str) -> list[str]:
    return bash_commands((REPO / page).read_text())


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    markdown = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)  # a `# comment` in a block is no heading
    anchors, seen = set(), {}
    for title in re.findall(r"^#{1,6} +(.+?) *#*$", markdown, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def test_the_pages_have_runnable_blocks():
    everything = [command for page in PAGES for command in page_commands(page)]
    assert any(c.startswith("dvc exp run") for c in page_commands("README.md"))
    assert any(c.startswith("optuna") for c in everything)
    assert not any("~/" in c or "db-host" in c for c in everything), "bash blocks must run here; use ```sh otherwise"


def test_the_readme_shows_the_everyday_commands():
    shown = code_blocks((REPO / "README.md").read_text())
    for command in ("make run", "make test", "dvc repro", "dvc exp run -S", "dvc exp show", "dvc plots show",
                    "mlflow ui", "reslab tune", "reslab predict"):
        assert command in shown, f"the README's first screen lacks {command!r}"


@pytest.mark.parametrize("page", PAGES)
def test_links_and_images_resolve(page):
    path = REPO / page
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        assert linked.exists(), f"{page}: {target!r} points at a missing file"
        if anchor and linked.suffix == ".md":
            assert anchor in heading_anchors(linked.read_text()), f"{page}: {target!r}: no such heading"


@pytest.mark.slow
@pytest.mark.parametrize("page", [page for page in PAGES if page_commands(page)])
def test_commands_run_as_printed(page, pipeline_project, tmp_path):
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
    commands = page_commands(page)
    for command in commands:
        proc = subprocess.run(["bash", "-c", f"source .venv/bin/activate && {command}"], cwd=root, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{command!r} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    if any(c.startswith("dvc plots show") for c in commands):
        assert (root / "dvc_plots" / "index.html").is_file()
