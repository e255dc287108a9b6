"""The audit's report: what is skipped and why, the warnings, the size and class summary."""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from autobatch._audit._kinds import HEAD_BYTES, ImageInfo, expected_format
from autobatch._audit._scan import (
    KERAS_FORMATS,
    Entry,
    display,
    keras_loadable_count,
    rel,
    warning,
)

SKIP_REASONS = ("unsupported_format", "corrupt", "too_many_pixels", "empty", "not_an_image",
                "root_level", "hidden", "broken_link", "unreadable")
"""Every file not used gets exactly one of these."""

MAX_PIXELS = 2 * 89_478_485
"""The default pixel limit (width x height, from the header): above it an image is skipped
as ``too_many_pixels`` and never decoded (a decompression bomb: a few kilobytes of PNG or
GIF that decode to gigabytes). It is twice Pillow's ``Image.MAX_IMAGE_PIXELS`` (89,478,485,
a quarter GiB of 24-bit pixels, where Pillow warns), the point at which Pillow itself refuses
to open an image (``DecompressionBombError``): every image Pillow-based tools open passes,
and so does every single camera frame up to 150 MP (a 102 MP GFX100 frame, a 151 MP Phase
One IQ4), while a 20000 x 20000 bomb (400 MP, 1.2 GB of pixels decoded per copy, one copy
per parallel decode) does not. At the limit one decoded RGB image is 537 MB. Training images
that big are resized to a few hundred pixels anyway; pass a larger ``max_pixels`` to keep
them."""

WARNING_KINDS = ("extension_mismatch", "duplicate", "mixed_channels", "extreme_size",
                 "single_class", "empty_class", "unlabeled", "symlink_loop", "bmp_palette")

# Thresholds for the extreme-size warning.
TINY_SIDE_PX = 16
HUGE_PIXELS = 50_000_000
EXTREME_ASPECT = 10.0


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
    max_pixels: int = MAX_PIXELS
    """The pixel limit the audit applied (``too_many_pixels`` above it)."""
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
            "max_pixels": self.max_pixels,
        }

    def summary_sentence(self) -> str:
        """One sentence: how many images training will use versus what is on disk."""
        head = (f"Training will use {self.usable_images} of {self.files_on_disk} "
                f"image files on disk")
        if not self.skipped:
            return head + "; none skipped."
        parts = ", ".join(f"{n} {reason}" for reason, n in self.skipped_by_reason.items())
        return f"{head}; {len(self.skipped)} skipped ({parts})."


def skip_too_many_pixels(entries: list[Entry], max_pixels: int) -> None:
    """Give every usable file whose header promises more than ``max_pixels`` its reason."""
    for e in entries:
        info = e.info
        if e.reason is None and info is not None and info.width and info.height \
                and info.width * info.height > max_pixels:
            e.reason = "too_many_pixels"
            e.detail = (f"{info.width}x{info.height} = {info.width * info.height:,} pixels, over "
                        f"the limit of {max_pixels:,}; never decoded (a larger --max-pixels "
                        "or max_pixels= keeps it)")


def assemble(top: str, deep: bool, class_names: list[str], entries: list[Entry],
              warnings: list[dict[str, str]], max_pixels: int = MAX_PIXELS) -> AuditReport:
    usable = sorted((e for e in entries if e.reason is None),
                    key=lambda e: (e.class_index, e.walk_root, e.name))
    skipped = [{"path": rel(top, e.path), "reason": str(e.reason), "detail": e.detail}
               for e in sorted((e for e in entries if e.reason is not None),
                               key=lambda e: e.path)]
    counts = Counter(e.class_index for e in usable)
    classes = {name: counts[i] for i, name in enumerate(class_names)}
    infos = [e.info for e in usable if e.info is not None]
    warnings = warnings + _content_warnings(top, usable)
    warnings += _folder_warnings(top, class_names, classes, infos)
    return AuditReport(
        data_dir=display(top),
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
        max_pixels=max_pixels,
        usable_files=[(e.path, e.class_index) for e in usable],
        class_names=list(class_names),
    )


def _content_warnings(top: str, usable: list[Entry]) -> list[dict[str, str]]:
    warnings = []
    for e in usable:
        info = e.info
        assert info is not None
        promised = expected_format(e.name)
        if promised != info.format:
            keras = " (Keras skips this file)" if not e.name.lower().endswith(KERAS_FORMATS) \
                else ""
            said = f"the extension says {promised}" if promised else "the extension is unknown"
            warnings.append(warning(top, e.path, "extension_mismatch",
                                     f"content is {info.format}, {said}{keras}"))
        if info.width and info.height:
            side, area = min(info.width, info.height), info.width * info.height
            aspect = max(info.width, info.height) / side
            if side < TINY_SIDE_PX or area > HUGE_PIXELS or aspect > EXTREME_ASPECT:
                warnings.append(warning(top, e.path, "extreme_size",
                                         f"{info.width}x{info.height} pixels"))
        if "palette" in info.notes and info.format == "bmp":
            warnings.append(warning(top, e.path, "bmp_palette",
                                     "8-bit colour-palette BMP: TensorFlow ignores the palette "
                                     "and decodes the indices as grey levels"))
    warnings.extend(_duplicate_warnings(top, usable))
    return warnings


def _duplicate_warnings(top: str, usable: list[Entry]) -> list[dict[str, str]]:
    groups: dict[tuple[int, str | None], list[Entry]] = {}
    for e in usable:
        assert e.info is not None
        groups.setdefault((e.info.size_bytes, e.info.digest), []).append(e)
    warnings = []
    for (size, _), group in groups.items():
        if len(group) < 2:
            continue
        if size > HEAD_BYTES:  # the digest covered the head only: confirm on full content
            by_hash: dict[str | None, list[Entry]] = {}
            for e in group:
                by_hash.setdefault(_full_digest(e.path), []).append(e)
            subgroups = [g for h, g in by_hash.items() if h is not None and len(g) > 1]
        else:
            subgroups = [group]
        for sub in subgroups:
            others = [rel(top, e.path) for e in sub[1:]]
            shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3
                                             else "")
            warnings.append(warning(top, sub[0].path, "duplicate",
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
    shown_top = display(top)
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
            warnings.append({"path": display(name), "kind": "empty_class",
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
