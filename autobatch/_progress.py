"""The tune's progress display, shared by ``autobatch tune`` and ``autobatch.tune``.

``tune_display(verbose)`` is a context manager that yields an ``on_event`` callback for
``autobatch._search.tune`` (or None when ``verbose == 0``). ``verbose`` has Keras'
meaning: ``"auto"`` is 1 on an interactive terminal and 2 otherwise; 0 is silent; 1 a live
display (rich: the phase, a clock against the time budget, the best so far, with one line
printed above it per finished step); 2 one plain line per phase step and per trial.

Everything goes to stderr, so that ``--json`` output on stdout stays machine-readable. This
module and the CLI are the only places that write to the terminal; the library logs.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any

Verbose = int | str
"""Keras' meaning: "auto", 0, 1, 2."""

if TYPE_CHECKING:
    from autobatch._search._events import TuneEvent

EventCallback = Callable[["TuneEvent"], None]

VERBOSE_CHOICES = ("auto", 0, 1, 2)

# Phase names as the display shows them.
_PHASE_TITLES = {
    "cache": "cache",
    "baseline": "untuned default",
    "effort": "effort",
    "ceiling": "memory ceiling",
    "xla": "XLA",
    "pixels": "pixels",
    "search": "study",
    "finalists": "finalists",
    "verify": "verify",
    "done": "done",
}


def resolve_verbose(verbose: Any, stream: IO[str] | None = None) -> int:
    """Keras' ``verbose``: ``"auto"`` is 1 on an interactive terminal, else 2."""
    if verbose == "auto" or verbose is None:
        stream = stream if stream is not None else sys.stderr
        try:
            interactive = bool(stream.isatty())
        except (AttributeError, ValueError):
            interactive = False
        return 1 if interactive else 2
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        from autobatch._errors import UsageError

        raise UsageError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    return int(verbose)


@contextlib.contextmanager
def tune_display(verbose: Any = "auto", *,
                 stream: IO[str] | None = None) -> Iterator[EventCallback | None]:
    """Yield an ``on_event`` callback that draws the tune's progress (None when silent).

    ``stream`` defaults to ``sys.stderr`` (tests pass a ``StringIO``).
    """
    level = resolve_verbose(verbose, stream)
    if level == 0:
        yield None
        return
    out = stream if stream is not None else sys.stderr
    if level == 2:
        yield _LineDisplay(out).on_event
        return
    display = _LiveDisplay(out)
    with display:
        yield display.on_event


# ---------------------------------------------------------------- the text of an event


def _clock(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s"


def _elapsed_text(elapsed_s: float, budget_s: float | None) -> str:
    if budget_s:
        return f"{_clock(elapsed_s)}/{_clock(budget_s)}"
    return _clock(elapsed_s)


def _trial_text(event: TuneEvent) -> str:
    if event.trial is None:
        return ""
    # An unbounded study (time budget only) reports the library's trial cap as its total.
    bounded = event.trials_total is not None and event.trials_total < 200
    return f"trial {event.trial}/{event.trials_total}" if bounded else f"trial {event.trial}"


def _best_text(event: TuneEvent) -> str:
    if not event.best_examples_per_s:
        return ""
    text = f"best {event.best_examples_per_s:.1f} examples/s"
    params = event.best_params or {}
    if "batch_size" in params:
        text += f" (batch {params['batch_size']})"
    return text


def event_line(event: TuneEvent) -> str:
    """One plain line for an event: ``[elapsed/budget] phase: message | best ...``."""
    phase = _PHASE_TITLES.get(event.phase, event.phase)
    parts = [f"[{_elapsed_text(event.elapsed_s, event.time_budget_s)}] {phase}:"]
    trial = _trial_text(event)
    message = event.message
    if trial and not message.startswith("trial"):
        parts.append(trial)
    parts.append(message)
    line = " ".join(parts)
    best = _best_text(event)
    if best and event.phase in ("search", "finalists"):
        line += f" | {best}"
    return line


class _LineDisplay:
    """Verbose 2: one line per event, flushed at once (logs, CI, pipes)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def on_event(self, event: TuneEvent) -> None:
        self.stream.write(event_line(event) + "\n")
        self.stream.flush()


class _LiveDisplay:
    """Verbose 1: a live footer (spinner, phase, clock against the budget, best so far)
    with a permanent line printed above it for each finished step."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console

        self.console = Console(file=stream, highlight=False)
        self._live: Any = None
        self._event: TuneEvent | None = None
        self._event_at = time.perf_counter()
        self._phase_started: dict[str, float] = {}

    def __enter__(self) -> _LiveDisplay:
        from rich.live import Live

        self._live = Live(self, console=self.console, refresh_per_second=4, transient=True,
                          redirect_stdout=False, redirect_stderr=False)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    # rich calls this at each refresh, so the clock runs between events.
    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        event = self._event
        grid = Table.grid(padding=(0, 1))
        if event is None:
            grid.add_row(Spinner("dots"), Text("autobatch tune: starting"))
            return grid
        elapsed = event.elapsed_s + (time.perf_counter() - self._event_at)
        phase = _PHASE_TITLES.get(event.phase, event.phase)
        # Text, not markup strings: a print with markup=False renders this footer too.
        cells: list[Any] = [Spinner("dots"), Text(phase, style="bold")]
        if event.time_budget_s:
            cells.append(ProgressBar(total=float(event.time_budget_s),
                                     completed=min(elapsed, float(event.time_budget_s)),
                                     width=20))
        cells.append(Text(_elapsed_text(elapsed, event.time_budget_s)))
        trial = _trial_text(event)
        if trial:
            cells.append(Text(trial))
        best = _best_text(event)
        if best:
            cells.append(Text(best))
        grid.add_row(*cells)
        # The message on a line of its own, cut to the terminal's width (a grid cell would
        # wrap it into the narrow column under the phase name).
        message = Text("  " + event.message, style="dim", no_wrap=True, overflow="ellipsis")
        return Group(grid, message)

    def on_event(self, event: TuneEvent) -> None:
        previous = self._event
        # Keep the best-so-far once the study has one (later phases may not repeat it).
        if event.best_examples_per_s is None and previous is not None:
            event = _with_best(event, previous)
        self._event = event
        self._event_at = time.perf_counter()
        # Every step is printed above the footer too, so the terminal keeps the story.
        from rich.text import Text

        self.console.print(Text(event_line(event)), soft_wrap=True)
        if self._live is not None:
            self._live.refresh()


def _with_best(event: TuneEvent, previous: TuneEvent) -> TuneEvent:
    import dataclasses

    return dataclasses.replace(event, best_examples_per_s=previous.best_examples_per_s,
                               best_params=previous.best_params)


@contextlib.contextmanager
def tune_events(verbose: Verbose,
                on_event: Callable[[Any], None] | None = None) -> Iterator[Any]:
    """The ``on_event`` callback of a tune: the progress display ``verbose`` asks for, and
    the caller's own callback; ``"auto"`` with a callback given draws nothing."""
    if on_event is not None and verbose == "auto":
        verbose = 0
    with tune_display(verbose) as display:
        if display is None or on_event is None:
            yield display or on_event
            return

        def both(event: Any) -> None:
            display(event)
            on_event(event)

        yield both
