"""The throughput study as a phase of the tune: the space for this machine and ceiling, the
stored trials a resumed tune keeps, then trials until the target or the time the verify
phase needs."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autobatch._search._ceiling_phase import Ceiling
from autobatch._search._run import SearchRun, training_batch_cap
from autobatch._search._space import (
    SearchSpace,
    build_search_space,
    decoded_dataset_bytes,
    in_space,
    memory_cache_fits,
    seed_points,
)
from autobatch._search._study import TrialRecord, record_from_frozen, run_trial
from autobatch._search._timing import (
    probe_timeout,
    typical_trial_s,
    verify_reserve,
    verify_reserve_cap,
)


@dataclass(frozen=True)
class StudyOutcome:
    space: SearchSpace
    records: list[TrialRecord]
    quick_candidates: list[TrialRecord] = field(default_factory=list)
    """A quick tune's points for ``model.fit`` against the default, unmeasured by trials."""


def study_space(run: SearchRun, ceiling: Ceiling, *, xla_ok: bool, pixels: str) -> SearchSpace:
    """The space the study searches (``search_space`` restricted to the ceiling when given).

    Its batches still leave a few weight updates per epoch: a batch of the whole data set
    may be fast per example but trains poorly, and costs the most to probe. The ceiling
    itself is still reported as measured.
    """
    line = ceiling.record.get("memory_model") or {}
    small_peak = float(line.get("intercept_bytes", 0)) + 8 * float(
        line.get("slope_bytes_per_example", 0))
    space = build_search_space(
        ceiling=min(ceiling.batch_size, training_batch_cap(run.batch_cap)),
        cpus=run.env.cpu.effective,
        memory_cache_ok=memory_cache_fits(
            decoded_dataset_bytes(run.count, run.size, run.channels, pixels=pixels),
            run.runner.host_memory_budget_bytes, small_peak),
        xla_ok=xla_ok,
        pixels=pixels,
    )
    if run.physical_batch is not None:  # an effective-batch contract: its one batch
        space = dataclasses.replace(space, batch_sizes=(run.physical_batch,))
    given = run.config.search_space
    if given is not None:
        fitting = tuple(b for b in given.batch_sizes if b <= ceiling.batch_size)
        space = dataclasses.replace(given, batch_sizes=fitting or (ceiling.batch_size,),
                                    pixels=(pixels,))
    return space


QUICK_STUDY_S = 45.0
"""A study with less time left than this is quick: its seeds start with the largest batch."""
FIT_ONLY_S = 25.0
"""A tune sized to a short job with less than this left for its study runs no bare trials:
its largest batch (the likeliest winner where decoding bounds the step) goes straight to
the paired ``model.fit`` rounds against the default. A trial there would probe the point
a second time (a 3000-image job's trial at batch 750 cost 6 s, filling its cache) and
leave no time for the round that decides."""


