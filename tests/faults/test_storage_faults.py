"""Storage and files under faults: the plan cache, the plan's ``output`` and the Optuna study.

Real files, real SQLite, real file systems: a full disk is a small tmpfs (mounted here when
the test runs as root; skipped with the reason otherwise), a read-only cache is a read-only
tmpfs (``chmod`` does not stop root), a cache "folder" that is a regular file, a database
another process holds locked. The probes are simulated (``tests/search/_simulated.py``: the
hardware is the one thing faked), so each tune takes a second or two; the end-to-end rounds
of two real ``autobatch tune`` processes carry the ``slow`` marker.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "search"))
from _simulated import SimulatedTraining  # noqa: E402

from autobatch._plan import Plan, load_cached_plan, plan_cache_path  # noqa: E402
from autobatch._plan._output import PlanOutputError  # noqa: E402
from autobatch._search import _storage  # noqa: E402
from autobatch._search._storage import StorageError  # noqa: E402
from autobatch._search._tune import tune  # noqa: E402

MIB = 1 << 20
BUDGET = 300 * MIB
REPO = Path(__file__).resolve().parents[2]


def _arrays(count: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(count, 16, 16, 3), dtype=np.uint8), np.arange(count) % 2


def _sim() -> SimulatedTraining:
    return SimulatedTraining(100 * MIB, 1 * MIB, BUDGET, best_batch=32, wall_s=0.01)


def _tune(sim: SimulatedTraining | None = None, **options: Any) -> Plan:
    return tune("small_cnn", _arrays(), image_size=16, trials=2, seed=0, try_xla=False,
                runner=sim or _sim(), verbose=0, **options)


def _mount_tmpfs(folder: Path, *options: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a real full or read-only disk) needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(("size=256k", *options)),
                           "tmpfs", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (unmounted at the end)."""
    folder = tmp_path / "small-disk"
    _mount_tmpfs(folder)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(disk: Path) -> None:
    """Fill ``disk`` to the last byte (ENOSPC for the next write)."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        (disk / "probe").write_bytes(b"x" * 8192)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(folder))
    return folder


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# ---------------------------------------------------------------- the plan cache


def test_a_cached_plan_of_garbage_bytes_is_ignored_with_a_warning_and_replaced(
        cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    plan = _tune(storage=f"sqlite:///{cache.parent / 'study.db'}")
    path = plan_cache_path(plan.fingerprints)
    path.write_bytes(b"\xff\xfe\x00garbage \x80\x81 not utf-8")
    with caplog.at_level(logging.WARNING):
        assert load_cached_plan(plan.fingerprints) is None
        again = _tune(storage=f"sqlite:///{cache.parent / 'study.db'}")
    assert any("ignoring unreadable cached plan" in w and str(path) in w
               for w in _warnings(caplog))
    assert not again.cache_hit and again.batch_size == plan.batch_size
    assert Plan.load(path).batch_size == plan.batch_size  # the garbage was replaced


@pytest.mark.parametrize("variable", ["AUTOBATCH_CACHE_DIR", "XDG_CACHE_HOME"])
def test_a_cache_root_that_is_a_file_tunes_uncached_with_an_in_memory_study(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        variable: str) -> None:
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("a file where the cache folder should be\n")
    monkeypatch.delenv("AUTOBATCH_CACHE_DIR", raising=False)
    monkeypatch.setenv(variable, str(a_file))
    output = tmp_path / "out" / "plan.json"
    with caplog.at_level(logging.WARNING):
        plan = _tune(output=output)  # the default storage: it lives in the cache folder
    warnings = _warnings(caplog)
    assert any("could not cache the plan" in w and "Not a directory" in w for w in warnings)
    assert any("in-memory study" in w and "a rerun will not resume" in w for w in warnings)
    assert Plan.load(output).batch_size == plan.batch_size  # output written all the same
    assert plan.study == {} and plan.trials  # the study ran, in memory, and says so
    assert a_file.read_text().startswith("a file where")  # untouched


def test_a_read_only_cache_tunes_uncached_with_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "ro-cache"
    _mount_tmpfs(folder, "ro")
    try:
        monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(folder / "autobatch"))
        with caplog.at_level(logging.WARNING):
            plan = _tune(output=tmp_path / "plan.json")
        warnings = _warnings(caplog)
        assert any("could not cache the plan" in w and "Read-only file system" in w
                   for w in warnings)
        assert any("in-memory study" in w for w in warnings)
        assert Plan.load(tmp_path / "plan.json").batch_size == plan.batch_size
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_cache_disk_still_returns_and_writes_the_plan(
        tmpfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmpfs / "autobatch"))
    (tmpfs / "autobatch" / "plans").mkdir(parents=True)
    _fill(tmpfs)
    with caplog.at_level(logging.WARNING):
        plan = _tune(output=tmp_path / "plan.json")
    warnings = _warnings(caplog)
    assert any("could not cache the plan" in w and "No space left on device" in w
               for w in warnings), warnings
    assert Plan.load(tmp_path / "plan.json").to_dict()["batch_size"] == plan.batch_size
    assert not list((tmpfs / "autobatch" / "plans").iterdir())  # no half-written temporary


# ---------------------------------------------------------------- the plan's output


def test_an_output_on_a_full_disk_is_one_line_and_the_plan_survives_in_the_cache(
        tmpfs: Path, cache: Path) -> None:
    _fill(tmpfs)
    target = tmpfs / "plan.json"
    with pytest.raises(PlanOutputError) as caught:
        _tune(output=target, storage=f"sqlite:///{cache.parent / 'study.db'}")
    message = str(caught.value)
    assert "\n" not in message and "No space left on device" in message
    assert str(target) in message and "output" in message
    kept = caught.value.kept_at
    assert kept is not None and str(kept) in message
    # The finished tune is not lost: it is on the error and in the cache, and a rerun with
    # the same options returns it at once.
    assert Plan.load(kept).batch_size == caught.value.plan.batch_size
    again = _tune(storage=f"sqlite:///{cache.parent / 'study.db'}")
    assert again.cache_hit and again.batch_size == caught.value.plan.batch_size
    assert not target.exists()


def test_an_unwritable_output_and_cache_keep_the_plan_on_the_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(a_file / "cache"))
    with pytest.raises(PlanOutputError) as caught:
        _tune(output=a_file / "plan.json")
    assert caught.value.kept_at is None
    assert "not stored anywhere else" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert caught.value.plan.batch_size >= 1 and caught.value.plan.trials


def test_an_output_that_fails_on_a_cache_hit_names_the_cached_plan(
        cache: Path, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    plan = _tune(storage=storage)
    folder = tmp_path / "plan-is-a-folder.json"
    folder.mkdir()
    with pytest.raises(PlanOutputError) as caught:
        _tune(storage=storage, output=folder)
    assert caught.value.kept_at == plan_cache_path(plan.fingerprints)
    assert "Is a directory" in str(caught.value)


# ---------------------------------------------------------------- the study's storage


@pytest.fixture
def locked_db(tmp_path: Path) -> Iterator[Path]:
    """An SQLite database another process holds an exclusive lock on."""
    path = tmp_path / "locked.db"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time\n"
         f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
         "c.execute('CREATE TABLE t (x)')\nc.execute('BEGIN EXCLUSIVE')\n"
         "c.execute('INSERT INTO t VALUES (1)')\nprint('locked', flush=True)\ntime.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield path
    finally:
        holder.kill()
        holder.wait()


def test_a_locked_named_storage_is_one_line_before_any_probe(
        locked_db: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_storage, "SQLITE_TIMEOUT_S", 0.5)
    sim = _sim()
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        _tune(sim, storage=f"sqlite:///{locked_db}")
    message = str(caught.value)
    assert "database is locked" in message and str(locked_db) in message
    assert "\n" not in message and "storage" in message
    assert caught.value.render(lambda name: "--" + name).count("--storage") == 1
    assert sim.requests == []  # no probe ran
    assert time.monotonic() - started < 20


def test_a_locked_default_storage_falls_back_to_an_in_memory_study(
        locked_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(_storage, "SQLITE_TIMEOUT_S", 0.5)
    cache = tmp_path / "cache-with-a-locked-db"
    cache.mkdir()
    os.replace(locked_db, cache / "optuna.db")  # the holder keeps its lock on the inode
    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(cache))
    with caplog.at_level(logging.WARNING):
        plan = _tune()
    assert any("in-memory study" in w and "database is locked" in w
               for w in _warnings(caplog))
    assert plan.study == {} and plan.trials


def test_a_fresh_named_storage_on_a_full_disk_is_one_line_before_any_probe(
        tmpfs: Path, cache: Path) -> None:
    _fill(tmpfs)
    sim = _sim()
    with pytest.raises(StorageError) as caught:
        _tune(sim, storage=f"sqlite:///{tmpfs / 'study.db'}")
    message = str(caught.value)
    assert "\n" not in message and str(tmpfs / "study.db") in message
    assert "cannot use the Optuna storage" in message
    assert sim.requests == []


class FillsTheDisk(SimulatedTraining):
    """Simulated hardware; after the ceiling's probes the study's disk fills up (real)."""

    def __init__(self, disk: Path) -> None:
        super().__init__(100 * MIB, 1 * MIB, BUDGET, best_batch=32, wall_s=0.01)
        self.disk = disk

    def run(self, request: Any) -> Any:
        if len(self.requests) == 6 and not (self.disk / "filler").exists():
            _fill(self.disk)
        return super().run(request)


def test_a_disk_that_fills_up_during_the_search_is_one_line(tmpfs: Path, cache: Path) -> None:
    storage = f"sqlite:///{tmpfs / 'study.db'}"
    with pytest.raises(StorageError) as caught:
        _tune(FillsTheDisk(tmpfs), storage=storage)
    message = str(caught.value)
    assert "failed during the tune" in message and "\n" not in message
    assert "a rerun resumes" in message


def test_a_storage_url_that_does_not_parse_is_a_usage_error(cache: Path) -> None:
    from autobatch._errors import UsageError

    for url in ("foo://nowhere", "not a url"):
        with pytest.raises(UsageError, match="cannot open Optuna storage"):
            _tune(storage=url)


# ---------------------------------------------------------------- concurrent first use

_OPEN_TOGETHER = """
import sys, time
from pathlib import Path
from autobatch._search import _study
from autobatch._search._study import open_study
if len(sys.argv) > 5:  # Optuna's own way, to show the race this test catches
    import optuna
    _study.make_storage = lambda url, **_: optuna.storages.RDBStorage(url)
