"""Benchmark (issue 5): the tuned throughput against the best point of an exhaustive grid
over the same settings, and the time each took.

    python benchmarks/bench_search.py [--images 600] [--repeats 3] [--trials 20]
        [--out benchmarks/results/search.json]

Both use small_cnn at 32 px on real JPEG files, the real probe worker and the same probe
length. The grid measures every point ``--repeats`` times, interleaved (round after round in
a shuffled order, so slow phases of the shared machine hit all points alike) and takes
medians. ``tune`` runs its whole pipeline (ceiling, study, finalists, verify; the untuned
baseline and XLA are off because the grid has neither). Finally the tuned winner and the
grid's best are measured head to head, interleaved, in one fresh worker, with ``model.fit``
(as the plan trains) and with the grid's bare loop: the ratio of the fit medians is the
quality figure, the loop ratio is reported beside it. Targets: ratio >= 0.95 in <= 15% of
the grid's time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

PROBE_STEPS = 5


def grid_space() -> Any:
    from autobatch._for_benchmarks import SearchSpace

    # 5 x 2 x 3 x 2 x 2 x 2 = 240 points: the knobs that matter on a 2-core CPU.
    return SearchSpace(
        batch_sizes=(16, 32, 64, 128, 256),
        num_parallel_calls=(1, 2),
        prefetch=(0, 1, 4),
        cache=("none", "memory"),
        private_threadpool_size=(0,),
        deterministic=(False, True),
        max_intra_op_parallelism=(1, 2),
        jit_compile=(False,),
    )


NUM_EXAMPLES: int | None = None
"""The data's size: every figure is an epoch rate over it, as the tune scores points."""


def measure(runner: Any, params: dict[str, Any], mode: str = "loop") -> float:
    """One probe of ``params``: the grid's bare step loop, or (``fit``) epochs of
    ``model.fit`` as the plan trains, timed for at least the tune's finalist window; in
    examples/s over an epoch (``epoch_efficiency``: the last batch is partial)."""
    from autobatch._for_benchmarks import (
        FINALIST_MIN_TIME_S,
        epoch_efficiency,
        params_to_request,
    )

    result = runner.run(params_to_request(
        params, steps=PROBE_STEPS, warmup_steps=1, timeout_s=120, mode=mode,
        min_time_s=FINALIST_MIN_TIME_S if mode == "fit" else 0.0))
    if not result.ok:
        return 0.0
    return float(result.examples_per_s or 0.0) * epoch_efficiency(
        NUM_EXAMPLES, int(params["batch_size"]))


