"""Where a study lives: the journal file (default) or an RDB, with heartbeats and the retry of stale trials."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Callable

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial

from ..config import ConfigError, TuneConfig
from ..layout import Layout
from ._optuna_compat import HEARTBEAT_ATTR, HeartbeatJournalStorage

__all__ = ["HEARTBEAT_ATTR", "JOURNAL_FILE", "HeartbeatJournalStorage", "StaleTrialRetry", "default_storage_path",
           "open_storage", "storage_name"]

JOURNAL_FILE = "optuna-journal.log"  # under tuning/


class StaleTrialRetry:
    """Heartbeat-stale callback: Optuna's RetryHeartbeatStaleTrialCallback (the trial is queued again as WAITING
    with the same params) plus `on_stale`, e.g. closing the dead trial's MLflow run.

    Args:
        max_retry: retries per original trial.
        on_stale: called with the stale trial after it is failed.
    """

    def __init__(self, max_retry: int, on_stale: Callable[[FrozenTrial], None] | None = None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            self.retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        self.on_stale = on_stale

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        print(f"reslab tune: trial {trial.number} stopped sending heartbeats (worker killed?): marked FAIL, "
              f"queued again", file=sys.stderr)
        self.retry(study, trial)
        if self.on_stale is not None:
            self.on_stale(trial)


def default_storage_path(root: Path) -> Path:
    return Layout(root).tuning / JOURNAL_FILE


def storage_name(url: str | None, root: Path) -> str:
    """What to pass to `--storage` of optuna's CLI / optuna-dashboard for this study (a password is masked: the
    name is printed and tagged in MLflow)."""
    if url is None:
        path = default_storage_path(root)
        try:
            return str(path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(path)
    if "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy understands; opening it reports the problem
        return url.split("@")[-1]


def open_storage(url: str | None, root: Path, cfg: TuneConfig | None = None,
                 on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> BaseStorage:
    """The study's storage, with heartbeats when `cfg` is given.

    Args:
        url: None (the journal file tuning/optuna-journal.log), a journal file path, or an Optuna RDB URL
            (sqlite:///..., postgresql://..., mysql://...).
        root: project root.
        cfg: heartbeat settings; None opens without heartbeats (reading, --apply).
        on_stale: heartbeat-stale trial callback.
    """
    interval = cfg.heartbeat_interval if cfg else None
    grace = (cfg.grace_period or 2 * cfg.heartbeat_interval) if cfg else None
    if url is None or "://" not in url:
        path = default_storage_path(root) if url is None else Path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return HeartbeatJournalStorage(JournalFileBackend(str(path)), heartbeat_interval=interval,
                                       grace_period=grace, heartbeat_stale_trial_callback=on_stale)
    shown = storage_name(url, root)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            return RDBStorage(url, heartbeat_interval=interval, grace_period=grace,
                              heartbeat_stale_trial_callback=on_stale if cfg else None)
    except ImportError as e:
        raise ConfigError(f"--storage {shown}: the database driver is not installed ({e}); for PostgreSQL: "
                          f"pip install 'reslab[postgres]'") from None
    except Exception as e:  # sqlalchemy's errors for a bad URL or an unreachable server
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        password = url.partition("://")[2].rpartition("@")[0].partition(":")[2]
        raise ConfigError(f"--storage {shown}: cannot open the Optuna storage: "
                          f"{message.replace(password, '***') if password else message}") from None
