"""What this machine offers a training process: native bf16 on the CPU, cores under affinity and cgroup quotas,
and how many torch threads each of several processes may use without oversubscribing them.

Reads /proc and /sys only; imports torch lazily, so the data stages can size their worker pools without it."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def _native_bf16_in_cpuinfo(text: str) -> bool:
    """True when /proc/cpuinfo text lists a bf16 dot-product instruction set on its first flags line."""
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):  # x86 / Arm spelling
            return bool(set(line.split(":", 1)[1].split()) & {"avx512_bf16", "amx_bf16", "bf16"})
    return False


def cpu_has_native_bf16() -> bool:
    """True when the CPU executes bf16 dot products natively (x86 AVX512-BF16/AMX-BF16, Arm BF16) and torch's
    oneDNN can use them.

    torch's own `mkldnn._is_mkldnn_bf16_supported()` is also true on AVX512 CPUs *without* bf16 instructions, where
    oneDNN emulates bf16 and runs slower than fp32; hence the CPU's flags are read rather than torch asked.
    """
    import torch

    if platform.system() != "Linux" or not torch.backends.mkldnn.is_available():
        return False
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return _native_bf16_in_cpuinfo(text)


def _cgroup_cpu_limit() -> int | None:
    """Whole cores allowed by a cgroup CPU quota (containers), or None when there is no quota."""
    for quota_file, period_file in (("/sys/fs/cgroup/cpu.max", None),  # cgroup v2: "<quota|max> <period>"
                                    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")):
        try:
            fields = Path(quota_file).read_text().split()
            if period_file is not None:
                fields.append(Path(period_file).read_text().strip())
            quota, period = fields[0], fields[1]
            if quota in ("max", "-1"):
                return None
            return max(1, int(int(quota) // int(period)))
        except (OSError, ValueError, IndexError):
            continue
    return None


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = _cgroup_cpu_limit()
    return max(1, min(cores, limit) if limit else cores)


def default_threads(workers: int = 1) -> int:
    """Intra-op threads for one of `workers` processes sharing this machine's cores (at least 1).

    Never more threads than cores in total: with OpenMP, every parallel region waits for its slowest thread, so a
    descheduled thread stalls the whole step (benchmarks/throughput.py measures it).
    """
    return max(1, available_cores() // max(1, workers))


def oversubscription(num_threads: int, workers: int) -> str | None:
    """A warning when `workers` processes of `num_threads` torch threads each (0: default_threads) ask for more
    threads than this machine's cores; None when they fit."""
    threads = num_threads or default_threads(workers)
    cores = available_cores()
    if threads * workers <= cores:
        return None
    return (f"train.num_threads {num_threads} x {workers} worker(s) = {threads * workers} threads on {cores} cores: "
            f"every OpenMP step then waits for descheduled threads and runs several times slower; run fewer at once "
            f"(replicates.jobs, --jobs, tune's --workers) or set fewer train.num_threads")
