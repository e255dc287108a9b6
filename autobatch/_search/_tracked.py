"""The search's view of a probe runner: when a memory reading needs a fresh worker, and the
share of the budget kept free for what ``model.fit``'s first step adds."""

from __future__ import annotations

import dataclasses
from typing import Any

from autobatch._errors import ProbeError
from autobatch._probe import ProbeRunner
from autobatch._probe._types import ProbeRequest, ProbeResult

FIT_ALLOWANCE_FRACTION = 0.065
"""Share of a memory budget kept free for what ``model.fit``'s first step adds to a probe's
peak (see ``TrackedRunner.fit_allowance_bytes``)."""


class TrackedRunner(ProbeRunner):
    """A ``ProbeRunner`` with the search's memory rules.

    A worker never gives memory back, so a memory figure is only honest for a batch at or
    above everything the worker ran before: ``run(..., need_memory=True)`` (or a request
    with ``own_peak``) has the runner start a fresh worker when that does not hold;
    throughput probes reuse the worker whatever it ran. The search also keeps part of the
    budget free for ``model.fit``'s own first step (``fit_allowance_bytes``).
    """

    def __init__(self, runner: ProbeRunner) -> None:
        self.runner = runner
        # Fixed when a runner is made: the budgets as the runner judges its probes.
        self.host_memory_budget_bytes = runner.host_memory_budget_bytes
        self.device_memory_budget_bytes = runner.device_memory_budget_bytes
        self.device = runner.device
        self.memory_budget_bytes = runner.memory_budget_bytes
        self.probe_time: dict[str, float] = {"probes": 0, "wall_s": 0.0, "setup_s": 0.0,
                                             "timed_s": 0.0}
        """What the search's probes cost, summed (the plan's ``measured.tune_time``)."""
        self.phases_s: dict[str, float] = {}
        """Wall seconds of each phase of the search, set by the search when it ends."""

    @property
    def worker_largest_batch(self) -> int:
        """Largest batch the current worker ran (0: the next probe starts a worker)."""
        return int(self.runner.worker_largest_batch or 0)

    @property
    def fit_allowance_bytes(self) -> int:
        """Memory that a plain ``model.fit`` needs beyond a probe of the same batch.

        A freshly compiled model creates its optimizer's variables inside the first traced
        train step, and that first step runs a graph (variable initialisation folded into a
        conditional) whose peak is higher than every later step's: a few per cent of the
        peak (docs/tune.md has the measurements). A worker can show the lazy first step only
        once, on its first probe, so the search keeps this share of the budget free instead:
        a batch counts as fitting only below budget minus this allowance. It applies to a
        device budget as well (the first step's graph runs there).
        """
        return int(FIT_ALLOWANCE_FRACTION * self._budget_bytes())

    @property
    def search_budget_bytes(self) -> int:
        """What a probe's peak must stay under to count as fitting."""
        return self._budget_bytes() - self.fit_allowance_bytes

    @property
    def num_replicas(self) -> int:
        return int(self.runner.num_replicas or 1)

    @property
    def accepts_uint8(self) -> bool:
        """Whether the model takes uint8 images unchanged (the runner says)."""
        return bool(self.runner.accepts_uint8)

    def _budget_bytes(self) -> int:
        budget = self.memory_budget_bytes
        if budget is None:
            raise ProbeError("the probe runner has no memory budget; pass memory_budget")
        return int(budget)

    def restart(self) -> None:
        self.runner.restart()

    def run(self, request: ProbeRequest, *, need_memory: bool | None = None) -> ProbeResult:
        own_peak = bool(request.own_peak) if need_memory is None else need_memory
        result = self.runner.run(dataclasses.replace(request, own_peak=own_peak))
        spent = self.probe_time
        spent["probes"] += 1
        for key, value in (("wall_s", result.wall_time_s), ("setup_s", result.setup_s),
                           ("timed_s", result.timed_s)):
            spent[key] += float(value or 0.0)
        return result

    def time_spent(self) -> dict[str, Any]:
        """The probes' time and the workers' start-up time."""
        return {**{k: round(v, 2) for k, v in self.probe_time.items()},
                **self.runner.time_spent()}
