"""Is a tuned plan ever slower than the untuned default on a busy machine?

    python benchmarks/check_never_slower.py             # 5 tunes of the demo's folder
    python benchmarks/check_never_slower.py --runs 2 --rounds 5

The demo's job (small_cnn at 64 px on the demo's photo folder, 60 s tune) is tuned ``--runs``
times in a row, each from a fresh study, while another process keeps one core busy (a
shared machine, as users' machines are). After each tune, a fresh process trains the
plan's pipeline and the untuned default (batch 32, tf.data AUTOTUNE: the default the tune
compares against) on the same compiled model, back to back in ``--rounds`` interleaved
rounds with the load still running, and the paired ratio plan / default is taken per
pair of rounds (one with each going first). The target: the median paired ratio is at least
0.97 in every run, and the plan's own headline (``plan.speedup_over_baseline``) never
reports a slowdown.

Writes benchmarks/results/never_slower.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
TARGET = 0.97


def _burn(stop: Any) -> None:
    """One core of unrelated CPU work until told to stop."""
    x = 0
    while not stop.is_set():
        for i in range(200_000):
            x = (x + i * i) % 1_000_003


def make_demo_folder(root: Path) -> Path:
    """The folder ``autobatch demo`` makes (same photos, counts and broken files)."""
    from autobatch._for_benchmarks import make_demo_folder

    return make_demo_folder(root / "images", images_per_class=80)


def _epoch_timer() -> Any:
    import keras

    class Timer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.starts: list[float] = []
            self.ends: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.starts.append(time.perf_counter())

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.ends.append(time.perf_counter())

    return Timer()


def measure(plan_path: str, data_dir: str, rounds: int, epochs: int) -> dict[str, Any]:
    """In a fresh process: plan vs untuned default, interleaved, one compiled model."""
    import keras

    from autobatch import PipelineSettings, Plan
    from autobatch._for_benchmarks import resolve_model

    plan = Plan.load(plan_path)
    default = dataclasses.replace(
        plan, batch_size=32, per_replica_batch_size=None, jit_compile=False,
        pipeline=PipelineSettings.keras_default(),
        measured={"versus_default": {"decision": "default"}})
    keras.utils.set_random_seed(0)
    model = resolve_model("small_cnn", num_classes=3, image_size=plan.image_size)
    n = plan.num_examples
    contenders = {"plan": plan, "default": default}

    def sample(which: str) -> float:
        chosen = contenders[which]
        timer = _epoch_timer()
        if chosen.jit_compile != bool(model.jit_compile):
            model.jit_compile = chosen.jit_compile
            model.train_function = None
        model.fit(chosen.dataset(data_dir, repeat=True), epochs=epochs, verbose=0,
                  callbacks=[timer], **chosen.fit_kwargs())
        # From the second epoch's start to the last epoch's end: the first pays tracing.
        return n * (epochs - 1) / (timer.ends[-1] - timer.starts[1])

    for which in contenders:  # warm-up: trace each input signature once
        sample(which)
    readings: dict[str, list[float]] = {"plan": [], "default": []}
    for index in range(rounds):
        order = ["plan", "default"] if index % 2 == 0 else ["default", "plan"]
        for which in order:
            readings[which].append(sample(which))
    # Per pair of rounds (plan first, then default first): whichever goes first in a round
    # reads differently on this machine, and with an odd number of alternating rounds the
    # median of single-round ratios would take that side (identical pipelines read 0.94-0.96
    # that way in 7 rounds). A pair cancels the position and a linear drift.
    plan_r, default_r = readings["plan"], readings["default"]
    ratios = [(plan_r[i] * plan_r[i + 1] / (default_r[i] * default_r[i + 1])) ** 0.5
              for i in range(0, len(plan_r) - 1, 2)]
    return {"readings": readings, "paired_ratios": ratios,
            "median_ratio": statistics.median(ratios), "min_ratio": min(ratios),
            "max_ratio": max(ratios)}


def _measure_child(conn: Any, *args: Any) -> None:
    try:
        conn.send(measure(*args))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        conn.send({"error": f"{type(exc).__name__}: {exc}"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10, help="an even number")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--time-budget", type=float, default=60.0)
    parser.add_argument("--no-load", action="store_true", help="skip the busy-core process")
    parser.add_argument("--out", default=str(HERE / "results" / "never_slower.json"))
    args = parser.parse_args(argv)

    import autobatch

    ctx = multiprocessing.get_context("spawn")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="autobatch-never-slower-") as tmp:
        root = Path(tmp)
        os.environ["AUTOBATCH_CACHE_DIR"] = str(root / "cache")
        data_dir = make_demo_folder(root)
        stop = ctx.Event()
        burner = None if args.no_load else ctx.Process(target=_burn, args=(stop,), daemon=True)
        if burner is not None:
            burner.start()
        try:
            for run in range(args.runs):
                started = time.perf_counter()
                plan = autobatch.tune("small_cnn", data_dir, image_size=64,
                                      time_budget=args.time_budget, force=True,
                                      output=root / f"plan-{run}.json")
                tune_s = time.perf_counter() - started
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_measure_child,
                                   args=(child, str(root / f"plan-{run}.json"), str(data_dir),
                                         args.rounds, args.epochs))
                proc.start()
                measured = parent.recv()
                proc.join()
                versus = plan.measured.get("versus_default") or {}
                # A plan that kept the default trains the very pipeline it is compared with:
                # its measured ratio shows this machine's noise floor, not a difference.
                identical = (plan.batch_size == 32 and plan.pipeline.uses_autotune
                             and not plan.jit_compile)
                row = {
                    "run": run + 1,
                    "tune_s": round(tune_s, 1),
                    "batch_size": plan.batch_size,
                    "pipeline": plan.pipeline.to_dict(),
                    "decision": versus.get("decision"),
                    "identical_to_default": identical,
                    "tune_rounds": versus.get("rounds"),
                    "tune_paired_ratios": versus.get("paired_ratios"),
                    "headline_speedup": plan.speedup_over_baseline,
                    "reason": versus.get("reason"),
                    **measured,
                }
                results.append(row)
                print(json.dumps({k: row.get(k) for k in (
                    "run", "tune_s", "batch_size", "decision", "identical_to_default",
                    "headline_speedup",
                    "median_ratio", "min_ratio", "error")}), flush=True)
        finally:
            stop.set()
            if burner is not None:
                burner.join(timeout=10)
    ok = all("error" not in r and r["median_ratio"] >= TARGET
             and (r["headline_speedup"] or 0) >= 1.0 for r in results)
    # The same with the plans that are the default itself counted as 1 by construction.
    ok_distinct = all("error" not in r and (r["identical_to_default"] or
                                            r["median_ratio"] >= TARGET)
                      and (r["headline_speedup"] or 0) >= 1.0 for r in results)
    summary = {
        "target_median_ratio": TARGET,
        "load": not args.no_load,
        "rounds": args.rounds,
        "epochs_per_sample": args.epochs,
        "cpus": os.cpu_count(),
        "runs": results,
        "met": ok,
        "met_counting_identical_plans_as_1": ok_distinct,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    print(f"{'met' if ok else 'MISSED'}: median paired ratio plan/default per run: "
          + ", ".join(f"{r.get('median_ratio', float('nan')):.3f}" for r in results))
    if not ok and ok_distinct:
        print("every miss is a plan identical to the default (noise floor of the measurement)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
