"""`reslab repro --executor ray`: the training replicates as Ray tasks on a cluster, DVC still the one writer.

The coordinator is this process, in the project (docs/cluster.md):

1. `dvc repro prepare` (filter, split, prepare), as `reslab repro` does;
2. lists the stale training stages (`pipeline.stale_training_stages`) and reads each one's deps and outs from DVC;
3. creates the MLflow experiment and each role's family run, so that workers on several machines never race to
   create them (`tracking.training_run.store_lock` serialises one machine only);
4. ships each stage as a Ray task (`train_task`): reslab's code (Ray's `py_modules`: this checkout's
   src/reslab), params.yaml, the stage's data deps through Ray's object store (artifacts/prepared put once for every
   task), the tracking URI, the family run's id and the commit's lineage tags. The task trains in a scratch
   folder of its node (`stages.train.train_replicate`, `train.num_threads` torch threads as anywhere) and returns
   the stage's outs as bytes;
5. writes each task's outs into the workspace as it finishes and records the stage with `dvc commit` (dvc.lock
   as under `dvc repro`), then `tracking.resume.release`s its run;
6. `dvc repro`: evaluate.

Faults. A replicate's run keeps its resume state in the tracking store (`tracking.resume`: a `resume_key` tag and
its last epoch's checkpoint), so a worker or node that dies is retried by Ray (cluster.max_retries) on any node and
continues the same run from that checkpoint; a killed coordinator's tasks die with it (Ray ends a driver's tasks),
and the next `reslab repro --executor ray` runs what is still stale, resuming the same runs. Either way each epoch
is logged once and each replicate ends with one FINISHED run. A task's error reaches the user as one line naming
the replicate; its full traceback goes to .reslab/ray/<stage>.log.
"""
from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import ConfigError, Params, load_params
from .pipeline import UPSTREAM, dvc, pin_gitignore_order, stale_training_stages

PACKAGE_DIR = Path(__file__).resolve().parent  # the code every task runs: shipped whole (py_modules)
CODE_DEPS = "src/"  # a stage's deps under it are code, which travels as the package, not as data
LOG_DIR = Path(".reslab") / "ray"  # the coordinator's record of each failed task's traceback


@dataclass(frozen=True)
class StageTask:
    """One stale training stage as the coordinator ships it.

    Args:
        stage: DVC's name, train_<role>@<seed>.
        role: baseline | resnet.
        seed: the replicate's training seed.
        deps: its data deps (files or folders), relative to the project: what the task receives.
        outs: its outs, relative to the project: what the task returns.
    """

    stage: str
    role: str
    seed: int
    deps: tuple[str, ...]
    outs: tuple[str, ...]


def stage_tasks(root: Path, stages: list[str]) -> list[StageTask]:
    """The deps and outs dvc.yaml declares for each of `stages` (params and code deps left out: params.yaml and the
    package travel whole)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    tasks = []
    with Repo(str(root)) as repo:
        for name in stages:
            (stage,) = repo.stage.collect(name)
            deps = tuple(d.def_path for d in stage.deps
                         if not isinstance(d, ParamsDependency) and not d.def_path.startswith(CODE_DEPS))
            group, seed = name.split("@")
            tasks.append(StageTask(name, group.removeprefix("train_"), int(seed), deps,
                                   tuple(o.def_path for o in stage.outs)))
    return tasks


def read_tree(root: Path, rel: str) -> dict[str, bytes]:
    """{path relative to root: bytes} of a file, or of every file in a folder."""
    path = root / rel
    if path.is_dir():
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    return {rel: path.read_bytes()}


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    """Write {relative path: bytes} under root, each file atomically (a kill leaves the old file or the new)."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)


def versions() -> dict[str, str]:
    """What decides a replicate's numbers besides its code and params (the same on every node: docs/cluster.md)."""
    import numpy
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}


# ----------------------------------------------------------------------------------------------------- the task

