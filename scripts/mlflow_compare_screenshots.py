"""Screenshots of the MLflow UI comparing the two models' training runs, as a user sees them (issue 10, point 8).

Starts `mlflow ui` on 127.0.0.1 with the project's store (sqlite:///<root>/mlflow.db, artifacts in <root>/mlartifacts),
opens in headless Chromium the experiment's training runs, the same runs as charts (the per-epoch curves), and MLflow's
compare page for them, waits until each has drawn (bounded), saves a PNG of each and stops the server. With
MLFLOW_TRACKING_URI=http://... it screenshots that server instead of starting one.

The runs compared are the two models' latest replicate families: the family (parent) run of the latest finished
training run of each role, and its finished replicates (one child run per seed; --seed keeps one).

    make screenshots                      # after `make run`; writes docs/images/mlflow_*.png
    python scripts/mlflow_compare_screenshots.py [--root .] [--out docs/images] [--seed N]

Chromium (Debian's `chromium`) is driven through its DevTools protocol over a pipe: no driver, no extra package.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

ROLES = ("baseline", "resnet")  # the study's two training stages are train_<role>
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--remote-debugging-pipe")


class ScreenshotError(RuntimeError):
    """A step that did not finish in time, or a store without the runs to compare."""


# ----------------------------------------------------------------------------------------------- the runs to show

@dataclass
class Comparison:
    experiment_id: str
    families: dict[str, object]  # role -> its family (parent) run
    runs: dict[str, list]  # role -> its replicates' training runs, by seed

    @property
    def run_ids(self) -> list[str]:
        return [r.info.run_id for role in ROLES for r in self.runs[role]]


def find_comparison(client, experiment_name: str, seed: int | None = None) -> Comparison:
    """Each role's latest family run and its finished replicates (see the module's docstring)."""
    exp = client.get_experiment_by_name(experiment_name)
    if exp is None:
        raise ScreenshotError(f"no MLflow experiment {experiment_name!r} in {client.tracking_uri}: run `make run` "
                              "first")
    families, runs = {}, {}
    for role in ROLES:
        latest = [r for r in client.search_runs([exp.experiment_id], f"tags.stage = 'train_{role}' and "
                                                "attributes.status = 'FINISHED'", order_by=["start_time DESC"],
                                                max_results=50)
                  if r.data.tags.get("kind") != "family" and r.data.tags.get("mlflow.parentRunId")]
        if not latest:
            raise ScreenshotError(f"no finished train_{role} run in experiment {experiment_name!r}: run `make run`")
        parent_id = latest[0].data.tags["mlflow.parentRunId"]
        children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}' and "
                                      "attributes.status = 'FINISHED'")
        children = sorted(children, key=lambda r: int(r.data.tags.get("seed", 0)))
        if seed is not None:
            children = [r for r in children if r.data.tags.get("seed") == str(seed)]
            if not children:
                raise ScreenshotError(f"train_{role} has no finished run with seed {seed}")
        families[role], runs[role] = client.get_run(parent_id), children
    return Comparison(exp.experiment_id, families, runs)


# ----------------------------------------------------------------------------------------------- the MLflow UI

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def mlflow_ui(store_uri: str, artifacts: Path, log: Path, wait_s: float = 120) -> Iterator[str]:
    """`mlflow ui` on 127.0.0.1 and a free port, for the duration of the block; yields its address."""
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow) if mlflow.exists() else "mlflow", "ui", "--backend-store-uri", store_uri,
           "--default-artifact-root", artifacts.resolve().as_uri(), "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "wb") as out:
        # A session of its own, so that stopping it stops its workers too.
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait_s
        while not _answers(f"{base}/health"):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise ScreenshotError(f"mlflow ui did not answer on {base} within {wait_s:g} s:\n{tail}")
            time.sleep(0.5)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ----------------------------------------------------------------------------------------------- headless Chromium

def find_chromium(given: str | None = None) -> str:
    found = given or next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    if not found:
        raise ScreenshotError("no Chromium found: apt-get install chromium (or `make chromium`), or pass --chromium")
    return found


class Browser:
    """One headless Chromium page, driven through the DevTools protocol over --remote-debugging-pipe (the browser
    reads commands on its fd 3 and answers on fd 4, one JSON message per NUL-terminated line)."""

    def __init__(self, executable: str, width: int, height: int, profile: Path):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds():  # in the child, before exec: the pipes become its fds 3 and 4 (inheritable)
            read, write = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser_r, from_browser_w))
            os.dup2(read, 3)
            os.dup2(write, 4)

        # close_fds=False keeps the fds that wire_fds sets up; Python's own fds are not inheritable (PEP 446).
        self.proc = subprocess.Popen([executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                      f"--window-size={width},{height}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=False,
                                     preexec_fn=wire_fds, start_new_session=True)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session=True)

    def call(self, method: str, session: bool = False, timeout: float = 60, **params) -> dict:
        """Send one command and return its result (events that arrive meanwhile are dropped)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buffer:
                if time.monotonic() > deadline:
                    raise ScreenshotError(f"Chromium did not answer {method} within {timeout:g} s")
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise ScreenshotError(f"Chromium exited during {method}")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise ScreenshotError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def wait(self, condition: str, timeout: float, what: str) -> None:
        """Poll the JavaScript expression `condition` until it is true, at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not self.evaluate(condition):
            if time.monotonic() > deadline:
                raise ScreenshotError(f"{what}: not there within {timeout:g} s (waited for: {condition})")
            time.sleep(0.5)

    def open(self, page: "Page", timeout: float, width: int, settle_s: float = 2.0) -> None:
        """Load `page` at its height, take its steps, and wait until it has drawn (each wait at most `timeout`)."""
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=page.height,
                  deviceScaleFactor=1, mobile=False)
        self.call("Page.navigate", session=True, url=page.url)
        for condition, action in page.steps:
            self.wait(condition, timeout, page.file)
            self.evaluate(action)
        self.wait(page.ready, timeout, page.file)
        self.evaluate(CLEAN_UP)
        time.sleep(settle_s)  # transitions, and the charts' resize after the side panel closed

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("Browser.close", timeout=10)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


# ----------------------------------------------------------------------------------------------- the pages

def _text_has(*needles: str) -> str:
    """A JavaScript test: the page's visible text holds every needle."""
    return " && ".join(f"document.body.innerText.includes({json.dumps(n)})" for n in needles) or "true"


