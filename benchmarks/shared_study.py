"""One study done by 1 and by 3 `autobatch tune` processes (issue #20): the wall time from
the first start to the last exit, side by side in one run, on a private PostgreSQL server
(started here, as the tests start one) or a journal file.

    python benchmarks/shared_study.py                       # PostgreSQL, 12 trials, 2 repeats
    python benchmarks/shared_study.py --storage journal     # a journal file on this host
    python benchmarks/shared_study.py --out results/shared_study.json

Each repeat runs the 1-process and the 3-process study back to back (interleaved, the
order alternating), each on a fresh study and fresh plan caches; the table gives the
medians. On this 2-core machine three processes share two cores with their probe workers,
so expect little speed-up: the figure is for the record, and for a cluster of real nodes
the trials phase is the part that divides by the number of processes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))


def _folder(root: Path) -> Path:
    from conftest import make_image_folder

    return make_image_folder(root / "data", {"a": 60, "b": 60}, size=(48, 48))


def _one_study(folder: Path, url: str, work: Path, processes: int, trials: int) -> dict:
    work.mkdir(parents=True)
    procs = []
    started = time.perf_counter()
    for i in range(processes):
        node = work / f"node{i}"
        (node / "tmp").mkdir(parents=True)
        env = {**os.environ, "AUTOBATCH_CACHE_DIR": str(node / "cache"),
               "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
               "TMPDIR": str(node / "tmp"), "PYTHONPATH": str(ROOT)}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "autobatch", "tune", str(folder), "--model", "small_cnn",
             "--image-size", "48", "--trials", str(trials), "--no-xla", "--storage", url,
             "--output", str(node / "plan.json")],
            stdout=subprocess.DEVNULL, stderr=(node / "tune.log").open("w"), env=env,
            cwd=node))
    codes = [p.wait(1800) for p in procs]
    wall = time.perf_counter() - started
    plans = [json.loads((work / f"node{i}" / "plan.json").read_text())
             for i in range(processes) if codes[i] == 0]
    return {"processes": processes, "wall_s": round(wall, 2), "exit_codes": codes,
            "same_plan": len({json.dumps(p, sort_keys=True) for p in plans}) == 1,
            "batch_size": plans[0]["batch_size"] if plans else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", choices=("postgres", "journal"), default="postgres")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="shared-bench-", dir="/tmp") as tmp:
        root = Path(tmp)
        folder = _folder(root)
        runs: list[dict] = []
        if args.storage == "postgres":
            from _postgres import postgres_server

            server_cm = postgres_server()
            server = server_cm.__enter__()
        try:
            for repeat in range(args.repeats):
                order = (1, 3) if repeat % 2 == 0 else (3, 1)
                for processes in order:
                    work = root / f"r{repeat}-p{processes}"
                    if args.storage == "postgres":
                        import psycopg

                        name = f"bench_{repeat}_{processes}"
                        with psycopg.connect(server.url(database="postgres"),
                                             autocommit=True) as conn:
                            conn.execute(f"CREATE DATABASE {name}")
                        url = server.url(database=name)
                    else:
                        url = f"journal:{work / 'study.log'}"
                    run = _one_study(folder, url, work, processes, args.trials)
                    run["repeat"] = repeat
                    runs.append(run)
                    print(json.dumps(run), flush=True)
        finally:
            if args.storage == "postgres":
                server_cm.__exit__(None, None, None)
    median = {p: statistics.median(r["wall_s"] for r in runs if r["processes"] == p)
              for p in (1, 3)}
    result = {"storage": args.storage, "trials": args.trials, "repeats": args.repeats,
              "cpus": os.cpu_count(), "runs": runs,
              "median_wall_s": {str(k): v for k, v in median.items()},
              "three_over_one": round(median[3] / median[1], 3)}
    print(f"one study of {args.trials} trials on {args.storage}: 1 process {median[1]:.1f} s, "
          f"3 processes {median[3]:.1f} s ({result['three_over_one']:.2f}x)")
    if args.out is not None:
        out = args.out if args.out.is_absolute() else HERE / args.out
        out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(r["exit_codes"] == [0] * r["processes"] and r["same_plan"]
                    for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
