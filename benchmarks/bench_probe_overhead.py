"""Overhead of a probe after the first in a reused worker (goal: under 3 s).

Overhead = the parent's wall time of a probe minus its timed steps (so it counts the warm-up
step, building the pipeline, the protocol round trip and any retrace). Usage:
``python benchmarks/bench_probe_overhead.py [--model mobilenet_v2] [--image-size 96]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batches", default="8,8,12,16,16,24,32")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _probe_helpers import folder_source
    from conftest import make_image_folder

    from autobatch._for_benchmarks import ProbeRequest, SubprocessProbeRunner

    root = Path(args.data_dir) if args.data_dir else make_image_folder(
        Path(tempfile.mkdtemp(prefix="autobatch-bench-")) / "data",
        {"a": 40, "b": 30, "c": 30}, size=(128, 112))
    rows = []
    with SubprocessProbeRunner(args.model, folder_source(root), image_size=args.image_size) as r:
        for batch in (int(b) for b in args.batches.split(",")):
            result = r.run(ProbeRequest(batch_size=batch, steps=args.steps))
            timed = sum(result.step_times_s)
            rows.append({"batch_size": batch, "outcome": result.outcome,
                         "wall_time_s": round(result.wall_time_s or 0, 3),
                         "timed_steps_s": round(timed, 3),
                         "overhead_s": round((result.wall_time_s or 0) - timed, 3),
                         "worker_started": result.worker_started,
                         "trace_count": result.worker_trace_count})
        starts = r.worker_starts
    later = [row["overhead_s"] for row in rows[1:] if not row["worker_started"]]
    summary = {"model": args.model, "image_size": args.image_size, "probes": rows,
               "worker_starts": starts, "first_probe_wall_s": rows[0]["wall_time_s"],
               "median_overhead_after_first_s": statistics.median(later) if later else None}
    print(json.dumps(summary, indent=2))
    return 0 if later and statistics.median(later) < 3.0 else 1


if __name__ == "__main__":
    sys.exit(main())
