"""The memory-ceiling math and search.

The pure functions are tested directly. ``find_ceiling`` is tested against a simulated
memory (the one thing a CPU test machine cannot provide on demand: a device whose peak grows
with the batch and a hard limit), including the "a worker never gives memory back" rule,
and end to end against the real subprocess worker in ``test_tune.py``.
"""

from __future__ import annotations

import math

import pytest
from _simulated import SimulatedMemory

from autobatch._probe._types import ProbeRequest, ProbeResult
from autobatch._search._ceiling import (
    FULL_ENOUGH,
    MAX_BATCH_SIZE,
    READING_NOISE,
    CeilingNotFound,
    MemoryModel,
    after_miss,
    close_enough,
    find_ceiling,
    fit_memory_model,
    initial_batches,
    predict_ceiling,
    probe_fits,
    room_left,
)
from autobatch._settings import PipelineSettings

MIB = 1 << 20


def test_fit_recovers_an_exact_line() -> None:
    points = [(8, 1000 * MIB + 8 * 14 * MIB), (32, 1000 * MIB + 32 * 14 * MIB),
              (128, 1000 * MIB + 128 * 14 * MIB)]
    model = fit_memory_model(points)
    assert model is not None
    assert model.slope_bytes_per_example == pytest.approx(14 * MIB)
    assert model.intercept_bytes == pytest.approx(1000 * MIB)


def test_fit_needs_two_distinct_batches() -> None:
    assert fit_memory_model([]) is None
    assert fit_memory_model([(8, 100), (8, 120)]) is None


def test_fit_is_robust_to_one_noisy_point() -> None:
    # The middle reading jumped by 300 MiB (allocator noise); Theil-Sen keeps the slope.
    points = [(8, 1112 * MIB), (16, 1524 * MIB), (32, 1448 * MIB), (64, 1896 * MIB)]
    model = fit_memory_model(points, last=4)
    assert model is not None
    assert 10 * MIB < model.slope_bytes_per_example < 20 * MIB


def test_fit_never_returns_a_flat_or_falling_line() -> None:
    model = fit_memory_model([(8, 900 * MIB), (32, 880 * MIB)])
    assert model is not None and model.slope_bytes_per_example > 0


def test_fit_uses_the_largest_batches() -> None:
    # Small batches sit on the fixed cost; the far end sets the slope used to extrapolate.
    points = [(2, 1000 * MIB), (4, 1000 * MIB), (64, 1000 * MIB + 64 * 12 * MIB),
              (128, 1000 * MIB + 128 * 12 * MIB), (146, 1000 * MIB + 146 * 12 * MIB)]
    model = fit_memory_model(points, last=3)
    assert model is not None
    assert model.slope_bytes_per_example == pytest.approx(12 * MIB)


def test_largest_batch_under_budget() -> None:
    model = MemoryModel(slope_bytes_per_example=10 * MIB, intercept_bytes=1000 * MIB)
    assert model.largest_batch_under(2000 * MIB) == 100
    assert model.largest_batch_under(1005 * MIB) == 0
    assert model.largest_batch_under(900 * MIB) == 0


def test_predict_stays_inside_the_bracket_and_growth_limit() -> None:
    model = MemoryModel(slope_bytes_per_example=1 * MIB, intercept_bytes=0)
    assert predict_ceiling(model, 10_000 * MIB, low=32, high=4097) == 32 * 8
    assert predict_ceiling(model, 10_000 * MIB, low=32, high=100) == 99
    assert predict_ceiling(model, 10 * MIB, low=32, high=100) == 33


def test_after_miss_prefers_the_upper_half() -> None:
    model = MemoryModel(slope_bytes_per_example=12 * MIB, intercept_bytes=1000 * MIB)
    batch = after_miss(model, 3072 * MIB, low=146, high=175)
    assert 160 <= batch < 175
    assert after_miss(None, 3072 * MIB, low=100, high=200) == 150


def test_close_enough() -> None:
    assert close_enough(96, 100)
    assert close_enough(10, 11)
    assert not close_enough(80, 100)


def test_initial_batches_respect_the_cap() -> None:
    assert initial_batches(4096) == [16, 64]
    assert initial_batches(40) == [16, 40]
    assert initial_batches(5) == [5]


