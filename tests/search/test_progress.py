"""The tune's progress display (``autobatch._progress``)."""

from __future__ import annotations

import io

import pytest

from autobatch._errors import UsageError
from autobatch._progress import event_line, resolve_verbose, tune_display
from autobatch._search._events import TuneEvent


def _events() -> list[TuneEvent]:
    return [
        TuneEvent("baseline", "812.0 examples/s", elapsed_s=4, time_budget_s=120),
        TuneEvent("ceiling", "batch 64: ok, peak 300 MiB of 2 GiB", elapsed_s=9,
                  time_budget_s=120),
        TuneEvent("search", "trial 3: complete 812.3 examples/s", trial=3, trials_total=200,
                  best_examples_per_s=900.1, best_params={"batch_size": 128}, elapsed_s=65,
                  time_budget_s=120),
        TuneEvent("verify", "verified batch 128: 880.0 examples/s", elapsed_s=118,
                  time_budget_s=120),
    ]


def test_verbose_2_writes_one_line_per_event_with_clock_and_best() -> None:
    out = io.StringIO()
    with tune_display(2, stream=out) as on_event:
        assert on_event is not None
        for event in _events():
            on_event(event)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0] == "[4s/2m00s] untuned default: 812.0 examples/s"
    assert lines[2] == ("[1m05s/2m00s] study: trial 3: complete 812.3 examples/s"
                        " | best 900.1 examples/s (batch 128)")
    assert lines[3].startswith("[1m58s/2m00s] verify:")


def test_bounded_study_shows_trial_of_total() -> None:
    line = event_line(TuneEvent("search", "resumed 4 stored trials", trial=4, trials_total=10))
    assert "trial 4/10" in line and "[0s]" in line


def test_verbose_0_is_silent() -> None:
    with tune_display(0) as on_event:
        assert on_event is None


def test_auto_is_lines_off_a_terminal_and_rejects_nonsense() -> None:
    assert resolve_verbose("auto", io.StringIO()) == 2
    with pytest.raises(UsageError, match="verbose must be"):
        resolve_verbose(3)


def test_live_display_keeps_a_line_per_step() -> None:
    out = io.StringIO()
    with tune_display(1, stream=out) as on_event:
        assert on_event is not None
        for event in _events():
            on_event(event)
    text = out.getvalue()
    for event in _events():
        assert event.message in text


def test_live_footer_on_a_terminal_shows_styles_not_markup() -> None:
    from rich.console import Console

    from autobatch._progress import _LiveDisplay

    out = io.StringIO()
    display = _LiveDisplay(out)
    display.console = Console(file=out, force_terminal=True, width=60, highlight=False)
    with display:
        for event in _events():
            display.on_event(event)
    text = out.getvalue()
    assert "\x1b[" in text  # drawn live, with styles
    assert "[bold]" not in text and "[dim]" not in text
    assert "1m05s/2m00s" in text and "best 900.1 examples/s (batch 128)" in text
