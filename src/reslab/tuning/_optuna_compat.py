"""The one place reslab uses Optuna's private API: heartbeats for a journal storage.

Optuna implements trial heartbeats only for RDBStorage, but its heartbeat machinery (the thread that beats while a
trial runs, `optuna.storages.fail_stale_trials`, the stale-trial callback) serves any storage that also subclasses
the private `optuna.storages._heartbeat.BaseHeartbeat`, whose stale-trial query returns the private
`FrozenTrial._trial_id`s. `check()` verifies that this Optuna still has those pieces, and says so clearly when it
does not (tests/test_tuning.py runs it; `HeartbeatJournalStorage` runs it before use). RDB storages need none of it.
"""
from __future__ import annotations

import time
from typing import Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

SUPPORTED = "optuna>=4.9,<6"  # pyproject.toml's range
HEARTBEAT_ATTR = "reslab:heartbeat"  # trial system attr: wall-clock time of the last heartbeat
# BaseHeartbeat's abstract methods as of Optuna 4.9-5.0; a change means Optuna's heartbeat calls something else.
EXPECTED_ABSTRACT = frozenset({"record_heartbeat", "_get_stale_trial_ids", "get_heartbeat_interval",
                               "get_heartbeat_stale_trial_callback"})


class OptunaIncompatible(RuntimeError):
    """This Optuna lacks the private heartbeat API that the journal storage's heartbeats rely on."""


def _incompatible(what: str) -> OptunaIncompatible:
    return OptunaIncompatible(
        f"optuna {optuna.__version__}: {what}. reslab's journal-storage heartbeats "
        f"(reslab/tuning/_optuna_compat.py) rely on Optuna's private optuna.storages._heartbeat.BaseHeartbeat and "
        f"FrozenTrial._trial_id and support {SUPPORTED}: install a version in that range, or use an RDB storage "
        f"(`reslab tune --storage sqlite:///tuning/optuna.db`), which has heartbeats natively")


try:
    from optuna.storages._heartbeat import BaseHeartbeat
except ImportError:  # pragma: no cover - only on an incompatible Optuna
    BaseHeartbeat = None  # type: ignore[assignment,misc]


def check() -> None:
    """Raise OptunaIncompatible, saying what changed, unless Optuna's private heartbeat API is as expected."""
    if BaseHeartbeat is None:
        raise _incompatible("optuna.storages._heartbeat.BaseHeartbeat no longer exists")
    abstract = frozenset(getattr(BaseHeartbeat, "__abstractmethods__", ()))
    if abstract != EXPECTED_ABSTRACT:
        raise _incompatible(f"BaseHeartbeat's abstract methods are {sorted(abstract)}, expected "
                            f"{sorted(EXPECTED_ABSTRACT)}")
    trial = optuna.trial.create_trial(value=0.0)
    if not isinstance(getattr(trial, "_trial_id", None), int):
        raise _incompatible("FrozenTrial has no integer _trial_id")


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat or object):  # type: ignore[misc]
    """A JournalStorage with Optuna's trial heartbeats.

    A heartbeat is a trial system attr holding the worker's clock; a RUNNING trial whose latest heartbeat (or
    start, for a retried trial that inherited an old one) is older than `grace_period` is stale, and Optuna's own
    `fail_stale_trials` fails it and calls `heartbeat_stale_trial_callback` (the retry).

    Args:
        backend: the journal backend (a JournalFileBackend).
        heartbeat_interval: seconds between heartbeats of a running trial (None: no heartbeats).
        grace_period: seconds without a heartbeat before a trial is stale (None = 2 x heartbeat_interval).
        heartbeat_stale_trial_callback: called with each trial failed as stale.
    """

    def __init__(self, backend: JournalFileBackend, *, heartbeat_interval: int | None = None,
                 grace_period: int | None = None,
                 heartbeat_stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None):
        if heartbeat_interval is not None:
            check()
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.heartbeat_stale_trial_callback = heartbeat_stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
        except UpdateFinishedTrialError:
            pass  # failed as stale by another worker meanwhile; the trial's own writes report it

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        if self.heartbeat_interval is None:
            return []
        grace = self.grace_period or 2 * self.heartbeat_interval
        now = time.time()
        stale = []
        for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            started = t.datetime_start.timestamp() if t.datetime_start else 0.0  # naive local time
            if now - max(float(t.system_attrs.get(HEARTBEAT_ATTR, 0.0)), started) > grace:
                stale.append(t._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self.heartbeat_stale_trial_callback
