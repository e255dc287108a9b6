"""Where a tune's time goes (issue #22, item 2): one tune per workload from a fresh process
with no cached plan, its ``plan.measured["tune_time"]`` printed as the table in
docs/tune.md.

    python benchmarks/tune_time.py                       # input-heavy: 600 photos, strided CNN
    python benchmarks/tune_time.py --workload compute    # MobileNetV2 at 96 px
    python benchmarks/tune_time.py --epochs 200          # sized to a ~2-minute job
    python benchmarks/tune_time.py --out results/tune_time.json

Columns: each phase's wall seconds (the first worker's start-up is inside the untuned
default's), then the workers' start-ups, the probes' set-up (pipeline, tracing, cache fill,
warm-up) and their timed steps, summed over the tune.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import make_input_heavy_model, make_workload_data  # noqa: E402

PHASES = ("untuned_default", "ceiling", "xla", "pixels", "study", "finalists_and_verify")


def table(record: dict) -> str:
    """The markdown rows of one tune's time."""
    phases = record.get("phases_s", {})
    rows = ["| part | seconds | share |", "|---|---:|---:|"]
    total = float(record.get("total_s") or 0.0)

    def row(name: str, seconds: float) -> None:
        share = f"{seconds / total:.0%}" if total else "-"
        rows.append(f"| {name} | {seconds:.1f} | {share} |")

    for phase in PHASES:
        row(f"phase: {phase.replace('_', ' ')}", float(phases.get(phase, 0.0)))
    row("outside the phases (cache look-up, study, model saved, plan kept)",
        total - sum(float(v) for v in phases.values()))
    row(f"of all: worker start-ups ({record.get('worker_starts', 0)}; TF import "
        f"{record.get('tensorflow_import_s', 0):.1f} s, model and data load "
        f"{record.get('model_load_s', 0):.1f} s each)", float(record.get("worker_start_s", 0)))
    row(f"of all: probe set-up ({int(record.get('probes', 0))} probes: pipeline, tracing, "
        "cache fill, warm-up)", float(record.get("setup_s", 0)))
    row("of all: probes' timed steps", float(record.get("timed_s", 0)))
    rows.append(f"| **total** | **{total:.1f}** | |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=("input", "compute"), default="input")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="the tune's budget (default: the tune's own default)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="the job the tune is sized to (tune(epochs=...), as fit passes)")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--out", default=None, help="also write the record as JSON here")
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="autobatch-bench-"))
    os.environ["AUTOBATCH_CACHE_DIR"] = str(work / "cache")  # no cached plan, no old study
    data_dir = make_workload_data(work, images_per_class=150, classes=4)
    if args.workload == "input":
        model, size = make_input_heavy_model(work / "strided_cnn.keras", 4, 128), 128
    else:
        model, size = "mobilenet_v2", 96
    import autobatch

    started = time.perf_counter()
    plan = autobatch.tune(model, str(data_dir), image_size=size, time_budget=args.time_budget,
                          epochs=args.epochs, verbose=0)
    record = {**plan.measured["tune_time"], "workload": args.workload,
              "outside_s": round(time.perf_counter() - started, 2),
              "batch_size": plan.batch_size, "examples_per_s": plan.examples_per_s,
              "trials": [(t.get("batch_size"), t.get("cache"), t.get("examples_per_s"))
                         for t in plan.trials],
              "versus_default": plan.versus_default,
              "effort": plan.measured.get("effort"),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(table(record))
    print(json.dumps(record, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=1))
    if not args.work:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
