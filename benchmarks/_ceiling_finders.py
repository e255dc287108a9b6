"""Batch-size ceiling finders, all on autobatch's isolated probe engine and one budget.

The anchors are re-implemented from their published logic so that only the search differs:
- Lightning ``scale_batch_size(mode="binsearch")``: start at 2, double until a failure, then
  bisect between the last success and the failure until they are adjacent.
- Ultralytics AutoBatch: probe 1, 2, 4, 8, 16, fit a line through memory against batch size,
  and aim it at 60% of the memory; the pick is never run.
- Accelerate ``find_executable_batch_size``: start high and halve on every OOM (its default
  start of 128 never looks above 128, so it starts at 1024 here to be able to find the ceiling).
- autobatch: a memory model from a few cheap probes, a predicted ceiling, verification, and
  bisection only on a miss.
The true maximum is what a user's training process can take: an exact bisection over
fresh plain-Keras processes (``image_dataset_from_directory`` + ``model.fit``, peak resident
memory ``VmHWM``, no autobatch code on the path), and every finder's pick is run once more in
such a process to see whether it fits. The anchors probe with the bare loop in one worker,
as before; autobatch's own finder trains with ``model.fit`` in a fresh worker per probe.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("benchmarks.ceiling")

PROBE_STEPS = 2

PLAIN_FIT = r"""
import sys
import keras
from autobatch._for_benchmarks import resolve_model
data_dir, spec, size, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ds = keras.utils.image_dataset_from_directory(data_dir, image_size=(size, size),
                                              batch_size=batch, verbose=False)
