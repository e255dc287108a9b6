"""Faults during a tune: a worker killed mid-probe, a tune killed mid-trial.

Real processes and signals: the probe worker is killed with SIGKILL while the untuned
default runs, and a whole ``autobatch tune`` process is killed while a trial runs; the
study in SQLite is then read back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import make_image_folder

from autobatch._search._tune import TuneEvent, tune

# 48 images of 32 px: a budget far above what they need, so the ceiling is every example
# (capped by the data), whatever the machine; a crash misread as "does not fit" shows at once.
IMAGES = {"a": 16, "b": 16, "c": 16}


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(folder))
    return folder


def test_a_worker_killed_during_the_baseline_is_measured_again(tmp_path: Path,
                                                                cache: Path) -> None:
    from autobatch._probe import SubprocessProbeRunner

    data = make_image_folder(tmp_path / "data", IMAGES, size=(32, 32))
    runner = SubprocessProbeRunner("small_cnn", data, image_size=32,
                                   host_memory_budget_bytes=8 << 30,
                                   fresh_worker_for_smaller_batch=False)
    killed: list[int] = []

    def kill_once_ready() -> None:
        # Kill the first worker as soon as it is ready, i.e. inside the baseline probe.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and runner.last_ready is None:
            time.sleep(0.05)
        pid = runner.worker_pid
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    events: list[TuneEvent] = []
    killer = threading.Thread(target=kill_once_ready, daemon=True)
    killer.start()
    try:
        plan = tune("small_cnn", data, image_size=32, trials=1, seed=0, try_xla=False,
                    runner=runner, on_event=events.append, use_cache=False)
    finally:
        runner.close()
        killer.join(timeout=5)
    assert killed, "the worker was never killed"
    # The ceiling is every example, as without the kill; the crash was not read as memory.
    assert plan.ceiling_batch_size == 48
    assert plan.ceiling["capped_by"] == "num_examples"
    # The baseline was measured again in a fresh worker and is a real reading.
    assert any("measuring again" in e.message for e in events if e.phase == "baseline")
    assert plan.baseline["outcome"] == "ok" and plan.baseline["examples_per_s"] > 0
    assert not runner.work_dir.exists()


def _running_trials(storage: str) -> list[int]:
    """Numbers of the RUNNING trials, read with sqlite3 itself: opening Optuna's storage here
    while the tune creates its schema would race it (both create the tables)."""
    import sqlite3

    path = storage.removeprefix("sqlite:///")
    if not os.path.exists(path):
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                                timeout=10)) as db:
            rows = db.execute("SELECT number FROM trials WHERE state = 'RUNNING'").fetchall()
    except sqlite3.OperationalError:  # no tables yet, or busy
        return []
    return [int(number) for (number,) in rows]


def test_a_tune_killed_mid_trial_leaves_no_running_trial_after_a_rerun(
        tmp_path: Path, cache: Path) -> None:
    import optuna

    data = make_image_folder(tmp_path / "data", IMAGES, size=(32, 32))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    code = (
        "import sys\n"
        "import autobatch._search._tune as tune_module\n"
        "tune_module.TRIAL_MIN_TIME_S = 8.0\n"  # long trials: the kill lands inside one
        "from autobatch._search._tune import tune\n"
        "def on_event(e):\n"
        "    if e.phase == 'search' and e.trial == 1:\n"
        "        print('TRIAL-DONE', flush=True)\n"
        f"tune('small_cnn', {str(data)!r}, image_size=32, trials=6, seed=0, try_xla=False,\n"
        f"     storage={storage!r}, measure_baseline=False, use_cache=False,\n"
        "     on_event=on_event)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True,
                            # A SIGKILL leaves its temporary folders: keep them in tmp_path.
                            env={**os.environ, "AUTOBATCH_CACHE_DIR": str(cache),
                                 "TMPDIR": str(tmp_path)})
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "TRIAL-DONE" in line:
                break
        # The second trial is asked right after the first is told: wait until it runs.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _running_trials(storage):
            time.sleep(0.1)
        assert _running_trials(storage), "no trial was running to be killed"
        time.sleep(1.0)  # well inside the trial's 8 s
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    stale = _running_trials(storage)
    assert len(stale) == 1
    # The rerun fails the dead process's trial before it continues, and leaves none running.
    events: list[TuneEvent] = []
    plan = tune("small_cnn", data, image_size=32, trials=3, seed=0, try_xla=False,
                storage=storage, measure_baseline=False, use_cache=False,
                on_event=events.append)
    assert any("left running" in e.message for e in events)
    assert not _running_trials(storage)
    study = optuna.load_study(study_name=plan.study["study_name"], storage=storage)
    assert study.trials[stale[0]].state.name == "FAIL"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_trial_ends_in_one_line_and_fails_the_trial(
        tmp_path: Path, cache: Path, sig: int, code: int) -> None:
    import optuna

    data = make_image_folder(tmp_path / "data", IMAGES, size=(32, 32))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # The CLI as users run it, with trials made long (8 s of timed steps each) so that the
    # signal lands inside one however loaded the machine is.
    child = ("import sys\n"
             "import autobatch._search._tune as tune_module\n"
             "tune_module.TRIAL_MIN_TIME_S = 8.0\n"
             "from autobatch._cli import main\n"
             f"sys.exit(main(['tune', {str(data)!r}, '--model', 'small_cnn', '--image-size', "
             f"'32', '--trials', '20', '--no-xla', '--storage', {storage!r}, "
             f"'--output', {str(tmp_path / 'plan.json')!r}]))\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", child],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "AUTOBATCH_CACHE_DIR": str(cache), "TMPDIR": str(tmp_path)})
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if Path(tmp_path / "study.db").exists() and _running_trials(storage):
                time.sleep(1.0)  # well inside the trial's 8 s
                break
            time.sleep(0.2)
        if proc.poll() is not None:
            pytest.fail(f"the tune ended before a trial ran: {proc.communicate()[1][-800:]}")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code
    lines = [line for line in err.strip().splitlines() if line.startswith("autobatch tune:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert not _running_trials(storage)
    summary = optuna.get_all_study_summaries(storage=storage)[0]
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    assert any(t.state.name == "FAIL" for t in study.trials)
    # Its temporary folders went with it.
    assert not list(tmp_path.glob("autobatch-*"))
