"""The tune's first phases: the untuned default measured in a fresh worker, then the memory
ceiling (both stored on the study, so that a resumed tune skips them)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from autobatch._errors import UsageError
from autobatch._plan import DEFAULT_REFERENCE_BATCH_SIZE
from autobatch._probe._types import ProbeRequest, ProbeResult
from autobatch._search._assemble import ceiling_plan_dict
from autobatch._search._ceiling import CeilingNotFound, find_ceiling
from autobatch._search._events import mib
from autobatch._search._run import SearchRun, training_batch_cap
from autobatch._search._space import epoch_rate
from autobatch._search._timing import (
    FINALIST_MIN_TIME_S,
    ceiling_deadline,
    first_probe_wall_s,
    probe_timeout,
    retrace_wall_s,
)
from autobatch._settings import PipelineSettings
from autobatch._sizes import format_bytes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ceiling:
    """The ceiling phase's result: the plan's ``ceiling`` record and what it says of time."""

    record: dict[str, Any]
    batch_size: int
    first_probe_s: float
    """Cost of a probe that starts a worker."""
    retrace_s: float
    """Cost of tracing a train step again in a running worker."""


def measure_default(run: SearchRun) -> tuple[dict[str, Any] | None, list[ProbeResult]]:
    """The untuned default (batch 32, AUTOTUNE), first in a fresh worker so that its memory
    reading is its own; it also serves as the first point of the memory line.

    Returns:
        ``(baseline, prior)``: the plan's baseline record (the stored one on a resumed
        tune; None when not measured) and the probes the ceiling search may start from.
    """
    baseline: dict[str, Any] | None = run.stored.get("baseline")
    prior: list[ProbeResult] = []
    if not run.config.measure_baseline or baseline is not None:
        return baseline, prior
    runner, emit = run.runner, run.emit
    # Keras' default global batch; under a strategy, split across the replicas as Keras does.
    batch = min(max(1, DEFAULT_REFERENCE_BATCH_SIZE // run.replicas), run.batch_cap,
                run.max_batch_size)
    emit("baseline", f"batch {batch}, AUTOTUNE")
    # Trained with model.fit on the freshly loaded model, in a fresh worker: a user's own
    # training process at Keras' defaults (the optimizer built inside the first, heavier
    # step), so its peak is what that process peaks at and its rate is fit's, with Keras'
    # per-step work (the estimate the effort is sized by).
    request = ProbeRequest(batch_size=batch, settings=PipelineSettings.keras_default(),
                           steps=run.config.trial_steps, warmup_steps=1, mode="fit",
                           min_time_s=FINALIST_MIN_TIME_S,
                           timeout_s=probe_timeout(run.deadline))
    result = runner.run(request, need_memory=True)
    if result.outcome == "crash":
        # Killed from outside or crashed at start-up: no verdict on speed or memory.
        # Measured again in a fresh worker; a second failure is not stored, so that a
        # resumed tune measures it again rather than trusting a broken reading.
        logger.warning("the untuned default's probe crashed; retrying in a fresh worker")
        emit("baseline", "the worker died during the untuned default; measuring again")
        runner.restart()
        result = runner.run(request, need_memory=True)
    baseline = {
        "batch_size": batch * run.replicas,
        "per_replica_batch_size": batch,
        # Over an epoch, as the trials are scored (the last batch is partial).
        "examples_per_s": epoch_rate(result, run.count),
        "full_batch_examples_per_s": result.examples_per_s,
        "peak_memory_bytes": result.peak_memory_bytes,
        "outcome": result.outcome,
        "settings": "keras default (AUTOTUNE)",
        "mode": "fit",
        "fresh_worker": bool(result.worker_started),
    }
    if result.ok:
        run.study.set_user_attr("baseline", baseline)
    if result.ok and result.worker_started:
        prior.append(result)  # a fresh model.fit reading, as the ceiling's probes are
    elif result.outcome in ("oom", "timeout"):
        prior.append(result)  # a memory verdict: batch 32 does not fit (or swaps)
    elif not result.ok:
        logger.warning("the untuned default failed (%s); it is not stored and the "
                       "plan cannot be compared with it", result.outcome)
        runner.restart()
    emit("baseline", f"{result.examples_per_s or 0:.1f} examples/s, "
         f"peak {mib(result.peak_memory_bytes)}", result=result)
    return baseline, prior


def ceiling_phase(run: SearchRun, prior: list[ProbeResult]) -> Ceiling:
    """The memory ceiling: resumed from the study when stored (and not bounded by a crash),
    else searched (``find_ceiling``) and stored."""
    runner, emit, stored = run.runner, run.emit, run.stored
    if "ceiling" in stored and crash_bound(stored["ceiling"]):
        emit("ceiling", "the stored ceiling was bounded by a crashed probe; measuring again")
    if "ceiling" in stored and not crash_bound(stored["ceiling"]):
        record: dict[str, Any] = stored["ceiling"]
        batch_size = int(record["batch_size"])
        emit("ceiling", f"resumed: ceiling batch {batch_size}")
    else:
        emit("ceiling", "fitting peak memory against batch size")
        if not prior and runner.worker_largest_batch > 0:
            runner.restart()  # ascending probes need a worker that has run nothing larger
        # A quick tune needs the ceiling only as far as the study goes: past a quarter of
        # the data (a 3000-image job's batch 3000 cost 16 s of a 20 s tune).
        cap = training_batch_cap(run.batch_cap) if run.quick else run.batch_cap
        try:
            ceiling = find_ceiling(
                runner, num_examples=cap, max_batch_size=run.max_batch_size,
                timeout_s=probe_timeout(run.deadline), prior=prior,
                # A quick tune's round runs whatever the clock says: its ceiling may use
                # the time (stopped at the study's largest batch, it is two or three probes).
                deadline_s=run.deadline if run.quick else ceiling_deadline(run.deadline),
                on_probe=lambda r: emit(
                    "ceiling", f"batch {r.batch_size}: {r.outcome}, peak "
                    f"{mib(r.peak_memory_bytes)} of {mib(runner.memory_budget_bytes)}",
                    result=r),
            )
        except CeilingNotFound as exc:
            raise UsageError(
                f"even batch {exc.result.batch_size} does not fit the memory budget "
                f"{format_bytes(runner.memory_budget_bytes)} ({exc.result.outcome}); "
                "raise {param} or use a smaller model or image size",
                parameter="memory_budget",
            ) from None
        record = ceiling_plan_dict(ceiling)
        if cap < run.batch_cap and record.get("capped_by") == "num_examples":
            record["capped_by"] = "search_batch_cap"
        record["probe_mode"] = "fit, fresh worker"
        batch_size = ceiling.batch_size
        run.study.set_user_attr("ceiling", record)
        if crash_bound(record):
            logger.warning("the ceiling batch %d is bounded by a probe that crashed twice (not "
                           "a memory verdict); a later tune measures it again", batch_size)
        emit("ceiling", f"ceiling batch {batch_size} ({len(ceiling.probes)} probes)")
    first_probe_s = first_probe_wall_s(record)
    return Ceiling(record=record, batch_size=batch_size, first_probe_s=first_probe_s,
                   retrace_s=retrace_wall_s(record, first_probe_s))


def crash_bound(ceiling_record: dict[str, Any]) -> bool:
    """Whether the ceiling's first failing batch failed by crashing (a killed or broken
    worker), not by memory: such a ceiling is not a measurement to resume from."""
    failing = ceiling_record.get("first_failing_batch_size")
    if failing is None:
        return False
    at_failing = [p for p in ceiling_record.get("probes") or []
                  if p.get("batch_size") == failing]
    return bool(at_failing) and at_failing[-1].get("outcome") == "crash"
