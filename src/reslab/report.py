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
    print(md.read_text().split("## Per replicate")[0].rstrip())
    from .tracking import tracking_uri

    uri = tracking_uri(root)
    print(f"\nFull report: {md.relative_to(root)}; figures: {layout.figures.relative_to(root)}/")
    if uri.startswith(("http://", "https://")):
        print(f"Open the runs: {uri} (the tracking server's UI)")
    else:
        print(f"Open the runs (after `source .venv/bin/activate`):  mlflow ui --backend-store-uri {uri} "
              "--host 127.0.0.1 --port 5000   # then http://127.0.0.1:5000")
    return 0
