"""``ProbeRunner``: the typed seam between the search and whatever runs its probes.

It declares everything the search asks of a runner, with the defaults of a runner that has
no worker process (a fake, the in-process runner); a subclass must implement ``run`` only.
"""

from __future__ import annotations

import abc
import dataclasses
from types import TracebackType
from typing import Any, TypeVar

from autobatch._probe._types import ProbeRequest, ProbeResult
from autobatch._sizes import format_bytes

_Runner = TypeVar("_Runner", bound="ProbeRunner")


class ProbeRunner(abc.ABC):
    """Runs probes. The extension point the search talks to.

    Contract:
        * ``run`` never raises for a failing probe: an OOM, a timeout or a crash of the
          probed model is a ``ProbeResult`` with that ``outcome``. It raises ``ModelError`` /
          ``DataError`` only when the model or data cannot be loaded at all, and
          ``ProbeError`` when the probe machinery itself is broken.
        * Memory is not given back inside one worker process, so the peak of a probe counts
          every earlier probe of the same worker. A runner with workers tracks the largest
          batch its current worker ran (``worker_largest_batch``) and starts a fresh worker
          before a smaller batch whose request asks for its ``own_peak``; ``restart()``
          forces one.
        * Counters: ``worker_starts`` (worker processes started) and ``probes_run``.
        * Budgets: ``host_memory_budget_bytes``, ``device_memory_budget_bytes`` (None without
          a GPU) and ``memory_budget_bytes``, the one a probe's ``peak_memory_bytes`` is
          compared against (device on GPU, host otherwise); ``search_budget_bytes`` is what
          a probe's peak must stay under to count as fitting (the whole budget here).
        * Geometry: ``image_size`` and ``channels`` the probes run at, when the runner knows
          them (None otherwise).
    """

    worker_starts: int = 0
    probes_run: int = 0
    host_memory_budget_bytes: int | None = None
    device_memory_budget_bytes: int | None = None
    device: str = "cpu"
    """``"cpu"`` or the accelerator the probes run on (``"GPU:0"``)."""
    image_size: tuple[int, int] | None = None
    channels: int | None = None
    applies_levers: bool = False
    """Whether its worker rebuilds the model for a request's ``mixed_precision`` and
    ``remat`` (a fake ignores them: the tune then tries no lever)."""
    _memory_budget_bytes: int | None = None

    @abc.abstractmethod
    def run(self, request: ProbeRequest) -> ProbeResult:
        """Run one probe and return what it measured."""

    @property
    def memory_budget_bytes(self) -> int | None:
        """The budget a probe's peak is judged against: the device's on an accelerator, the
        host's otherwise. A runner without the two (a fake) may set it directly."""
        if self._memory_budget_bytes is not None:
            return self._memory_budget_bytes
        if self.device != "cpu" and self.device_memory_budget_bytes is not None:
            return self.device_memory_budget_bytes
        return self.host_memory_budget_bytes

    @memory_budget_bytes.setter
    def memory_budget_bytes(self, value: int | None) -> None:
        self._memory_budget_bytes = value

    @property
    def search_budget_bytes(self) -> int | None:
        """What a probe's peak must stay under to count as fitting (default: the budget)."""
        return self.memory_budget_bytes

    @property
    def worker_largest_batch(self) -> int:
        """Largest batch the current worker ran (0: none yet, or no worker)."""
        return 0

    def time_spent(self) -> dict[str, Any]:
        """Where this runner's own time went (worker starts); {} when it has no workers."""
        return {}

    @property
    def num_replicas(self) -> int:
        """Replicas each probe trains on (a ``tf.distribute`` strategy's); 1 without one."""
        return 1

    @property
    def accepts_uint8(self) -> bool:
        """Whether the data are 8-bit images and the model gives the same output for them
        as uint8 as for float32 (see ``Worker.accepts_uint8``); False when unknown."""
        return False

    @property
    def budget(self) -> dict[str, Any]:
        return {
            "host_memory_budget_bytes": self.host_memory_budget_bytes,
            "device_memory_budget_bytes": self.device_memory_budget_bytes,
            "memory_budget_bytes": self.memory_budget_bytes,
            "device": self.device,
        }

    def restart(self) -> None:  # noqa: B027 - optional for runners without a process
        """Start the next probe in a fresh worker (needed before probing a smaller batch)."""

    def close(self) -> None:  # noqa: B027
        """Release the worker and temporary files."""

    def __enter__(self: _Runner) -> _Runner:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _judge_budget(self, result: ProbeResult) -> ProbeResult:
        """An ``ok`` probe whose peak crossed the budget is an ``oom`` for the search."""
        result = dataclasses.replace(
            result,
            memory_budget_bytes=self.memory_budget_bytes,
            host_memory_budget_bytes=self.host_memory_budget_bytes,
        )
        if not result.ok:
            return result
        checks = [("host", result.peak_host_memory_bytes, self.host_memory_budget_bytes)]
        if result.device != "cpu":
            checks.append(("device", result.peak_device_memory_bytes,
                           self.device_memory_budget_bytes))
        for what, peak, budget in checks:
            if peak is not None and budget is not None and peak > budget:
                return dataclasses.replace(
                    result, outcome="oom",
                    error=f"peak {what} memory {format_bytes(peak)} is over the budget "
                          f"{format_bytes(budget)}")
        return result
