"""Account for every file in an image folder: which ones training will use, and why not the rest.

The header audit reads magic bytes and headers only (no TensorFlow, threads for parallel
I/O); ``deep=True`` also decodes every usable file with TensorFlow's own decoder, in worker
processes (see ``autobatch._audit_decode``). ``keras_loadable`` reproduces the indexing rules
of ``keras.utils.image_dataset_from_directory`` (Keras 3.15) without importing it.

Labels: the top-level sub-folders are the classes, sorted as Keras sorts them (plain string
order of the names, hidden ones excluded, symlinks to folders included); files in nested
folders belong to their top-level class. A folder without class folders is *unlabeled*:
``class_names`` is empty and every usable file gets label 0.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from autobatch._errors import DataError
from autobatch._imageformats import (
    HEAD_BYTES,
    ImageInfo,
    expected_format,
    inspect_file,
)

logger = logging.getLogger(__name__)

SKIP_REASONS = ("unsupported_format", "corrupt", "empty", "not_an_image", "root_level",
                "hidden", "broken_link", "unreadable")
"""Every file not used gets exactly one of these."""

WARNING_KINDS = ("extension_mismatch", "duplicate", "mixed_channels", "extreme_size",
                 "single_class", "empty_class", "unlabeled", "symlink_loop", "bmp_palette")

# Keras 3.15 keras/src/utils/image_dataset_utils.py ALLOWLIST_FORMATS.
KERAS_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")

# Thresholds for the extreme-size warning.
TINY_SIDE_PX = 16
HUGE_PIXELS = 50_000_000
EXTREME_ASPECT = 10.0

ProgressCallback = Callable[[int, int, str], None]
"""``progress(done, total, phase)``; phase is ``"scan"`` (headers) or ``"decode"`` (--deep)."""

_CHUNK = 256  # files per thread-pool task: amortises the executor's per-task cost


@dataclass
class _Entry:
    path: str  # absolute, as os.walk would join it (a str; non-UTF-8 bytes surrogate-escaped)
    walk_root: str  # the folder path Keras sorts by
    name: str
    class_index: int
    reason: str | None = None
    detail: str = ""
    info: ImageInfo | None = None


@dataclass
class AuditReport:
    """The outcome of ``audit``. ``to_dict()`` is the JSON the CLI prints (see docs/audit.md)."""

    data_dir: str
    deep: bool
    files_on_disk: int
    usable_images: int
    classes: dict[str, int]
    skipped: list[dict[str, str]]
    warnings: list[dict[str, str]]
    keras_loadable: int
    channels: dict[str, int]
    image_sizes: dict[str, Any]
    formats: dict[str, int]
    class_imbalance_ratio: float | None
    usable_files: list[tuple[str, int]] = field(default_factory=list, repr=False)
    """``(absolute path, label index)`` in Keras order (class, then folder, then name)."""
    class_names: list[str] = field(default_factory=list)

    @property
    def skipped_by_reason(self) -> dict[str, int]:
        counts = Counter(item["reason"] for item in self.skipped)
        return {reason: counts[reason] for reason in SKIP_REASONS if counts[reason]}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (paths relative to ``data_dir``, valid UTF-8)."""
        return {
            "data_dir": self.data_dir,
            "deep": self.deep,
            "files_on_disk": self.files_on_disk,
            "usable_images": self.usable_images,
            "classes": dict(self.classes),
            "skipped_by_reason": self.skipped_by_reason,
            "skipped": [dict(item) for item in self.skipped],
            "warnings": [dict(item) for item in self.warnings],
            "keras_loadable": self.keras_loadable,
            "channels": dict(self.channels),
            "image_sizes": self.image_sizes,
            "formats": dict(self.formats),
            "class_imbalance_ratio": self.class_imbalance_ratio,
        }

    def summary_sentence(self) -> str:
        """One sentence: how many images training will use versus what is on disk."""
        head = (f"Training will use {self.usable_images} of {self.files_on_disk} "
                f"image files on disk")
        if not self.skipped:
            return head + "; none skipped."
        parts = ", ".join(f"{n} {reason}" for reason, n in self.skipped_by_reason.items())
        return f"{head}; {len(self.skipped)} skipped ({parts})."


