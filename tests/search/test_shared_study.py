"""Several `autobatch tune` processes on one study: a real PostgreSQL server started for the
session, a journal file on one host, SQLite refused for a second process, a shared plan
store read without TensorFlow, and the faults of a shared storage as one line each."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _postgres import Server, find_bin, postgres_server
from conftest import make_image_folder

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 5


@pytest.fixture(scope="module")
def postgres() -> Iterator[Server]:
    if find_bin("initdb") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install PostgreSQL (apt-get install postgresql)")
        pytest.skip("no PostgreSQL server binaries (initdb) here")
    pytest.importorskip("psycopg")
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("shared") / "data", {"a": 24, "b": 24},
                             size=(32, 32))


def _env(cache: Path) -> dict[str, str]:
    # Each node its own temporary folder: a node killed with SIGKILL leaves its work folder
    # there (nothing can remove it), inside this test's tmp_path.
    tmp = cache.parent / "tmp"
    tmp.mkdir(exist_ok=True)
    return {**os.environ, "AUTOBATCH_CACHE_DIR": str(cache), "TF_CPP_MIN_LOG_LEVEL": "2",
            "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)}


def _command(folder: Path, storage: str, output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "autobatch", "-v", "tune", str(folder), "--model",
            "small_cnn", "--image-size", "32", "--trials", str(TRIALS), "--no-xla",
            "--storage", storage, "--output", str(output), *extra]


def _start(command: list[str], log: Path, cache: Path,
           prefix: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    # A session of its own: SIGKILL to the group is a lost machine (its worker dies too).
    return subprocess.Popen([*prefix, *command], stdout=subprocess.DEVNULL,
                            stderr=log.open("w"), text=True, env=_env(cache), cwd=cache.parent,
                            start_new_session=True)


def _storage(url: str) -> Any:
    from autobatch._search._storage import make_storage

    return make_storage(url)


def _studies(url: str) -> dict[str, Any]:
    import optuna

    storage = _storage(url)
    return {s.study_name: optuna.load_study(study_name=s.study_name, storage=storage)
            for s in optuna.get_all_study_summaries(storage)}


def _main_study(url: str) -> Any:
    names = [n for n in _studies(url) if n.startswith("autobatch-") and ":" not in n
             and n != "autobatch-plans"]
    assert len(names) == 1, names
    return _studies(url)[names[0]]


def _kill_one_mid_trial(url: str, procs: list[subprocess.Popen[str]],
                        timeout_s: float = 240) -> int:
    """SIGKILL (the whole session) the process running a throughput trial; its pid."""
    import optuna

    deadline = time.monotonic() + timeout_s
    pids = {p.pid: p for p in procs}
    while time.monotonic() < deadline:
        try:
            study = _main_study(url)
        except AssertionError:
            time.sleep(0.5)
            continue
        for trial in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
            owner = trial.user_attrs.get("owner") or {}
            if owner.get("pid") in pids and trial.number >= 1:
                os.killpg(owner["pid"], signal.SIGKILL)
                pids[owner["pid"]].wait(30)
                return int(owner["pid"])
        time.sleep(0.2)
    raise AssertionError("no process was seen running a trial")


def _check_one_study(url: str, logs: list[Path], plans: list[Path], *,
                     killed: bool) -> None:
    import optuna

    study = _main_study(url)
    trials = study.get_trials()
    finished = [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE,
                                                 optuna.trial.TrialState.PRUNED)]
    assert len(finished) == TRIALS, [(t.number, t.state.name) for t in trials]
    assert len({t.number for t in trials}) == len(trials)
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    if killed:
        # The killed process's trial failed, and its point was trained by a live worker.
        assert failed
        retries = {t.user_attrs.get("retry_of"): t for t in finished
                   if t.user_attrs.get("retry_of") is not None}
        for dead in failed:
            assert dead.number in retries
            assert retries[dead.number].params == dead.params
    else:
        assert not failed
    # The ceiling was probed by one process only (the others waited for it).
    texts = [log.read_text() for log in logs]
    assert sum("fitting peak memory" in text for text in texts) == 1, [t[-3000:] for t in texts]
    payloads = [json.loads(p.read_text()) for p in plans]
    assert len({json.dumps(p, sort_keys=True) for p in payloads}) == 1
    assert payloads[0]["study"]["storage"].count("s3cret") == 0


def _run_three(folder: Path, url: str, tmp_path: Path, *, kill: bool) -> list[Path]:
    """Three tunes that finish on one study (four with one killed mid-trial); their plans."""
    count = 4 if kill else 3
    caches = [tmp_path / f"node{i}" / "cache" for i in range(count)]
    for cache in caches:
        cache.parent.mkdir(parents=True)
    logs = [c.parent / "tune.log" for c in caches]
    plans = [c.parent / "plan.json" for c in caches]
    procs = [_start(_command(folder, url, plans[i]), logs[i], caches[i]) for i in range(count)]
    try:
        killed = _kill_one_mid_trial(url, procs) if kill else None
        for proc, log in zip(procs, logs, strict=True):
            if proc.pid == killed:
                continue
            assert proc.wait(420) == 0, log.read_text()[-3000:]
            assert "Traceback" not in log.read_text()
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    alive = [i for i, p in enumerate(procs) if p.pid != killed]
    assert len(alive) == 3
    _check_one_study(url, logs, [plans[i] for i in alive], killed=kill)
    return [plans[i] for i in alive]


def test_four_tunes_on_postgres_one_killed_share_one_study(
        postgres: Server, folder: Path, tmp_path: Path) -> None:
    url = postgres.url(database="autobatch")
    plans = _run_three(folder, url, tmp_path / "run", kill=True)

    # A fresh node (an empty cache) with the shared plan store: the plan in under 2 s,
    # without TensorFlow.
    fresh = tmp_path / "fresh" / "cache"
    fresh.parent.mkdir()
    script = (
        "import sys, time; started = time.perf_counter()\n"
        "from autobatch._cli import main\n"
        f"code = main({_command(folder, url, fresh.parent / 'plan.json')[3:]!r})\n"
        "print(round(time.perf_counter() - started, 3), 'tensorflow' in sys.modules, code)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=_env(fresh), cwd=fresh.parent, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    seconds, tf_imported, code = done.stdout.split()[-3:]
    assert code == "0" and tf_imported == "False" and float(seconds) < 2.0, done.stdout
    assert "plan kept in postgresql://autobatch:***@" in done.stderr
    kept = json.loads((fresh.parent / "plan.json").read_text())
    first = json.loads(plans[0].read_text())
    assert (kept["batch_size"], kept["pipeline"]) == (first["batch_size"], first["pipeline"])

    # A machine with other hardware (one CPU of the two) gets its own study, and says so.
    other = tmp_path / "other" / "cache"
    other.parent.mkdir()
    log = other.parent / "tune.log"
    proc = _start(_command(folder, url, other.parent / "plan.json"), log,
                  other, prefix=("taskset", "-c", "0"))
    assert proc.wait(420) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "this one gets its own study" in text
    names = [n for n in _studies(url) if ":" not in n and n != "autobatch-plans"]
    assert len(names) == 2


def test_three_tunes_on_a_journal_file_share_one_study(folder: Path, tmp_path: Path) -> None:
    url = f"journal:{tmp_path / 'study.log'}"
    _run_three(folder, url, tmp_path / "run", kill=False)


# ---------------------------------------------------------------- SQLite: one process only


def test_a_second_process_on_an_sqlite_study_is_refused_in_one_line(
        folder: Path, tmp_path: Path) -> None:
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    first_cache, second_cache = tmp_path / "a" / "cache", tmp_path / "b" / "cache"
    first_cache.parent.mkdir()
    second_cache.parent.mkdir()
    first = _start(_command(folder, url, tmp_path / "a" / "plan.json"),
                   tmp_path / "a" / "tune.log", first_cache)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("study.db.autobatch-*.lock")):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        done = subprocess.run(_command(folder, url, tmp_path / "b" / "plan.json"),
                              capture_output=True, text=True, env=_env(second_cache),
                              cwd=tmp_path, timeout=120)
    finally:
        first.send_signal(signal.SIGINT)  # the first one stops as an interrupted tune does
        first.wait(120)
    assert done.returncode == 1, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert "SQLite is not for parallel workers" in errors[0]
    assert "journal:PATH" in errors[0] and "postgresql://" in errors[0]
    assert not (tmp_path / "b" / "plan.json").exists()


# ---------------------------------------------------------------- faults, in one process

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _simulated import SimulatedTraining  # noqa: E402

MIB = 1 << 20


def _arrays(count: int = 200) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(count, 16, 16, 3), dtype=np.uint8), np.arange(count) % 2


def _sim_tune(storage: str, sim: SimulatedTraining | None = None, **options: Any) -> Any:
    from autobatch._search._tune import tune

    sim = sim or SimulatedTraining(100 * MIB, 1 * MIB, 300 * MIB, best_batch=32, wall_s=0.01)
    options = {"seed": 0, **options}
    return tune("small_cnn", _arrays(), image_size=16, trials=4, try_xla=False,
                runner=sim, verbose=0, storage=storage, **options)


def test_a_trial_of_a_lost_machine_fails_by_heartbeat_and_is_retried(
        postgres: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    from autobatch._search import _storage
    from autobatch._search._shared import fail_stale
    from autobatch._search._storage import own_heartbeats
    from autobatch._search._study import retry_stale

    monkeypatch.setattr(_storage, "GRACE_S", 2)
    storage = _storage.make_storage(postgres.url(), on_stale=retry_stale)
    study = optuna.create_study(storage=storage, study_name="autobatch-lost-machine")
    space = {"batch_size": optuna.distributions.CategoricalDistribution([16, 32])}
    with own_heartbeats():
        trial = study.ask(space)
    # Another machine's trial: its pid means nothing here, only its heartbeat tells.
    trial.set_user_attr("owner", {"host": "a-lost-machine", "pid": 1, "started": 0.0})
    storage.record_heartbeat(trial._trial_id)
    assert fail_stale(study) == []  # a fresh heartbeat: alive
    time.sleep(3)
    assert fail_stale(study) == [trial.number]
    assert study.trials[trial.number].state == optuna.trial.TrialState.FAIL
    with own_heartbeats():
        again = study.ask(space)  # as run_trial asks: the enqueued point comes first
    assert again.params == trial.params
    assert study.trials[again.number].user_attrs["retry_of"] == trial.number


def test_a_database_that_goes_away_mid_tune_keeps_the_trials_and_a_rerun_resumes(
        postgres: Server, caplog: pytest.LogCaptureFixture) -> None:
    from autobatch._search._storage import StorageError

    url = postgres.url()

    class ServerGoesAway(SimulatedTraining):
        probes = 0

        def run(self, request: Any) -> Any:
            self.probes += 1
            if self.probes == 8:  # a few trials in
                postgres.stop()
            return super().run(request)

    sim = ServerGoesAway(100 * MIB, 1 * MIB, 300 * MIB, best_batch=32, wall_s=0.01)
    try:
        with pytest.raises(StorageError) as raised:
            _sim_tune(url, sim, use_cache=False)
    finally:
        postgres.start()
    message = str(raised.value)
    assert "\n" not in message and "failed during the tune" in message
    assert "a rerun resumes" in message and "s3cret" not in message and ":***@" in message
    events: list[Any] = []
    plan = _sim_tune(url, use_cache=False, on_event=events.append)
    assert plan.batch_size >= 1
    messages = [e.message for e in events]
    assert any(m.startswith("resumed: ceiling batch") for m in messages), messages
    assert any(m.startswith("resumed ") and "stored trials" in m for m in messages), messages


@pytest.mark.parametrize("fault", ["password", "port"])
def test_a_storage_that_cannot_be_reached_is_one_line_with_the_password_redacted(
        postgres: Server, folder: Path, tmp_path: Path, fault: str) -> None:
    from _postgres import _free_port

    url = (postgres.url(password="wrong-pw") if fault == "password"
           else Server(postgres.host, _free_port()).url())
    cache = tmp_path / "cache"
    done = subprocess.run(_command(folder, url, tmp_path / "plan.json"), capture_output=True,
                          text=True, env=_env(cache), cwd=tmp_path, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "postgresql://autobatch:***@" in errors[0]
    assert "wrong-pw" not in done.stderr and "s3cret" not in done.stderr
    assert ("password" in errors[0]) if fault == "password" else ("server is running" in errors[0])


def test_a_study_of_another_autobatch_version_is_one_line(postgres: Server) -> None:
    import optuna

    from autobatch._search._storage import StorageError, make_storage

    url = postgres.url()
    plan = _sim_tune(url, use_cache=False, seed=7)
    name = plan.study["study_name"]
    study = optuna.load_study(study_name=name, storage=make_storage(url))
    study.set_user_attr("autobatch_version", "0.0.1")
    with pytest.raises(StorageError, match=r"made by autobatch 0\.0\.1.*--force") as raised:
        _sim_tune(url, use_cache=False, seed=7)
    assert "\n" not in str(raised.value)
    assert _sim_tune(url, use_cache=False, seed=7, force=True).batch_size >= 1


def test_a_journal_path_that_is_a_folder_is_one_line(tmp_path: Path) -> None:
    from autobatch._errors import AutobatchError

    with pytest.raises(AutobatchError, match="is a folder") as raised:
        _sim_tune(f"journal:{tmp_path}")
    assert "\n" not in str(raised.value)
