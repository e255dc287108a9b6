"""Hostile files in an image folder (issue #23): a decompression bomb is skipped by the audit
with its own reason and never decoded by anything built on the folder; file names with
control characters never break or colour a line of the terminal output."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import pytest
from conftest import make_image_folder

import autobatch
from autobatch._audit import MAX_PIXELS
from autobatch._cli import main
from autobatch._cli._common import shown
from autobatch._data import resolve_source
from autobatch._data._folder import FileSource
from autobatch._errors import UsageError

BOMB_SIDE = 20_000  # 400 megapixels: 1.2 GB of RGB once decoded


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png_bomb(path: Path, side: int = BOMB_SIDE) -> Path:
    """A real, valid 1-bit greyscale PNG of ``side`` x ``side`` black pixels: a few tens of
    kilobytes on disk that ``decode_image(channels=3)`` turns into side*side*3 bytes."""
    row = b"\x00" + bytes((side + 7) // 8)  # filter byte "none", then the packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
                     + _chunk(b"IEND", b""))
    return path


@pytest.fixture
def bomb_folder(tmp_path: Path) -> Path:
    data = make_image_folder(tmp_path / "data", {"a": 6, "b": 5}, size=(16, 16))
    write_png_bomb(data / "a" / "bomb.png")
    return data


def test_the_bomb_is_a_real_png_over_the_default_limit(bomb_folder: Path) -> None:
    from PIL import Image

    bomb = bomb_folder / "a" / "bomb.png"
    assert bomb.stat().st_size < 200_000  # tiny on disk ...
    Image.MAX_IMAGE_PIXELS = None  # (our own check below, not Pillow's)
    try:
        with Image.open(bomb) as image:  # ... and a valid PNG Pillow reads the header of
            assert image.size == (BOMB_SIDE, BOMB_SIDE)
    finally:
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS // 2
    assert BOMB_SIDE * BOMB_SIDE > MAX_PIXELS
    # The default admits every single camera frame up to 150 MP (GFX100, Phase One IQ4).
    assert 14_204 * 10_652 < MAX_PIXELS


def test_audit_skips_the_bomb_with_its_own_reason(bomb_folder: Path) -> None:
    report = autobatch.audit(bomb_folder)
    assert report.skipped_by_reason == {"too_many_pixels": 1}
    (item,) = report.skipped
    assert item["path"] == "a/bomb.png" and item["reason"] == "too_many_pixels"
    assert "20000x20000 = 400,000,000 pixels" in item["detail"]
    assert report.usable_images == 11 and report.classes == {"a": 6, "b": 5}
    assert all(not p.endswith("bomb.png") for p, _ in report.usable_files)
    assert report.to_dict()["max_pixels"] == MAX_PIXELS
    assert "1 too_many_pixels" in report.summary_sentence()


def test_the_limit_is_an_option(bomb_folder: Path) -> None:
    raised = autobatch.audit(bomb_folder, max_pixels=BOMB_SIDE * BOMB_SIDE)
    assert raised.usable_images == 12 and not raised.skipped  # at the limit: usable
    lowered = autobatch.audit(bomb_folder, max_pixels=16 * 16 - 1)
    assert lowered.skipped_by_reason == {"too_many_pixels": 12} and lowered.usable_images == 0
    source = FileSource.from_directory(bomb_folder, max_pixels=BOMB_SIDE * BOMB_SIDE)
    assert any(p.endswith("bomb.png") for p in source.paths)
    for bad in (0, -5, 2.5, True, "big"):
        with pytest.raises(UsageError, match="max_pixels must be a positive whole number"):
            autobatch.audit(bomb_folder, max_pixels=bad)  # type: ignore[arg-type]


def test_sources_built_on_the_folder_never_hold_the_bomb(bomb_folder: Path) -> None:
    # tune (TuneJob), the probe worker (its data index) and fit all index the folder through
    # resolve_source -> FileSource.from_directory: the bomb is not among the paths they read.
    source = resolve_source(bomb_folder)
    assert source.num_examples == 11
    assert not [p for p in source.paths if p.endswith("bomb.png")]  # type: ignore[attr-defined]
    assert source.audit.skipped_by_reason == {"too_many_pixels": 1}  # type: ignore[attr-defined]


def test_tune_and_fit_take_the_limit_too(bomb_folder: Path) -> None:
    # resolve_source is where tune (open_source) and fit index a folder: max_pixels= reaches
    # the audit, and only a folder takes it.
    raised = resolve_source(bomb_folder, max_pixels=BOMB_SIDE * BOMB_SIDE)
    assert raised.num_examples == 12
    assert raised.fingerprint() != resolve_source(bomb_folder).fingerprint()
    import numpy as np

    arrays = (np.zeros((4, 8, 8, 3), "uint8"), np.array([0, 1, 0, 1]))
    with pytest.raises(UsageError, match="max_pixels applies to image folders only"):
        resolve_source(arrays, max_pixels=100)
    for function in (autobatch.tune, autobatch.fit):
        with pytest.raises(UsageError, match="max_pixels must be a positive whole number"):
            function("small_cnn", bomb_folder, image_size=16, max_pixels=0)


@pytest.mark.parametrize("command", ["tune", "fit"])
def test_cli_tune_and_fit_take_max_pixels(
        bomb_folder: Path, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = [command, str(bomb_folder), "--model", "small_cnn", "--image-size", "16",
            "--max-pixels", "0"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--max-pixels must be a positive whole number" in err


def test_fit_on_the_folder_trains_on_the_rest_and_never_decodes_the_bomb(
        bomb_folder: Path) -> None:
    import resource

    from _fitmodels import counting_model

    from autobatch._plan import Plan

    plan = Plan(batch_size=4, num_examples=11, ceiling_batch_size=8, image_size=(16, 16))
    model = counting_model((16, 16, 3), 2)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    start = time.monotonic()
    history = autobatch.fit(model, bomb_folder, epochs=1, plan=plan, verbose=0)
    assert time.monotonic() - start < 60
    assert int(model.seen.numpy()) == 11 and history.coverage.complete
    # Decoding the bomb once would add 1.2 GB to the peak; training 11 tiny images adds far less.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 600_000


def test_cli_audit_shows_the_reason_and_takes_max_pixels(
        bomb_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(bomb_folder)]) == 1
    out = capsys.readouterr().out
    assert "too_many_pixels: 1" in out and "a/bomb.png" in out
    assert main(["audit", str(bomb_folder), "--max-pixels", str(BOMB_SIDE**2)]) == 0
    capsys.readouterr()
    assert main(["audit", str(bomb_folder), "--max-pixels", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--max-pixels must be a positive whole number" in err


# ---------------------------------------------------------------- control characters


def test_shown_escapes_control_characters_and_markup() -> None:
    assert shown("a\nb") == "a\\nb"
    assert shown("red\x1b[31m.jpg") == "red\\x1b[31m.jpg"
    assert shown("tab\tcr\rdel\x7fcsi\x9b") == "tab\\tcr\\rdel\\x7fcsi\\x9b"
    assert shown("left\u202eright\u2028") == "left\\u202eright\\u2028"
    assert shown("café [b]ok[/b].jpg") == "café \\[b]ok\\[/b].jpg"


def test_cli_audit_output_escapes_control_characters_in_file_names(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_image_folder(tmp_path / "da\x1b[1mta", {"a": 2, "b\nclass": 2}, size=(16, 16))
    (data / "a" / "evil\nname.txt").write_bytes(b"not an image")
    (data / "a" / "red\x1b[31mname.txt").write_bytes(b"not an image")
    # A byte-identical copy: its name appears inside another file's warning message.
    (data / "b\nclass" / "copy\x1b[2J.jpg").write_bytes((data / "a" / "img_0000.jpg")
                                                         .read_bytes())
    assert main(["audit", str(data)]) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out  # nothing colours, clears or moves the terminal
    lines = out.splitlines()
    assert "    a/evil\\nname.txt  no known image signature" in lines
    assert "    a/red\\x1b[31mname.txt  no known image signature" in lines
    assert any("byte-identical" in line and "b\\nclass/copy\\x1b[2J.jpg" in line
               for line in lines)
    # The title holds the folder's path (rich may fold a long one at the table's width).
    assert "da\\x1b[1mta" in "".join(out.split())
    assert any("b\\nclass 3" in line for line in lines)  # the class name, in the table
    # Every line is one of the output's own: no name spills onto a line of its own.
    assert not [line for line in lines if line.startswith(("name.txt", "class"))]
