"""Must show (issue 5): autobatch's ceiling against the true largest batch, found
independently by bisection with plain Keras children; the chosen batch trains under the
budget; a repeated tune returns from the cache in under 2 s without TensorFlow.

    python benchmarks/check_ceiling.py [--images 300] [--budget 3GiB] [--image-size 96]
        [--model mobilenet_v2] [--time-budget 600] [--out benchmarks/results/ceiling.json]

Every "plain Keras child" is a fresh Python process that builds the same architecture with
``keras.applications`` (no autobatch code), loads the folder with
``keras.utils.image_dataset_from_directory``, runs ``model.fit`` for a few steps at batch B,
and reports its peak resident memory (``VmHWM``). B fits when the child finishes and its peak
is under the budget. Peak memory grows with B, so bisection on that predicate is exact.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

CHILD = r"""
import json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
from keras import layers
data_dir, mode = sys.argv[1], sys.argv[5]
batch, size, steps = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def vmhwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
if mode == "keras":
    ds = keras.utils.image_dataset_from_directory(
        data_dir, image_size=(size, size), batch_size=batch, shuffle=True, seed=0,
        verbose=False)
    num_classes = len(ds.class_names)
    ds = ds.repeat()
    steps_per_epoch = steps
elif mode == "lean":  # autobatch's input pipeline with the ceiling probes' lean settings
    from autobatch import PipelineSettings
    from autobatch._for_benchmarks import build_dataset, resolve_source
    source = resolve_source(data_dir)
    num_classes = source.num_classes
    ds = build_dataset(source, batch_size=batch, image_size=(size, size), channels=3,
                       settings=PipelineSettings(num_parallel_calls=1, prefetch=1),
                       shuffle=True, seed=0, repeat=True)
    steps_per_epoch = steps
else:  # the plan's own pipeline and steps (one full epoch)
    from autobatch import Plan
    plan = Plan.load(mode)
    ds = plan.dataset(data_dir)
    num_classes = len(plan.data["class_names"])
    steps_per_epoch = plan.steps_per_epoch
inputs = keras.Input((size, size, 3))
x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
base = keras.applications.MobileNetV2(input_shape=(size, size, 3), weights=None,
                                      classes=num_classes, include_top=True)
