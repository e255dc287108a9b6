from __future__ import annotations

import pytest

from autobatch import SizeParseError, UsageError, parse_memory_size
from autobatch._sizes import format_bytes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4GiB", 4 * 1024**3),
        ("4gib", 4 * 1024**3),
        ("3.5G", int(3.5e9)),
        ("800MB", 800_000_000),
        ("800 MiB", 800 * 1024**2),
        ("1024", 1024),
        ("512k", 512_000),
        ("2Ti", 2 * 1024**4),
        (" 16 GB ", 16_000_000_000),
        (2048, 2048),
    ],
)
def test_absolute_sizes(text: str, expected: int) -> None:
    assert parse_memory_size(text) == expected


def test_fraction_is_share_of_limit() -> None:
    assert parse_memory_size("0.8", limit_bytes=1000) == 800
    assert parse_memory_size(".5", limit_bytes=4096) == 2048
    assert parse_memory_size("1.0", limit_bytes=777) == 777


def test_fraction_without_limit_is_an_error() -> None:
    with pytest.raises(SizeParseError, match="fraction"):
        parse_memory_size("0.5")


@pytest.mark.parametrize(
    "text", ["", "abc", "4 parsecs", "-1G", "1.5", "0", "0.0", "GiB", "4GiB5", "1e9", True])
def test_bad_sizes_name_the_accepted_forms(text: object) -> None:
    with pytest.raises(SizeParseError) as info:
        parse_memory_size(text, limit_bytes=10**9)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, UsageError)
    assert "4GiB" in message or "larger than zero" in message or "(0, 1]" in message


def test_format_bytes() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(3 * 1024**3) == "3.00 GiB"
    assert format_bytes(None) == "-"
