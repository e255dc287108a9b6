"""The search's view of a probe runner: when a memory reading needs a fresh worker, and what
the probes cost; and the tune's own worker, closed with its folder on every exit."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from autobatch._errors import ProbeError
from autobatch._probe import ProbeRunner, SubprocessProbeRunner
from autobatch._probe._types import ProbeRequest, ProbeResult

if TYPE_CHECKING:
    from autobatch._search._config import TuneConfig
    from autobatch._search._job import TuneJob


class TrackedRunner(ProbeRunner):
    """A ``ProbeRunner`` with the search's memory rules.

    A worker never gives memory back, so a memory figure is only honest for a batch at or
    above everything the worker ran before: ``run(..., need_memory=True)`` (or a request
    with ``own_peak``) has the runner start a fresh worker when that does not hold;
    throughput probes reuse the worker whatever it ran. Every memory verdict of the search
    is a ``model.fit`` probe in a fresh worker (the ceiling's, the untuned default's, the
    long run's), so its peak includes fit's heavier first step and is judged against the
    whole budget.
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
        self.applies_levers = runner.applies_levers
        self.levers: dict[str, str] = {}
        """The levers the levers phase adopted (``_levers``): every later probe runs with
        them, except the untuned default's (AUTOTUNE settings), which is Keras' as given."""

    @property
    def worker_largest_batch(self) -> int:
        """Largest batch the current worker ran (0: the next probe starts a worker)."""
        return int(self.runner.worker_largest_batch or 0)

    @property
    def search_budget_bytes(self) -> int:
        """What a probe's peak must stay under to count as fitting: the whole budget."""
        return self._budget_bytes()

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
        if self.levers and not request.settings.uses_autotune and (
                request.mixed_precision is None and request.remat is None):
            request = dataclasses.replace(request,
                                          mixed_precision=self.levers.get("mixed_precision"),
                                          remat=self.levers.get("remat"))
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


@contextlib.contextmanager
def probe_runner_for(runner: ProbeRunner | None, job: TuneJob,
                     config: TuneConfig) -> Iterator[ProbeRunner]:
    """The caller's runner (not closed here), else a ``SubprocessProbeRunner`` of our own,
    closed with its work folder whether the tune finished, failed or was interrupted."""
    if runner is not None:
        yield runner
        return
    work_dir = tempfile.mkdtemp(prefix="autobatch-tune-")
    try:
        own = SubprocessProbeRunner(
            job.model, job.source, image_size=job.size, channels=job.channels,
            augment=config.augment, host_memory_budget_bytes=job.host_budget_bytes,
            device_memory_budget_bytes=job.device_budget_bytes,
            custom_objects_module=config.custom_objects_module, work_dir=work_dir,
            # The search decides when a memory figure needs a fresh worker; throughput
            # trials at smaller batches do not.
            fresh_worker_for_smaller_batch=False, strategy=config.strategy,
            data_service=config.data_service,
        )
    except BaseException:
        # A model the worker cannot take (a Lambda layer, a __main__ class): the runner
        # does not own this folder, so it is removed here.
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    try:
        yield own
    finally:
        own.close()
        # The worker's config, model file, logs and probe caches: nothing is left behind.
        shutil.rmtree(work_dir, ignore_errors=True)
