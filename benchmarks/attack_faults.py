"""Issue #23's attack, run as a user runs autobatch: the CLI in real processes, real signals,
real files. Each case prints one line (PASS/FAIL and what was seen); exit 1 if any failed.

    python benchmarks/attack_faults.py [--only NAME ...] [--rounds 3]

Takes about 15 minutes on 2 cores. Every case uses a fresh cache folder under a temporary
folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

_TMPDIR = os.environ.get("TMPDIR")
from conftest import make_image_folder  # noqa: E402

from tests.faults.test_hostile_files import write_png_bomb  # noqa: E402

# The tests' conftest moves TMPDIR into a session folder of its own: take it back.
_SESSION = os.environ.pop("TMPDIR")
if _TMPDIR is not None:
    os.environ["TMPDIR"] = _TMPDIR
tempfile.tempdir = None
shutil.rmtree(_SESSION, ignore_errors=True)

# The console script, as users run it (``python -m`` would put the current folder on the path
# of the parent itself).
AUTOBATCH = [str(Path(sys.executable).parent / "autobatch")]
TUNE = ["--model", "small_cnn", "--image-size", "32", "--no-xla"]
RESULTS: list[tuple[str, bool, str]] = []


def run(args: list[str], env: dict[str, str], cwd: Path | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AUTOBATCH, *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([*AUTOBATCH, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def record(name: str, ok: bool, seen: str) -> None:
    RESULTS.append((name, ok, seen))
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {seen}", flush=True)


def one_line(err: str) -> bool:
    """No traceback, and the error (if any) is one ``autobatch ...: `` line."""
    lines = [line for line in err.splitlines() if line.startswith("autobatch ")]
    return "Traceback" not in err and len(lines) <= 1


def running_trials(cache: Path) -> int:
    count = 0
    for db in cache.rglob("*.db"):
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            with contextlib.suppress(sqlite3.OperationalError):
                count += conn.execute(
                    "SELECT COUNT(*) FROM trials WHERE state = 'RUNNING'").fetchone()[0]
    return count


class Attack:
    def __init__(self, root: Path, rounds: int) -> None:
        self.root = root
        self.rounds = rounds
        self.data = make_image_folder(root / "data", {"a": 40, "b": 40, "c": 40}, size=(32, 32))
        self.n = 0

    def env(self, **extra: str) -> dict[str, str]:
        self.n += 1
        cache = self.root / f"cache-{self.n}"
        return {**os.environ, "AUTOBATCH_CACHE_DIR": str(cache), "TMPDIR": str(self.root),
                "PYTHONPATH": str(HERE.parent), **extra}

    def cache(self, env: dict[str, str]) -> Path:
        return Path(env["AUTOBATCH_CACHE_DIR"])

    # ------------------------------------------------------------------ cases
    def concurrent(self) -> None:
        for round_ in range(1, self.rounds + 1):
            env = self.env()
            procs = [start(["tune", str(self.data), *TUNE, "--time-budget", "45",
                            "-o", str(self.root / f"plan-{round_}-{i}.json")], env)
                     for i in (0, 1)]
            outs = [p.communicate(timeout=600) for p in procs]
            codes = [p.returncode for p in procs]
            ok = codes == [0, 0] and all(one_line(err) for _, err in outs)
            record(f"two tunes on a fresh cache, round {round_}", ok, f"exit codes {codes}")

    def numpy_in_cwd(self) -> None:
        trap = self.root / "trap"
        trap.mkdir()
        marker = self.root / "numpy-was-imported"
        (trap / "numpy.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                       "raise ImportError('planted numpy')\n")
        env = self.env()
        tune = run(["tune", str(self.data), *TUNE, "--trials", "1", "-o",
                    str(self.root / "plan-trap.json")], env, cwd=trap)
        deep = run(["audit", str(self.data), "--deep"], env, cwd=trap)
        ok = not marker.exists() and tune.returncode == 0 and deep.returncode == 0
        record("a numpy.py in the current folder", ok,
               f"tune exit {tune.returncode}, audit --deep exit {deep.returncode}, "
               f"planted module {'RAN' if marker.exists() else 'never imported'}")

    def signals(self) -> None:
        rng = random.Random(0)
        for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)) * self.rounds:
            env = self.env()
            proc = start(["tune", str(self.data), *TUNE, "--trials", "20", "-o",
                          str(self.root / "plan-sig.json")], env)
            delay = rng.uniform(8, 40)
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(sig)
            _, err = proc.communicate(timeout=120)
            stale = running_trials(self.cache(env))
            ok = proc.returncode in (code, 0) and one_line(err) and stale == 0
            record(f"{signal.Signals(sig).name} after {delay:.1f} s", ok,
                   f"exit {proc.returncode}, {stale} RUNNING trials, "
                   f"{err.strip().splitlines()[-1] if err.strip() else 'no message'}")

    def sigkill_then_rerun(self) -> None:
        env = self.env()
        args = ["tune", str(self.data), *TUNE, "--trials", "8", "-o",
                str(self.root / "plan-kill.json")]
        proc = start(args, env)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and running_trials(self.cache(env)) == 0:
            time.sleep(0.2)
        time.sleep(0.5)
        proc.kill()
        proc.communicate()
        before = running_trials(self.cache(env))
        rerun = run(args, env)
        after = running_trials(self.cache(env))
        record("SIGKILL of the parent, then a rerun", before >= 1 and after == 0
               and rerun.returncode == 0 and one_line(rerun.stderr),
               f"{before} RUNNING after the kill, {after} after the rerun "
               f"(exit {rerun.returncode})")

    def killed_baseline(self) -> None:
        import psutil

        # Memory-bound: the budget, not the 400 images, sets the ceiling.
        data = make_image_folder(self.root / "big", {"a": 200, "b": 200}, size=(128, 128))
        args = ["tune", str(data), "--model", "small_cnn", "--image-size", "128", "--no-xla",
                "--memory-budget", "1GiB", "--trials", "2"]
        calm = run([*args, "-o", str(self.root / "calm.json")], self.env())
        env = self.env()
        proc = start([*args, "-o", str(self.root / "hit.json")], env)
        killed = False
        assert proc.stderr is not None
        err_lines = []
        for line in proc.stderr:
            err_lines.append(line)
            if not killed and "untuned default: batch" in line:
                time.sleep(1.0)  # inside the baseline probe
                for child in psutil.Process(proc.pid).children(recursive=True):
                    child.kill()
                    killed = True
        proc.wait(timeout=600)
        if calm.returncode or proc.returncode:
            record("a worker killed during the baseline", False,
                   f"exit {calm.returncode}/{proc.returncode}: {''.join(err_lines)[-300:]}")
            return
        a = json.loads((self.root / "calm.json").read_text())
        b = json.loads((self.root / "hit.json").read_text())
        ca, cb = a["ceiling_batch_size"], b["ceiling_batch_size"]
        bound = (a.get("ceiling") or {}).get("capped_by")
        record("a worker killed during the baseline",
               killed and abs(ca - cb) <= 0.1 * ca and bound is None,
               f"ceiling {cb} against {ca} undisturbed (capped by {bound or 'memory'}; worker "
               f"killed: {killed}; baseline {b['baseline']['outcome']})")

    def short_budget(self) -> None:
        result = run(["tune", str(self.data), *TUNE, "--time-budget", "15", "-o",
                      str(self.root / "short.json")], self.env())
        if result.returncode:
            record("a 15 s budget", one_line(result.stderr) and result.returncode == 2,
                   f"exit {result.returncode}: {result.stderr.strip()[-200:]}")
            return
        plan = json.loads((self.root / "short.json").read_text())
        measured = {t.get("batch_size") for t in plan.get("trials", [])} | {32}
        record("a 15 s budget", plan["batch_size"] in measured,
               f"plan batch {plan['batch_size']} (measured: {sorted(measured)})")

    def bomb(self) -> None:
        data = self.root / "bombed"
        shutil.copytree(self.data, data)
        write_png_bomb(data / "a" / "bomb.png")
        t0 = time.monotonic()
        result = run(["tune", str(data), *TUNE, "--time-budget", "60", "-o",
                      str(self.root / "bomb.json")], self.env())
        took = time.monotonic() - t0
        record("a 20000x20000 PNG, --time-budget 60", result.returncode == 0 and took < 66
               and one_line(result.stderr), f"exit {result.returncode} in {took:.0f} s")

    def broken_cache(self) -> None:
        env = self.env()
        args = ["tune", str(self.data), *TUNE, "--trials", "1", "-o",
                str(self.root / "c.json")]
        first = run(args, env)
        plans = [p for p in self.cache(env).rglob("*.json") if "plan" in str(p)]
        for p in plans:
            p.write_bytes(b"\xff\xfe\x00garbage")
        second = run(args, env)
        record("cached plans of garbage bytes", first.returncode == 0 and second.returncode == 0
               and one_line(second.stderr), f"{len(plans)} files spoiled, rerun exit "
               f"{second.returncode}")
        for label, extra in (("XDG_CACHE_HOME is a file", "file"),
                             ("a read-only cache", "readonly")):
            env = self.env()
            env.pop("AUTOBATCH_CACHE_DIR")
            target = self.root / f"xdg-{extra}"
            if extra == "file":
                target.write_text("not a folder")
            else:
                target.mkdir()
                target.chmod(0o555)
            env["XDG_CACHE_HOME"] = str(target)
            result = run(args, env)
            record(label, one_line(result.stderr) and result.returncode in (0, 2),
                   f"exit {result.returncode}: "
                   f"{(result.stderr.strip().splitlines() or ['-'])[-1][:160]}")
            if extra == "readonly":
                target.chmod(0o755)

    def model_file(self) -> None:
        fake = self.root / "model.keras"
        fake.write_text("not a zip")
        t0 = time.monotonic()
        result = run(["tune", str(self.data), "--model", str(fake)], self.env())
        took = time.monotonic() - t0
        record("a text file named model.keras", result.returncode == 2 and took < 5
               and one_line(result.stderr),
               f"exit {result.returncode} in {took:.1f} s: {result.stderr.strip()[:120]}")

    def deleted_mid_fit(self) -> None:
        data = self.root / "vanishing"
        shutil.copytree(self.data, data)
        env = self.env()
        proc = start(["fit", str(data), "--model", "small_cnn", "--image-size", "32",
                      "--epochs", "40", "--time-budget", "30"], env)
        assert proc.stdout is not None
        for line in proc.stdout:
            if "epoch 1" in line.lower():
                break
        for path in list((data / "b").iterdir())[:10]:
            path.unlink()
        out, err = proc.communicate(timeout=600)
        record("images deleted during fit", proc.returncode != 0 and one_line(err)
               and "Traceback" not in out, f"exit {proc.returncode}: "
               f"{(err.strip().splitlines() or ['-'])[-1][:160]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    cases: list[str] = options.only or [
        "model_file", "numpy_in_cwd", "broken_cache", "short_budget", "bomb", "concurrent",
        "signals", "sigkill_then_rerun", "killed_baseline", "deleted_mid_fit"]
    root = Path(tempfile.mkdtemp(prefix="autobatch-attack-"))
    try:
        attack = Attack(root, options.rounds)
        for name in cases:
            case: Callable[[], None] = getattr(attack, name)
            t0 = time.monotonic()
            try:
                case()
            except Exception as exc:  # a broken case is a failure, the rest still run
                record(name, False, f"{type(exc).__name__}: {exc}")
            print(f"      ({name}: {time.monotonic() - t0:.0f} s)", flush=True)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(root)], check=False)
        shutil.rmtree(root, ignore_errors=True)
    failed = [name for name, ok, _ in RESULTS if not ok]
    print(f"{len(RESULTS) - len(failed)}/{len(RESULTS)} passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
