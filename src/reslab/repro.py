"""`reslab repro` (what `make run` calls): `dvc repro`, with the training replicates run `replicates.jobs` at a time
(this module: the local executor; `--executor ray` runs them on a Ray cluster, `cluster.py`).

DVC runs a pipeline's stages one after another. The replicates (train_baseline@<seed>, train_resnet@<seed>) depend
only on the prepared splits, not on each other, so this runs them as parallel `dvc repro --single-item` processes:

1. `dvc repro prepare`: filter, split and prepare, when they changed;
2. the training stages `dvc status` reports changed, in dvc.yaml's order (the CNN's, the longer ones, first),
   `jobs` at a time; each process waits for DVC's repository lock, which DVC holds only around its bookkeeping
   (hashing, dvc.lock), not while a stage's command runs;
3. `dvc repro`: evaluate, and anything else left.

DVC records every stage exactly as under plain `dvc repro`, and the numbers are the same: a training stage's torch
threads come from params (train.num_threads, fixed; `stages/train.py`), not from how many stages run beside it or
how many cores the machine has, and no stage reads `replicates.jobs`, so changing it reruns nothing. The gain is on CPUs, where one small-image training process cannot keep two cores
busy (README, "Speed"); a GPU is shared by the processes.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import hardware
from .config import ConfigError, load_params
from .pipeline import UPSTREAM, dvc, pin_gitignore_order, stale_training_stages


class Job:
    """One `dvc repro --single-item STAGE` process, its output lines prefixed with the stage's name."""

    def __init__(self, root: Path, stage: str):
        self.stage, self.started = stage, time.monotonic()
        self.proc = subprocess.Popen(dvc("--wait-for-lock", "repro", "--single-item", stage), cwd=root,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.reader = threading.Thread(target=self._relay, daemon=True)
        self.reader.start()

    def _relay(self) -> None:
        for line in self.proc.stdout:
            print(f"{self.stage} | {line}", end="", flush=True)

    def poll(self) -> int | None:
        rc = self.proc.poll()
        if rc is not None:
            self.reader.join()
        return rc


def run_parallel(root: Path, stages: list[str], jobs: int) -> list[str]:
    """Run `stages`, `jobs` at a time; return the ones that failed. After a failure no new stage starts (the
    running ones finish, and their work is kept)."""
    pending, running, failed, done = list(stages), [], [], 0
    try:
        while pending or running:
            while pending and len(running) < jobs and not failed:
                running.append(Job(root, pending.pop(0)))
            time.sleep(0.2)
            for job in [j for j in running if j.poll() is not None]:
                running.remove(job)
                done += 1
                took = time.monotonic() - job.started
                if job.proc.returncode != 0:
                    failed.append(job.stage)
                print(f"reslab repro: {job.stage} {'failed' if job.proc.returncode else 'done'} in {took:.0f} s "
                      f"({done} of {len(stages)} training stages)", flush=True)
            if failed and not running:
                break
    except KeyboardInterrupt:
        # A terminal's Ctrl-C reaches the children too; a signal sent to this process alone is passed on.
        for job in running:
            if job.proc.poll() is None:
                job.proc.send_signal(signal.SIGINT)
        for job in running:
            job.proc.wait()
        raise
    return failed


def main(root: Path, params_file: Path, jobs: int | None = None, executor: str = "local",
         address: str | None = None) -> int:
    """`reslab repro [--jobs N] [--executor local|ray [--address ADDR]]`: the whole pipeline, the training
    replicates `jobs` (default replicates.jobs) at a time on this machine, or as tasks on a Ray cluster
    (`cluster.py`). Returns the exit status."""
    if executor == "ray":
        if jobs is not None:
            raise ConfigError("--jobs is the local executor's: with --executor ray each replicate is a Ray task "
                              "reserving cluster.cpus_per_replicate / gpus_per_replicate, as many at once as fit")
        from .cluster import main as cluster_main

        return cluster_main(root, params_file, address)
    if address is not None:
        raise ConfigError(f"--address {address}: only with --executor ray (a Ray cluster's address)")
    params = load_params(params_file)
    jobs = params.replicates.jobs if jobs is None else jobs
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: accepted: an integer >= 1")
    warning = hardware.oversubscription(params.train.num_threads, jobs)
    if warning:  # slower, never different: the threads are the stage's own param
        print(f"reslab repro: warning: {warning}", file=sys.stderr)
    if jobs == 1:
        return subprocess.run(dvc("repro"), cwd=root).returncode
    rc = subprocess.run(dvc("repro", UPSTREAM), cwd=root).returncode
    if rc != 0:
        return rc
    stages = stale_training_stages(root)
    if stages:
        print(f"reslab repro: {len(stages)} training stage(s) to run, {min(jobs, len(stages))} at a time: "
              f"{', '.join(stages)}", flush=True)
        pin_gitignore_order(root, stages)
        failed = run_parallel(root, stages, jobs)
        if failed:
            print(f"reslab repro: {', '.join(failed)} failed (output above, prefixed with its name); the stages "
                  "that finished are kept, and the next `reslab repro` or `dvc repro` runs only what is left",
                  file=sys.stderr)
            return 1
    return subprocess.run(dvc("repro"), cwd=root).returncode
