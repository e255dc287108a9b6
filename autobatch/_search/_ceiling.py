"""The memory ceiling: the largest batch whose measured peak memory stays under the budget.

Peak memory grows roughly linearly with the batch (fixed model, optimizer and runtime cost
plus activations per example). We fit that line from a few cheap ascending probes, predict
the largest batch under the budget (aiming a little below it), probe there, refit with the
new (farther) point, and bisect only when a probe misses. The search stops as soon as the
verified batch reads within a few per cent of the budget or the line leaves less than 5%
more batch above it: typically two cheap probes and one verify. The reported ceiling is
always a batch that was run successfully, never a prediction. The math lives in small pure
functions; only ``find_ceiling`` talks to a probe runner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from autobatch._errors import ProbeError
from autobatch._probe import ProbeRunner
from autobatch._probe._types import ProbeRequest, ProbeResult
from autobatch._search._memory_line import (
    MAX_BATCH_SIZE,
    MemoryModel,
    after_miss,
    fit_memory_model,
    next_bisect,
    predict_ceiling,
)
from autobatch._settings import PipelineSettings

__all__ = ["MAX_BATCH_SIZE", "CeilingNotFound", "CeilingResult", "MemoryModel", "after_miss",
           "close_enough", "find_ceiling", "fit_memory_model", "initial_batches",
           "next_bisect", "predict_ceiling", "probe_fits", "room_left"]

logger = logging.getLogger(__name__)

DEFAULT_CLOSE_ENOUGH = 0.05
"""Stop once the fitting and the failing (or predicted) batch are within 5% of each other."""
AIM_MARGIN = 0.03
"""A verify probe aims this share below the budget: the line is nearly right, readings are
noisy by a few per cent, and a probe that fits ends the search where one that misses costs
two more (a fresh worker below it, then a refit). 3% centres the reading in the
[FULL_ENOUGH, 100%] band that stops the search (measurements: docs/tune.md)."""
READING_NOISE = 0.025
"""A fit probe counts as fitting only this share under the budget: one batch's peak differs
by 1-3% between fresh processes (MobileNetV2 at 96 px, batch 135: the probe read 3.18 GB, a
plain Keras process 3.23 GB against a 3.22 GB budget), so a pick read at 99% of the budget
can be over it when the user's training runs."""
FRESH_ABOVE = 0.7
"""A fit probe the line puts at this share of the budget or more runs in a fresh worker."""
FULL_ENOUGH = 0.93
"""Stop once a fitting probe's peak reaches this share of the budget: what is left is within
the noise of one reading (host readings of one batch vary by about +-5% between fresh
processes; measurements: docs/tune.md)."""


def close_enough(low: int, high: int, fraction: float = DEFAULT_CLOSE_ENOUGH) -> bool:
    """True once the fitting batch is within ``fraction`` of the failing one (or adjacent)."""
    return high - low <= 1 or low >= (1.0 - fraction) * high


def room_left(model: MemoryModel | None, budget_bytes: int, low: int, low_peak: int | None,
              close_fraction: float = DEFAULT_CLOSE_ENOUGH) -> bool:
    """True while the fitting batch ``low`` may still be short of the ceiling by more than
    ``close_fraction``: its peak is below ``FULL_ENOUGH`` of the budget and the line puts
    the largest fitting batch more than ``close_fraction`` above it."""
    if low_peak is not None and low_peak >= FULL_ENOUGH * budget_bytes:
        return False
    if model is None:
        return True
    return model.largest_batch_under(budget_bytes) > (1.0 + close_fraction) * low


def initial_batches(cap: int, start: int = 16, factor: int = 4) -> list[int]:
    """Two cheap ascending probes to fit the first line: ``start`` and ``start * factor``.

    Small but not tiny: at batch 1-2 memory is all fixed cost and the allocator's rounding
    hides the slope; and the nearer the second point is to the ceiling, the shorter the
    extrapolation the verify probe depends on.
    """
    first = max(1, min(start, cap))
    second = min(first * factor, cap)
    return [first] if second == first else [first, second]


def probe_fits(result: ProbeResult, budget_bytes: int) -> bool:
    """A probe fits when it ran to the end and its peak stayed under the budget."""
    peak = result.peak_memory_bytes
    return result.ok and (peak is None or peak <= budget_bytes)


@dataclass
class CeilingResult:
    """What the ceiling search found. ``batch_size`` is a probe that ran and fit."""

    batch_size: int
    budget_bytes: int
    probes: list[ProbeResult] = field(default_factory=list)
    memory_model: MemoryModel | None = None
    predicted_batch_size: int | None = None
    first_failing_batch_size: int | None = None
    capped_by: str | None = None
    """"num_examples" or "max_batch_size" when the search stopped at a cap, not at memory."""

    @property
    def probe(self) -> ProbeResult | None:
        """The successful probe at the ceiling."""
        for result in reversed(self.probes):
            if result.batch_size == self.batch_size and probe_fits(result, self.budget_bytes):
                return result
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "probes": [p.to_dict() for p in self.probes],
            "memory_model": self.memory_model.to_dict() if self.memory_model else None,
            "predicted_batch_size": self.predicted_batch_size,
            "first_failing_batch_size": self.first_failing_batch_size,
            "budget_bytes": self.budget_bytes,
            "capped_by": self.capped_by,
        }


