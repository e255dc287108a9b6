"""Time accounting of a tune: what is left before the deadline, what a probe, a trial and
the verify phase are expected to cost (from the ceiling's probes and the trials so far), and
the time each phase may take."""

from __future__ import annotations

import statistics
import time
from typing import Any

from autobatch._search._finalists import FINALIST_ROUNDS, TOP_K_VERIFY
from autobatch._search._study import TrialRecord

TRIAL_MIN_TIME_S = 1.0
FINALIST_MIN_TIME_S = 1.5
VERIFY_MIN_TIME_S = 3.0
"""Timed seconds a trial / a finalist's re-measurement / the winner's long run takes at
least (more steps for a fast model). Five steps of a small model last a fraction of a
second, and on a shared machine one such window varied by +-30% (docs/tune.md)."""
VERIFY_SHARE = 0.7
"""The verify phase's rounds against the untuned default decide whether the tune ships
anything at all, so they may take up to this share of what the study has."""
XLA_TRY_FACTOR = 8
"""XLA compiles the whole train step again (minutes for a large model on a CPU): it is
tried only while more than this many worker starts' time is left."""


def remaining(deadline: float) -> float:
    """Seconds left before ``deadline`` (a ``time.perf_counter()`` value; may be negative)."""
    return deadline - time.perf_counter()


def probe_timeout(deadline: float) -> float:
    """A probe's time limit: what is left plus 30 s, between 30 s and 5 minutes."""
    return float(max(30.0, min(300.0, remaining(deadline) + 30.0)))


def ceiling_deadline(deadline: float) -> float:
    """When the ceiling search stops refining: at least half of what is left stays for the
    throughput search."""
    return time.perf_counter() + max(0.0, remaining(deadline)) / 2


def xla_affordable(deadline: float, first_probe_s: float) -> bool:
    """Whether the time left allows trying XLA (``XLA_TRY_FACTOR``)."""
    return remaining(deadline) > XLA_TRY_FACTOR * first_probe_s


def verify_reserve_cap(deadline: float) -> float:
    """The most the verify phase may keep for itself (``VERIFY_SHARE`` of what is left)."""
    return VERIFY_SHARE * max(0.0, remaining(deadline))


def first_probe_wall_s(ceiling_dict: dict[str, Any]) -> float:
    """Cost of a probe that starts a worker (process start + model load + tracing)."""
    probes = ceiling_dict.get("probes") or []
    starts = [p.get("wall_time_s") or 0.0 for p in probes if p.get("worker_started")]
    if starts:
        return float(max(starts))
    walls = [p.get("wall_time_s") or 0.0 for p in probes]
    return float(max(walls)) if walls else 10.0


def retrace_wall_s(ceiling_dict: dict[str, Any], first_probe_s: float) -> float:
    """Cost of tracing a train step again in a running worker (a new batch shape, or
    Keras' own train function in ``model.fit``): the longest ceiling probe that reused its
    worker, at most half a worker start (its share of tracing when nothing was read)."""
    probes = ceiling_dict.get("probes") or []
    reused = [p.get("wall_time_s") or 0.0 for p in probes
              if not p.get("worker_started") and p.get("outcome") == "ok"]
    if reused:
        return float(min(max(reused), first_probe_s / 2))
    return first_probe_s / 2


def typical_trial_s(records: list[TrialRecord], first_probe_s: float) -> float:
    """A trial's expected wall time: the median of the last five, else a quarter of a
    worker start (at least a second)."""
    recent = [r.duration_s for r in records[-5:] if r.duration_s > 0]
    if recent:
        return float(statistics.median(recent))
    return max(1.0, first_probe_s / 4)


def verify_reserve(records: list[TrialRecord], first_probe_s: float, verify_steps: int,
                   trial_steps: int, fit_traces: int = 1,
                   retrace_s: float | None = None, with_default: bool = True) -> float:
    """Time kept for phase 4: finalists and the default re-measured, the long run.

    ``fit_traces``: how many input dtypes the rounds train (Keras traces its train function
    once for each: the untuned default reads float32 where the study's points read uint8).
    """
    typical = typical_trial_s(records, first_probe_s)
    one_probe = typical / 1.5  # a trial is 1-2 probes
    long_run = one_probe * max(1.0, verify_steps / max(1, trial_steps))
    # The finalists and the untuned default, measured side by side (no rounds for a lone
    # finalist without a default).
    entrants = max(1, min(TOP_K_VERIFY, len(records))) + (1 if with_default else 0)
    rounds = FINALIST_ROUNDS * entrants if entrants > 1 else 0
    # Finalist probes run model.fit: an untimed epoch each, and Keras traces its own train
    # function once (about half a worker start); then a fresh worker for the long run.
    retrace_s = first_probe_s / 2 if retrace_s is None else retrace_s
    fit_trace_s = fit_traces * retrace_s if rounds else 0.0
    # The long run's fresh worker is not reserved: it runs when time is left, and without
    # it the peak read is an upper bound; the rounds against the default come first.
    return rounds * (one_probe + 1.5) + fit_trace_s + long_run


def probe_cost_s(record: TrialRecord, steps: int, min_time_s: float = 0.0, *,
                 fit: bool = False) -> float:
    """Expected wall time of one more probe of ``record``'s point: its timed steps (at least
    ``min_time_s``) plus a warm-up at the measured rate (``fit`` mode: a whole untimed
    epoch), a cached point's untimed cache fill, and a second of overhead."""
    rate = record.raw_examples_per_s or 0.0
    if rate <= 0:
        return 10.0 + min_time_s
    batch = int(record.params.get("batch_size", 1))
    step_s = batch / rate
    if fit:
        return max(steps * step_s, min_time_s) + steps * step_s + 1.5
    fill = steps if record.params.get("cache", "none") != "none" else 0
    return max(steps * step_s, min_time_s) + (1 + fill) * step_s + 1.0


class PhaseClock:
    """Wall seconds per phase of one tune, in the order they ran."""

    def __init__(self) -> None:
        self.phases_s: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases_s[phase] = round(self.phases_s.get(phase, 0.0) + now - self._last, 2)
        self._last = now
