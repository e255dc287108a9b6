"""What the verify phase measures and returns: the finalists' interleaved ``model.fit``
rounds (``Rounds``), a quick tune's pick from them, and the winner's input-wait share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autobatch._probe._types import ProbeResult
from autobatch._search._finalists import compare_with_default, decision
from autobatch._search._space import params_to_request, point_key, robust_value
from autobatch._search._study import TrialRecord
from autobatch._search._timing import probe_timeout
from autobatch._search._tracked import TrackedRunner

Key = tuple[Any, ...]


@dataclass(frozen=True)
class VerifyOutcome:
    """The winner and what its long run measured."""

    winner: TrialRecord
    examples_per_s: float
    result: ProbeResult
    """The long run's probe."""
    fresh_worker: bool
    """Whether the long run's peak is its own (else an upper bound)."""
    finalists: list[dict[str, Any]]
    """The plan's ``measured.finalists`` table."""
    versus_default: dict[str, Any] | None
    """The plan's ``measured.versus_default`` (None without a default)."""
    input_wait_fraction: float | None = None
    """The share of a step spent waiting for input, from a bare-loop probe of the winner
    (``model.fit`` fetches its own batches and cannot show it)."""


def input_wait(runner: TrackedRunner, record: TrialRecord, steps: int,
               deadline: float) -> float | None:
    """The winner's input-wait share: a few bare-loop steps in the worker that just trained
    it (None when that probe fails; the plan then says nothing about it)."""
    request = params_to_request(record.params, steps=max(2, steps), warmup_steps=1,
                                timeout_s=probe_timeout(deadline))
    result = runner.run(request)
    return result.input_wait_fraction if result.ok else None


@dataclass
class Rounds:
    """The finalists' interleaved ``model.fit`` readings and what they say."""

    readings: dict[int, dict[Key, float]] = field(default_factory=dict)
    """Each round's ``model.fit`` examples/s per point (raw; ``scored`` weighs them)."""
    weight: Callable[[int], float] | None = None
    """The goodput objective's efficiency of a batch (``_goodput``); None: throughput."""
    batches: dict[Key, int] = field(default_factory=dict)
    failed_fit: set[Key] = field(default_factory=set)
    results: dict[Key, ProbeResult] = field(default_factory=dict)
    """Each point's latest ``model.fit`` probe."""
    scores: dict[Key, float] = field(default_factory=dict)
    comparisons: dict[Key, dict[str, Any]] = field(default_factory=dict)

    def add(self, round_index: int, params: dict[str, Any], rate: float) -> None:
        key = point_key(params)
        self.batches[key] = int(params["batch_size"])
        self.readings.setdefault(round_index, {})[key] = rate

    @property
    def scored(self) -> dict[int, dict[Key, float]]:
        """The readings the comparisons judge: examples/s, times the batch's efficiency
        under the goodput objective."""
        if self.weight is None:
            return self.readings
        weight = self.weight
        return {r: {k: v * weight(self.batches[k]) for k, v in values.items()}
                for r, values in self.readings.items()}

    def compare_all(self, finalists: list[TrialRecord], default_key: Key | None) -> None:
        if default_key is None:
            return
        scored = self.scored
        for record in finalists:
            self.comparisons[point_key(record.params)] = compare_with_default(
                scored, point_key(record.params), default_key)

    def table_row(self, record: TrialRecord, default: TrialRecord | None) -> dict[str, Any]:
        key = point_key(record.params)
        row = {**record.params,
               "trial_examples_per_s": record.raw_examples_per_s,
               "fit_examples_per_s": [round(readings[key], 2)
                                      for readings in self.readings.values() if key in readings],
               "relative_score": round(self.scores[key], 4) if key in self.scores else None,
               "failed_under_fit": key in self.failed_fit,
               "is_default": record is default}
        if key in self.comparisons:
            row["versus_default"] = self.comparisons[key]
        return row


def quick_pick(runner: TrackedRunner, rounds: Rounds, finalists: list[TrialRecord],
                table: list[dict[str, Any]], default: TrialRecord, *, steps: int,
                deadline: float) -> VerifyOutcome | None:
    """A quick tune's plan from its rounds: the first candidate that beat the default and
    stayed under the budget there, else the default (None: the default has no reading)."""
    for record in finalists + [default]:
        key = point_key(record.params)
        result = rounds.results.get(key)
        if result is None or not result.ok or key in rounds.failed_fit:
            continue
        if record is not default and not rounds.comparisons[key]["beats_default"]:
            continue
        peak = result.peak_memory_bytes
        if peak is not None and peak > runner.search_budget_bytes:
            continue
        rate = [readings[key] for readings in rounds.readings.values() if key in readings]
        return VerifyOutcome(
            winner=record, examples_per_s=float(robust_value(rate) or 0.0), result=result,
            fresh_worker=False, finalists=table,
            versus_default=decision(record, default, rounds.comparisons, finalists,
                                    rounds.scored),
            input_wait_fraction=input_wait(runner, record, steps, deadline))
    return None