class CeilingNotFound(ProbeError):
    """Even the smallest batch did not fit (``tune`` raises it as a UsageError)."""

    def __init__(self, result: ProbeResult) -> None:
        super().__init__(result.error or result.outcome)
        self.result = result


def find_ceiling(
    runner: ProbeRunner,
    *,
    num_examples: int | None,
    settings: PipelineSettings | None = None,
    jit_compile: bool = False,
    max_batch_size: int = MAX_BATCH_SIZE,
    max_probes: int | None = None,
    steps: int = 2,
    warmup_steps: int = 1,
    timeout_s: float = 300.0,
    close_fraction: float = DEFAULT_CLOSE_ENOUGH,
    on_probe: Callable[[ProbeResult], None] | None = None,
    prior: Sequence[ProbeResult] = (),
    deadline_s: float | None = None,
    fit: bool = True,
) -> CeilingResult:
    """Find the largest batch that fits the runner's memory budget, with few probes.

    Ascending probes share one worker (memory only grows there, so each reading is the
    probe's own peak); every request asks for its ``own_peak``, so the runner starts a
    fresh worker before a batch below the largest its worker ran, because a worker does not
    give memory back and would read the larger probe's peak.

    Args:
        runner: a ``ProbeRunner`` (``run`` honouring ``ProbeRequest.own_peak``); a probe
            fits under its ``search_budget_bytes``.
        num_examples: the data size; no batch beyond it is tried (None: unknown).
        settings: pipeline settings for the probes (a lean, fixed pipeline by default).
        max_batch_size: hard cap on the batch.
        max_probes: give up refining after this many probes of its own, ``prior`` not
            counted (the best fit so far stands); default 4 with ``fit`` (each probe starts
            a worker), 8 without.
        steps: timed steps per probe (memory needs few).
        close_fraction: stop once fit and miss are within this fraction.
        on_probe: called with each result (progress display).
        prior: probes already run, in ascending order, in the runner's current worker (for
            example the untuned baseline); they count as the first points of the line.
        deadline_s: ``time.perf_counter()`` value after which no refining probe starts
            (the best verified batch so far stands).
        fit: every probe trains with ``model.fit`` on the freshly loaded model in a fresh
            worker: a user's training process at that batch, the optimizer built inside
            its first, heavier step (False: the bare loop in one reused worker, the older
            and cheaper way, which reads a larger batch high after smaller ones and misses
            that first step; kept for comparison). ``prior`` then holds such readings.

    Raises:
        CeilingNotFound: the smallest batch tried did not fit.
    """
    # A runner may keep part of its budget free (fit's own overhead): compare against that.
    budget = _search_budget(runner)
    if fit:
        budget = int(budget * (1.0 - READING_NOISE))
    # A fit probe reads what Keras' own loader would hold (AUTOTUNE's buffers); the bare
    # loop, the lean pipeline's.
    settings = settings or (PipelineSettings.keras_default() if fit else
                            PipelineSettings(num_parallel_calls=1, prefetch=1))
    cap = max_batch_size if not num_examples else min(max_batch_size, int(num_examples))
    cap = max(1, cap)
    probes: list[ProbeResult] = []
    ok_points: list[tuple[int, int]] = []
    low, high = 0, cap + 1  # low fits (0: nothing yet), high fails (cap + 1: not yet)
    low_peak: int | None = None  # the peak memory read at ``low``
    model: MemoryModel | None = None
    first_prediction: int | None = None
    limit = 0  # set below, once the prior probes are in

    def run(batch: int) -> bool:
        nonlocal limit
        # own_peak: the runner starts a fresh worker before a batch smaller than one its
        # worker already ran (that worker would read the larger probe's memory).
        request = ProbeRequest(
            batch_size=batch,
            settings=settings,
            steps=steps,
            warmup_steps=warmup_steps,
            jit_compile=jit_compile,
            timeout_s=timeout_s,
            own_peak=True,
            mode="fit" if fit else "loop",
        )
        if fit and getattr(runner, "worker_largest_batch", False) and near_budget(batch):
            runner.restart()  # a reading that decides is a fresh process's own
        result = runner.run(request)
        if on_probe is not None:
            on_probe(result)
        if result.outcome == "crash":
            # A worker that died for a reason other than memory (killed from outside, a
            # crash at start-up) says nothing about whether the batch fits: the probe runs
            # again in a fresh worker, and only a second crash counts against the batch.
            logger.warning("ceiling probe batch %d crashed (%s); retrying in a fresh worker",
                           batch, (result.error or "").strip().splitlines()[-1:])
            probes.append(result)
            runner.restart()
            result = runner.run(request)
            if on_probe is not None:
                on_probe(result)
        elif fit and not result.worker_started and not probe_fits(result, budget):
            # A reused worker's reading bounds the peak from above only: a miss there is
            # not a verdict, so the batch runs again in a fresh process.
            logger.info("ceiling probe batch %d missed in a reused worker; rerunning fresh",
                        batch)
            probes.append(result)
            limit += 1  # a reading that decides nothing does not count against the search
            runner.restart()
            result = runner.run(request)
            if on_probe is not None:
                on_probe(result)
        return record(result)

    def record(result: ProbeResult) -> bool:
        nonlocal low, high, low_peak
        batch = result.batch_size
        probes.append(result)
        fits = probe_fits(result, budget)
        if fits:
            if batch >= low:
                low, low_peak = batch, result.peak_memory_bytes
            if result.peak_memory_bytes is not None:
                ok_points.append((batch, int(result.peak_memory_bytes)))
        else:
            high = min(high, batch)
        logger.info(
            "ceiling probe batch %d: %s, peak %s of budget %d",
            batch, result.outcome, result.peak_memory_bytes, budget,
        )
        return fits

    def near_budget(batch: int) -> bool:
        """Whether a fit probe of ``batch`` needs a fresh worker: the line (with one point,
        the proportional estimate) puts it at ``FRESH_ABOVE`` of the budget or more.
        Below, a reused worker's reading (ascending: an upper bound, since a worker never
        gives memory back) decides as well, and saves a worker start."""
        line = fit_memory_model(ok_points)
        if line is None:
            if not ok_points:
                return False
            # One point, no line yet: the proportional estimate (no fixed part) is the
            # largest the batch can read. MobileNetV2's batch 128 after 32 read 3.2 GB in
            # a reused worker against 2.8 GB fresh, a false miss that cost a probe.
            known, peak = max(ok_points)
            return batch * peak / known >= FRESH_ABOVE * budget
        return line.predict_bytes(batch) >= FRESH_ABOVE * budget

    def out_of_time() -> bool:
        return deadline_s is not None and time.perf_counter() > deadline_s

    for result in prior:
        record(result)

    # 1. Cheap ascending probes for the first line.
    # Fit probes start at Keras' default batch, as the tune's untuned default does (a line
    # from batch 16 and 64 put the small CNN's first verify 7% over its true ceiling).
    firsts = (initial_batches(cap, start=32 if fit else 16) if not probes
              else [min(cap, max(low, 1) * 4)])
    limit += len(probes) + (max_probes if max_probes is not None else 4 if fit else 8)
    for batch in firsts:
        if batch >= high or batch <= low:
            break
        if not run(batch) and low == 0:
            # The smallest batch failed: halve down until one fits, or give up at 1.
            while low == 0 and batch > 1:
                batch = max(1, batch // 2)
                run(batch)
            if low == 0:
                raise CeilingNotFound(probes[-1])
            break

    # 2. Predict, verify, refit with the farther point; bisect on a miss.
    if low == 0:
        batch = high
        while low == 0 and batch > 1:  # every prior probe failed: halve down
            batch = max(1, batch // 2)
            run(batch)
        if low == 0:
            raise CeilingNotFound(probes[-1])
    while (len(probes) < limit and low < cap and not out_of_time()
           and not close_enough(low, high, close_fraction)):
        if low_peak is not None and low_peak >= FULL_ENOUGH * budget:
            break  # the verified batch reads within the noise of the budget
        model = fit_memory_model(ok_points) or model
        if high <= cap:
            # A miss is known: the boundary lies in (low, high). Use the line while it
            # points inside the bracket's upper part, else bisect.
            batch = after_miss(model, budget, low=low, high=high, margin=close_fraction / 2)
        elif model is None:
            batch = min(cap, max(low * 2, low + 1))
        else:
            if not room_left(model, budget, low, low_peak, close_fraction):
                break  # the line leaves less than close_fraction more batch above ``low``
            batch = predict_ceiling(model, int(budget * (1.0 - AIM_MARGIN)), low=low,
                                    high=high)
            if first_prediction is None:
                first_prediction = model.largest_batch_under(budget)
        batch = max(low + 1, min(batch, high - 1, cap))
        run(batch)

    capped_by = None
    if low >= cap:
        capped_by = "num_examples" if num_examples and cap == num_examples else "max_batch_size"
    return CeilingResult(
        batch_size=low,
        budget_bytes=budget,
        probes=probes,
        memory_model=fit_memory_model(ok_points) or model,
        predicted_batch_size=first_prediction,
        first_failing_batch_size=high if high <= cap else None,
        capped_by=capped_by,
    )


def _search_budget(runner: ProbeRunner) -> int:
    """What a probe's peak must stay under; a runner without a budget cannot be searched."""
    budget = runner.search_budget_bytes
    if budget is None:
        raise ProbeError("the probe runner has no memory budget; pass memory_budget")
    return int(budget)
