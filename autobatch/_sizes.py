"""The one parser for memory sizes wherever a budget is taken."""

from __future__ import annotations

import re

from autobatch._errors import SizeParseError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}
# "G" and "GB" follow the decimal SI meaning; users who mean 2**30 write GiB.
_SIZE_RE = re.compile(r"^\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[a-zA-Z]*)\s*$")

ACCEPTED_FORMS = "a size such as 4GiB, 3.5G, 800MB or 1024 (bytes), or a fraction such as 0.8"


def parse_memory_size(text: str | int | float, *, limit_bytes: int | None = None) -> int:
    """Parse a memory size into bytes.

    Args:
        text: ``"4GiB"``, ``"3.5G"``, ``"800MB"``, ``"1024"`` (bytes), or a fraction in
            (0, 1] such as ``"0.8"`` meaning that share of ``limit_bytes``.
        limit_bytes: the effective limit a fraction refers to.

    Returns:
        The size in bytes, always positive.

    Raises:
        SizeParseError: the text is none of the accepted forms.
    """
    if isinstance(text, bool):
        raise SizeParseError(f"invalid memory size {text!r}: expected {ACCEPTED_FORMS}")
    raw = str(text)
    match = _SIZE_RE.match(raw)
    if match is None:
        raise SizeParseError(f"invalid memory size {raw!r}: expected {ACCEPTED_FORMS}")
    number = float(match.group("number"))
    unit = match.group("unit").lower()
    if unit not in _UNITS:
        raise SizeParseError(
            f"invalid memory size {raw!r}: unknown unit {match.group('unit')!r}; "
            f"expected {ACCEPTED_FORMS}"
        )
    if unit == "" and "." in match.group("number"):
        if not 0 < number <= 1:
            raise SizeParseError(
                f"invalid memory size {raw!r}: a fraction must lie in (0, 1]; "
                f"expected {ACCEPTED_FORMS}"
            )
        if limit_bytes is None:
            raise SizeParseError(
                f"memory size {raw!r} is a fraction, but no limit is known to take it of; "
                "give an absolute size such as 4GiB"
            )
        return max(1, int(number * limit_bytes))
    size = int(number * _UNITS[unit])
    if size <= 0:
        raise SizeParseError(f"invalid memory size {raw!r}: it must be larger than zero")
    return size


def format_bytes(size_bytes: int | float | None) -> str:
    """Format a byte count for people: ``1.50 GiB``."""
    if size_bytes is None:
        return "-"
    value = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
