"""Judging the finalists: which trials are re-measured, how their interleaved ``model.fit``
rounds are scored, and when a candidate has beaten the untuned default beyond the noise.
Pure functions over readings; the verify phase (``_verify``) runs the probes."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

from autobatch._search._space import point_key, settings_params
from autobatch._search._study import TrialRecord
from autobatch._settings import PipelineSettings

TOP_K_VERIFY = 3
"""Finalists re-measured side by side before the winner's long verify run."""
FINALISTS_PER_BATCH = 2
"""At most this many finalists share a batch size, so that ``model.fit`` judges at least two
batch sizes when the trials measured two: the trials' bare step loop does not pay Keras'
per-step work, which favours small batches. It guarantees a second batch size, not a larger
one."""
FINALIST_ROUNDS = 3
"""Interleaved rounds of the finalists' ``model.fit`` re-measurement (at least; more while
the comparison with the untuned default is undecided, up to ``MAX_FINALIST_ROUNDS``)."""
MAX_FINALIST_ROUNDS = 7
"""Rounds at most: a busy machine gets more rounds rather than a guess."""
WIN_MARGIN = 0.02
"""A candidate replaces the untuned default only when its paired ratio against the default
exceeds ``1 + WIN_MARGIN`` in every round (one round may be lost from six rounds on)."""
DECISIVE_RATIO = 2.0
"""Fewer than ``FINALIST_ROUNDS`` paired rounds (a quick tune) replace the default only
when every one reads at least this ratio: a run varies by +-30% here, so two paired
readings a factor of two apart are not noise."""


def default_record(baseline: dict[str, Any] | None, ceiling_batch: int, *,
                   weight: Callable[[int], float] | None = None) -> TrialRecord | None:
    """The untuned default as a finalist: Keras' batch 32 with tf.data's AUTOTUNE, when its
    baseline probe ran and fit (a baseline that failed or lies above the ceiling cannot be
    the plan); scored as the trials are (``weight``: the goodput objective's efficiency)."""
    if not baseline or baseline.get("outcome") != "ok" or not baseline.get("examples_per_s"):
        return None
    # The search's batches are per replica (the same as global without a strategy).
    batch = int(baseline.get("per_replica_batch_size") or baseline["batch_size"])
    if batch > ceiling_batch:
        return None
    params = {"batch_size": batch, **settings_params(PipelineSettings.keras_default()),
              "jit_compile": False}
    efficiency = weight(batch) if weight is not None else 1.0
    return TrialRecord(number=-1, state="COMPLETE", params=params,
                       measurements=[float(baseline["examples_per_s"]) * efficiency],
                       efficiency=efficiency)


def pooled_records(records: list[TrialRecord]) -> dict[tuple[Any, ...], TrialRecord]:
    """The completed trials, the measurements of identical points pooled (TPE may revisit
    one)."""
    pooled: dict[tuple[Any, ...], TrialRecord] = {}
    for record in records:
        if record.state != "COMPLETE" or not record.measurements:
            continue
        key = point_key(record.params)
        if key in pooled:
            pooled[key].measurements.extend(record.measurements)
        else:
            pooled[key] = TrialRecord(number=record.number, state="COMPLETE",
                                      params=dict(record.params),
                                      measurements=list(record.measurements))
    return pooled


def lean_params(batch_size: int | None = None) -> dict[str, Any]:
    """The ceiling's own lean settings (one parallel call, prefetch 1), without XLA; with
    ``batch_size`` when given."""
    lean = {**settings_params(PipelineSettings(num_parallel_calls=1, prefetch=1)),
            "jit_compile": False}
    return lean if batch_size is None else {"batch_size": batch_size, **lean}


def pick_finalists(ranked: list[TrialRecord], k: int = TOP_K_VERIFY,
                   per_batch: int = FINALISTS_PER_BATCH) -> list[TrialRecord]:
    """The best ``k`` of ``ranked`` (best first), at most ``per_batch`` of one batch size
    while other batch sizes are left; the trials' order is kept."""
    seen: dict[int, int] = {}
    # Positions in ``ranked``, under and over the per-batch cap.
    within: list[int] = []
    beyond: list[int] = []
    for position, record in enumerate(ranked):
        batch = int(record.params["batch_size"])
        seen[batch] = seen.get(batch, 0) + 1
        (within if seen[batch] <= per_batch else beyond).append(position)
    return [ranked[i] for i in sorted((within + beyond)[:k])]


def relative_scores(rounds: dict[int, dict[Any, float]]) -> dict[Any, float]:
    """Each point's median over the rounds of its reading divided by the round's geometric
    mean.

    A shared machine drifts by more than the finalists differ; within one interleaved round
    the finalists run back to back, so scoring each against its round cancels the drift
    between rounds. The geometric mean, not the median: against the median the middle
    reading of three scores exactly 1.0, and two finalists that were each the middle of one
    round tied. Rounds with a single reading carry no comparison and are skipped; a point
    seen only there scores 1.0 (docs/tune.md has the readings behind both rules).
    """
    per_point: dict[Any, list[float]] = {}
    for readings in rounds.values():
        if len(readings) < 2:
            continue
        # Only positive readings set the centre: a zero would zero the whole round.
        values = [v for v in readings.values() if v > 0]
        centre = statistics.geometric_mean(values) if values else 0.0
        for key, value in readings.items():
            per_point.setdefault(key, []).append(value / centre if centre > 0 else 0.0)
    scores = {key: float(statistics.median(values)) for key, values in per_point.items()}
    for readings in rounds.values():
        for key in readings:
            scores.setdefault(key, 1.0)
    return scores