def _count(selector: str) -> str:
    return f"document.querySelectorAll({json.dumps(selector)}).length"


# The run list's expand buttons, which show a family run's replicates (collapsed at first; the UI then remembers).
EXPANDERS = 'button[data-component-id$="runnamecellrenderer.tsx_46"]'
CHART_SEARCH = 'input[placeholder="Search metric charts"]'
# Types into the charts' search box the way React sees typing (the native setter, then an input event).
SEARCH_CHARTS = ("((box, text) => { Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set"
                 ".call(box, text); box.dispatchEvent(new Event('input', {bubbles: true})); })"
                 f"(document.querySelector({json.dumps(CHART_SEARCH)}), {{text}})")
# Before the picture: close the MLflow Assistant side panel and hide Plotly's hover toolbars.
CLEAN_UP = ("document.querySelector('[data-component-id=\"mlflow.assistant.chat_panel.close\"]')?.click();"
            "document.head.insertAdjacentHTML('beforeend', '<style>.modebar-container{display:none}</style>')")


@dataclass
class Page:
    file: str
    url: str
    ready: str  # JavaScript that is true once the page has drawn
    steps: list[tuple[str, str]]  # (JavaScript condition to wait for, JavaScript to run then)
    height: int


def pages(base: str, cmp: Comparison, height: int, chart_search: str) -> list[Page]:
    """The three pictures: the run list, the runs' metric charts, and MLflow's compare page."""
    names = [r.info.run_name for role in ROLES for r in cmp.runs[role]]
    families = [f.info.run_name for f in cmp.families.values()]
    experiment = f"{base}/#/experiments/{cmp.experiment_id}/runs"
    ids = ", ".join(f"'{i}'" for i in cmp.run_ids)
    only_these = f"attributes.run_id IN ({ids})"
    # Expand the families unless their replicates are already listed (a click on an open one closes it).
    expand = (f"{_count(EXPANDERS)} >= {len(families)}",
              f"if (!({_text_has(*names)})) document.querySelectorAll({json.dumps(EXPANDERS)}).forEach(b => b.click())")
    charts = urllib.parse.urlencode({"compareRunsMode": "CHART", "searchFilter": only_these})
    compare = urllib.parse.urlencode({"runs": json.dumps(cmp.run_ids), "experiments": json.dumps([cmp.experiment_id])})
    plotted = f"{_count('.js-plotly-plot .main-svg')} >= 1"
    return [
        # The experiment's training runs: each role's family run, expanded to its replicates.
        Page("mlflow_runs.png", f"{experiment}?{urllib.parse.urlencode({'searchFilter': only_these})}",
             _text_has(*families, *names), [expand], height),
        # The compared runs' metrics as charts (the per-epoch curves as lines), those matching `chart_search`.
        Page("mlflow_compare_charts.png", f"{experiment}?{charts}",
             f"{_text_has('val_accuracy')} && {_count('.js-plotly-plot .trace')} >= {len(names)}",
             [expand, (_count(CHART_SEARCH), SEARCH_CHARTS.replace("{text}", json.dumps(chart_search)))], height),
        # MLflow's compare page: a parallel-coordinates plot, then the runs' params and metrics side by side.
        Page("mlflow_compare.png", f"{base}/#/compare-runs?{compare}",
             f"{_text_has('test_accuracy', *names)} && {plotted}", [], int(height * 2.4)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the project (default: the current folder)")
    parser.add_argument("--out", type=Path, default=None, help="where the PNGs go (default: ROOT/docs/images)")
    parser.add_argument("--experiment", default=None, help="default: params.yaml's mlflow.experiment_name")
    parser.add_argument("--seed", type=int, default=None, help="compare one replicate per model (default: all)")
    parser.add_argument("--chromium", default=None, help="the browser (default: chromium on PATH)")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=120, help="seconds each page may take to draw")
    parser.add_argument("--charts", default="accuracy", help="which metric charts to show (MLflow's chart search)")
    args = parser.parse_args(argv)

    import mlflow
    from mlflow.tracking import MlflowClient

    from reslab.config import load_params
    from reslab.tracking import tracking_uri

    root = args.root.resolve()
    out = (args.out or root / "docs" / "images").resolve()
    experiment = args.experiment or load_params(root / "params.yaml").mlflow.experiment_name
    uri = tracking_uri(root)
    remote = uri.startswith(("http://", "https://"))
    if not remote and uri.startswith("sqlite:") and not (root / "mlflow.db").exists() \
            and "MLFLOW_TRACKING_URI" not in os.environ:
        raise SystemExit(f"no MLflow store at {root / 'mlflow.db'}: run `make run` first")
    mlflow.set_tracking_uri(uri)
    try:
        cmp = find_comparison(MlflowClient(), experiment, args.seed)
        chromium = find_chromium(args.chromium)
        with tempfile.TemporaryDirectory(prefix="reslab-screenshots-") as tmp:
            server = contextlib.nullcontext(uri.rstrip("/")) if remote else \
                mlflow_ui(uri, root / "mlartifacts", Path(tmp) / "mlflow-ui.log")
            with server as base:
                browser = Browser(chromium, args.width, args.height, Path(tmp) / "chromium-profile")
                try:
                    for page in pages(base, cmp, args.height, args.charts):
                        browser.open(page, args.timeout, args.width)
                        browser.screenshot(out / page.file)
                        print(f"{out / page.file}  <- {page.url}")
                finally:
                    browser.close()
    except ScreenshotError as e:
        raise SystemExit(f"mlflow_compare_screenshots: {e}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
