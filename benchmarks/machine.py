"""What the benchmarks read about the machine they run on: the CPU, /proc probes of CPU time and memory, a monitor
that accounts a timed block, and a wait for a quiet machine.

A benchmark imports it as a sibling (`from machine import QuietWait, monitor`): Python puts a script's own folder
first on sys.path, so `.venv/bin/python benchmarks/<name>.py` finds it with no path edits. Linux only (/proc).
"""
from __future__ import annotations

import os
import platform
import resource
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

HZ = os.sysconf("SC_CLK_TCK")  # jiffies per second, the unit of /proc CPU times


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform's guess where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# ----------------------------------------------------------------------------- /proc probes


def busy_jiffies() -> int:
    """CPU time all processes on the machine have used since boot, in jiffies."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # minus idle and iowait


def _children(pid: int) -> list[int]:
    out = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            out += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except OSError:
            pass
    return out


def tree_pids(root: int) -> list[int]:
    """root and its live descendants."""
    pids, frontier = [root], [root]
    while frontier:
        frontier = [c for p in frontier for c in _children(p)]
        pids += frontier
    return pids


def cpu_jiffies(pid: int) -> int:
    """User + system CPU time of one live process, in jiffies."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def tree_jiffies(root: int) -> int:
    """CPU time of root and its live descendants (those that end while being read are skipped), in jiffies."""
    total = 0
    for pid in tree_pids(root):
        try:
            total += cpu_jiffies(pid)
        except (OSError, IndexError):
            pass
    return total


def status_kb(pid: int | str, keys: tuple[str, ...]) -> dict[str, int]:
    """The kB fields `keys` of /proc/<pid>/status (e.g. VmHWM, RssAnon); a key the kernel lacks reads 0.

    Args:
        pid: a process id, or "self".
        keys: field names without the colon.
    """
    out = dict.fromkeys(keys, 0)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in out:
            out[key] = int(line.split()[1])
    return out


def pss_kb(pid: int) -> int:
    """Proportional set size of one process (shared pages split among their users), in kB."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def mapped_kb(path: str) -> int:
    """Resident kB of this process's mappings of the file `path` (from /proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        first = line.split(None, 1)[0]
        if "-" in first and not first.endswith(":"):  # a mapping header: "start-end perms offset dev inode [path]"
            inside = line.rstrip().endswith(path)
        elif inside and first == "Rss:":
            total += int(line.split()[1])
    return total


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM (Linux: writing 5 to clear_refs), so a phase's peak is its own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def own_cpu_s() -> float:
    """CPU seconds of this process and its finished (reaped) children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _reaped_children_jiffies() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * HZ


def others_cores(window: float = 1.0) -> float:
    """Cores used by processes outside this one and its children over `window` seconds."""
    busy, mine = busy_jiffies(), tree_jiffies(os.getpid())
    time.sleep(window)
    return max(0.0, (busy_jiffies() - busy) - (tree_jiffies(os.getpid()) - mine)) / HZ / window


# ----------------------------------------------------------------------------- a timed block, a quiet machine


@dataclass
class Usage:
    """What a block used: wall time, other processes' CPU, memory."""

    wall_s: float = 0.0
    others_cores: float = 0.0  # mean cores busy with processes outside this one and its children
    peak_rss_mb: float = 0.0  # this process (VmHWM over the block)
    pss_mb: float = 0.0  # this process + its children (DataLoader workers) at the block's end, shared pages split


@contextmanager
def monitor() -> Iterator[Usage]:
    """Account a block from readings at its start and end only: a sampling thread would preempt an OpenMP thread
    and slow the very step it measures, so nothing runs beside the block."""
    usage, me = Usage(), os.getpid()
    reset_peak_rss()

    def tree_cpu() -> dict[int, int]:
        out = {}
        for pid in tree_pids(me):
            try:
                out[pid] = cpu_jiffies(pid)
            except (OSError, IndexError):
                pass
        return out

    cpu0, reaped0, busy0 = tree_cpu(), _reaped_children_jiffies(), busy_jiffies()
    t0 = time.perf_counter()
    try:
        yield usage
    finally:
        usage.wall_s = time.perf_counter() - t0
        busy1, cpu1, reaped1 = busy_jiffies(), tree_cpu(), _reaped_children_jiffies()
        # live processes: their growth; children that ended inside the block: their lifetime less what they had used
        ours = sum(v - cpu0.get(pid, 0) for pid, v in cpu1.items())
        ours += (reaped1 - reaped0) - sum(v for pid, v in cpu0.items() if pid not in cpu1)
        usage.others_cores = max(0.0, (busy1 - busy0) - ours) / HZ / usage.wall_s
        usage.peak_rss_mb = status_kb(me, ("VmHWM",))["VmHWM"] / 1024
        pss = 0
        for pid in cpu1:
            try:
                pss += pss_kb(pid)
            except OSError:
                pass
        usage.pss_mb = pss / 1024


class QuietWait:
    """Waits, before a timed block, until other processes go quiet, within a budget for the whole run.

    On a shared machine a neighbour on one of two cores makes every OpenMP parallel region wait for a descheduled
    thread, tens of times slower; waiting for it to finish keeps the figures the machine's own.

    Args:
        budget_s: the most seconds all the waits of this run may take together.
        threshold: the machine is quiet when other processes use under this many cores.
        probe: returns the cores other processes use now (over its own window); `others_cores` by default.
    """

    def __init__(self, budget_s: float, threshold: float = 0.1, probe: Callable[[], float] = others_cores):
        self.budget_s, self.threshold, self.probe = budget_s, threshold, probe
        self.waited_s = 0.0  # all the waits so far, which the benchmarks print

    def __call__(self, max_wait: float) -> None:
        """Wait up to max_wait s (less when the run's budget is nearly spent) for the machine to go quiet."""
        t0 = time.perf_counter()
        limit = min(max_wait, self.budget_s - self.waited_s)
        while time.perf_counter() - t0 < limit and self.probe() > self.threshold:
            pass
        self.waited_s += time.perf_counter() - t0


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of fn takes."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t
