"""Account for every file in an image folder: which ones training will use, and why not the rest.

The header audit reads magic bytes and headers only (no TensorFlow, threads for parallel
I/O); ``deep=True`` also decodes every usable file with TensorFlow's own decoder, in worker
processes (see ``autobatch._audit._decode``). ``keras_loadable`` reproduces the indexing rules
of ``keras.utils.image_dataset_from_directory`` (Keras 3.15) without importing it.

Labels: the top-level sub-folders are the classes, sorted as Keras sorts them (plain string
order of the names, hidden ones excluded, symlinks to folders included); files in nested
folders belong to their top-level class. A folder without class folders is *unlabeled*:
``class_names`` is empty and every usable file gets label 0.

    _kinds     file kinds by magic bytes, ImageInfo, the extension's promise
    _headers   reading and judging one file's header (no decoding)
    _scan      walking the folder as Keras labels it; Keras' own count
    _findings  AuditReport: skips, warnings, summaries
    _decode    ``deep=True``: decoding with TensorFlow in worker processes
"""

from __future__ import annotations

import os
from numbers import Integral

from autobatch._audit._findings import (
    EXTREME_ASPECT,
    HUGE_PIXELS,
    MAX_PIXELS,
    SKIP_REASONS,
    TINY_SIDE_PX,
    WARNING_KINDS,
    AuditReport,
    assemble,
    skip_too_many_pixels,
)
from autobatch._audit._headers import inspect_bytes, inspect_file
from autobatch._audit._kinds import (
    CORRUPT,
    DECODABLE_FORMATS,
    EMPTY,
    EXTENSION_FORMATS,
    HEAD_BYTES,
    NOT_AN_IMAGE,
    TAIL_BYTES,
    UNREADABLE,
    UNSUPPORTED,
    ImageInfo,
    expected_format,
    sniff,
)
from autobatch._audit._scan import (
    KERAS_FORMATS,
    ProgressCallback,
    display,
    inspect_all,
    keras_loadable_count,
    scan_folder,
)
from autobatch._errors import DataError, UsageError

__all__ = [
    "CORRUPT", "DECODABLE_FORMATS", "EMPTY", "EXTENSION_FORMATS", "EXTREME_ASPECT", "HEAD_BYTES",
    "HUGE_PIXELS", "KERAS_FORMATS", "MAX_PIXELS", "NOT_AN_IMAGE", "SKIP_REASONS", "TAIL_BYTES",
    "TINY_SIDE_PX", "UNREADABLE", "UNSUPPORTED", "WARNING_KINDS", "AuditReport", "ImageInfo",
    "ProgressCallback", "audit", "check_max_pixels", "expected_format", "inspect_bytes",
    "inspect_file", "keras_loadable_count", "sniff",
]


def audit(data_dir: str | os.PathLike[str], deep: bool = False, *, workers: int | None = None,
          progress: ProgressCallback | None = None,
          max_pixels: int | None = None) -> AuditReport:
    """Scan an image folder and account for every file in it.

    Args:
        data_dir: a folder of class sub-folders (Keras layout), or a flat folder of images
            (reported as unlabeled).
        deep: also decode every usable file with ``tf.io.decode_image`` (as training will)
            in worker processes; files that fail become ``corrupt``.
        workers: threads for header reads (default ``4 x CPUs``, at most 32); with ``deep``,
            the decode processes are the usable cores.
        progress: called as ``progress(done, total, phase)`` while files are checked.
        max_pixels: the most pixels (width x height, read from the header) an image may
            have; a larger one is skipped as ``too_many_pixels`` and never decoded, here or
            by training (a decompression bomb). None: ``MAX_PIXELS`` (178,956,970, twice
            Pillow's ``Image.MAX_IMAGE_PIXELS``).

    Returns:
        The ``AuditReport``.

    Raises:
        DataError: the path does not exist, is not a folder, or cannot be listed.
        UsageError: ``max_pixels`` is not a positive whole number.
    """
    limit = check_max_pixels(max_pixels)
    if deep:
        from autobatch._framework import require_tensorflow

        require_tensorflow("audit --deep (decoding with TensorFlow)")
    top = os.path.abspath(os.fspath(data_dir))
    if not os.path.exists(top):
        raise DataError(f"data folder {display(top)!r} does not exist; pass an image folder")
    if not os.path.isdir(top):
        raise DataError(f"{display(top)!r} is not a folder; pass a folder of class sub-folders")
    class_names, entries, warnings = scan_folder(top)
    candidates = [e for e in entries if e.reason is None]
    inspect_all(candidates, workers, progress)
    skip_too_many_pixels(candidates, limit)  # before --deep: a bomb is never decoded
    if deep:
        # Imported here, not at the top: the decode workers run ``python -m
        # autobatch._audit._decode``, which must not find that module imported already.
        from autobatch._audit._decode import decode_all

        usable = [e for e in candidates if e.reason is None]
        results = decode_all([e.path for e in usable], progress=progress)
        for entry, (error, channels) in zip(usable, results, strict=True):
            if error is not None:
                entry.reason, entry.detail = "corrupt", error
            elif channels is not None and entry.info is not None:
                entry.info = _with_channels(entry.info, channels)
    return assemble(top, deep, class_names, entries, warnings, limit)


def check_max_pixels(max_pixels: int | None) -> int:
    """The pixel limit to apply: ``max_pixels``, or ``MAX_PIXELS`` for None."""
    if max_pixels is None:
        return MAX_PIXELS
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, Integral) or max_pixels < 1:
        raise UsageError("{param} must be a positive whole number of pixels (width x height), "
                         f"got {max_pixels!r}", parameter="max_pixels")
    return int(max_pixels)


def _with_channels(info: ImageInfo, channels: int) -> ImageInfo:
    from dataclasses import replace

    return replace(info, channels=channels)
