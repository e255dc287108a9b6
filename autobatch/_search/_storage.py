"""The study's storage: opened under an inter-process lock, its faults made one line.

What each fault of the study's storage becomes (the study is opened, and written once,
before any probe runs, so a storage that cannot be used costs no tuning work):

- a URL that does not parse or names no installed driver: ``UsageError`` (exit 2);
- the default storage (SQLite in the user cache folder) that cannot be created, opened or
  written (the cache folder is a file or read-only, the disk is full, the database is
  locked past ``SQLITE_TIMEOUT_S``): a warning, and the tune goes on with an in-memory
  study (it runs as usual; a rerun does not resume it);
- a storage the caller named (``storage=``/``--storage``) that cannot be used: a one-line
  ``StorageError`` naming it and what to do (exit 1), before any probe;
- a fault while the search writes its trials (the disk fills up mid-tune): a one-line
  ``StorageError``; the trials stored so far are resumed by a rerun.

Two processes that open the same fresh SQLite file at once would both create Optuna's
tables ("table ... already exists", "UNIQUE constraint failed: alembic_version"): the
schema is created under ``fcntl.flock`` on a lock file next to the database; other
back-ends retry once on those errors (Optuna's own advice is to create the schema first).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autobatch._errors import AutobatchError, UsageError

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)

SQLITE_TIMEOUT_S = 30.0
"""How long an SQLite study waits for a lock another process holds before it gives up
(SQLite's own default is 5 s, shorter than one trial of another tune)."""

_RACE_MARKS = ("already exists", "UNIQUE constraint failed", "duplicate key")
"""What a lost race to create Optuna's schema says (SQLite, PostgreSQL)."""


class StorageError(AutobatchError):
    """The study's storage cannot be used (locked, full, read-only, gone); exit code 1.
    ``reason`` is the database's own words (``database is locked``)."""

    reason = ""


def sqlite_path(url: str) -> Path | None:
    """The database file of an ``sqlite:///`` URL; None for other back-ends and memory."""
    if not url.startswith("sqlite:///"):
        return None
    rest = url[len("sqlite:///"):].split("?", 1)[0]
    if not rest or rest == ":memory:":
        return None
    return Path(rest)


class _Held(Exception):
    """Another process holds the lock (``_flock`` without waiting)."""


@contextlib.contextmanager
def _flock(lock: Path, *, wait: bool = True, remove: bool = False) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``lock`` (``remove``: unlinked when done).

    A lock file that cannot be created (a read-only folder) is no lock: opening the
    database then fails with its own, clearer, error. Without ``wait``, a lock another
    process holds raises ``_Held`` before the block runs.
    """
    try:
        import fcntl

        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise _Held from None
        try:
            yield
        finally:
            if remove:
                with contextlib.suppress(OSError):
                    lock.unlink()
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def schema_lock(url: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<database>.lock`` (SQLite files only)."""
    path = sqlite_path(url)
    if path is None:
        yield
        return
    with _flock(path.with_name(path.name + ".lock")):
        yield


HEARTBEAT_S = 5
"""How often a process records a heartbeat for the trials it holds (a shared database)."""
GRACE_S = 30
"""A trial whose heartbeat is older than this is stale: its process, or its machine, is gone
(Optuna fails it, and autobatch enqueues its point again)."""


JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")


def journal_path(url: str) -> Path | None:
    """The journal file of ``journal:PATH``, or of a bare path (no ``://``) that has a folder
    in it or ends in ``.log``, ``.journal`` or ``.jsonl`` (a bare word is a typo, not a file
    to create; ``.db`` and ``.sqlite`` name SQLite files); else None."""
    if url.startswith("journal:"):
        return Path(url[len("journal:"):]).expanduser()
    if ("://" not in url and not url.startswith("sqlite:")
            and not url.endswith((".db", ".sqlite", ".sqlite3"))  # an SQLite file's path
            and ("/" in url or url.endswith(JOURNAL_SUFFIXES))):
        return Path(url).expanduser()
    return None


def is_shared(url: str | None) -> bool:
    """Whether several processes may work on one study in ``url``: a journal file (one
    host) or a database server (many machines); SQLite is for one process."""
    return url is not None and (journal_path(url) is not None
                                or ("://" in url and not url.startswith("sqlite:")))


@contextlib.contextmanager
def own_heartbeats() -> Iterator[None]:
    """Around an ask on a server: Optuna warns that heartbeats belong to ``optimize``; a
    tune records its own (``_shared``), so the warning says nothing to the user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
        yield


StaleCallback = Callable[["optuna.Study", "optuna.trial.FrozenTrial"], None]


def make_storage(url: str, *, on_stale: StaleCallback | None = None) -> optuna.storages.BaseStorage:
    """The Optuna storage ``url`` names: a ``JournalStorage`` for a journal file, else an
    ``RDBStorage`` (its schema created; SQLite waits ``SQLITE_TIMEOUT_S`` for another
    process's lock; a database server records heartbeats, and ``on_stale`` is called for
    each trial Optuna fails for a stale heartbeat)."""
    import optuna

    journal = journal_path(url)
    if journal is not None:
        from optuna.storages.journal import JournalFileBackend

        if journal.is_dir():
            raise ValueError(f"the journal path {journal} is a folder; name a file in it")
        journal.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    return rdb_storage(url, on_stale=on_stale)


@contextlib.contextmanager
def sole_user(url: str, study_name: str) -> Iterator[None]:
    """Hold this study of an SQLite file for the tune: a second process on the same study
    is refused with one line (SQLite has no ``SELECT ... FOR UPDATE``: two workers would
    take the same trial, and wait on each other's locks), naming what to use instead."""
    path = sqlite_path(url)
    if path is None:
        yield
        return
    try:
        with _flock(path.with_name(f"{path.name}.{study_name}.lock"), wait=False,
                    remove=True):
            yield
    except _Held:
        error = StorageError(
            f"another process is tuning study {study_name} in the SQLite storage "
            f"{url!r}, and SQLite is not for parallel workers: wait for it, or share the "
            "study with --storage journal:PATH (one host) or postgresql://USER@HOST/DB "
            "(many machines)", parameter="storage")
        error.reason = "SQLite study in use by another process"
        raise error from None


def rdb_storage(url: str, *, on_stale: StaleCallback | None = None) -> optuna.storages.RDBStorage:
    """An Optuna ``RDBStorage`` for ``url`` (its schema created); SQLite waits
    ``SQLITE_TIMEOUT_S`` for another process's lock; a server records heartbeats."""
    import optuna

    kwargs: dict[str, Any] = {}
    beats: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
    else:
        beats = {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S,
                 "heartbeat_stale_trial_callback": on_stale}
        kwargs["pool_pre_ping"] = True  # a server restarted mid-tune: reconnect
    for attempt in range(2):
        try:
            with schema_lock(url), warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, **beats)
        except Exception as exc:
            if attempt or not any(mark in _reason(exc) for mark in _RACE_MARKS):
                raise
            logger.debug("lost the race to create the schema of %s; retrying", url)
    raise AssertionError("unreachable")  # pragma: no cover


def is_bad_url(exc: BaseException) -> bool:
    """A storage URL that does not parse or whose driver is missing (the caller's typo)."""
    try:
        import sqlalchemy.exc
    except ImportError:  # pragma: no cover - optuna needs sqlalchemy
        return isinstance(exc, (ValueError, ImportError))
    return isinstance(exc, (ValueError, ImportError, sqlalchemy.exc.ArgumentError))


def is_storage_fault(exc: BaseException) -> bool:
    """A fault of the storage itself: the database or its files, not autobatch's logic."""
    import optuna

    try:
        import sqlalchemy.exc

        database: tuple[type[BaseException], ...] = (sqlalchemy.exc.SQLAlchemyError,)
    except ImportError:  # pragma: no cover
        database = ()
    return isinstance(exc, (optuna.exceptions.StorageInternalError, sqlite3.Error, OSError,
                            *database))


def _reason(exc: BaseException) -> str:
    """The innermost database message on one line (``database is locked``)."""
    seen: BaseException | None = exc
    text = ""
    while seen is not None:
        orig = getattr(seen, "orig", None)
        candidate = str(orig if orig is not None else seen).strip()
        if candidate:
            text = candidate
        if orig is not None:
            break
        seen = seen.__cause__ or seen.__context__
    line = text.splitlines()[0] if text else type(exc).__name__
    return line.split(") ", 1)[1] if line.startswith("(") and ") " in line else line


def _fix(reason: str, url: str = "") -> str:
    lowered = reason.lower()
    if "://" in url and not url.startswith("sqlite:"):
        if "password" in lowered or "authentication" in lowered or "role" in lowered:
            return "check the user and password in the {p:storage} URL"
        if "does not exist" in lowered and "database" in lowered:
            return "create the database (createdb NAME), or name one that exists"
        return ("check the host, port and database in the {p:storage} URL, and that the "
                "server is running and reachable from here")
    if "locked" in lowered:
        return ("another process holds the database: wait for it to finish, or pass another "
                "{p:storage}")
    if "full" in lowered or "no space" in lowered:
        return "free disk space, or pass a {p:storage} on another disk"
    return "make its folder writable, or pass another {p:storage} such as sqlite:///study.db"


def storage_error(url: str, exc: BaseException, *, during_search: bool = False) -> StorageError:
    """The one-line error for a storage fault: the storage, the cause, the fix."""
    reason = _reason(exc)
    if during_search:
        error = StorageError(
            f"the Optuna storage {redact_url(url)!r} failed during the tune: {reason}; "
            f"{_fix(reason, url)}; a rerun resumes from the trials stored", parameter="storage")
    else:
        error = StorageError(f"cannot use the Optuna storage {redact_url(url)!r}: {reason}; "
                             f"{_fix(reason, url)}", parameter="storage")
    error.reason = reason
    return error


def redact_url(url: str) -> str:
    """A storage URL without its password (as errors say it and the plan records it)."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def fallback_warning(url: str, exc: BaseException) -> str:
    """The warning when the default storage cannot be used and the study is in memory."""
    reason = exc.reason if isinstance(exc, StorageError) else _reason(exc)
    return (f"the default study storage {url} cannot be used ({reason}): tuning with an "
            "in-memory study (a rerun will not resume it); set AUTOBATCH_CACHE_DIR to a "
            "writable folder, or pass storage=/--storage")


def bad_url_error(storage: str | None, exc: BaseException) -> UsageError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UsageError(
        f"cannot open Optuna storage {redact_url(storage or '')!r}: {first}; pass a valid "
        "{param} URL such as sqlite:///study.db, journal:PATH or postgresql://USER@HOST/DB",
        parameter="storage")