def train_task(spec: dict, inputs: dict) -> dict:
    """A Ray task on any node: one replicate trained in a scratch folder (the node's TMPDIR), its outs returned.

    Args:
        spec: StageTask's fields, plus params (params.yaml's text), tags (lineage from the coordinator), run_name,
            parent (the family run's id).
        inputs: {dep: ObjectRef of read_tree(dep)}.

    Returns:
        {"outs": {path: bytes}, "run_id": the MLflow run, "node": the node's IP, "versions": versions()}.
    """
    import ray

    from .stages.train import train_replicate
    from .tracking.resume import RunResume
    from .tracking.store import check_store

    check_store(Path.cwd())  # this node reaches the server and its login is accepted, before any data is unpacked
    root = Path(tempfile.mkdtemp(prefix=f"reslab-{spec['stage'].replace('@', '-')}-"))
    try:
        for tree in ray.get(list(inputs.values())):
            write_tree(root, tree)
        (root / "params.yaml").write_text(spec["params"])
        params = load_params(root / "params.yaml")
        node = ray.util.get_node_ip_address()
        tags = {**spec["tags"], "executor": "ray", "ray_node_ip": node,
                "ray_node_id": ray.get_runtime_context().get_node_id()}
        _, run_id = train_replicate(root, params, spec["role"], spec["seed"], progress=False, remote=RunResume(),
                                    tags=tags, run_name=spec["run_name"], parent=spec["parent"])
        outs = {}
        for rel in spec["outs"]:
            outs.update(read_tree(root, rel))
        return {"outs": outs, "run_id": run_id, "node": node, "versions": versions()}
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ the coordinator

def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray (the project's `cluster` extra): make setup installs it, or "
                          "pip install -e '.[cluster]'") from None
    return ray


def _check_store_reaches_nodes(ray, uri: str) -> None:
    """A store in a local file (the project's mlflow.db) serves only tasks on this machine."""
    from .tracking.store import _is_local, _redacted

    if not _is_local(uri):
        return
    here = ray.util.get_node_ip_address()
    away = sorted({n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]} - {here})
    if away:
        raise ConfigError(
            f"the MLflow store {_redacted(uri)} is a file on this machine, which the cluster's nodes at "
            f"{', '.join(away)} cannot reach: start a tracking server (scripts/mlflow_server.sh start DIR --host "
            "0.0.0.0 ..., docs/cluster.md) and export MLFLOW_TRACKING_URI=http://HOST:PORT on this machine")


def _check_fits(ray, params: Params) -> None:
    """Some node must hold one replicate's cluster.cpus_per_replicate and gpus_per_replicate, else Ray would queue
    the tasks forever."""
    cfg = params.cluster
    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    if any(r.get("CPU", 0) >= cfg.cpus_per_replicate and r.get("GPU", 0) >= cfg.gpus_per_replicate for r in nodes):
        return
    have = ", ".join(f"{r.get('CPU', 0):g} CPU + {r.get('GPU', 0):g} GPU" for r in nodes)
    raise ConfigError(f"cluster.cpus_per_replicate: {cfg.cpus_per_replicate:g} with cluster.gpus_per_replicate: "
                      f"{cfg.gpus_per_replicate:g} fits on no node of the cluster (its nodes: {have}); accepted: at "
                      "most what one node has (an autoscaling cluster: start a node of that shape first)")


def _family_runs(root: Path, params: Params, roles: set[str]) -> dict[str, str]:
    """The experiment and each role's family run, created here before any task starts; {role: run id}."""
    from .config import resolve
    from .layout import Layout
    from .stages.train import family_fingerprint
    from .tracking.lineage import standard_tags
    from .tracking.store import setup
    from .tracking.training_run import family_run

    experiment_id = setup(root, params.mlflow.experiment_name)
    prepared = Layout(root).prepared_dir
    families = {}
    for role in sorted(roles):
        stage = f"train_{role}"
        tags = standard_tags(root, stage=stage, model=resolve(params, role).model, role=role)
        families[role] = family_run(experiment_id, stage, family_fingerprint(params, role, prepared),
                                    {k: v for k, v in tags.items() if k not in ("torch_threads", "seed")})
    return families


