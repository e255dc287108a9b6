"""Progress of a tune: the ``TuneEvent`` it emits at each step and the emitter that logs
each one and hands it to the caller's ``on_event`` (the CLI draws it; the library only
emits)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autobatch._probe._types import ProbeResult
from autobatch._sizes import format_bytes

logger = logging.getLogger(__name__)


@dataclass
class TuneEvent:
    """A progress report for the display (the CLI draws it; the library only emits it)."""

    phase: str
    """"cache", "ceiling", "baseline", "xla", "search", "verify", "done"."""
    message: str
    trial: int | None = None
    trials_total: int | None = None
    best_examples_per_s: float | None = None
    best_params: dict[str, Any] | None = None
    elapsed_s: float = 0.0
    time_budget_s: float | None = None
    result: ProbeResult | None = field(default=None, repr=False)


EventCallback = Callable[[TuneEvent], None]


class Emitter:
    """Logs each step of a tune and passes it to ``callback`` as a ``TuneEvent``."""

    def __init__(self, callback: EventCallback | None, started: float,
                 time_budget_s: float | None) -> None:
        self.callback = callback
        self.started = started
        self.time_budget_s = time_budget_s

    def __call__(self, phase: str, message: str, *, trial: int | None = None,
                 trials_total: int | None = None, best: float | None = None,
                 best_params: dict[str, Any] | None = None,
                 result: ProbeResult | None = None) -> None:
        logger.info("%s: %s", phase, message)
        if self.callback is None:
            return
        self.callback(TuneEvent(
            phase=phase, message=message, trial=trial, trials_total=trials_total,
            best_examples_per_s=best, best_params=best_params,
            elapsed_s=time.perf_counter() - self.started, time_budget_s=self.time_budget_s,
            result=result,
        ))


def mib(value: int | float | None) -> str:
    """A memory figure as the progress messages write it."""
    return format_bytes(value)
