"""The verify phase: the trials' best few re-measured side by side with ``model.fit``
(interleaved rounds) together with the untuned default, then the winner's long run in a
fresh worker, so that its peak memory is its own; the next candidate on a miss."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from autobatch._errors import ProbeError
from autobatch._plan import DEFAULT_REFERENCE_BATCH_SIZE
from autobatch._probe._types import ProbeResult
from autobatch._search._events import Emitter, mib
from autobatch._search._finalists import (
    FINALIST_ROUNDS,
    MAX_FINALIST_ROUNDS,
    decision,
    lean_params,
    pick_finalists,
    pooled_records,
    relative_scores,
    undecided,
)
from autobatch._search._rounds import Rounds, VerifyOutcome, input_wait, quick_pick
from autobatch._search._run import SearchRun
from autobatch._search._space import epoch_rate, params_to_request, point_key, robust_value
from autobatch._search._study import TrialRecord
from autobatch._search._timing import (
    FINALIST_MIN_TIME_S,
    VERIFY_MIN_TIME_S,
    probe_cost_s,
    probe_timeout,
    remaining,
)
from autobatch._search._tracked import TrackedRunner

logger = logging.getLogger(__name__)

VERIFY_ATTEMPTS = 5
"""Long verify runs tried before giving up (each failure rules out larger batches)."""

def verify_phase(run: SearchRun, records: list[TrialRecord], ceiling_batch: int, *,
                 default: TrialRecord | None, first_probe_s: float,
                 retrace_s: float,
                 quick_candidates: list[TrialRecord] | None = None) -> VerifyOutcome:
    """``verify`` for this tune, then the decision against the default said."""
    outcome = verify(
        run.runner, records, ceiling_batch, deadline=run.deadline,
        trial_steps=run.config.trial_steps, verify_steps=run.config.verify_steps,
        first_probe_s=first_probe_s, retrace_s=retrace_s, emit=run.emit,
        num_examples=run.count, default=default, quick_candidates=quick_candidates,
        weight=run.weight,
    )
    versus = outcome.versus_default
    if versus is not None:
        run.emit("verify", ("kept the untuned default: " if versus["decision"] == "default"
                            else "the tuned pick ") + versus["reason"])
    return outcome


def verify(
    runner: TrackedRunner,
    records: list[TrialRecord],
    ceiling_batch: int,
    *,
    deadline: float,
    trial_steps: int,
    verify_steps: int,
    first_probe_s: float,
    emit: Emitter,
    num_examples: int | None = None,
    default: TrialRecord | None = None,
    retrace_s: float | None = None,
    quick_candidates: list[TrialRecord] | None = None,
    weight: Callable[[int], float] | None = None,
) -> VerifyOutcome:
    """Pick the winner: the trials' best few re-measured side by side with ``model.fit``
    (interleaved rounds) together with the untuned ``default`` when given, then run it
    longer in a fresh worker so its peak memory is its own; fall back to the next on a miss.

    With a ``default``, a candidate wins only if it beat the default in the paired rounds
    beyond their noise (``compare_with_default``); while the median says faster but the
    spread does not, more rounds are measured (up to ``MAX_FINALIST_ROUNDS``); when no
    candidate wins, the default is the plan.

    ``quick_candidates`` (a quick tune's unmeasured points, with a ``default``): they meet
    the default in ``model.fit`` rounds at once, the first round run whatever the clock
    says, and the winner's reading there is the plan's (no long run: its peak, from the
    reused worker, bounds the winner's from above)."""
    quick = bool(quick_candidates) and default is not None
    pooled = pooled_records(records)
    finalists = sorted(pooled.values(), key=lambda r: r.examples_per_s or 0, reverse=True)
    if not finalists and default is None:
        # No trial finished (tiny budget) and no default to fall back on: the ceiling's own
        # lean settings at Keras' default batch (or the ceiling below it), measured by the
        # long run below; never the ceiling batch itself, which no trial judged.
        params = lean_params(min(ceiling_batch, DEFAULT_REFERENCE_BATCH_SIZE))
        finalists = [TrialRecord(number=-1, state="COMPLETE", params=params)]
    finalists = list(quick_candidates or []) if quick else pick_finalists(finalists)
    retrace_s = first_probe_s / 2 if retrace_s is None else retrace_s
    first = finalists[0] if finalists else default
    assert first is not None  # finalists is empty only beside a default
    long_run_reserve_s = 0.0 if quick else probe_cost_s(first, verify_steps, VERIFY_MIN_TIME_S)

    def rounds_cost_s(entrants: list[TrialRecord]) -> float:
        """``FINALIST_ROUNDS`` rounds of ``entrants``, with one trace per input dtype."""
        traces = len({r.params.get("pixels", "float32") for r in entrants})
        return traces * retrace_s + FINALIST_ROUNDS * sum(
            probe_cost_s(r, trial_steps, FINALIST_MIN_TIME_S, fit=True) for r in entrants)

    if default is not None and not quick:
        # Fewer finalists rather than fewer rounds: a candidate needs its rounds against the
        # default to replace it at all.
        while len(finalists) > 1 and (rounds_cost_s(finalists + [default]) + long_run_reserve_s
                                      > remaining(deadline)):
            finalists = finalists[:-1]
    rounds = Rounds(weight=weight)
    default_key = point_key(default.params) if default is not None else None
    if len(finalists) + (default is not None) > 1 and remaining(deadline) > 0:
        finalists = _measure_rounds(
            runner, rounds, finalists, default, deadline=deadline, trial_steps=trial_steps,
            retrace_s=retrace_s, long_run_reserve_s=long_run_reserve_s, emit=emit,
            num_examples=num_examples, quick=quick)
    elif default is not None:
        rounds.compare_all(finalists, default_key)
    table = [rounds.table_row(r, default) for r in finalists]
    if default is not None:
        table.append(rounds.table_row(default, default))

    if quick and default is not None:
        picked = quick_pick(runner, rounds, finalists, table, default, steps=trial_steps,
                             deadline=deadline)
        if picked is not None:
            return picked
    if default is not None:
        # Only candidates that beat the default in the paired rounds may replace it; the
        # default itself is the fallback (its batch was measured to fit at the baseline).
        # A finalist that failed under fit is out, even after earlier wins.
        candidates = [r for r in finalists
                      if rounds.comparisons[point_key(r.params)]["beats_default"]
                      and point_key(r.params) not in rounds.failed_fit]
        candidates.append(default)
    else:
        # After the finalists, the other measured points (best first), then the lean ceiling
        # settings a step below: a long run can need more memory than a short probe (a
        # memory cache fills, buffers grow), and a batch that failed rules out every larger.
        backups = [r for r in sorted(pooled.values(), key=lambda r: r.examples_per_s or 0,
                                     reverse=True) if r not in finalists]
        candidates = list(finalists) + backups
    return _long_runs(runner, candidates, rounds, finalists, table, default=default,
                      deadline=deadline, verify_steps=verify_steps,
                      first_probe_s=first_probe_s, emit=emit, num_examples=num_examples)


def _measure_rounds(runner: TrackedRunner, rounds: Rounds, finalists: list[TrialRecord],
                    default: TrialRecord | None, *, deadline: float, trial_steps: int,
                    retrace_s: float, long_run_reserve_s: float, emit: Emitter,
                    num_examples: int | None, quick: bool = False) -> list[TrialRecord]:
    """The interleaved ``model.fit`` rounds of the finalists and the default; returns the
    finalists ranked.

    The finalists are judged the way the plan will train: epochs of ``model.fit``, not the
    trials' bare step loop (Keras' per-step work competes with the input pipeline's
    threads, which the loop cannot see). Their readings are kept apart from the trials':
    the two scales differ (docs/tune.md).
    """
    entrants = finalists + ([default] if default is not None else [])
    default_key = point_key(default.params) if default is not None else None
    emit("verify", f"re-measuring {len(finalists)} finalists"
         f"{' and the untuned default' if default is not None else ''} side by side "
         "with model.fit")
    # The long run must fit after the re-measurements: they stop where one more would
    # leave it too little time. Keras traces its own train function on the first probe
    # of each input dtype.
    traced: set[str] = set()
    out_of_time = False
    max_rounds = MAX_FINALIST_ROUNDS if default is not None else FINALIST_ROUNDS
    for round_index in range(max_rounds):
        if quick and round_index > 0:
            rounds.compare_all(finalists, default_key)
            if not any(undecided(rounds.comparisons[point_key(r.params)]) for r in finalists
                       if point_key(r.params) not in rounds.failed_fit):
                break  # decided (2x in every round so far, or no lead at all)
        elif round_index >= FINALIST_ROUNDS:
            rounds.compare_all(finalists, default_key)
            live = [rounds.comparisons[point_key(r.params)] for r in finalists
                    if point_key(r.params) not in rounds.failed_fit]
            # No pair can be added once the default itself failed under fit.
            if default_key in rounds.failed_fit or not any(undecided(c) for c in live):
                break
            emit("verify", f"round {round_index + 1}: the rounds so far do not settle "
                 "the comparison with the default; measuring another")
        # Alternate the order so a slow phase of a shared machine hits all alike.
        order = entrants if round_index % 2 == 0 else entrants[::-1]
        for record in order:
            if point_key(record.params) in rounds.failed_fit:
                continue
            dtype = record.params.get("pixels", "float32")
            cost_s = probe_cost_s(record, trial_steps, FINALIST_MIN_TIME_S, fit=True) + (
                0.0 if dtype in traced else retrace_s)
            last = rounds.results.get(point_key(record.params))
            if quick and last is not None and last.wall_time_s:
                cost_s = float(last.wall_time_s)  # the point's own last probe
            if not (quick and round_index == 0) and \
                    remaining(deadline) - cost_s < long_run_reserve_s:
                out_of_time = True
                break
            request = params_to_request(record.params, steps=trial_steps,
                                        warmup_steps=1, timeout_s=probe_timeout(deadline),
                                        min_time_s=FINALIST_MIN_TIME_S, mode="fit")
            result = runner.run(request)
            traced.add(dtype)
            rounds.results[point_key(record.params)] = result
            if result.ok and result.examples_per_s:
                rounds.add(round_index, record.params,
                           float(epoch_rate(result, num_examples) or 0.0))
            else:
                rounds.failed_fit.add(point_key(record.params))
                logger.warning("finalist batch %s failed under model.fit (%s): %s",
                               record.params["batch_size"], result.outcome,
                               (result.error or "").strip().splitlines()[-1:])
        if round_index in rounds.readings:
            readings = rounds.readings[round_index]
            emit("verify", f"finalist round {round_index + 1}: " + ", ".join(
                f"batch {r.params['batch_size']}"
                f"{' (default)' if r is default else ''} "
                f"{readings[point_key(r.params)]:.1f}/s"
                for r in entrants if point_key(r.params) in readings))
        if out_of_time:
            break
    rounds.scores = relative_scores(rounds.scored)
    rounds.compare_all(finalists, default_key)
    # A finalist that failed under fit (over the budget, most often: fit holds more than
    # the bare loop) goes last. The rest rank by their paired ratio against the default,
    # else by their fit scores, or by the trials' medians when the deadline cut the
    # rounds before each had a fit reading.
    comparisons, scores = rounds.comparisons, rounds.scores
    fine = [r for r in finalists if point_key(r.params) not in rounds.failed_fit]
    if comparisons:
        fine.sort(key=lambda r: (comparisons[point_key(r.params)]["beats_default"],
                                 comparisons[point_key(r.params)]["median_ratio"] or 0.0),
                  reverse=True)
    elif all(point_key(r.params) in scores for r in fine):
        fine.sort(key=lambda r: scores[point_key(r.params)], reverse=True)
    else:
        logger.info("finalist rounds incomplete; ranking by the trials' medians")
    return fine + [r for r in finalists if point_key(r.params) in rounds.failed_fit]


def _long_runs(runner: TrackedRunner, candidates: list[TrialRecord], rounds: Rounds,
               finalists: list[TrialRecord], table: list[dict[str, Any]], *,
               default: TrialRecord | None, deadline: float, verify_steps: int,
               first_probe_s: float, emit: Emitter,
               num_examples: int | None) -> VerifyOutcome:
    """The long run of each candidate in turn until one passes (``VERIFY_ATTEMPTS`` at
    most); an out-of-memory batch rules out every larger one, and a batch a step below at
    lean settings joins when none smaller is left."""
    last: ProbeResult | None = None
    failed_batch = math.inf
    attempts = 0
    while candidates and attempts < VERIFY_ATTEMPTS:
        record = candidates.pop(0)
        batch = int(record.params["batch_size"])
        # The default's batch fit at the baseline: a candidate's failure (its cache, its
        # threads) does not rule it out.
        if batch >= failed_batch and record is not default:
            continue
        attempts += 1
        long_run_s = verify_steps * batch / max(1e-9, record.examples_per_s or 1.0) + 2.0
        # A fresh worker makes the peak memory the winner's own. Without one (no time left)
        # the reading still bounds it from above, since a worker only grows.
        fresh = runner.worker_largest_batch > 0 and (
            remaining(deadline) >= first_probe_s + long_run_s)
        if fresh:
            runner.restart()
        fresh = fresh or runner.worker_largest_batch == 0
        what = "the untuned default" if record is default else f"batch {batch}"
        emit("verify", f"long run of batch {batch}"
             f"{' (the untuned default)' if record is default else ''}"
             f"{' in a fresh worker' if fresh else ' (peak is an upper bound)'}")
        # The long run's limit follows its own expected length (a worker start, tracing, a
        # cache fill and the steps at the trial's speed), not the time left: the winner must
        # be verified even when the study used its whole budget.
        expected_s = (first_probe_s if fresh else 0.0) + 3.0 * long_run_s + 30.0
        # Trained with model.fit, as the plan will be: in a fresh worker its peak is a
        # training process's own at the plan's batch and pipeline.
        # Epochs of a third of the verify steps: fit's untimed first epoch costs as much
        # as one timed one (a large model's step takes seconds on a CPU).
        request = params_to_request(record.params, steps=max(1, verify_steps // 3),
                                    warmup_steps=1,
                                    timeout_s=max(probe_timeout(deadline) * 2, expected_s),
                                    min_time_s=VERIFY_MIN_TIME_S, mode="fit")
        result = runner.run(request)
        last = result
        peak = result.peak_memory_bytes
        if result.ok and (peak is None or peak <= runner.search_budget_bytes):
            rate = float(epoch_rate(result, num_examples) or 0.0)
            value = robust_value(record.measurements + [rate])
            emit("verify", f"verified batch {record.params['batch_size']}: "
                 f"{rate:.1f} examples/s, peak {mib(peak)}",
                 best=value, result=result)
            versus = None
            if default is not None:
                versus = decision(record, default, rounds.comparisons, finalists,
                                  rounds.scored)
            return VerifyOutcome(winner=record, examples_per_s=float(rate or value),
                                 result=result, fresh_worker=fresh, finalists=table,
                                 versus_default=versus,
                                 input_wait_fraction=input_wait(runner, record,
                                                                verify_steps // 3, deadline))
        logger.warning("%s failed verification (%s); trying the next", what,
                       result.outcome if not result.ok else
                       f"peak {mib(peak)} over the search budget "
                       f"{mib(runner.search_budget_bytes)}")
        if result.outcome == "oom":
            failed_batch = min(failed_batch, batch)
            if not any(int(c.params["batch_size"]) < failed_batch for c in candidates):
                step_down = max(1, int(batch * 0.9))
                if step_down < batch:
                    candidates.append(TrialRecord(number=-1, state="COMPLETE",
                                                  params=lean_params(step_down)))
    raise ProbeError(
        f"no finalist passed the verify run (last: {last.outcome if last else 'none'}); "
        "re-run with a larger {p:memory_budget}, or with a fresh study ({p:force})"
    )
