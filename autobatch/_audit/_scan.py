"""Walking an image folder as Keras labels it: every file with its class and the reasons
known before reading it; the header reads in a thread pool; Keras' own count."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from autobatch._audit._headers import inspect_file
from autobatch._audit._kinds import ImageInfo
from autobatch._errors import DataError

# Keras 3.15 keras/src/utils/image_dataset_utils.py ALLOWLIST_FORMATS.
KERAS_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
ProgressCallback = Callable[[int, int, str], None]
"""``progress(done, total, phase)``; phase is ``"scan"`` (headers) or ``"decode"`` (--deep)."""

CHUNK = 256  # files per thread-pool task: amortises the executor's per-task cost


@dataclass
class Entry:
    path: str  # absolute, as os.walk would join it (a str; non-UTF-8 bytes surrogate-escaped)
    walk_root: str  # the folder path Keras sorts by
    name: str
    class_index: int
    reason: str | None = None
    detail: str = ""
    info: ImageInfo | None = None


def scan_folder(top: str) -> tuple[list[str], list[Entry], list[dict[str, str]]]:
    """List every file under ``top`` with a label, and the reasons known before reading."""
    warnings: list[dict[str, str]] = []
    try:
        listing = sorted(os.scandir(top), key=lambda e: e.name)
    except OSError as exc:
        raise DataError(f"cannot list {display(top)!r}: {exc.strerror}; check its "
                        "permissions") from None
    # Keras: sorted(os.listdir(directory)), keep os.path.isdir (follows links), drop '.'-names.
    class_dirs = [e for e in listing if not e.name.startswith(".") and _is_dir(e)]
    class_names = [e.name for e in class_dirs]
    labeled = bool(class_dirs)
    # Top-level class folders are registered first, so that a link from inside one class to
    # another class's folder is never followed (it would copy that class under a wrong label).
    visited = {_dir_id(top)} | {_dir_id(e.path) for e in class_dirs}
    entries: list[Entry] = []
    for e in listing:
        if _is_dir(e):
            continue
        entry = _file_entry(e, top, 0, hidden=e.name.startswith("."))
        if entry.reason is None and labeled:
            entry.reason = "root_level"
            entry.detail = "a file directly in the data folder; Keras and training ignore it"
        entries.append(entry)
    for index, e in enumerate(class_dirs):
        entries.extend(_walk(e.path, index, False, visited, warnings, top))
    for e in listing:
        if _is_dir(e) and e.name.startswith("."):
            entries.extend(_walk(e.path, 0, True, visited, warnings, top))
    return class_names, entries, warnings


def _walk(start: str, class_index: int, hidden: bool, visited: set[tuple[int, int] | None],
          warnings: list[dict[str, str]], top: str) -> Iterable[Entry]:
    """Depth-first over one top-level folder; follows folder links once (loops are cut)."""
    stack = [(start, hidden)]
    while stack:
        folder, folder_hidden = stack.pop()
        try:
            listing = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield Entry(folder + os.sep, folder, "", class_index, "unreadable",
                         f"folder cannot be listed ({exc.strerror}); its files are not counted")
            continue
        subfolders = []
        for e in listing:
            entry_hidden = folder_hidden or e.name.startswith(".")
            if _is_dir(e):
                if e.is_symlink():
                    target = _dir_id(e.path)
                    if target in visited:
                        warnings.append(warning(top, e.path, "symlink_loop",
                                                 "links to a folder already scanned; not "
                                                 "followed again"))
                        continue
                    visited.add(target)
                subfolders.append((e.path, entry_hidden))
                continue
            yield _file_entry(e, folder, class_index, entry_hidden)
        stack.extend(reversed(subfolders))


def _file_entry(e: os.DirEntry[str], folder: str, class_index: int, hidden: bool) -> Entry:
    entry = Entry(e.path, folder, e.name, class_index)
    if hidden:
        entry.reason = "hidden"
        entry.detail = "its name or a folder above it starts with '.'"
        return entry
    try:
        if e.is_symlink():
            mode = os.stat(e.path).st_mode  # follows the link
        else:
            mode = e.stat(follow_symlinks=False).st_mode
    except FileNotFoundError:
        entry.reason, entry.detail = "broken_link", "the link points to nothing"
        return entry
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            entry.reason, entry.detail = "broken_link", "symlink loop"
        else:
            entry.reason, entry.detail = "unreadable", exc.strerror or type(exc).__name__
        return entry
    if not stat.S_ISREG(mode):
        entry.reason = "not_an_image"
        entry.detail = f"not a regular file ({_file_kind(mode)})"
    return entry


def _is_dir(e: os.DirEntry[str]) -> bool:
    try:
        return e.is_dir()  # follows symlinks, like os.path.isdir
    except OSError:
        return False


def _dir_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def inspect_all(candidates: list[Entry], workers: int | None,
                 progress: ProgressCallback | None) -> None:
    """Read headers in a thread pool: the work is syscalls that release the GIL."""
    total = len(candidates)
    if workers is None:
        workers = min(32, (os.cpu_count() or 1) * 4)
    chunks = [candidates[i:i + CHUNK] for i in range(0, total, CHUNK)]
    done = 0
    if progress:
        progress(0, total, "scan")

    def inspect_chunk(chunk: list[Entry]) -> list[ImageInfo]:
        return [inspect_file(e.path) for e in chunk]

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for chunk, infos in zip(chunks, pool.map(inspect_chunk, chunks), strict=True):
            for entry, info in zip(chunk, infos, strict=True):
                entry.info = info
                if info.problem is not None:
                    entry.reason, entry.detail = info.problem, info.detail
            done += len(chunk)
            if progress:
                progress(done, total, "scan")


def warning(top: str, path: str, kind: str, message: str) -> dict[str, str]:
    return {"path": rel(top, path), "kind": kind, "message": message}


def display(path: str) -> str:
    """A printable, valid-UTF-8 form of a path (undecodable bytes as \\xNN escapes)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def rel(top: str, path: str) -> str:
    # A trailing separator marks a folder entry (an unreadable folder); keep it.
    suffix = "/" if path.endswith(os.sep) else ""
    return display(os.path.relpath(path, top)) + suffix


def keras_loadable_count(directory: str) -> int:
    """How many files ``keras.utils.image_dataset_from_directory(directory)`` would index.

    A line-by-line mirror of Keras 3.15 ``dataset_utils.index_directory`` with its defaults
    (``labels="inferred"``, ``follow_links=False``): class folders are the non-hidden
    entries for which ``os.path.isdir`` holds (links to folders count); each is walked with
    ``os.walk`` (no descent into linked sub-folders; unreadable folders silently dropped);
    a file counts when its lower-cased name ends with an allowed extension -- hidden files,
    broken links and FIFOs included. Files at the top are never indexed, so a flat folder
    gives 0 (Keras then raises "No images found").
    """
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return 0
    count = 0
    for name in names:
        path = os.path.join(directory, name)
        if not os.path.isdir(path) or name.startswith("."):
            continue
        for _root, _dirs, files in os.walk(path):
            count += sum(1 for f in files if f.lower().endswith(KERAS_FORMATS))
    return count
