"""The data audit: every file on disk is either usable or skipped with one reason.

Every case is built in a temp dir with real image bytes written by Pillow. Unreadable files
need a process without CAP_DAC_OVERRIDE: as root we run those checks through
``setpriv --bounding-set -dac_override,-dac_read_search`` (still uid 0, so Python and the
package stay readable) and predict the in-process results for a privileged reader.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder, write_image

from autobatch._audit import audit, inspect_bytes, keras_loadable_count
from autobatch._cli import main

PRIVILEGED = os.geteuid() == 0  # root reads chmod-000 files unless its capabilities are cut
SETPRIV = shutil.which("setpriv")
NON_UTF8_NAME = os.fsdecode(b"caf\xe9.jpg")


def _encode(mode: str, fmt: str, *, size: tuple[int, int] = (48, 40), seed: int = 0,
            **kw: object) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16))
    elif mode == "P":
        image = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert("P")
    else:
        channels = {"L": 1, "RGB": 3, "RGBA": 4, "CMYK": 4}[mode]
        shape = (h, w) if channels == 1 else (h, w, channels)
        image = Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode=mode)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _animated_webp() -> bytes:
    from PIL import Image

    rng = np.random.default_rng(1)
    frames = [Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
              for _ in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:])
    return buf.getvalue()


HEIC_HEAD = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)


def _bad_crc_png() -> bytes:
    data = bytearray(_encode("RGB", "PNG", seed=31))
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF  # header and IEND stay intact; only decoding notices
    return bytes(data)


def build_every_case(root: Path) -> Path:
    """One folder holding every case of issue 3 (see ``expected_every_case``)."""
    def put(rel: str, data: bytes) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    jpeg = _encode("RGB", "JPEG", seed=1)
    put("root.jpg", _encode("RGB", "JPEG", seed=2))
    put("README.txt", b"these are my training images\n")
    put(".DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(32))
    put(".cache/img.jpg", _encode("RGB", "JPEG", seed=3))
    put("Zebra/Z1.JPG", _encode("RGB", "JPEG", seed=4))
    put("cats/c0.jpg", jpeg)
    put("cats/c1.jpg", _encode("RGB", "JPEG", seed=5))
    put("cats/c2.jpg", _encode("RGB", "JPEG", seed=6))
    put("cats/prog.jpg", _encode("RGB", "JPEG", seed=7, progressive=True))
    put("cats/cmyk.jpg", _encode("CMYK", "JPEG", seed=8))
    put("cats/sub/deep16.png", _encode("I;16", "PNG", seed=9))
    os.symlink("..", root / "cats/sub/back")  # a folder loop
    put("cats/trunc.jpg", _encode("RGB", "JPEG", seed=10)[:400])
    put("cats/empty.jpg", b"")
    put("cats/._c0.jpg", b"\x00\x05\x16\x07" + bytes(60))  # macOS AppleDouble junk
    put("cats/.thumbs/t.jpg", _encode("RGB", "JPEG", seed=11))
    put("cats/photo.tif", _encode("RGB", "TIFF", seed=12))
    put("cats/locked.jpg", _encode("RGB", "JPEG", seed=13))
    put("cats/locked_dir/l.jpg", _encode("RGB", "JPEG", seed=14))
    put(os.path.join("cats", NON_UTF8_NAME), _encode("RGB", "JPEG", seed=15))
    rgba = _encode("RGBA", "PNG", seed=16)
    put("dogs/rgba.png", rgba)
    put("dogs/dup.png", rgba)
    put("dogs/gray.png", _encode("L", "PNG", seed=17))
    put("dogs/pic.gif", _encode("P", "GIF", seed=18))
    put("dogs/pic.bmp", _encode("RGB", "BMP", seed=19))
    put("dogs/pic.webp", _encode("RGB", "WEBP", seed=20))
    put("dogs/png_named.jpg", _encode("RGB", "PNG", seed=21))
    os.symlink("../cats/c0.jpg", root / "dogs/link.jpg")
    put("dogs/anim.webp", _animated_webp())
    put("dogs/trunc.png", _encode("RGB", "PNG", seed=22)[:-30])
    put("dogs/badcrc.png", _bad_crc_png())
    put("dogs/notes.txt", b"not an image\n")
    put("dogs/fake.png", b"<html>oops</html>\n")
    put("dogs/x.heic", HEIC_HEAD)
    os.mkfifo(root / "dogs/pipe.jpg")
    os.symlink("nowhere.jpg", root / "dogs/dangling.jpg")
    os.symlink("loopb.jpg", root / "dogs/loopa.jpg")
    os.symlink("loopa.jpg", root / "dogs/loopb.jpg")
    os.chmod(root / "cats/locked.jpg", 0)
    os.chmod(root / "cats/locked_dir", 0)
    return root


def expected_every_case(*, privileged: bool, deep: bool) -> dict:
    """The true composition of ``build_every_case`` as each reader sees it."""
    cats = 7 + (2 if privileged else 0)
    dogs = 8 + (0 if deep else 1)  # badcrc.png passes the header check, fails to decode
    skipped = {"unsupported_format": 3, "corrupt": 2 + (1 if deep else 0), "empty": 1,
               "not_an_image": 3, "root_level": 2, "hidden": 4, "broken_link": 3}
    if not privileged:
        skipped["unreadable"] = 2  # locked.jpg and the locked_dir/ folder
    return {
        "classes": {"Zebra": 1, "cats": cats, "dogs": dogs},
        "skipped_by_reason": skipped,
        "keras_loadable": 27 + (1 if privileged else 0),  # os.walk drops an unlistable folder
        "usable_images": 1 + cats + dogs,
        "files_on_disk": 1 + cats + dogs + sum(skipped.values()),
    }


def _check_every_case(data: dict, expected: dict) -> None:
    assert data["classes"] == expected["classes"]
    assert data["skipped_by_reason"] == {k: v for k, v in expected["skipped_by_reason"].items()}
    assert data["keras_loadable"] == expected["keras_loadable"]
    assert data["usable_images"] == expected["usable_images"]
    assert data["files_on_disk"] == expected["files_on_disk"]
    assert Counter(item["reason"] for item in data["skipped"]) == Counter(
        expected["skipped_by_reason"])
    kinds = Counter(w["kind"] for w in data["warnings"])
    assert kinds["extension_mismatch"] == 1 and kinds["duplicate"] == 2
    assert kinds["mixed_channels"] == 1 and kinds["symlink_loop"] == 1
    reasons = {item["path"]: item["reason"] for item in data["skipped"]}
    assert reasons["dogs/anim.webp"] == "unsupported_format"
    assert reasons["cats/._c0.jpg"] == "hidden" and reasons["dogs/loopa.jpg"] == "broken_link"
    assert reasons["dogs/pipe.jpg"] == "not_an_image" and reasons["root.jpg"] == "root_level"


@pytest.fixture
def every_case(tmp_path: Path) -> Path:
    return build_every_case(tmp_path / "data")


# ----------------------------------------------------------------------------- Must show


def test_must_show_deep_json_in_process(every_case: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["audit", str(every_case), "--deep", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert data["deep"] is True
    _check_every_case(data, expected_every_case(privileged=PRIVILEGED, deep=True))
    assert {item["path"]: item["reason"] for item in data["skipped"]}["dogs/badcrc.png"] == \
        "corrupt"


@pytest.mark.skipif(PRIVILEGED and SETPRIV is None, reason="root without setpriv cannot "
                    "drop CAP_DAC_OVERRIDE to make a file unreadable")
def test_must_show_deep_json_subprocess_unprivileged(every_case: Path) -> None:
    command = [sys.executable, "-m", "autobatch", "audit", str(every_case), "--deep", "--json"]
    if PRIVILEGED:
        command = [SETPRIV, "--bounding-set", "-dac_override,-dac_read_search", *command]
    proc = subprocess.run(command, capture_output=True, timeout=300)
    assert proc.returncode == 1, proc.stderr.decode()[-2000:]
    data = json.loads(proc.stdout)
    _check_every_case(data, expected_every_case(privileged=False, deep=True))
    unreadable = {item["path"] for item in data["skipped"] if item["reason"] == "unreadable"}
    assert unreadable == {"cats/locked.jpg", "cats/locked_dir/"}


def test_header_audit_every_case(every_case: Path) -> None:
    report = audit(every_case)
    data = report.to_dict()
    _check_every_case(data, expected_every_case(privileged=PRIVILEGED, deep=False))
    json.dumps(data, ensure_ascii=False).encode("utf-8")  # valid UTF-8 despite the bad name
    assert report.class_names == ["Zebra", "cats", "dogs"]  # Keras' (code-point) order
    assert len(report.usable_files) == report.usable_images
    labels = [label for _, label in report.usable_files]
    assert labels == sorted(labels)
    assert all(os.path.isabs(p) for p, _ in report.usable_files)
    assert any(os.fsencode(p).endswith(b"caf\xe9.jpg") for p, _ in report.usable_files)
    sentence = report.summary_sentence()
    assert sentence.startswith(f"Training will use {report.usable_images} of "
                               f"{report.files_on_disk} image files on disk; "
                               f"{len(report.skipped)} skipped (")
    assert "3 broken_link" in sentence and "4 hidden" in sentence
    assert report.channels == {"1": 2, "3": report.usable_images - 4, "4": 2}


def test_human_output_groups_reasons(every_case: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["audit", str(every_case)]) == 1
    out = capsys.readouterr().out
    for reason in ("broken_link", "hidden", "root_level", "unsupported_format", "corrupt"):
        assert reason in out
    assert "Training will use" in out and "Keras would index" in out


# ------------------------------------------------------------------ Keras' own behaviour


def test_keras_loadable_matches_keras(every_case: Path) -> None:
    """Our mirror of Keras' indexing rules against the real thing, tricky folder included."""
    import keras

    # Keras cannot turn the surrogate-escaped name into a tensor; compare without it, and
    # check its count on the full folder through index_directory (no tensors there).
    from keras.src.utils import dataset_utils
    from keras.src.utils.image_dataset_utils import ALLOWLIST_FORMATS

    paths, _, _ = dataset_utils.index_directory(str(every_case), "inferred",
                                                formats=ALLOWLIST_FORMATS, shuffle=False,
                                                verbose=False)
    assert keras_loadable_count(str(every_case)) == len(paths)
    (every_case / "cats" / NON_UTF8_NAME).unlink()
    dataset = keras.utils.image_dataset_from_directory(str(every_case), shuffle=False,
                                                       verbose=False)
    report = audit(every_case)
    assert report.keras_loadable == len(dataset.file_paths)
    assert report.class_names == dataset.class_names
    # Training's order is Keras' order (shuffle=False) restricted to the usable files.
    usable = {p for p, _ in report.usable_files}
    keras_order = [p for p in dataset.file_paths if p in usable]
    ours = [p for p, _ in report.usable_files if p in set(dataset.file_paths)]
    assert ours == keras_order


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(("mode", "fmt", "kw", "channels"), [
    ("RGB", "JPEG", {}, 3), ("RGB", "JPEG", {"progressive": True}, 3),
    ("CMYK", "JPEG", {}, 3), ("L", "JPEG", {}, 1), ("RGB", "PNG", {}, 3),
    ("RGBA", "PNG", {}, 4), ("L", "PNG", {}, 1), ("I;16", "PNG", {}, 1),
    ("P", "PNG", {"transparency": 0}, 4), ("P", "GIF", {}, 3), ("RGB", "BMP", {}, 3),
    ("RGBA", "BMP", {}, 4), ("RGB", "WEBP", {}, 3), ("RGB", "WEBP", {"lossless": True}, 3),
    ("RGBA", "WEBP", {}, 4),
])
def test_decodable_formats_and_their_truncations(mode: str, fmt: str, kw: dict,
                                                 channels: int) -> None:
    data = _encode(mode, fmt, **kw)
    info = inspect_bytes(data)
    assert info.problem is None, info.detail
    assert (info.width, info.height, info.channels) == (48, 40, channels)
    assert info.format == {"JPEG": "jpeg", "PNG": "png", "GIF": "gif", "BMP": "bmp",
                           "WEBP": "webp"}[fmt]
    assert inspect_bytes(data[: len(data) * 2 // 3]).problem == "corrupt"


@pytest.mark.parametrize(("data", "reason", "fmt"), [
    (_encode("RGB", "TIFF"), "unsupported_format", "tiff"),
    (_encode("RGB", "ICO"), "unsupported_format", "ico"),
    (_encode("RGB", "PPM"), "unsupported_format", "pnm"),
    (HEIC_HEAD, "unsupported_format", "heif"),
    (b"8BPS\x00\x01" + bytes(40), "unsupported_format", "psd"),
    (_animated_webp(), "unsupported_format", "webp"),
    (_encode("P", "BMP").replace(b"\x08\x00", b"\x01\x00", 1), "unsupported_format", "bmp"),
    (_encode("RGB", "BMP") + b"\x00\x00", "corrupt", "bmp"),  # TF wants the exact size
    (_encode("RGB", "PDF"), "not_an_image", None),
    (b"just text", "not_an_image", None),
    (b"", "empty", None),
])
def test_skipped_content(data: bytes, reason: str, fmt: str | None) -> None:
    info = inspect_bytes(data)
    assert (info.problem, info.format) == (reason, fmt)
    assert info.detail


def test_header_verdicts_agree_with_tensorflow() -> None:
    """The header rules predict what tf.io.decode_image does (static images)."""
    import tensorflow as tf

    cases = [_encode(m, f, seed=i, **kw) for i, (m, f, kw) in enumerate([
        ("RGB", "JPEG", {}), ("CMYK", "JPEG", {}), ("RGBA", "PNG", {}), ("P", "PNG", {}),
        ("P", "GIF", {}), ("RGB", "BMP", {}), ("L", "BMP", {}), ("RGB", "WEBP", {}),
        ("RGB", "TIFF", {})])]
    cases += [c[:-2] for c in cases] + [c + bytes(8) for c in cases]
    for data in cases:
        info = inspect_bytes(data)
        try:
            decoded = tf.io.decode_image(data, expand_animations=False)
            tf_channels = int(decoded.shape[-1])
        except (tf.errors.InvalidArgumentError, ValueError):
            tf_channels = None
        assert (info.problem is None) == (tf_channels is not None), (info, data[:12])
        if tf_channels is not None:
            assert info.channels == tf_channels


# ------------------------------------------------------------------------ folder rules


def test_unlabeled_flat_folder(tmp_path: Path) -> None:
    for i in range(3):
        write_image(tmp_path / f"img{i}.png", fmt="PNG", seed=i)
    report = audit(tmp_path)
    assert report.class_names == [] and report.classes == {}
    assert report.usable_images == 3 and not report.skipped
    assert {label for _, label in report.usable_files} == {0}
    assert report.keras_loadable == 0
    assert report.class_imbalance_ratio is None
    assert [w["kind"] for w in report.warnings] == ["unlabeled"]


def test_single_and_empty_class_warnings(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "one", {"only": 2})
    kinds = [w["kind"] for w in audit(tmp_path / "one").warnings]
    assert kinds == ["single_class"]
    make_image_folder(tmp_path / "two", {"a": 3, "b": 1})
    (tmp_path / "two" / "c").mkdir()
    report = audit(tmp_path / "two")
    assert report.classes == {"a": 3, "b": 1, "c": 0}
    assert [w["kind"] for w in report.warnings] == ["empty_class"]
    assert report.class_imbalance_ratio is None
    shutil.rmtree(tmp_path / "two" / "c")
    assert audit(tmp_path / "two").class_imbalance_ratio == 3.0


def test_clean_folder_exits_zero(image_folder: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["audit", str(image_folder), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["usable_images"] == 23 == data["files_on_disk"] == data["keras_loadable"]
    assert data["classes"] == {"birds": 5, "cats": 10, "dogs": 8}
    assert data["class_imbalance_ratio"] == 2.0
    assert data["image_sizes"]["width"] == {"min": 40, "max": 40, "median": 40}


def test_linked_folder_is_followed_once(tmp_path: Path) -> None:
    outside = make_image_folder(tmp_path / "outside", {"x": 2}) / "x"
    data = make_image_folder(tmp_path / "data", {"a": 1, "b": 1})
    os.symlink(outside, data / "a" / "more")
    os.symlink(outside, data / "b" / "again")  # same folder: not scanned twice
    os.symlink(data / "b", data / "a" / "to_b")  # another class: never relabelled
    report = audit(data)
    assert report.classes == {"a": 3, "b": 1}
    assert Counter(w["kind"] for w in report.warnings)["symlink_loop"] == 2


def test_duplicates_beyond_the_head_are_confirmed(tmp_path: Path) -> None:
    big = _encode("RGB", "PNG", size=(200, 200), seed=3)  # > 64 KiB of noise
    assert len(big) > 64 * 1024
    for name in ("a1.png", "a2.png"):
        (tmp_path / "a").mkdir(exist_ok=True)
        (tmp_path / "a" / name).write_bytes(big)
    other = bytearray(big)
    other[-20] ^= 1  # same size, same head, different content
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "b1.png").write_bytes(bytes(other))
    duplicates = [w for w in audit(tmp_path).warnings if w["kind"] == "duplicate"]
    assert len(duplicates) == 1 and duplicates[0]["path"] == "a/a1.png"


def test_file_changing_during_scan(image_folder: Path) -> None:
    """Files deleted, emptied or replaced after listing: reported, the scan goes on."""
    victims = sorted((image_folder / "cats").iterdir())

    def progress(done: int, total: int, phase: str) -> None:
        if done == 0:
            victims[0].unlink()
            victims[1].write_bytes(b"")
            victims[2].unlink()
            victims[2].mkdir()  # a file replaced by a folder

    report = audit(image_folder, progress=progress)
    reasons = {item["path"]: item["reason"] for item in report.skipped}
    assert reasons == {"cats/" + victims[0].name: "unreadable",
                       "cats/" + victims[1].name: "empty",
                       "cats/" + victims[2].name: "unreadable"}
    assert report.usable_images == 20


def test_extreme_sizes_and_palette_bmp(tmp_path: Path) -> None:
    write_image(tmp_path / "a" / "thin.png", size=(400, 8), fmt="PNG")
    (tmp_path / "a" / "pal.bmp").write_bytes(_encode("P", "BMP"))
    write_image(tmp_path / "b" / "ok.jpg")
    kinds = {(w["path"], w["kind"]) for w in audit(tmp_path).warnings}
    assert ("a/thin.png", "extreme_size") in kinds and ("a/pal.bmp", "bmp_palette") in kinds


# --------------------------------------------------------------------- errors, no TF


@pytest.mark.parametrize("case", ["missing", "a_file", "empty_dir", "only_junk"])
def test_usage_errors_exit_2_without_traceback(tmp_path: Path, case: str,
                                               capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "target"
    if case == "a_file":
        target.write_bytes(b"x")
    elif case == "empty_dir":
        target.mkdir()
    elif case == "only_junk":
        (target / "a").mkdir(parents=True)
        (target / "a" / "x.jpg").write_bytes(b"")
    assert main(["audit", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("autobatch audit: error: ")
    assert "Traceback" not in err[0]


@pytest.mark.skipif(PRIVILEGED and SETPRIV is None, reason="needs setpriv to drop root's "
                    "CAP_DAC_OVERRIDE")
def test_unreadable_file_and_folder(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", {"a": 2, "b": 2})
    os.chmod(data / "a" / "img_0000.jpg", 0)
    os.chmod(data / "b", 0o311)  # listable? no: execute only, so scandir fails
    code = ("import json, sys; from autobatch import audit; "
            "print(json.dumps(audit(sys.argv[1]).to_dict()))")
    command = [sys.executable, "-c", code, str(data)]
    if PRIVILEGED:
        command = [SETPRIV, "--bounding-set", "-dac_override,-dac_read_search", *command]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert {(s["path"], s["reason"]) for s in result["skipped"]} == {
        ("a/img_0000.jpg", "unreadable"), ("b/", "unreadable")}
    assert result["classes"] == {"a": 1, "b": 0}


def test_header_audit_never_imports_tensorflow(every_case: Path) -> None:
    code = ("import sys; import autobatch; from autobatch._cli import main; "
            "r = autobatch.audit(sys.argv[1]); rc = main(['audit', sys.argv[1], '--json']); "
            "assert rc == 1, rc; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]; "
            "print('IMPORTED', bad)")
    proc = subprocess.run([sys.executable, "-c", code, str(every_case)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "IMPORTED []" in proc.stdout


def test_file_source_uses_the_audit(every_case: Path) -> None:
    from autobatch._data import FileSource

    source = FileSource.from_directory(every_case)
    report = source.audit
    assert list(source.paths) == [p for p, _ in report.usable_files]
    assert source.class_names == ("Zebra", "cats", "dogs")