model = keras.Model(inputs, base(x))
model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
model.fit(ds, epochs=1, steps_per_epoch=steps_per_epoch, verbose=0)
print("RESULT " + json.dumps({"batch_size": batch, "peak_bytes": vmhwm()}))
"""


def run_child(data_dir: Path, batch: int, size: int, steps: int, mode: str = "keras",
              timeout_s: float = 900) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(data_dir), str(batch), str(size), str(steps), mode],
        capture_output=True, text=True, timeout=timeout_s,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    wall = time.perf_counter() - started
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return {**json.loads(line[7:]), "ok": True, "wall_s": round(wall, 1)}
    return {"batch_size": batch, "ok": False, "peak_bytes": None, "wall_s": round(wall, 1),
            "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}


def true_ceiling(data_dir: Path, size: int, budget_bytes: int, steps: int, cap: int,
                 log: list[dict[str, Any]], start: int = 128,
                 tolerance: int = 2, mode: str = "keras") -> tuple[int, int]:
    """Doubling then bisection over plain Keras children; returns (largest fit, smallest miss).

    ``mode="keras"`` loads data with ``image_dataset_from_directory``; ``"lean"`` with
    autobatch's pipeline builder at the ceiling probes' settings (same model and ``fit``).
    """

    def fits(batch: int) -> bool:
        result = run_child(data_dir, batch, size, steps, mode=mode)
        result["fits"] = bool(result["ok"] and result["peak_bytes"] <= budget_bytes)
        log.append(result)
        print(f"  plain keras batch {batch}: peak {result['peak_bytes']} fits={result['fits']}"
              f" ({result['wall_s']} s)", flush=True)
        return result["fits"]

    low, high, batch = 0, cap + 1, start
    while high > cap and batch <= cap:
        if fits(batch):
            low = batch
            batch = min(cap, batch * 2) if batch < cap else cap + 1
        else:
            high = batch
    if low == 0:
        while high > 1 and low == 0:
            batch = high // 2
            if fits(batch):
                low = batch
            else:
                high = batch
    while high - low > tolerance:
        mid = (low + high) // 2
        if fits(mid):
            low = mid
        else:
            high = mid
    return low, high


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--budget", default="3GiB")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--time-budget", type=float, default=600)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--work", default="/tmp/autobatch-check-ceiling")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ceiling.json"))
    parser.add_argument("--skip-truth", action="store_true")
    parser.add_argument("--truth-from", metavar="JSON",
                        help="take the true ceiling from an earlier run's output (its "
                             "true_ceiling_low/high and truth_probes) instead of bisecting "
                             "again; the data folder must be the same")
    parser.add_argument("--truth-only", choices=("keras", "lean"),
                        help="only bisect for the true ceiling with this input pipeline")
    parser.add_argument("--start", type=int, default=128)
    args = parser.parse_args(argv)

    from conftest import make_image_folder

    from autobatch import parse_memory_size

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.truth_only:
        log: list[dict[str, Any]] = []
        low, high = true_ceiling(work / "data", args.image_size,
                                 parse_memory_size(args.budget), args.steps, cap=args.images,
                                 log=log, start=args.start, mode=args.truth_only)
        print(f"true largest batch ({args.truth_only} pipeline) in [{low}, {high})")
        Path(args.out).write_text(json.dumps({"mode": args.truth_only, "low": low,
                                              "high": high, "probes": log}, indent=2))
        return 0
    os.environ["AUTOBATCH_CACHE_DIR"] = str(work / "cache")
    per_class = args.images // 3
    data = work / "data"
    if not data.exists():
        make_image_folder(data, {"a": per_class, "b": per_class, "c": per_class}, size=(128, 128))
    images = 3 * per_class
    budget_bytes = parse_memory_size(args.budget)
    plan_path = work / "plan.json"
    report: dict[str, Any] = {"model": args.model, "image_size": args.image_size,
                              "images": images, "budget": args.budget,
                              "budget_bytes": budget_bytes}

    # 1. autobatch tune (the CLI, as a user runs it), forced so that it really searches.
    cli = [sys.executable, "-m", "autobatch", "tune", str(data), "--model", args.model,
           "--image-size", str(args.image_size), "--memory-budget", args.budget,
           "--time-budget", str(args.time_budget), "--output", str(plan_path), "--no-xla"]
    started = time.perf_counter()
    proc = subprocess.run([*cli, "--force", "--json"], capture_output=True, text=True)
    report["tune_wall_s"] = round(time.perf_counter() - started, 1)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return 1
    plan = json.loads(proc.stdout)
    report["ceiling_batch_size"] = plan["ceiling_batch_size"]
    report["ceiling_probes"] = [
        {"batch_size": p["batch_size"], "outcome": p["outcome"],
         "peak_bytes": p["peak_memory_bytes"], "wall_s": p["wall_time_s"]}
        for p in plan["ceiling"]["probes"]
    ]
    report["first_failing_batch_size"] = plan["ceiling"]["first_failing_batch_size"]
    report["chosen_batch_size"] = plan["batch_size"]
    report["measured"] = plan["measured"]
    report["baseline"] = plan["baseline"]
    print(f"autobatch: ceiling {plan['ceiling_batch_size']} with "
          f"{len(plan['ceiling']['probes'])} probes; chosen batch {plan['batch_size']}; "
          f"tune {report['tune_wall_s']} s", flush=True)

    # 2. The repeated run: the cached plan, in a fresh process, timed end to end.
    started = time.perf_counter()
    again = subprocess.run([*cli, "--json"], capture_output=True, text=True)
    report["repeat_wall_s"] = round(time.perf_counter() - started, 2)
    report["repeat_same_plan"] = (again.returncode == 0
                                  and json.loads(again.stdout)["created_at"] == plan["created_at"])
    print(f"repeated tune: {report['repeat_wall_s']} s, cached={report['repeat_same_plan']}",
          flush=True)

    # 3. The chosen batch trains a full epoch with the plan's pipeline under the budget.
    trained = run_child(data, plan["batch_size"], args.image_size, 0, mode=str(plan_path))
    report["chosen_trains"] = trained
    report["chosen_under_budget"] = bool(trained["ok"] and trained["peak_bytes"] <= budget_bytes)
    print(f"chosen batch {plan['batch_size']} one epoch: peak {trained['peak_bytes']} "
          f"under budget={report['chosen_under_budget']}", flush=True)

    # 4. The true largest batch, by bisection with plain Keras children.
    if args.truth_from:
        earlier = json.loads(Path(args.truth_from).read_text())
        low = int(earlier["true_ceiling_low"])
        report["true_ceiling_low"] = low
        report["true_ceiling_high"] = int(earlier["true_ceiling_high"])
        report["truth_probes"] = earlier["truth_probes"]
        report["truth_from"] = str(args.truth_from)
        report["ratio"] = round(plan["ceiling_batch_size"] / low, 3)
        print(f"true largest batch (from {args.truth_from}) in "
              f"[{low}, {report['true_ceiling_high']}); autobatch/true = {report['ratio']}")
    elif not args.skip_truth:
        log: list[dict[str, Any]] = []
        low, high = true_ceiling(data, args.image_size, budget_bytes, args.steps,
                                 cap=images, log=log)
        report["true_ceiling_low"] = low
        report["true_ceiling_high"] = high
        report["truth_probes"] = log
        report["ratio"] = round(plan["ceiling_batch_size"] / low, 3) if low else None
        print(f"true largest batch in [{low}, {high}); autobatch/true = {report['ratio']}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