def compare_with_default(rounds: dict[int, dict[Any, float]], key: Any,
                         default_key: Any) -> dict[str, Any]:
    """A candidate against the untuned default from the rounds both read in.

    Each round holds both, measured back to back, so the ratio of the two readings cancels
    the drift of a shared machine between rounds (the same run varies by +-30% here). The
    candidate beats the default only when the paired ratios lie above ``1 + WIN_MARGIN``
    all the way down: in every round for up to five rounds, in all but one from six on (a
    sign-test reading: by chance alone three straight wins come one time in eight, six of
    seven one time in sixteen), or, in a quick tune with fewer rounds, when every round
    reads ``DECISIVE_RATIO`` or more. ``low``/``high`` are those trimmed extremes and ``noise`` the
    half-width of that spread as a fraction.
    """
    ratios = []
    for index in sorted(rounds):
        readings = rounds[index]
        value, base = readings.get(key), readings.get(default_key)
        if value and base and value > 0 and base > 0:
            ratios.append(float(value) / float(base))
    if not ratios:
        return {"rounds": 0, "paired_ratios": [], "median_ratio": None, "low": None,
                "high": None, "noise": None, "beats_default": False}
    ordered = sorted(ratios)
    trim = (len(ordered) - 1) // 5
    low, high = ordered[trim], ordered[-1 - trim]
    noise = math.exp((math.log(high) - math.log(low)) / 2) - 1
    return {
        "rounds": len(ratios),
        "paired_ratios": [round(r, 4) for r in ratios],
        "median_ratio": round(float(statistics.median(ratios)), 4),
        "low": round(low, 4),
        "high": round(high, 4),
        "noise": round(noise, 4),
        "beats_default": (len(ratios) >= FINALIST_ROUNDS and low > 1 + WIN_MARGIN)
        or min(ratios) >= DECISIVE_RATIO,
    }


def undecided(comparison: dict[str, Any]) -> bool:
    """More rounds could change the verdict: the median says faster, the spread does not."""
    median = comparison.get("median_ratio")
    return (not comparison["beats_default"] and median is not None
            and median > 1 + WIN_MARGIN)



def decision(winner: TrialRecord, default: TrialRecord,
              comparisons: dict[tuple[Any, ...], dict[str, Any]],
              finalists: list[TrialRecord],
              round_readings: dict[int, dict[tuple[Any, ...], float]]) -> dict[str, Any]:
    """The plan's ``measured.versus_default``: which won and how sure the win is."""
    rounds = len(round_readings)
    if winner is not default and point_key(winner.params) not in comparisons:
        # A step below at lean settings, after the default itself failed its long run.
        return {"decision": "tuned", **compare_with_default({}, None, None),
                "reason": "replaced the untuned default, which failed its long run: a "
                          "smaller batch at lean settings passed"}
    if winner is not default:
        comparison = comparisons[point_key(winner.params)]
        return {"decision": "tuned", **comparison,
                "reason": (f"beat the untuned default in {comparison['rounds']} interleaved "
                           f"model.fit rounds by {comparison['low']:.2f}-"
                           f"{comparison['high']:.2f}x (median {comparison['median_ratio']:.2f}x)")}
    # The default is the plan: report the best candidate's comparison as what it lost.
    best = next((comparisons[point_key(r.params)] for r in finalists
                 if comparisons.get(point_key(r.params), {}).get("median_ratio")), None)
    if best is None:
        reason = ("no candidate was measured side by side with the default "
                  f"({rounds} rounds fit the time budget)" if rounds
                  else "no candidate was measured side by side with the default")
        best = compare_with_default({}, None, None)
    elif best["beats_default"]:
        reason = ("the candidates that beat the default failed later, under model.fit or "
                  f"in their long run (best median {best['median_ratio']:.2f}x)")
    elif best["rounds"] < FINALIST_ROUNDS:
        reason = (f"only {best['rounds']} paired rounds fit the time budget; "
                  f"{FINALIST_ROUNDS} are needed to replace the default (or every one at "
                  f"{DECISIVE_RATIO:g}x or more)")
    elif best["median_ratio"] > 1 + WIN_MARGIN:
        reason = (f"the best candidate read {best['median_ratio']:.2f}x the default (median) "
                  f"but {best['low']:.2f}x in its worst round: not beyond the noise")
    else:
        reason = f"no candidate beat the default (best median {best['median_ratio']:.2f}x)"
    return {"decision": "default", **best, "beats_default": False, "reason": reason}
