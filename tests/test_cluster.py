"""`reslab repro --executor ray` on a cluster of two on this machine: a Ray head and a second worker node, each
started with `ray start` in its own working directory (their scratch folders apart, nothing shared with the project
but the MLflow server, scripts/mlflow_server.sh with logins on a real PostgreSQL: the nodes log in with the
pipeline's account from their own environment). The tiny pipeline runs through it and must
give the bytes a local run gives; a worker killed mid-training and a coordinator killed mid-run must lose and
duplicate nothing; a replicate's error is one line.

The tests share one cluster and one server (module fixtures; the Makefile's --dist loadscope keeps a module on one
xdist worker)."""
from __future__ import annotations

import os
import re
import secrets
import signal
import sys
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from mlflow.tracking import MlflowClient

from conftest import BIN, REPO, TINY_PARAMS, copy_project, run, write_params
from test_mlflow_server import SCRIPT, free_port

pytestmark = pytest.mark.slow
TRACKED = ("models", "metrics", "plots", "reports/comparison.md", "dvc.lock")  # what must come out byte-identical


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """scripts/mlflow_server.sh start --auth on free ports (its own PostgreSQL with a SCRAM password), and the
    pipeline's account made by scripts/mlflow_accounts.py; `login` is that account's environment, which the nodes
    and the coordinator get (docs/cluster.md: each node's own); always stopped."""
    state = Path(tempfile.mkdtemp(prefix="reslab-mlflow-", dir="/tmp"))
    state.chmod(0o755)  # PostgreSQL runs as user postgres when the tests run as root
    keys = tmp_path_factory.mktemp("keys")
    admin, pipeline = f"admin-{secrets.token_hex(8)}", f"pipeline-{secrets.token_hex(8)}"
    for name, password in (("admin", admin), ("pipeline", pipeline)):
        (keys / name).write_text(password)
        (keys / name).chmod(0o600)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
           "PGPASSWORD": f"pg-{secrets.token_hex(8)}"}
    try:
        start = subprocess.run(["bash", str(SCRIPT), "start", str(state), "--auth", "--admin-password-file",
                                str(keys / "admin"), "--port", str(free_port()), "--pg-port", str(free_port()),
                                "--workers", "1"], capture_output=True, text=True, env=env, timeout=400)
        assert start.returncode == 0, start.stderr
        uri = start.stdout.strip().splitlines()[-1]
        run([sys.executable, str(REPO / "scripts" / "mlflow_accounts.py"), "add", "pipeline", "--role", "pipeline",
             "--password-file", str(keys / "pipeline")], REPO,
            env={"MLFLOW_TRACKING_URI": uri, "MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": admin})
        login = {"MLFLOW_TRACKING_USERNAME": "pipeline", "MLFLOW_TRACKING_PASSWORD": pipeline}
        yield SimpleNamespace(uri=uri, login=login)
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def client(server, monkeypatch) -> MlflowClient:
    """This test's MLflow client of the server, logged in as the pipeline (MLflow reads the login from the
    environment)."""
    for key, value in server.login.items():
        monkeypatch.setenv(key, value)
    return MlflowClient(server.uri)