model = resolve_model(spec, num_classes=len(ds.class_names), image_size=size)
model.fit(ds.repeat(), steps_per_epoch=4, epochs=1, verbose=0)
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print("VMHWM_BYTES", int(line.split()[1]) * 1024)
"""


class PlainFitProbe:
    """A batch judged by a fresh plain-Keras training process: it fits when the process
    ends well with its peak resident memory under the budget."""

    def __init__(self, data_dir: Path, spec: str, image_size: int, budget_bytes: int) -> None:
        self.args = [str(data_dir), spec, str(image_size)]
        self.budget_bytes = budget_bytes
        self.count = 0
        self.log: list[dict[str, Any]] = []

    def __call__(self, batch_size: int) -> tuple[bool, int | None]:
        self.count += 1
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", PLAIN_FIT, *self.args, str(batch_size)],
                              capture_output=True, text=True, timeout=1800,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        peaks = [int(line.split()[1]) for line in proc.stdout.splitlines()
                 if line.startswith("VMHWM_BYTES")]
        peak = peaks[0] if peaks else None
        fits = proc.returncode == 0 and peak is not None and peak <= self.budget_bytes
        self.log.append({"batch_size": batch_size, "peak_bytes": peak, "fits": fits,
                         "wall_s": round(time.perf_counter() - started, 1)})
        logger.info("  plain fit %d: peak %s -> %s", batch_size, peak,
                    "fits" if fits else "over")
        return fits, peak


class CountingProbe:
    """Probes through one runner, counting them. Every request asks for its own peak, so the
    runner starts a fresh worker before a step down, since a worker never gives memory back
    (the same rule autobatch's own search follows); ``fresh_each`` restarts every time."""

    def __init__(self, runner: Any, budget_bytes: int, fresh_each: bool = False) -> None:
        self.runner = runner
        self.budget_bytes = budget_bytes
        self.fresh_each = fresh_each
        self.count = 0
        self.log: list[dict[str, Any]] = []

    def __call__(self, batch_size: int) -> tuple[bool, int | None]:
        from autobatch import PipelineSettings
        from autobatch._for_benchmarks import ProbeRequest

        if self.fresh_each:
            self.runner.restart()
        result = self.runner.run(ProbeRequest(
            batch_size=batch_size, steps=PROBE_STEPS, warmup_steps=1,
            settings=PipelineSettings(num_parallel_calls=1, prefetch=1), own_peak=True))
        self.count += 1
        peak = result.peak_memory_bytes
        fits = result.ok and (peak is None or peak <= self.budget_bytes)
        self.log.append({"batch_size": batch_size, "outcome": result.outcome, "peak_bytes": peak})
        logger.info("  probe %d: %s peak %s -> %s", batch_size, result.outcome, peak,
                    "fits" if fits else "over")
        return fits, peak


def lightning_binsearch(probe: CountingProbe, cap: int) -> int:
    low, high, size = 0, None, 2
    while True:
        fits, _ = probe(size)
        if fits:
            low = size
            if high is None:
                if size >= cap:
                    return size
                size = min(cap, size * 2)
                continue
        else:
            high = size
        if high is not None:
            if high - low <= 1:
                return low
            size = (low + high) // 2


def ultralytics_autobatch(probe: CountingProbe, cap: int, fraction: float = 0.60) -> int:
    sizes, peaks = [], []
    for size in (1, 2, 4, 8, 16):
        fits, peak = probe(size)
        if not fits or peak is None:
            break
        sizes.append(size)
        peaks.append(peak)
    if len(sizes) < 2:
        return max(1, sizes[-1] if sizes else 1)
    slope, intercept = np.polyfit(sizes, peaks, deg=1)
    pick = int((probe.budget_bytes * fraction - intercept) / slope) if slope > 0 else cap
    return max(1, min(cap, pick))


def accelerate_halving(probe: CountingProbe, start: int = 1024) -> int:
    size = start
    while size >= 1:
        fits, _ = probe(size)
        if fits:
            return size
        size //= 2
    return 0


def true_maximum(probe: CountingProbe, cap: int) -> int:
    """Exact largest fitting batch: doubling from 32 then bisection (or bisection below 32),
    every probe a fresh process."""
    low, high = 0, None
    size = 32
    while high is None:
        fits, _ = probe(size)
        if fits:
            low = size
            if size >= cap:
                return size
            size = min(cap, size * 2)
        else:
            high = size
    while high - low > 1:
        mid = (low + high) // 2
        if probe(mid)[0]:
            low = mid
        else:
            high = mid
    return low


def compare(data_dir: Path, spec: str, image_size: int, budget: str, work: Path,
            only_autobatch: bool = False,
            earlier: dict[str, Any] | None = None) -> dict[str, Any]:
    """The finders against the true maximum; ``earlier`` (a previous run's section for the
    same model, size and budget) lends its truth and its anchors' rows, so that only
    autobatch's finder runs again."""
    from autobatch import parse_memory_size
    from autobatch._for_benchmarks import SubprocessProbeRunner, find_ceiling

    budget_bytes = parse_memory_size(budget)
    cap = 4096

    def runner() -> Any:
        return SubprocessProbeRunner(spec, data_dir, image_size=image_size,
                                     host_memory_budget_bytes=budget_bytes, work_dir=work)

    finders: dict[str, dict[str, Any]] = {}

    def measure(name: str, search, fresh_each: bool = False) -> int:
        with runner() as probe_runner:
            probe = CountingProbe(probe_runner, budget_bytes, fresh_each=fresh_each)
            start = time.perf_counter()
            pick = search(probe)
            wall = time.perf_counter() - start
        finders[name] = {"ceiling": int(pick), "probes": probe.count, "wall_time_s": wall,
                         "log": probe.log}
        logger.info("%s: ceiling %d with %d probes in %.0f s", name, pick, probe.count, wall)
        return pick

    truth = PlainFitProbe(data_dir, spec, image_size, budget_bytes)
    reuse = bool(earlier) and earlier.get("truth") is not None and all(
        earlier.get(k) == v for k, v in (("model", spec), ("image_size", image_size),
                                        ("budget", budget)))
    if reuse:
        assert earlier is not None
        true_max, true_wall = int(earlier["true_max"]), float(earlier["true_max_wall_time_s"])
        bisection = int(earlier.get("true_max_probes") or 0)
        truth.log = [entry for entry in (earlier.get("truth_log") or [])[:bisection]
                     if not entry.get("pick_check")]
        finders.update({k: v for k, v in earlier["finders"].items() if k != "autobatch"})
        logger.info("ceiling: the earlier run's true maximum %d and anchors reused", true_max)
    else:
        logger.info("ceiling: true maximum by bisection over fresh plain-Keras processes")
        start = time.perf_counter()
        true_max = true_maximum(truth, cap)
        true_wall = time.perf_counter() - start

    if not only_autobatch and not reuse:
        measure("lightning_binsearch", lambda p: lightning_binsearch(p, cap))
        measure("ultralytics_autobatch", lambda p: ultralytics_autobatch(p, cap))
        measure("accelerate_halving", lambda p: accelerate_halving(p))

    def autobatch_search(probe: CountingProbe) -> int:
        class _Counted:
            memory_budget_bytes = budget_bytes
            search_budget_bytes = budget_bytes

            def run(self, request):
                probe.count += 1
                return probe.runner.run(request)

            def restart(self):
                probe.runner.restart()

            @property
            def worker_largest_batch(self):
                return probe.runner.worker_largest_batch

        result = find_ceiling(_Counted(), num_examples=None, max_batch_size=cap)
        probe.log = [{"batch_size": p.batch_size, "outcome": p.outcome,
                      "peak_bytes": p.peak_memory_bytes} for p in result.probes]
        return result.batch_size

    measure("autobatch", autobatch_search)

    # Run every pick once more, in a fresh plain-Keras process, to see whether it fits.
    for name, finder in finders.items():
        if reuse and name != "autobatch":
            continue
        fits, peak = truth(finder["ceiling"])
        truth.log[-1]["pick_check"] = name
        finder["pick_over_budget"] = not fits
        finder["pick_peak_bytes"] = peak
    return {
        "model": spec, "image_size": image_size, "budget": budget, "budget_bytes": budget_bytes,
        "true_max": true_max,
        "true_max_probes": sum(1 for entry in truth.log if not entry.get("pick_check")),
        "true_max_wall_time_s": true_wall, "truth": "fresh plain-Keras model.fit processes",
        "truth_log": truth.log, "finders": finders,
    }
