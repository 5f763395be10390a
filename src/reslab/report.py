"""`reslab report`: the comparison table after `dvc repro`, and how to look at the runs."""
from __future__ import annotations

from pathlib import Path

from .layout import Layout


def main(root: Path, params_file: Path) -> int:
    layout = Layout(root)
    md = layout.reports / "comparison.md"
    if not md.is_file():
        print(f"{md}: not found; run `dvc repro` first")
        return 2
    print(md.read_text().split("## Per-class")[0].rstrip())
    from .tracking import tracking_uri

    print(f"\nFull report: {md.relative_to(root)}; figures: {layout.figures.relative_to(root)}/")
    print(f"Open the runs:  .venv/bin/mlflow ui --backend-store-uri {tracking_uri(root)} --host 127.0.0.1 "
          f"--port 5000   # then http://127.0.0.1:5000")
    return 0