def audit(data_dir: str | os.PathLike[str], deep: bool = False, *, workers: int | None = None,
          progress: ProgressCallback | None = None) -> AuditReport:
    """Scan an image folder and account for every file in it.

    Args:
        data_dir: a folder of class sub-folders (Keras layout), or a flat folder of images
            (reported as unlabeled).
        deep: also decode every usable file with ``tf.io.decode_image`` (as training will)
            in worker processes; files that fail become ``corrupt``.
        workers: threads for header reads (default ``4 x CPUs``, at most 32); with ``deep``,
            the decode processes are the usable cores.
        progress: called as ``progress(done, total, phase)`` while files are checked.

    Returns:
        The ``AuditReport``.

    Raises:
        DataError: the path does not exist, is not a folder, or cannot be listed.
    """
    top = os.path.abspath(os.fspath(data_dir))
    if not os.path.exists(top):
        raise DataError(f"data folder {_display(top)!r} does not exist; pass an image folder")
    if not os.path.isdir(top):
        raise DataError(f"{_display(top)!r} is not a folder; pass a folder of class sub-folders")
    class_names, entries, warnings = _scan(top)
    candidates = [e for e in entries if e.reason is None]
    _inspect_all(candidates, workers, progress)
    if deep:
        from autobatch._audit_decode import decode_all

        usable = [e for e in candidates if e.reason is None]
        results = decode_all([e.path for e in usable], progress=progress)
        for entry, (error, channels) in zip(usable, results, strict=True):
            if error is not None:
                entry.reason, entry.detail = "corrupt", error
            elif channels is not None and entry.info is not None:
                entry.info = _with_channels(entry.info, channels)
    return _assemble(top, deep, class_names, entries, warnings)


def _with_channels(info: ImageInfo, channels: int) -> ImageInfo:
    from dataclasses import replace

    return replace(info, channels=channels)


# --------------------------------------------------------------------------- scanning


def _scan(top: str) -> tuple[list[str], list[_Entry], list[dict[str, str]]]:
    """List every file under ``top`` with a label, and the reasons known before reading."""
    warnings: list[dict[str, str]] = []
    try:
        listing = sorted(os.scandir(top), key=lambda e: e.name)
    except OSError as exc:
        raise DataError(f"cannot list {_display(top)!r}: {exc.strerror}; check its "
                        "permissions") from None
    # Keras: sorted(os.listdir(directory)), keep os.path.isdir (follows links), drop '.'-names.
    class_dirs = [e for e in listing if not e.name.startswith(".") and _is_dir(e)]
    class_names = [e.name for e in class_dirs]
    labeled = bool(class_dirs)
    # Top-level class folders are registered first, so that a link from inside one class to
    # another class's folder is never followed (it would copy that class under a wrong label).
    visited = {_dir_id(top)} | {_dir_id(e.path) for e in class_dirs}
    entries: list[_Entry] = []
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
          warnings: list[dict[str, str]], top: str) -> Iterable[_Entry]:
    """Depth-first over one top-level folder; follows folder links once (loops are cut)."""
    stack = [(start, hidden)]
    while stack:
        folder, folder_hidden = stack.pop()
        try:
            listing = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield _Entry(folder + os.sep, folder, "", class_index, "unreadable",
                         f"folder cannot be listed ({exc.strerror}); its files are not counted")
            continue
        subfolders = []
        for e in listing:
            entry_hidden = folder_hidden or e.name.startswith(".")
            if _is_dir(e):
                if e.is_symlink():
                    target = _dir_id(e.path)
                    if target in visited:
                        warnings.append(_warning(top, e.path, "symlink_loop",
                                                 "links to a folder already scanned; not "
                                                 "followed again"))
                        continue
                    visited.add(target)
                subfolders.append((e.path, entry_hidden))
                continue
            yield _file_entry(e, folder, class_index, entry_hidden)
        stack.extend(reversed(subfolders))


def _file_entry(e: os.DirEntry[str], folder: str, class_index: int, hidden: bool) -> _Entry:
    entry = _Entry(e.path, folder, e.name, class_index)
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


def _inspect_all(candidates: list[_Entry], workers: int | None,
                 progress: ProgressCallback | None) -> None:
    """Read headers in a thread pool: the work is syscalls that release the GIL."""
    total = len(candidates)
    if workers is None:
        workers = min(32, (os.cpu_count() or 1) * 4)
    chunks = [candidates[i:i + _CHUNK] for i in range(0, total, _CHUNK)]
    done = 0
    if progress:
        progress(0, total, "scan")

    def inspect_chunk(chunk: list[_Entry]) -> list[ImageInfo]:
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


# --------------------------------------------------------------------------- the report


def _assemble(top: str, deep: bool, class_names: list[str], entries: list[_Entry],
              warnings: list[dict[str, str]]) -> AuditReport:
    usable = sorted((e for e in entries if e.reason is None),
                    key=lambda e: (e.class_index, e.walk_root, e.name))
    skipped = [{"path": _rel(top, e.path), "reason": str(e.reason), "detail": e.detail}
               for e in sorted((e for e in entries if e.reason is not None),
                               key=lambda e: e.path)]
    counts = Counter(e.class_index for e in usable)
    classes = {name: counts[i] for i, name in enumerate(class_names)}
    infos = [e.info for e in usable if e.info is not None]
    warnings = warnings + _content_warnings(top, usable)
    warnings += _folder_warnings(top, class_names, classes, infos)
    return AuditReport(
        data_dir=_display(top),
        deep=deep,
        files_on_disk=len(entries),
        usable_images=len(usable),
        classes=classes,
        skipped=skipped,
        warnings=warnings,
        keras_loadable=keras_loadable_count(top),
        channels={str(k): v for k, v in sorted(Counter(i.channels for i in infos).items())},
        image_sizes=_size_summary(infos),
        formats=dict(sorted(Counter(str(i.format) for i in infos).items())),
        class_imbalance_ratio=_imbalance(classes),
        usable_files=[(e.path, e.class_index) for e in usable],
        class_names=list(class_names),
    )