def test_probe_fits_checks_outcome_and_peak() -> None:
    settings = PipelineSettings()
    ok = ProbeResult("ok", 8, settings, peak_host_memory_bytes=90)
    assert probe_fits(ok, 100)
    assert not probe_fits(ok, 80)
    assert not probe_fits(ProbeResult("oom", 8, settings), 10**12)


@pytest.mark.parametrize(
    ("fixed_mib", "per_example_mib", "budget_mib", "curve"),
    [
        (1000, 12, 3072, 0.0),   # MobileNetV2 at 96 px on CPU, roughly
        (1000, 14, 3072, 0.15),  # slope grows with the batch: the first line over-predicts
        (300, 0.05, 2048, 0.0),  # tiny model: capped, not memory-bound
        (500, 40, 1200, 0.0),    # a tight budget: ceiling in the teens
        (2000, 3, 2600, 0.3),    # strongly convex
    ],
)
def test_find_ceiling_reports_only_a_fitting_batch_near_the_truth(
    fixed_mib: float, per_example_mib: float, budget_mib: int, curve: float
) -> None:
    sim = SimulatedMemory(int(fixed_mib * MIB), int(per_example_mib * MIB), budget_mib * MIB,
                          curve)
    result = find_ceiling(sim, num_examples=5000, max_batch_size=MAX_BATCH_SIZE)
    truth = min(sim.true_ceiling(), MAX_BATCH_SIZE, 5000)
    assert result.batch_size <= truth
    assert sim.true_peak(result.batch_size) <= sim.memory_budget_bytes
    assert result.probe is not None and result.probe.ok
    # Near the truth in batch; only the strongly convex case (2000 of 2600 MiB fixed, where
    # 4% of the budget is 13% of the batch, and a real reading varies by about 5% between
    # processes) may instead stop at a reading within the noise of the budget.
    near = result.batch_size >= math.floor(0.9 * truth)
    stopped_in_noise = (curve > 0.2 and result.batch_size >= math.floor(0.8 * truth)
                        and result.probe.peak_memory_bytes is not None
                        and result.probe.peak_memory_bytes >= FULL_ENOUGH * sim.memory_budget_bytes)
    assert near or stopped_in_noise
    assert len(result.probes) <= 8


def test_find_ceiling_typically_needs_few_probes() -> None:
    # A straight line: two probes (Keras' default batch, then 4x) and one verify aimed just
    # under the budget.
    sim = SimulatedMemory(1000 * MIB, 12 * MIB, 3072 * MIB)
    result = find_ceiling(sim, num_examples=400)
    assert sim.requests == [32, 128, result.batch_size]
    # A fit probe fits only READING_NOISE under the budget: the line's ceiling there.
    held = sim.memory_budget_bytes * (1 - READING_NOISE)
    assert result.budget_bytes == int(held)
    assert result.batch_size >= 0.95 * (held - 1000 * MIB) / (12 * MIB)


