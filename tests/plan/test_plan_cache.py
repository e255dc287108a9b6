"""Fingerprints and the plan cache: keys, where it lives, and broken cache files ignored."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from _plans import sample_plan

from autobatch._plan import (
    cache_root,
    combined_key,
    file_fingerprint,
    load_cached_plan,
    model_fingerprint,
    plan_cache_path,
    save_cached_plan,
)


def test_model_fingerprint_without_tensorflow(tmp_path: Path) -> None:
    model_file = tmp_path / "m.keras"
    model_file.write_bytes(b"zip bytes v1")
    first = model_fingerprint(str(model_file), num_classes=3, image_size=(32, 32), channels=3)
    model_file.write_bytes(b"zip bytes v2")
    second = model_fingerprint(str(model_file), num_classes=3, image_size=(32, 32), channels=3)
    assert first != second
    assert file_fingerprint(model_file) == file_fingerprint(model_file)
    a = model_fingerprint("small_cnn", num_classes=3, image_size=(32, 32), channels=3)
    b = model_fingerprint("small_cnn", num_classes=3, image_size=(64, 64), channels=3)
    assert a != b
    assert a == model_fingerprint("small_cnn", num_classes=3, image_size=(32, 32), channels=3)


def test_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path / "explicit"))
    assert cache_root() == tmp_path / "explicit"
    monkeypatch.delenv("AUTOBATCH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "autobatch"


def test_cache_stores_and_finds_by_fingerprints(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path))
    plan = sample_plan()
    path = save_cached_plan(plan)
    assert path == plan_cache_path(plan.fingerprints)
    assert path.parent == tmp_path / "plans"
    hit = load_cached_plan(dict(plan.fingerprints))
    assert hit is not None and hit.cache_hit and hit == plan
    other = {**plan.fingerprints, "data": "changed"}
    assert load_cached_plan(other) is None
    path.write_text("{broken")  # a damaged cache entry is ignored, not fatal
    assert load_cached_plan(plan.fingerprints) is None


def test_combined_key_is_stable_and_order_free() -> None:
    first = combined_key({"model": "m", "data": "d"})
    assert first == combined_key({"data": "d", "model": "m"})
    assert first != combined_key({"model": "m", "data": "other"})
    assert len(first) == 24 and int(first, 16) >= 0
    assert combined_key({"model": "m", "data": "d"}, keys=("model",)) != first


@pytest.mark.parametrize(("content", "reason"), [
    (b"\xff\xfe\x00garbage", "not UTF-8 text"),
    (bytes(range(256)), "not UTF-8 text"),
    (b"{broken", "not valid JSON"),
    (b"[]", "JSON object"),
    ("batch_size", "'batch_size'"),
    ("image_size", "'image_size'"),
    ("pipeline", "missing pipeline"),
])
def test_a_broken_cached_plan_is_ignored_with_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        content: bytes | str, reason: str) -> None:
    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path))
    plan = sample_plan()
    path = save_cached_plan(plan)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:  # the JSON of a real plan with one field broken
        data = json.loads(path.read_text())
        if content == "pipeline":
            del data["pipeline"]
        else:
            data[content] = {"batch_size": -5, "image_size": [-1, 0]}[content]
        path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="autobatch._plan"):
        assert load_cached_plan(dict(plan.fingerprints)) is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    said = warnings[0].getMessage()
    assert said.startswith(f"ignoring unreadable cached plan {path}") and reason in said
    # The tune that follows stores its plan over the broken file, and it is found again.
    save_cached_plan(plan)
    hit = load_cached_plan(dict(plan.fingerprints))
    assert hit is not None and hit == plan and hit.cache_hit


def test_a_folder_in_place_of_the_cached_plan_is_a_miss(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path))
    plan = sample_plan()
    plan_cache_path(plan.fingerprints).mkdir(parents=True)
    assert load_cached_plan(dict(plan.fingerprints)) is None


def test_a_cache_root_that_is_a_file_is_a_miss(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path / "file"))
    assert load_cached_plan(dict(sample_plan().fingerprints)) is None