def study_phase(run: SearchRun, ceiling: Ceiling, *, xla_ok: bool, pixels: str,
                default: TrialRecord | None, trial_min_time_s: float) -> StudyOutcome:
    """Trials until the target count, or until one more would eat into the time kept for
    the verify phase (at most ``VERIFY_SHARE`` of what the study has)."""
    config, study, emit = run.config, run.study, run.emit
    space = study_space(run, ceiling, xla_ok=xla_ok, pixels=pixels)
    ceiling.record["search_batch_cap"] = max(space.batch_sizes)
    study.set_user_attr("search_space", space.to_dict())
    records = [record_from_frozen(t) for t in study.get_trials(deepcopy=False)
               if t.state.name in ("COMPLETE", "PRUNED", "FAIL") and in_space(t.params, space)]
    resumed = len(records)
    target = config.target_trials
    if run.quick and not records and run.deadline - time.perf_counter() < FIT_ONLY_S:
        point = seed_points(space, limit=1, largest_first=True)[0]
        emit("search", f"quick tune: batch {point['batch_size']} goes straight to model.fit "
             "against the untuned default")
        return StudyOutcome(space=space, records=[], quick_candidates=[
            TrialRecord(number=-1, state="COMPLETE", params=point)])
    best = best_value(records)
    if resumed:
        emit("search", f"resumed {resumed} stored trials", trial=resumed, trials_total=target,
             best=best)
    if not study.trials:
        quick = run.deadline - time.perf_counter() < QUICK_STUDY_S
        for params in seed_points(space, limit=max(2, min(6, target // 3)),
                                  largest_first=quick):
            study.enqueue_trial(params, skip_if_exists=True)
    # The verify phase adapts to the time it gets (fewer finalists, rounds that stop at the
    # deadline), but its rounds against the untuned default decide whether the tune ships
    # anything at all.
    reserve_cap_s = verify_reserve_cap(run.deadline)
    fit_traces = 1 if pixels == "float32" or default is None else 2

    def reserve_s() -> float:
        return min(reserve_cap_s, verify_reserve(
            records, ceiling.first_probe_s, config.verify_steps, config.trial_steps,
            fit_traces, ceiling.retrace_s, default is not None))

    verify_reserve_s = reserve_s()
    if run.shared is not None:
        run.shared.store("prepared", True)  # the phases before are stored, seeds enqueued
        return StudyOutcome(space=space, records=_shared_trials(
            run, space, records, best=best, reserve_s=reserve_s, min_time_s=trial_min_time_s,
            first_probe_s=ceiling.first_probe_s))
    while len(records) < target:
        typical_s = typical_trial_s(records, ceiling.first_probe_s)
        if time.perf_counter() + typical_s + verify_reserve_s > run.deadline:
            break
        record = run_trial(
            study, run.runner, space, best=best, steps=config.trial_steps, warmup_steps=1,
            timeout_s=probe_timeout(run.deadline), min_time_s=trial_min_time_s,
            num_examples=run.count, weight=run.weight,
        )
        records.append(record)
        best = best_value(records)
        verify_reserve_s = reserve_s()
        emit("search", f"trial {record.number}: {record.state.lower()} "
             f"{record.examples_per_s or 0:.1f} examples/s", trial=len(records),
             trials_total=target, best=best, best_params=best_params(records))
    return StudyOutcome(space=space, records=records)


def _shared_trials(run: SearchRun, space: SearchSpace, records: list[TrialRecord], *,
                   best: float | None, reserve_s: Callable[[], float],
                   min_time_s: float, first_probe_s: float) -> list[TrialRecord]:
    """Trials under slots of the shared study (``_shared``), until the study holds the target
    count from every process, or the time runs out; then every process's trials."""
    shared, config = run.shared, run.config
    assert shared is not None
    mine: list[TrialRecord] = []
    while True:
        typical_s = typical_trial_s(records + mine, first_probe_s)
        if time.perf_counter() + typical_s + reserve_s() > run.deadline:
            break
        slot = shared.claim_slot(config.target_trials, run.deadline)
        if slot is None:
            break
        number = None
        try:
            record = run_trial(
                run.study, run.runner, space, best=best, steps=config.trial_steps,
                warmup_steps=1, timeout_s=probe_timeout(run.deadline), min_time_s=min_time_s,
                num_examples=run.count, weight=run.weight)
            number = record.number
        finally:
            shared.release_slot(slot, number)
        mine.append(record)
        done = shared.finished_trials()
        best = best_value([record_from_frozen(t) for t in done]) or best
        run.emit("search", f"trial {record.number}: {record.state.lower()} "
                 f"{record.examples_per_s or 0:.1f} examples/s", trial=len(done),
                 trials_total=config.target_trials, best=best)
    return [record_from_frozen(t) for t in shared.finished_trials() if in_space(t.params, space)]


def best_value(records: list[TrialRecord]) -> float | None:
    values = [r.examples_per_s for r in records if r.state == "COMPLETE" and r.examples_per_s]
    return max(values) if values else None


def best_params(records: list[TrialRecord]) -> dict[str, Any] | None:
    done = [r for r in records if r.state == "COMPLETE" and r.examples_per_s]
    return max(done, key=lambda r: r.examples_per_s or 0).params if done else None