folder, me, count = Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
(folder / f"ready-{me}").touch()
while len(list(folder.glob("ready-*"))) < count:  # everyone imported: go together
    time.sleep(0.002)
study = open_study(sys.argv[1], "autobatch-race", seed=0)
study.set_user_attr("opened_by_" + me, True)
"""


def _open_together(folder: Path, count: int, *extra: str) -> list[tuple[int, str]]:
    folder.mkdir()
    url = f"sqlite:///{folder / 'optuna.db'}"
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN_TOGETHER, url, str(folder), str(i),
                               str(count), *extra],
                              stderr=subprocess.PIPE, text=True, cwd=folder)
             for i in range(count)]
    return [(p.wait(120), p.stderr.read() if p.stderr else "") for p in procs]


def test_processes_opening_a_fresh_storage_together_all_succeed(tmp_path: Path) -> None:
    import optuna

    for round_ in range(3):
        folder = tmp_path / f"round{round_}"
        results = _open_together(folder, 3)
        assert all(rc == 0 for rc, _ in results), results
        study = optuna.load_study(study_name="autobatch-race",
                                  storage=f"sqlite:///{folder / 'optuna.db'}")
        assert {f"opened_by_{i}" for i in range(3)} <= set(study.user_attrs)


@pytest.mark.slow
def test_two_tunes_started_together_on_a_fresh_cache_both_exit_0(tmp_path: Path) -> None:
    from conftest import make_image_folder

    data = make_image_folder(tmp_path / "data", {"a": 12, "b": 12}, size=(16, 16))
    env = {**os.environ, "AUTOBATCH_CACHE_DIR": str(tmp_path / "cache"),
           "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "autobatch", "tune", str(data), "--model", "small_cnn",
         "--image-size", "16", "--trials", "1", "--time-budget", "40", "--no-xla", "--seed",
         str(i), "--output", str(tmp_path / f"plan{i}.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
        for i in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-2000:]
        assert "Traceback" not in err
    for i in range(2):
        assert json.loads((tmp_path / f"plan{i}.json").read_text())["batch_size"] >= 1


@pytest.mark.slow
def test_the_cli_prints_a_plan_it_could_not_write_and_exits_1(tmpfs: Path,
                                                              tmp_path: Path) -> None:
    """Output on a full disk, a cache under a regular file (nothing can keep the plan):
    the plan JSON on stdout, one line on stderr, exit 1; no traceback."""
    from conftest import make_image_folder

    data = make_image_folder(tmp_path / "data", {"a": 12, "b": 12}, size=(16, 16))
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    _fill(tmpfs)
    env = {**os.environ, "AUTOBATCH_CACHE_DIR": str(a_file / "cache"),
           "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-m", "autobatch", "tune", str(data), "--model", "small_cnn",
         "--image-size", "16", "--trials", "1", "--time-budget", "40", "--no-xla",
         "--output", str(tmpfs / "plan.json")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "No space left on device" in errors[0]
    assert "--output" in errors[0] and "not stored anywhere else" in errors[0]
    assert any("in-memory study" in line for line in done.stderr.splitlines())
    plan = json.loads(done.stdout)
    assert plan["batch_size"] >= 1 and plan["schema_version"] == 1
