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
from collections.abc import Iterator
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


@contextlib.contextmanager
def schema_lock(url: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<database>.lock`` (SQLite files only).

    A lock file that cannot be created (a read-only folder) is no lock: opening the
    database then fails with its own, clearer, error.
    """
    path = sqlite_path(url)
    if path is None:
        yield
        return
    try:
        import fcntl

        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o666)
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def rdb_storage(url: str) -> optuna.storages.RDBStorage:
    """An Optuna ``RDBStorage`` for ``url`` (its schema created); SQLite waits
    ``SQLITE_TIMEOUT_S`` for another process's lock."""
    import optuna

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
    for attempt in range(2):
        try:
            with schema_lock(url):
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
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


def _fix(reason: str) -> str:
    lowered = reason.lower()
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
            f"the Optuna storage {_redact(url)!r} failed during the tune: {reason}; "
            f"{_fix(reason)}; a rerun resumes from the trials stored", parameter="storage")
    else:
        error = StorageError(f"cannot use the Optuna storage {_redact(url)!r}: {reason}; "
                             f"{_fix(reason)}", parameter="storage")
    error.reason = reason
    return error


def _redact(url: str) -> str:
    """A storage URL without its password (as the plan records it)."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
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
        f"cannot open Optuna storage {storage!r}: {first}; pass a valid {{param}} URL "
        "such as sqlite:///study.db", parameter="storage")