def _content_warnings(top: str, usable: list[_Entry]) -> list[dict[str, str]]:
    warnings = []
    for e in usable:
        info = e.info
        assert info is not None
        promised = expected_format(e.name)
        if promised != info.format:
            keras = " (Keras skips this file)" if not e.name.lower().endswith(KERAS_FORMATS) \
                else ""
            said = f"the extension says {promised}" if promised else "the extension is unknown"
            warnings.append(_warning(top, e.path, "extension_mismatch",
                                     f"content is {info.format}, {said}{keras}"))
        if info.width and info.height:
            side, area = min(info.width, info.height), info.width * info.height
            aspect = max(info.width, info.height) / side
            if side < TINY_SIDE_PX or area > HUGE_PIXELS or aspect > EXTREME_ASPECT:
                warnings.append(_warning(top, e.path, "extreme_size",
                                         f"{info.width}x{info.height} pixels"))
        if "palette" in info.notes and info.format == "bmp":
            warnings.append(_warning(top, e.path, "bmp_palette",
                                     "8-bit colour-palette BMP: TensorFlow ignores the palette "
                                     "and decodes the indices as grey levels"))
    warnings.extend(_duplicate_warnings(top, usable))
    return warnings


def _duplicate_warnings(top: str, usable: list[_Entry]) -> list[dict[str, str]]:
    groups: dict[tuple[int, str | None], list[_Entry]] = {}
    for e in usable:
        assert e.info is not None
        groups.setdefault((e.info.size_bytes, e.info.digest), []).append(e)
    warnings = []
    for (size, _), group in groups.items():
        if len(group) < 2:
            continue
        if size > HEAD_BYTES:  # the digest covered the head only: confirm on full content
            by_hash: dict[str | None, list[_Entry]] = {}
            for e in group:
                by_hash.setdefault(_full_digest(e.path), []).append(e)
            subgroups = [g for h, g in by_hash.items() if h is not None and len(g) > 1]
        else:
            subgroups = [group]
        for sub in subgroups:
            others = [_rel(top, e.path) for e in sub[1:]]
            shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3
                                             else "")
            warnings.append(_warning(top, sub[0].path, "duplicate",
                                     f"byte-identical to {len(others)} other file(s): {shown}"))
    return warnings


def _full_digest(path: str) -> str | None:
    digest = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _folder_warnings(top: str, class_names: list[str], classes: dict[str, int],
                     infos: list[ImageInfo]) -> list[dict[str, str]]:
    warnings = []
    shown_top = _display(top)
    if not class_names:
        warnings.append({"path": ".", "kind": "unlabeled",
                         "message": f"{shown_top} has no class folders: its images are "
                                    "unlabeled (Keras would find none)"})
    elif len(class_names) == 1:
        warnings.append({"path": ".", "kind": "single_class",
                         "message": f"only one class folder ({class_names[0]!r}): a classifier "
                                    "needs at least two"})
    for name, count in classes.items():
        if count == 0:
            warnings.append({"path": _display(name), "kind": "empty_class",
                             "message": "class folder holds no usable image; its label "
                                        "exists but is never trained"})
    channel_counts = Counter(i.channels for i in infos)
    if len(channel_counts) > 1:
        mix = ", ".join(f"{n} file(s) with {c}" for c, n in sorted(channel_counts.items()))
        warnings.append({"path": ".", "kind": "mixed_channels",
                         "message": f"channel counts differ ({mix}); decode with a fixed "
                                    "channels= so every image has the same shape"})
    return warnings


def _size_summary(infos: list[ImageInfo]) -> dict[str, Any]:
    widths = [i.width for i in infos if i.width]
    heights = [i.height for i in infos if i.height]
    summary: dict[str, Any] = {}
    for name, values in (("width", widths), ("height", heights)):
        summary[name] = ({"min": min(values), "max": max(values),
                          "median": statistics.median(values)} if values else None)
    return summary


def _imbalance(classes: dict[str, int]) -> float | None:
    counts = list(classes.values())
    if not counts or min(counts) == 0:
        return None  # unlabeled, or a class with no image (an empty_class warning says so)
    return round(max(counts) / min(counts), 3)


def _warning(top: str, path: str, kind: str, message: str) -> dict[str, str]:
    return {"path": _rel(top, path), "kind": kind, "message": message}


def _display(path: str) -> str:
    """A printable, valid-UTF-8 form of a path (undecodable bytes as \\xNN escapes)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _rel(top: str, path: str) -> str:
    # A trailing separator marks a folder entry (an unreadable folder); keep it.
    suffix = "/" if path.endswith(os.sep) else ""
    return _display(os.path.relpath(path, top)) + suffix


# --------------------------------------------------------------------------- Keras' count


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

