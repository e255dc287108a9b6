"""The one way autobatch writes a file that must not be lost: atomically.

A temporary file in the target's folder, flushed and fsynced, then ``os.replace``: a reader
sees the old file or the new one, never half of either, and a failure (a full disk, a
signal) leaves the old file and no temporary behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], payload: bytes, *,
                       mode: int | None = None) -> Path:
    """Write ``payload`` to ``path`` atomically; create missing parent folders.

    ``mode``: the file's permissions; default those ``open()`` gives a new file
    (``0o666`` less the umask), not the temporary file's private ``0o600``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask() if mode is None else mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str, *,
                      mode: int | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see ``atomic_write_bytes``)."""
    return atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike[str], *, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that writes files itself (Keras'
    ``model.save``): renamed onto ``path`` when the block ends, removed when it raises.
    ``suffix``: what the writer needs the name to end with (``.keras``)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
