"""Everything the search asks of the data source, in one place (to become ``Source`` calls):
resolving and checking it, its example and class counts, its fingerprint, whether it holds
8-bit images (the pixels decision), and its records in the plan."""

from __future__ import annotations

from typing import Any

from autobatch._errors import UsageError
from autobatch._probe import ProbeRunner


def open_source(data: Any) -> Any:
    """The source of ``data``; a missing folder, one class or one image is an error here,
    before anything else (one class has nothing to tune for)."""
    from autobatch._sources import check_learnable, resolve_source

    source = resolve_source(data)
    check_learnable(source)
    return source


def examples_per_epoch(source: Any, num_examples: int | None) -> int:
    """The source's number of examples, else ``num_examples`` (needed for generators)."""
    count = source.num_examples if source.num_examples is not None else num_examples
    if not count:
        raise UsageError("the number of examples per epoch is unknown; pass num_examples=N")
    return int(count)


def source_num_classes(source: Any) -> int | None:
    num_classes: int | None = getattr(source, "num_classes", None)
    return num_classes


def data_fingerprint(source: Any) -> str:
    fingerprint: str = source.fingerprint()
    return fingerprint


def require_8bit_for_uint8(pixels: str, source: Any) -> None:
    """``pixels="uint8"`` needs 8-bit images: refused before any probe."""
    from autobatch._pipeline import has_8bit_pixels

    if pixels == "uint8" and not has_8bit_pixels(source):
        raise UsageError("{param} uint8 needs 8-bit images (an image folder or uint8 arrays); "
                         "use {param} float32", parameter="pixels")


def decide_pixels(requested: str, runner: ProbeRunner, source: Any) -> tuple[str, str]:
    """The pixels' dtype for the study and why (see ``tune``'s ``pixels``)."""
    from autobatch._pipeline import has_8bit_pixels

    if requested == "float32":
        return "float32", "asked for (--pixels float32)"
    if not has_8bit_pixels(source):  # (asked-for uint8 on such data was refused up front)
        return "float32", "the data are not 8-bit images"
    if not runner.accepts_uint8:
        if requested == "uint8":
            raise UsageError("the model's output changes when given uint8 images (its first "
                             "operation does not cast them); use {param} float32",
                             parameter="pixels")
        return "float32", "the model's output changes when given uint8 images"
    return "uint8", ("8-bit images and a model that casts its input: a quarter of the bytes "
                     "through cache, shuffle, batch and prefetch")


def source_is_folder(source: Any) -> bool:
    return getattr(source, "kind", None) == "directory"


def data_summary(source: Any) -> dict[str, Any]:
    kind = getattr(source, "kind", "unknown")
    return {
        "kind": kind,
        "path": getattr(source, "root", None),
        "class_names": list(getattr(source, "class_names", ()) or ()),
    }


def audit_summary(source: Any) -> dict[str, Any] | None:
    report = getattr(source, "audit", None)
    if report is None:
        return None
    for name in ("summary", "to_dict"):
        fn = getattr(report, name, None)
        if callable(fn):
            try:
                value = fn()
                return value if isinstance(value, dict) else None
            except Exception:  # the audit summary is informative only
                return None
    return None