def _failure(root: Path, task: StageTask, error: Exception) -> str:
    """One line for a replicate that failed; its whole traceback goes to .reslab/ray/<stage>.log."""
    ray = _import_ray()
    log = root / LOG_DIR / f"{task.stage}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(re.sub(r"\x1b\[[0-9;]*m", "", str(error)) + "\n")  # Ray colours the task's name
    if isinstance(error, ray.exceptions.RayTaskError):
        cause = error.cause if isinstance(getattr(error, "cause", None), BaseException) else error
        what = f"{type(cause).__name__}: {str(cause).strip().splitlines()[0] if str(cause).strip() else ''}"
    else:  # its worker or node died more often than cluster.max_retries
        what = (f"{type(error).__name__}: its Ray worker or node was lost and the retries (cluster.max_retries) "
                "ran out; the next run resumes it from its last epoch")
    return f"reslab repro: {task.stage} failed: {what} (Ray's traceback: {log.relative_to(root)})"


def commit(root: Path, task: StageTask, result: dict, here: dict[str, str]) -> None:
    """A finished task's outs into the workspace, the stage into dvc.lock (`dvc commit`), its run released."""
    from .tracking.resume import release

    write_tree(root, result["outs"])
    done = subprocess.run(dvc("commit", "--force", task.stage), cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise ConfigError(f"dvc commit {task.stage} failed after its replicate was written back:\n"
                          f"{(done.stdout + done.stderr).strip()}")
    release(result["run_id"])
    if result["versions"] != here:
        print(f"reslab repro: warning: {task.stage} ran with {result['versions']} on {result['node']}, this "
              f"machine has {here}: its numbers may differ from a local dvc repro's", file=sys.stderr)


def run_tasks(root: Path, params_file: Path, params: Params, tasks: list[StageTask], address: str | None) -> list[str]:
    """Run `tasks` on the Ray cluster, each finished one written back and committed; returns the failed stages."""
    ray = _import_ray()
    from .tracking.lineage import project_tags, run_label
    from .tracking.store import _redacted, check_store

    uri = check_store(root)  # before the cluster: a server that is down fails now
    if _redacted(uri) != uri:
        raise ConfigError(f"MLFLOW_TRACKING_URI={_redacted(uri)} carries a password: --executor ray hands the URI "
                          "to every task, where the cluster's users can read it. Keep the password out of the URI "
                          "(PostgreSQL: ~/.pgpass or PGPASSWORD on each node; a tracking server: "
                          "MLFLOW_TRACKING_USERNAME/PASSWORD on each node, docs/cluster.md)")
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    # address None: Ray's own rule (RAY_ADDRESS, else the cluster `ray start` began on this machine, else a Ray
    # started for this run and stopped after it)
    ray.init(address=address, runtime_env={"py_modules": [str(PACKAGE_DIR)], "env_vars": env},
             logging_level=logging.WARNING)
    try:
        _check_store_reaches_nodes(ray, uri)
        _check_fits(ray, params)
        families = _family_runs(root, params, {t.role for t in tasks})
        cfg, lineage, text = params.cluster, project_tags(root), params_file.read_text()
        shared = {dep: ray.put(read_tree(root, dep)) for dep in sorted({d for t in tasks for d in t.deps})}
        remote = ray.remote(train_task)
        pending = {}
        for t in tasks:
            spec = {**asdict(t), "params": text, "tags": lineage, "parent": families[t.role],
                    "run_name": run_label(f"train_{t.role}", root, t.seed)}
            ref = remote.options(name=t.stage, num_cpus=cfg.cpus_per_replicate, num_gpus=cfg.gpus_per_replicate,
                                 max_retries=cfg.max_retries, retry_exceptions=False).remote(
                spec, {d: shared[d] for d in t.deps})
            pending[ref] = (t, time.monotonic())
        print(f"reslab repro: {len(tasks)} training stage(s) on Ray ({cfg.cpus_per_replicate:g} CPU, "
              f"{cfg.gpus_per_replicate:g} GPU each; cluster: {ray.cluster_resources().get('CPU', 0):g} CPUs, "
              f"{ray.cluster_resources().get('GPU', 0):g} GPUs): {', '.join(t.stage for t in tasks)}", flush=True)
        failed, here, done = [], versions(), 0
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            task, started = pending.pop(ref)
            done += 1
            try:
                result = ray.get(ref)
            except (ray.exceptions.RayError, ray.exceptions.RayTaskError) as e:
                failed.append(task.stage)
                print(_failure(root, task, e), file=sys.stderr, flush=True)
                continue
            commit(root, task, result, here)
            print(f"reslab repro: {task.stage} done on {result['node']} in {time.monotonic() - started:.0f} s "
                  f"({done} of {len(tasks)} training stages)", flush=True)
        return failed
    finally:
        ray.shutdown()


def main(root: Path, params_file: Path, address: str | None = None) -> int:
    """`reslab repro --executor ray [--address ADDR]`: the pipeline with its training replicates on a Ray cluster
    (address: the flag, else cluster.address, else Ray's rule: RAY_ADDRESS, else the cluster `ray start` began on
    this machine, else a Ray started for the run). Returns the exit status."""
    params = load_params(params_file)
    _import_ray()
    rc = subprocess.run(dvc("repro", UPSTREAM), cwd=root).returncode
    if rc != 0:
        return rc
    stages = stale_training_stages(root)
    if stages:
        pin_gitignore_order(root, stages)
        failed = run_tasks(root, params_file, params, stage_tasks(root, stages), address or params.cluster.address)
        if failed:
            print(f"reslab repro: {', '.join(failed)} failed (above); the stages that finished are committed, and "
                  "the next `reslab repro --executor ray` runs only what is left", file=sys.stderr)
            return 1
    return subprocess.run(dvc("repro"), cwd=root).returncode
