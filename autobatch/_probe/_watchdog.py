"""The parent's watchdog over a worker process: it polls the worker's kernel memory figures
and kills the worker when they cross the host budget."""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
from collections.abc import Callable

from autobatch._probe._memory import read_status_bytes
from autobatch._sizes import format_bytes

logger = logging.getLogger(__name__)

WATCHDOG_INTERVAL_S = 0.025


class Watchdog:
    """Polls the child's ``VmRSS`` and ``VmHWM`` and kills it when either crosses the budget.

    ``VmHWM`` (the kernel's high-water mark) catches a spike that rose and fell between two
    polls, so the budget holds even for allocations shorter than the poll interval.
    """

    def __init__(self, process: subprocess.Popen[bytes], budget_bytes: int | None,
                 interval_s: float = WATCHDOG_INTERVAL_S,
                 read: Callable[[str, int], int | None] | None = None) -> None:
        self.process = process
        self.budget_bytes = budget_bytes
        self.interval_s = interval_s
        self.read: Callable[[str, int], int | None] = read or read_status_bytes
        self.peak_bytes: int | None = None
        self.over_budget_bytes: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name="autobatch-probe-watchdog")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        pid = self.process.pid
        while not self._stop.is_set() and self.process.poll() is None:
            figures = [self.read(field, pid) for field in ("VmRSS", "VmHWM")]
            current = max((f for f in figures if f is not None), default=None)
            if current is not None:
                self.peak_bytes = max(self.peak_bytes or 0, current)
                if self.budget_bytes is not None and current > self.budget_bytes:
                    self.over_budget_bytes = current
                    try:
                        self.process.send_signal(signal.SIGKILL)
                    except OSError:
                        pass
                    logger.info("probe worker %d at %s, over the budget %s: killed", pid,
                                format_bytes(current), format_bytes(self.budget_bytes))
                    return
            self._stop.wait(self.interval_s)
