"""Where a study lives: a storage URL, opened with Optuna's own storages.

- default: a SQLite file in the runs folder (`<runs>/sweeps.db`, every study of that folder);
- `journal:PATH`: Optuna's JournalStorage on a JournalFileBackend (a file that several
  processes append to; Optuna's recommendation for many local processes or a shared file
  system; it has no heartbeat, so a killed worker's trial stays RUNNING there);
- any other Optuna/SQLAlchemy URL: `postgresql://user@host/db`, `mysql+pymysql://...`.

RDB storages (SQLite, PostgreSQL, MySQL) get a heartbeat: a worker's running trial beats every
`heartbeat_interval` s; one silent for `grace_period` s (its worker was killed) is marked FAIL
by the next worker that starts a trial, and RetryHeartbeatStaleTrialCallback queues the same
parameters again. A storage that cannot be reached fails here, with the URL (password hidden)
and the driver's message, before any training.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainwise.errors import SetupError

JOURNAL_PREFIX = "journal:"
DEFAULT_FILE = "sweeps.db"
# Optuna's documented example uses 60 s / 120 s; a trial of a few minutes loses at most that.
HEARTBEAT_INTERVAL_S = 60
GRACE_PERIOD_S = 120
MAX_RETRY = 2  # a trial whose worker died is retried this often, then left failed
# SQLite's busy timeout: a writer waits this long for another's lock instead of failing with
# "database is locked" (sqlite3's default is 5 s; four workers writing reports can exceed it).
SQLITE_BUSY_TIMEOUT_S = 60
SCHEMA_RACE_RETRIES = 5
CONNECT_TIMEOUT_S = 10  # PostgreSQL/MySQL: an unreachable host fails in seconds, not minutes


@dataclass(frozen=True)
class StorageSpec:
    """A storage as the user named it. url: what Optuna opens; shown: the same with any
    password hidden (for messages and records)."""

    url: str
    kind: str  # "sqlite" | "journal" | "rdb"
    wal: bool = False  # the default SQLite file: write-ahead log (see _write_ahead_log)
    heartbeat_interval: int = HEARTBEAT_INTERVAL_S
    grace_period: int = GRACE_PERIOD_S

    @property
    def shown(self) -> str:
        if self.kind != "rdb":
            return self.url
        try:
            from sqlalchemy.engine import make_url

            return make_url(self.url).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot read is shown as given
            return self.url


def resolve(
    url: str | None, runs_root: Path, heartbeat_interval: int = HEARTBEAT_INTERVAL_S,
    grace_period: int = GRACE_PERIOD_S,
) -> StorageSpec:  # fmt: skip
    """The storage `url` names (None: the default SQLite file in the runs folder)."""
    timing = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period}
    if url is None:
        path = Path(runs_root).resolve() / DEFAULT_FILE
        return StorageSpec(f"sqlite:///{path}", "sqlite", wal=True, **timing)
    if url.startswith(JOURNAL_PREFIX):
        path = url[len(JOURNAL_PREFIX) :]
        if not path:
            raise SetupError(f"--storage {url!r}: expected journal:PATH (a file)")
        return StorageSpec(JOURNAL_PREFIX + str(Path(path).resolve()), "journal", **timing)
    if "://" not in url:
        raise SetupError(
            f"--storage {url!r}: expected a storage URL (sqlite:///FILE, "
            "postgresql://USER@HOST/DB, mysql+pymysql://...) or journal:PATH"
        )
    kind = "sqlite" if url.startswith("sqlite") else "rdb"
    return StorageSpec(url, kind, **timing)


def open_storage(spec: StorageSpec, heartbeat: bool = True) -> Any:
    """The Optuna storage for `spec`, connected (a SetupError naming the URL when it cannot
    be). heartbeat=False for readers (the live table, the sheet), which run no trial."""
    import optuna

    if spec.kind == "journal":
        return _journal(spec)
    engine: dict[str, Any] = {"connect_args": _connect_args(spec)}
    beat: dict[str, Any] = {}
    if heartbeat:
        beat = {"heartbeat_interval": spec.heartbeat_interval,
                "grace_period": spec.grace_period, **_retry_callback()}  # fmt: skip
    if spec.kind == "sqlite":
        _make_parent(spec.url.split("///", 1)[-1] if "///" in spec.url else "", spec)
        if spec.wal:
            _write_ahead_log(spec)
    try:
        return _rdb(optuna, spec.url, engine, beat)
    except ImportError as exc:  # the URL's driver is not installed (Optuna names no module)
        missing = exc.__cause__ or exc
        raise SetupError(
            f"--storage {spec.shown}: its database driver is not installed ({missing}); e.g. "
            "`pip install 'psycopg[binary]'` for postgresql://, `pip install pymysql` for "
            "mysql+pymysql://"
        ) from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy's errors name the driver's cause
        raise SetupError(f"--storage {spec.shown}: cannot open it: {_driver_message(exc)}") from None


def _write_ahead_log(spec: StorageSpec) -> None:
    """Put the default SQLite file in WAL mode (a setting the file keeps): readers (the live
    table, other workers' samplers) no longer block the writer, and a commit appends instead
    of rewriting pages (benchmarks/sweep_pruning.py part B). Only for the file trainwise picks
    in the local runs folder: WAL needs shared memory, which network file systems lack."""
    import sqlite3

    path = spec.url.split("///", 1)[-1]
    try:
        with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S) as db:
            db.execute("PRAGMA journal_mode=WAL")
        db.close()
    except sqlite3.Error as exc:
        raise SetupError(f"--storage {spec.shown}: cannot open the SQLite file: {exc}") from None


def _rdb(optuna: Any, url: str, engine: dict[str, Any], beat: dict[str, Any]) -> Any:
    """RDBStorage, retried when another process was creating the same fresh database's
    tables at the same moment (two machines starting together: PostgreSQL then says
    "duplicate key ... already exists" to the second)."""
    for attempt in range(SCHEMA_RACE_RETRIES):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine, **beat)
        except Exception as exc:  # noqa: BLE001 - only the race is retried, below
            words = str(getattr(exc, "orig", exc))
            racing = "already exists" in words or "duplicate key" in words
            if not racing or attempt == SCHEMA_RACE_RETRIES - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _journal(spec: StorageSpec) -> Any:
    from optuna.storages import JournalStorage

    try:
        from optuna.storages.journal import JournalFileBackend
    except ImportError:  # Optuna < 4: the same file backend under its first name
        from optuna.storages import JournalFileStorage as JournalFileBackend

    path = spec.url[len(JOURNAL_PREFIX) :]
    _make_parent(path, spec)
    try:
        return JournalStorage(JournalFileBackend(path))
    except OSError as exc:
        raise SetupError(f"--storage {spec.shown}: cannot open the journal file: {exc}") from None


def _connect_args(spec: StorageSpec) -> dict[str, Any]:
    if spec.kind == "sqlite":
        return {"timeout": SQLITE_BUSY_TIMEOUT_S}
    if spec.url.startswith(("postgresql", "postgres")):
        return {"connect_timeout": CONNECT_TIMEOUT_S}
    if spec.url.startswith("mysql"):
        return {"connect_timeout": CONNECT_TIMEOUT_S}
    return {}


def _retry_callback() -> dict[str, Any]:
    """RDBStorage's argument that retries a heartbeat-failed trial (renamed in Optuna 4.9)."""
    try:
        from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry

        key = "heartbeat_stale_trial_callback"
    except ImportError:  # older Optuna: the same callback under its first name
        from optuna.storages import RetryFailedTrialCallback as Retry

        key = "failed_trial_callback"
    return {key: Retry(max_retry=MAX_RETRY)}


def _make_parent(path: str, spec: StorageSpec) -> None:
    if not path or path == ":memory:":
        return
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SetupError(f"--storage {spec.shown}: cannot create its folder: {exc}") from None
    if not os.access(Path(path).parent, os.W_OK):
        raise SetupError(f"--storage {spec.shown}: its folder is not writable")


def _driver_message(exc: BaseException) -> str:
    """The driver's own words: SQLAlchemy wraps them (`exc.orig`) with a long suffix."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return " ".join(text.split())[:500] or type(exc).__name__