def ray_cli(args: list[str], cwd: Path, env: dict) -> str:
    proc = subprocess.run([str(BIN / "ray"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def cluster(server):
    """A Ray head and a second worker node, 1 CPU and 1 (logical) GPU each, started by `ray start` from folders of
    their own (each node's TMPDIR is its own, so replicates train in scratch folders apart); always stopped. Ray
    schedules the GPU resource as it would a real one (CUDA_VISIBLE_DEVICES); torch finds no CUDA, so the
    replicates train on the CPU."""
    base = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    port = free_port()
    # Ray's token authentication, as docs/cluster.md sets it up: every node and the coordinator hold the token
    token = base / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    nodes = {}
    try:
        for name in ("head", "node2"):
            work = base / name
            (work / "tmp").mkdir(parents=True)
            env = {**os.environ, **auth, **server.login, "TMPDIR": str(work / "tmp"), "RAY_USAGE_STATS_ENABLED": "0",
                   "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
            if name == "head":
                ray_cli(["start", "--head", "--port", str(port), "--num-cpus", "1", "--num-gpus", "1",
                         "--include-dashboard=false",
                         "--temp-dir", str(base / "session")], work, env)
            else:
                ray_cli(["start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1", "--num-gpus", "1"], work, env)
            nodes[name] = work
        yield SimpleNamespace(address=f"127.0.0.1:{port}", nodes=nodes, auth=auth)
    finally:
        # `ray stop` ends every Ray process of this user: stop only this cluster's, found by its session folder
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if any(str(base) in part for part in proc.info["cmdline"] or []):
                    proc.kill()
            except psutil.Error:
                pass
        shutil.rmtree(base, ignore_errors=True)


def repro(root: Path, server, cluster, **popen) -> subprocess.Popen | subprocess.CompletedProcess:
    """`reslab repro --executor ray --address <the cluster>` in `root`, recording into the server."""
    cmd = ["reslab", "repro", "--executor", "ray", "--address", cluster.address]
    env = {"MLFLOW_TRACKING_URI": server.uri, "RAY_DEDUP_LOGS": "0", **cluster.auth, **server.login}
    if popen:
        full = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **env}
        return subprocess.Popen(cmd, cwd=root, env=full, text=True, **popen)
    return run(cmd, root, env=env, check=False, timeout=900)


def tracked_bytes(root: Path) -> dict[str, bytes]:
    files = {}
    for rel in TRACKED:
        path = root / rel
        for p in ([path] if path.is_file() else sorted(path.rglob("*"))):
            if p.is_file():
                files[str(p.relative_to(root))] = p.read_bytes()
    return files


def training_runs(client: MlflowClient, stage: str, after_ms: int = 0) -> list:
    exp = client.get_experiment_by_name("reslab")
    return [r for r in client.search_runs([exp.experiment_id], f"tags.stage = '{stage}'", max_results=500)
            if r.info.start_time >= after_ms and r.data.tags.get("kind") != "family"]


def wait_for_epochs(client: MlflowClient, stage: str, after_ms: int, epochs: int, timeout: float = 300):
    """The first run of `stage` started after `after_ms` with at least `epochs` epochs logged and a checkpoint
    uploaded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in training_runs(client, stage, after_ms):
            if (r.info.status == "RUNNING" and len(client.get_metric_history(r.info.run_id, "val_accuracy")) >= epochs
                    and client.list_artifacts(r.info.run_id, "resume")):
                return r
        time.sleep(0.2)
    raise AssertionError(f"no run of {stage} reached {epochs} epochs within {timeout} s")


def assert_one_finished_run_per_seed(client: MlflowClient, stage: str, after_ms: int, seeds, epochs_of) -> dict:
    """Each seed's runs since `after_ms`: exactly one, FINISHED, each epoch logged once, no resume key left."""
    runs = training_runs(client, stage, after_ms)
    by_seed = {}
    for r in runs:
        by_seed.setdefault(int(r.data.tags["seed"]), []).append(r)
    assert sorted(by_seed) == sorted(seeds), {s: [r.info.status for r in rs] for s, rs in by_seed.items()}
    for seed, rs in by_seed.items():
        assert [r.info.status for r in rs] == ["FINISHED"], (seed, [(r.info.run_id, r.info.status) for r in rs])
        steps = [m.step for m in client.get_metric_history(rs[0].info.run_id, "val_accuracy")]
        assert steps == list(range(1, epochs_of(rs[0]) + 1)), (seed, steps)
        assert "resume_key" not in rs[0].data.tags
        assert rs[0].data.tags["executor"] == "ray"
        assert rs[0].info.user_id == "pipeline"  # the login each node had
    return {seed: rs[0] for seed, rs in by_seed.items()}


def test_two_nodes_give_the_bytes_of_a_local_run(tmp_path, pipeline_project, server, cluster, client):
    # its prepared data, no models, metrics or runs; two replicates packed on each node's CPU and GPU
    root = copy_project(pipeline_project, tmp_path / "proj", {**TINY_PARAMS, "cluster.cpus_per_replicate": 0.5,
                                                              "cluster.gpus_per_replicate": 0.5})
    shutil.rmtree(root / ".dvc" / "cache" / "runs", ignore_errors=True)  # DVC's run cache: evaluate must run
    started = time.time() * 1000
    done = repro(root, server, cluster)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "4 training stage(s) on Ray (0.5 CPU, 0.5 GPU each; cluster: 2 CPUs, 2 GPUs)" in done.stdout

    assert tracked_bytes(root) == tracked_bytes(pipeline_project)  # weights, metrics, curves, report, dvc.lock
    assert run(["dvc", "status", "--json"], root).stdout.strip() == "{}"

    nodes = set()
    for stage in ("train_baseline", "train_resnet"):
        runs = assert_one_finished_run_per_seed(client, stage, started, [1, 2], lambda r: 2)
        nodes |= {r.data.tags["ray_node_id"] for r in runs.values()}
        families = {r.data.tags["mlflow.parentRunId"] for r in runs.values()}
        assert len(families) == 1  # the coordinator's family run
        assert client.get_run(families.pop()).data.tags["kind"] == "family"
    assert len(nodes) == 2  # both nodes trained
    spans = {}
    for stage in ("train_baseline", "train_resnet"):
        for r in training_runs(client, stage, started):
            assert r.data.tags["device"] == "cpu"
            spans.setdefault(r.data.tags["ray_node_id"], []).append((r.info.start_time, r.info.end_time))
    # packed: on some node two replicates ran at the same time, sharing its GPU
    assert any(a[0] < b[1] and b[0] < a[1] for node in spans.values() for i, a in enumerate(node) for b in node[i + 1:])

    # a replicate that fits on no node is refused at once, naming the keys
    write_params(root / "params.yaml", {**TINY_PARAMS, "cluster.gpus_per_replicate": 2})
    (root / "models" / "baseline" / "seed_1.pt").unlink()
    refused = repro(root, server, cluster)
    assert refused.returncode == 2
    assert ("cluster.cpus_per_replicate: 1 with cluster.gpus_per_replicate: 2 fits on no node of the cluster (its "
            "nodes: 1 CPU + 1 GPU, 1 CPU + 1 GPU)") in refused.stderr
    evaluate = training_runs(client, "evaluate", started)
    assert [r.info.status for r in evaluate] == ["FINISHED"]
    # each node trained in a scratch folder of its own TMPDIR, removed when the replicate was done
    for work in cluster.nodes.values():
        assert not list((work / "tmp").glob("reslab-train_*"))


def test_a_killed_worker_and_a_killed_coordinator_lose_nothing(tmp_path, pipeline_project, server, cluster, client):
    epochs = 6
    root = copy_project(pipeline_project, tmp_path / "proj", {**TINY_PARAMS, "train_resnet.epochs": epochs},
                        outputs=True)

    # 1. a worker killed mid-training: Ray retries the task, which resumes the same run from its checkpoint
    started = time.time() * 1000
    log = (tmp_path / "coordinator.log").open("w+")  # a file, not a pipe nobody reads while the test waits
    coordinator = repro(root, server, cluster, stdout=log, stderr=subprocess.STDOUT)
    victim = wait_for_epochs(client, "train_resnet", started, 1)
    seed = int(victim.data.tags["seed"])
    workers = [p for p in psutil.process_iter(["cmdline"])
               if (p.info["cmdline"] or [""])[0].startswith(f"ray::train_resnet@{seed}")]
    assert len(workers) == 1, [p.info["cmdline"] for p in workers]
    workers[0].send_signal(signal.SIGKILL)
    coordinator.wait(timeout=600)
    log.seek(0)
    out = log.read()
    assert coordinator.returncode == 0, out[-4000:]
    # the retry continued from the checkpoint it found in the run (not from epoch 1)
    assert re.search(rf"train_resnet@{seed}: resuming after epoch [1-9]\d* in MLflow run {victim.info.run_id}", out), \
        out[-4000:]
    runs = assert_one_finished_run_per_seed(client, "train_resnet", started, [1, 2], lambda r: epochs)
    assert runs[seed].info.run_id == victim.info.run_id  # resumed, not restarted in a new run
    assert run(["dvc", "status", "--json"], root).stdout.strip() == "{}"
    after_kill = tracked_bytes(root)

    # ... and its bytes are a plain local run's
    run(["dvc", "repro", "--force", "--single-item", f"train_resnet@{seed}"], root)
    assert tracked_bytes(root) == after_kill

    # 2. the coordinator killed mid-run: its tasks die with it; run again, it finishes what is stale in the same run
    (root / "models" / "resnet" / f"seed_{seed}.pt").unlink()
    started = time.time() * 1000
    coordinator = repro(root, server, cluster, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    victim = wait_for_epochs(client, "train_resnet", started, 1)
    coordinator.kill()
    coordinator.wait()
    # Ray ends a dead driver's tasks: none of them may still train (and log) when the coordinator starts again
    deadline = time.monotonic() + 60
    while any((p.info["cmdline"] or [""])[0].startswith("ray::train_resnet") for p in psutil.process_iter(["cmdline"])):
        assert time.monotonic() < deadline, "the killed coordinator's task still runs after 60 s"
        time.sleep(0.2)
    again = repro(root, server, cluster)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "1 training stage(s) on Ray" in again.stdout
    runs = assert_one_finished_run_per_seed(client, "train_resnet", started, [seed], lambda r: epochs)
    assert runs[seed].info.run_id == victim.info.run_id
    assert tracked_bytes(root) == after_kill
    assert run(["dvc", "status", "--json"], root).stdout.strip() == "{}"


def test_a_replicates_error_is_one_line_naming_it(tmp_path, pipeline_project, server, cluster):
    bad = {"depths": [1], "widths": [8, 16]}  # valid YAML and types; the model cannot be built from it
    root = copy_project(pipeline_project, tmp_path / "proj", {**TINY_PARAMS, "train_resnet.model_args": bad},
                        outputs=True)
    failed = repro(root, server, cluster)
    assert failed.returncode == 1
    lines = [line for line in failed.stderr.splitlines() if "failed" in line]
    for seed in (1, 2):
        line = next(line for line in lines if f"train_resnet@{seed} failed:" in line)
        assert f".reslab/ray/train_resnet@{seed}.log" in line
        assert "ValueError: depths (1,) and widths (8, 16)" in line
        log = (root / ".reslab" / "ray" / f"train_resnet@{seed}.log").read_text()
        assert 'File "' in log and "create_model" in log  # Ray's traceback of the task
    assert 'File "' not in failed.stderr
    print(failed.stderr)
    assert "train_resnet@1, train_resnet@2 failed" in failed.stderr or "train_resnet@2, train_resnet@1 failed" in \
        failed.stderr


def test_a_password_in_the_tracking_uri_is_not_handed_to_the_cluster(tmp_path, pipeline_project):
    root = copy_project(pipeline_project, tmp_path / "proj", outputs=True)
    (root / "models" / "baseline" / "seed_1.pt").unlink()
    uri = "postgresql://reslab:s3cret@127.0.0.1:1/mlflow"
    refused = run(["reslab", "repro", "--executor", "ray"], root, env={"MLFLOW_TRACKING_URI": uri}, check=False)
    assert refused.returncode == 2
    assert "MLFLOW_TRACKING_URI=postgresql://reslab:***@127.0.0.1:1/mlflow carries a password" in refused.stderr
    assert "s3cret" not in refused.stdout + refused.stderr
