"""`dvc plots show` on the real pipeline (shrunk): each plot dvc.yaml declares is rendered once and as the right
kind of chart, and the page it writes works offline, one colour per learning curve (issue 10, points 2 and 9)."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from conftest import REPO, copy_project, run

CURVES_CSV = "plots/evaluate/learning_curves.csv"
CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser")) if p), None)


@pytest.fixture(scope="module")
def plots_project(pipeline_project, tmp_path_factory) -> Path:
    """A copy of the tiny pipeline project (which `dvc plots show` would write into) with the repository's plot
    templates and page setting; the project fixture is made from dvc.yaml and src/ only."""
    root = copy_project(pipeline_project, tmp_path_factory.mktemp("plots") / "proj", outputs=True)
    shutil.copytree(REPO / ".dvc" / "plots", root / ".dvc" / "plots", dirs_exist_ok=True)
    page = run(["dvc", "config", "--project", "plots.html_template"], REPO).stdout.strip()
    run(["dvc", "config", "plots.html_template", page], root)
    return root


@pytest.fixture(scope="module")
def rendered(plots_project) -> dict[str, list[dict]]:
    """{plot id: its renderings} from `dvc plots show --json`."""
    return json.loads(run(["dvc", "plots", "show", "--json"], plots_project).stdout)["data"]


@pytest.fixture(scope="module")
def page(plots_project) -> Path:
    """The page a bare `dvc plots show` writes."""
    run(["dvc", "plots", "show"], plots_project)
    return plots_project / "dvc_plots" / "index.html"


def declared_curves() -> dict[str, list[str]]:
    """dvc.yaml's learning-curve plots: {title: y fields of learning_curves.csv}."""
    out = {}
    for entry in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]:
        if isinstance(entry, dict):
            (title, props), = entry.items()
            if CURVES_CSV in (props.get("y") or {}):
                out[title] = props["y"][CURVES_CSV]
    return out


def marks(spec) -> set[str]:
    """Every mark type in a Vega-Lite spec, layers and facets included."""
    found = set()
    if isinstance(spec, dict):
        for key, value in spec.items():
            if key == "mark":
                found.add(value if isinstance(value, str) else value["type"])
            else:
                found |= marks(value)
    elif isinstance(spec, list):
        for value in spec:
            found |= marks(value)
    return found


@pytest.mark.slow
def test_each_declared_plot_is_rendered_once_as_its_kind(rendered, plots_project):
    curves = declared_curves()
    assert len(curves) == 2, curves
    figures = sorted(f"reports/figures/{p.name}" for p in (plots_project / "reports" / "figures").glob("*.png"))
    assert figures, "evaluate wrote no report figures"
    confusion = ["plots/evaluate/confusion_baseline.csv", "plots/evaluate/confusion_resnet.csv"]

    # Exactly these ids: nothing else (no stage-level history or confusion CSV declared a second time).
    assert sorted(rendered) == sorted([*curves, *confusion, *figures])
    assert all(len(renderings) == 1 for renderings in rendered.values()), \
        {k: len(v) for k, v in rendered.items() if len(v) != 1}

    for title, fields in curves.items():
        (plot,) = rendered[title]
        assert plot["type"] == "vega" and "line" in marks(plot["content"]), title
        assert {f.split("_", 1)[0] for f in fields} == {"baseline", "resnet"}, f"{title}: one line per model"
        content = plot["content"]
        assert content["encoding"]["x"]["field"] == "epoch"
        assert {row["field"] for row in content["data"]["values"]} == set(fields), title
        # One colour per y field (DVC's default colours by revision: one colour for both models).
        colours = [layer["encoding"]["color"] for layer in content["layer"] if "color" in layer.get("encoding", {})]
        assert colours and all(c["field"] == "field" for c in colours), colours
    for name in confusion:
        (plot,) = rendered[name]
        assert plot["type"] == "vega" and marks(plot["content"]) == {"rect", "text"}, name
        assert "line" not in marks(plot["content"])
    for name in figures:
        (plot,) = rendered[name]
        assert plot["type"] == "image", name


