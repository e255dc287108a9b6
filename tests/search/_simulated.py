"""Fake probe runners for the search's logic: simulated memory (and speed), no worker.

They subclass the ``ProbeRunner`` base, so the search sees the same seam as with the real
subprocess runner. Memory and a device's hard limit are the one thing a CPU test machine
cannot provide on demand; everything else the search does runs for real (Optuna included).
"""

from __future__ import annotations

from autobatch._probe import ProbeRunner
from autobatch._probe._types import ProbeRequest, ProbeResult


class SimulatedMemory(ProbeRunner):
    """A runner over simulated memory: peak = fixed + per-example * batch (slightly convex),
    oom above the limit, and a worker that keeps its largest peak until restarted."""

    def __init__(self, fixed_bytes: int, per_example_bytes: int, budget_bytes: int,
                 curve: float = 0.0) -> None:
        self.fixed, self.per_example, self.curve = fixed_bytes, per_example_bytes, curve
        self.memory_budget_bytes = budget_bytes
        self.host_memory_budget_bytes = budget_bytes
        self.worker_peak = 0
        self.fresh = True
        self.requests: list[int] = []
        self.restarts = 0
        self.largest = 0

    @property
    def worker_largest_batch(self) -> int:
        return self.largest

    def true_peak(self, batch: int) -> int:
        return int(self.fixed + self.per_example * batch * (1 + self.curve * batch / 100))

    def true_ceiling(self) -> int:
        batch = 0
        while self.true_peak(batch + 1) <= self.budget_bytes:
            batch += 1
        return batch

    @property
    def budget_bytes(self) -> int:
        assert self.memory_budget_bytes is not None
        return self.memory_budget_bytes

    def restart(self) -> None:
        self.worker_peak, self.fresh, self.largest = 0, True, 0
        self.restarts += 1

    def run(self, request: ProbeRequest) -> ProbeResult:
        self.requests.append(request.batch_size)
        if request.own_peak and request.batch_size < self.largest:
            self.restart()  # as the real runner does for a request of its own peak
        self.largest = max(self.largest, request.batch_size)
        started, self.fresh = self.fresh, False
        peak = max(self.worker_peak, self.true_peak(request.batch_size))
        if peak > self.budget_bytes:
            self.restart()  # the real runner replaces a worker it stopped
            return ProbeResult("oom", request.batch_size, request.settings,
                               peak_host_memory_bytes=self.budget_bytes,
                               worker_started=started)
        self.worker_peak = peak
        return self.measured(request, ProbeResult(
            "ok", request.batch_size, request.settings, peak_host_memory_bytes=peak,
            worker_started=started))

    def measured(self, request: ProbeRequest, result: ProbeResult) -> ProbeResult:
        """The result of a probe that fit (memory only here)."""
        return result


class SimulatedTraining(SimulatedMemory):
    """Simulated memory and speed: examples/s grow with the batch up to ``best_batch`` and
    fall beyond it, a little faster with more parallel calls and some prefetch; the
    untuned default (AUTOTUNE) reads ``default_rate``; every probe "takes" ``wall_s``."""

    def __init__(self, fixed_bytes: int, per_example_bytes: int, budget_bytes: int, *,
                 best_batch: int = 64, default_rate: float = 500.0, wall_s: float = 0.2,
                 accepts_uint8: bool = False) -> None:
        super().__init__(fixed_bytes, per_example_bytes, budget_bytes)
        self.best_batch, self.default_rate, self.wall_s = best_batch, default_rate, wall_s
        self._accepts_uint8 = accepts_uint8
        self.modes: list[str] = []

    @property
    def accepts_uint8(self) -> bool:
        return self._accepts_uint8

    def rate(self, request: ProbeRequest) -> float:
        settings = request.settings
        if settings.uses_autotune:
            return self.default_rate
        batch = request.batch_size
        shape = min(batch, self.best_batch) / self.best_batch * min(
            1.0, self.best_batch / batch) ** 0.5
        parallel = 1.0 + 0.05 * min(int(settings.num_parallel_calls), 4)
        prefetch = 1.02 if int(settings.prefetch) > 0 else 1.0
        return 1000.0 * shape * parallel * prefetch

    def measured(self, request: ProbeRequest, result: ProbeResult) -> ProbeResult:
        import dataclasses

        self.modes.append(request.mode)
        rate = self.rate(request)
        return dataclasses.replace(
            result, examples_per_s=rate, step_time_s=request.batch_size / rate,
            input_wait_fraction=0.0, wall_time_s=self.wall_s * (3 if result.worker_started
                                                                 else 1))