def test_concave_memory_stops_at_a_verify_within_the_noise() -> None:
    # Host memory on a CPU grows less than linearly at large batches (glibc's heap reuses
    # what smaller tensors freed), so the line through 32 and 128 aims low; a verify that
    # fits within FULL_ENOUGH of the budget ends the search at three probes.
    sim = SimulatedMemory(680 * MIB, 46 * MIB // 10, 1400 * MIB, curve=-0.1)
    result = find_ceiling(sim, num_examples=600)
    assert sim.requests == [32, 128, result.batch_size]
    verify = result.probes[-1].peak_memory_bytes
    assert FULL_ENOUGH * result.budget_bytes <= verify <= result.budget_bytes
    assert result.batch_size <= sim.true_ceiling()


def test_room_left_stops_near_the_budget() -> None:
    line = MemoryModel(slope_bytes_per_example=10 * MIB, intercept_bytes=1000 * MIB)
    budget = 3000 * MIB
    # The line puts the ceiling at 200: batch 100 is far from it, 195 within 5%.
    assert room_left(line, budget, 100, int(line.predict_bytes(100)))
    assert not room_left(line, budget, 195, int(line.predict_bytes(195)))
    # A reading within the noise of the budget ends the search whatever the line says.
    assert not room_left(line, budget, 100, int(FULL_ENOUGH * budget))
    assert room_left(line, budget, 100, int((FULL_ENOUGH - 0.01) * budget))
    assert room_left(None, budget, 100, None)


def test_find_ceiling_caps_at_the_number_of_examples() -> None:
    sim = SimulatedMemory(100 * MIB, 1 * MIB, 10_000 * MIB)
    result = find_ceiling(sim, num_examples=50)
    assert result.batch_size == 50
    assert result.capped_by == "num_examples"
    assert max(sim.requests) == 50


def test_find_ceiling_restarts_before_stepping_down() -> None:
    # Stepping down in the same worker would read the larger probe's memory.
    sim = SimulatedMemory(1000 * MIB, 14 * MIB, 3072 * MIB, curve=0.15)
    find_ceiling(sim, num_examples=5000)
    for previous, current in zip(sim.requests, sim.requests[1:], strict=False):
        if current < previous:
            assert sim.restarts >= 1
    assert sim.requests == sorted(sim.requests) or sim.restarts >= 1


def test_find_ceiling_raises_when_nothing_fits() -> None:
    sim = SimulatedMemory(4000 * MIB, 12 * MIB, 3072 * MIB)
    with pytest.raises(CeilingNotFound):
        find_ceiling(sim, num_examples=400)
    assert 1 in sim.requests


def test_a_ceiling_not_found_is_an_autobatch_error() -> None:
    from autobatch._errors import AutobatchError, ProbeError

    sim = SimulatedMemory(4000 * MIB, 12 * MIB, 3072 * MIB)
    with pytest.raises(AutobatchError) as caught:
        find_ceiling(sim, num_examples=400)
    assert isinstance(caught.value, ProbeError) and caught.value.result.outcome == "oom"


class _InflatedReuse(SimulatedMemory):
    """A worker that reads a larger batch high after smaller ones (as a shared worker does):
    a reused worker's reading is ``inflate`` times the true peak."""

    def __init__(self, *args: float, inflate: float) -> None:
        super().__init__(*(int(a) for a in args))
        self.inflate = inflate
        self.started: list[bool] = []

    def run(self, request: ProbeRequest) -> ProbeResult:
        reused = not self.fresh and request.batch_size >= self.largest
        self.started.append(not reused)
        if not reused:
            return super().run(request)
        true_peak = self.true_peak
        self.true_peak = lambda batch: int(true_peak(batch) * self.inflate)  # type: ignore[method-assign]
        try:
            return super().run(request)
        finally:
            self.true_peak = true_peak  # type: ignore[method-assign]


def test_a_miss_in_a_reused_worker_is_rerun_fresh_before_it_counts() -> None:
    # 300 MiB fixed and 1 MiB an example under 3 GiB: even the proportional estimate puts
    # batch 128 (4 x 332 MiB) under 70% of the budget, so it reuses the worker, whose
    # inflated reading (x8) misses.
    sim = _InflatedReuse(300 * MIB, 1 * MIB, 3072 * MIB, inflate=8)
    result = find_ceiling(sim, num_examples=5000, max_batch_size=MAX_BATCH_SIZE)
    truth = min(sim.true_ceiling(), MAX_BATCH_SIZE)
    reused_misses = [i for i, p in enumerate(result.probes)
                     if p.outcome == "oom" and not p.worker_started]
    assert reused_misses, "the scenario must produce a miss in a reused worker"
    for i in reused_misses:
        rerun = result.probes[i + 1]
        assert rerun.batch_size == result.probes[i].batch_size and rerun.worker_started
    # The false miss did not become the search's upper bound.
    assert result.batch_size >= math.floor(0.9 * truth * (1 - READING_NOISE))


def test_with_one_point_a_batch_the_proportional_estimate_puts_near_the_budget_is_fresh() -> None:
    # MobileNetV2-like: batch 32 reads over half the budget; 128 after it must not be read
    # in the reused worker (whose inflated reading would be a false miss).
    sim = _InflatedReuse(1000 * MIB, 20 * MIB, 3072 * MIB, inflate=1.3)
    result = find_ceiling(sim, num_examples=5000, max_batch_size=MAX_BATCH_SIZE)
    assert sim.requests[:2] == [32, 128]
    assert sim.started[:2] == [True, True]
    assert not [p for p in result.probes if p.outcome == "oom" and not p.worker_started]