class _Sources(HTMLParser):
    """The src of every <script> and <img> in a page."""

    def __init__(self):
        super().__init__()
        self.scripts: list[str | None] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self.scripts.append(attrs.get("src"))
        elif tag == "img":
            self.images.append(attrs.get("src") or "")


@pytest.mark.slow
def test_page_loads_nothing_from_the_network(page, rendered):
    html = page.read_text(encoding="utf-8")
    sources = _Sources()
    sources.feed(html)
    remote = [s for s in sources.scripts + sources.images if s and re.match(r"(https?:)?//", s)]
    assert not remote, f"the page loads {remote}: blank offline"
    assert "cdn.jsdelivr" not in html
    assert "window.vegaEmbed=" in html.replace(" ", ""), "the chart library is not inlined"
    vega = [k for k, v in rendered.items() if v[0]["type"] == "vega"]
    assert html.count("vegaEmbed('#") == len(vega) == 4
    assert len(sources.images) == len(rendered) - len(vega)
    assert all((page.parent / src).is_file() for src in sources.images), sources.images


def _dump_dom(page: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran, in headless Chromium with every host name unresolvable (offline)."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=15000",
           "--dump-dom", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian: apt-get install chromium; `make chromium`)")
def test_page_draws_every_chart_offline(page, rendered, tmp_path):
    dom = _dump_dom(page, tmp_path / "chromium-profile")
    # vegaEmbed turns each plot's <div> into a "vega-embed" one holding the drawn chart (SVG marks); a library that
    # failed to load leaves the <div> with its <script> and nothing drawn.
    charts = dom.split('class="vega-embed')[1:]
    vega = [k for k, v in rendered.items() if v[0]["type"] == "vega"]
    assert len(charts) == len(vega), f"{len(charts)} of {len(vega)} charts drawn"
    assert all('class="marks"' in c for c in charts)

    for title, fields in declared_curves().items():
        chart = next(c for c in charts if f">{title}<" in c)
        lines = [dict(re.findall(r'([\w-]+)="([^"]*)"', tag)) for tag in re.findall(r"<path [^>]*>", chart)]
        stroke = {re.search(r"field: (\w+);", line["aria-label"]).group(1): line["stroke"]
                  for line in lines if line.get("aria-roledescription") == "line mark"}
        assert set(stroke) == set(fields), f"{title}: lines drawn for {sorted(stroke)}"
        assert len(set(stroke.values())) == len(fields), f"{title}: colours {stroke}"


def test_templates_are_what_their_script_writes():
    """.dvc/plots/ holds what scripts/dvc_plot_templates.py writes: the curves template from the installed DVC, and
    the page from the vl-convert-python named in its header (compared whole when that version is installed)."""
    spec = importlib.util.spec_from_file_location("dvc_plot_templates", REPO / "scripts" / "dvc_plot_templates.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    folder = REPO / ".dvc" / "plots"
    assert (folder / script.CURVES_FILE).read_text() == script.curves_template()

    page = (folder / script.PAGE_FILE).read_text(encoding="utf-8")
    assert "{plot_divs}" in page and "{scripts}" not in page  # DVC's CDN <script> tags have nowhere to go
    assert page.count("<script") == 1 and "window.vegaEmbed=" in page
    made_with = re.search(r"vl-convert-python\s+(\S+)", page).group(1)
    try:
        installed = importlib.metadata.version("vl-convert-python")
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed == made_with:
        assert page == script.offline_page(), "run python scripts/dvc_plot_templates.py"
    assert run(["dvc", "config", "--project", "plots.html_template"], REPO).stdout.strip() == \
        f"plots/{script.PAGE_FILE}", "a bare `dvc plots show` must use the offline page"
