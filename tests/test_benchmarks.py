"""benchmarks/: every script imports as `python benchmarks/<name>.py` runs it, sharing benchmarks/machine.py with no
sys.path edits; machine.py's probes read this process, and its quiet-machine wait keeps to its budget. The figures
the scripts print are not asserted (they are measurements, committed under benchmarks/results/)."""
from __future__ import annotations

import ast
import os

import numpy as np
import pytest

from conftest import REPO, load_benchmark

BENCHMARKS = sorted(p.stem for p in (REPO / "benchmarks").glob("*.py"))


@pytest.fixture(scope="module")
def machine():
    return load_benchmark("machine")


@pytest.mark.parametrize("name", BENCHMARKS)
def test_a_benchmark_imports_as_its_script_does(name):
    path = REPO / "benchmarks" / f"{name}.py"
    edits = [node.lineno for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys"]
    assert not edits, f"benchmarks/{name}.py uses sys.path at lines {edits}: import a sibling module as is"
    load_benchmark(name)


def test_the_quiet_wait_keeps_to_its_budget(machine):
    busy = machine.QuietWait(budget_s=0.25, probe=lambda: 1.0)  # a neighbour that never stops
    busy(0.1)
    assert 0.1 <= busy.waited_s < 0.25  # this wait's own limit
    busy(10)
    spent = busy.waited_s
    assert 0.25 <= spent < 1  # then what is left of the run's budget: never 10 s
    busy(10)
    assert busy.waited_s - spent < 0.01  # spent: no more waiting
    quiet = machine.QuietWait(budget_s=10, probe=lambda: 0.0)
    quiet(10)
    assert quiet.waited_s < 0.1  # a quiet machine: no wait


def test_the_quiet_wait_stops_once_the_neighbours_do(machine):
    readings = iter([1.0, 0.5, 0.05, 1.0])  # the third reading is under the threshold (0.1 cores)
    calls = []
    wait = machine.QuietWait(budget_s=10, probe=lambda: calls.append(1) or next(readings))
    wait(10)
    assert len(calls) == 3 and wait.waited_s < 1


def test_the_probes_read_this_process(machine, tmp_path):
    assert machine.HZ > 0 and machine.busy_jiffies() > 0 and machine.cpu_model()
    assert os.getpid() in machine.tree_pids(os.getpid())
    status = machine.status_kb("self", ("VmHWM", "NoSuchField"))
    assert status["VmHWM"] > 0 and status["NoSuchField"] == 0
    array = np.lib.format.open_memmap(tmp_path / "a.npy", mode="w+", dtype=np.uint8, shape=(4 << 20,))
    array[:] = 1  # 4 MiB resident in this process's mapping of the file
    assert machine.mapped_kb(str((tmp_path / "a.npy").resolve())) >= 4 << 10
    del array


def test_monitor_accounts_a_block(machine):
    with machine.monitor() as usage:
        sum(range(200_000))
    assert usage.wall_s > 0 and usage.others_cores >= 0
    assert usage.peak_rss_mb > 0 and usage.pss_mb > 0