def exhaustive_grid(data: Path, space: Any, repeats: int, seed: int) -> dict[str, Any]:
    from autobatch._for_benchmarks import SubprocessProbeRunner

    points = list(space.grid())
    values: dict[int, list[float]] = {i: [] for i in range(len(points))}
    rng = random.Random(seed)
    started = time.perf_counter()
    with SubprocessProbeRunner("small_cnn", data, image_size=32,
                               fresh_worker_for_smaller_batch=False) as runner:
        for round_index in range(repeats):
            order = list(range(len(points)))
            rng.shuffle(order)
            for i in order:
                values[i].append(measure(runner, points[i]))
            print(f"  grid round {round_index + 1}/{repeats} done at "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
    wall = time.perf_counter() - started
    medians = {i: statistics.median(v) for i, v in values.items()}
    best = max(medians, key=medians.get)  # type: ignore[arg-type]
    return {"points": len(points), "repeats": repeats, "wall_s": round(wall, 1),
            "best_params": points[best], "best_median_examples_per_s": medians[best],
            "top5": [(points[i], medians[i]) for i in sorted(medians, key=medians.get,
                                                             reverse=True)[:5]]}


def head_to_head(data: Path, a: dict[str, Any], b: dict[str, Any], rounds: int) -> dict[str, Any]:
    """The tuned winner against the grid's best, interleaved in one fresh worker, measured
    both ways each round: the grid's own bare-loop probe, and epochs of ``model.fit`` (how
    the plan trains; the headline ratio)."""
    from autobatch._for_benchmarks import SubprocessProbeRunner

    measured: dict[str, dict[str, list[float]]] = {
        mode: {"tuned": [], "grid": []} for mode in ("fit", "loop")}
    with SubprocessProbeRunner("small_cnn", data, image_size=32,
                               fresh_worker_for_smaller_batch=False) as runner:
        for mode in ("loop", "fit"):  # warm every trace before timing
            measure(runner, a, mode)
            measure(runner, b, mode)
        for index in range(rounds):
            pair = [("tuned", a), ("grid", b)] if index % 2 == 0 else [("grid", b), ("tuned", a)]
            for mode in ("fit", "loop"):
                for name, params in pair:
                    measured[mode][name].append(measure(runner, params, mode))
    report: dict[str, Any] = {"rounds": rounds}
    for mode, samples in measured.items():
        tuned, grid = statistics.median(samples["tuned"]), statistics.median(samples["grid"])
        report[mode] = {"tuned_median": tuned, "grid_median": grid,
                        "ratio": tuned / grid if grid else None, "samples": samples}
    # The headline: training throughput as model.fit sees it.
    report.update({k: report["fit"][k] for k in ("tuned_median", "grid_median", "ratio")})
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--time-budget", type=float, default=60.0,
                        help="the tune's --time-budget (the target is <= 15%% of the grid's "
                             "time, about 500 s here)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/autobatch-bench-search")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "search.json"))
    args = parser.parse_args(argv)

    from conftest import make_image_folder

    from autobatch import tune

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ["AUTOBATCH_CACHE_DIR"] = str(work / "cache")
    global NUM_EXAMPLES
    per_class = args.images // 3
    NUM_EXAMPLES = 3 * per_class
    data = work / "data"
    if not data.exists():
        make_image_folder(data, {"a": per_class, "b": per_class, "c": per_class}, size=(64, 64))
    space = grid_space()

    print("tuning ...", flush=True)
    started = time.perf_counter()
    plan = tune("small_cnn", data, image_size=32, trials=args.trials, seed=args.seed,
                time_budget=args.time_budget,
                force=True, measure_baseline=False, try_xla=False, trial_steps=PROBE_STEPS,
                search_space=space, use_cache=False)
    tune_wall = time.perf_counter() - started
    tuned_params = {"batch_size": plan.batch_size, **{
        k: v for k, v in plan.pipeline.to_dict().items()
        if k in ("num_parallel_calls", "prefetch", "cache", "private_threadpool_size",
                 "deterministic", "max_intra_op_parallelism", "pixels")},
        "jit_compile": plan.jit_compile}
    print(f"tuned in {tune_wall:.0f} s: {tuned_params}", flush=True)
    # The pixels' dtype is the tune's decision (not searched): the grid uses the same.
    import dataclasses

    space = dataclasses.replace(space, pixels=(plan.pipeline.pixels,))

    print(f"exhaustive grid: {space.size} points x {args.repeats} ...", flush=True)
    grid = exhaustive_grid(data, space, args.repeats, args.seed)
    print(f"grid in {grid['wall_s']} s: best {grid['best_params']}", flush=True)

    duel = head_to_head(data, tuned_params, grid["best_params"], args.rounds)
    report = {
        "space": space.to_dict(),
        "tune": {"wall_s": round(tune_wall, 1), "time_budget_s": args.time_budget,
                 "trials": len(plan.trials),
                 "params": tuned_params, "ceiling_batch_size": plan.ceiling_batch_size,
                 "examples_per_s": plan.examples_per_s},
        "grid": grid,
        "head_to_head": duel,
        "time_fraction": round(tune_wall / grid["wall_s"], 3),
        "throughput_ratio": round(duel["ratio"], 3) if duel["ratio"] else None,
    }
    report["passed"] = bool(report["throughput_ratio"] and report["throughput_ratio"] >= 0.95
                            and report["time_fraction"] <= 0.15)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"tuned/grid throughput {report['throughput_ratio']}, "
          f"time {report['time_fraction']:.1%} of the grid -> passed={report['passed']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
