"""Issue #16: plot frames, one memory budget, finalists, the dashboard command, the headline."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from _plans import MiB, _parse, _probe, full_plan

from autobatch._report import write_report

# ---------------------------------------------------------------- issue #16: frames, budget,
# finalists, the dashboard command and the result against the default


def far_prediction_plan() -> dict[str, Any]:
    """A plan like a CPU demo's: probes up to 181 under a 20 GiB budget that the memory
    model says a batch of 14,998 would reach; the fit allowance makes a search budget."""
    plan = full_plan()
    GiB = 1024 * MiB
    plan["ceiling"] = {
        "probes": [_probe("ok", 32, 686 * MiB), _probe("ok", 128, 808 * MiB),
                   _probe("ok", 181, 845 * MiB)],
        "memory_model": {"slope_bytes_per_example": 1.07 * MiB, "intercept_bytes": 651 * MiB},
        "predicted_batch_size": 14998, "budget_bytes": int(19.24 * GiB),
        "fit_allowance_bytes": int(20.58 * GiB) - int(19.24 * GiB), "capped_by": "num_examples",
    }
    plan["ceiling_batch_size"] = 181
    plan["measured"]["memory_budget_bytes"] = int(20.58 * GiB)
    plan["baseline"]["peak_memory_bytes"] = 686 * MiB
    return plan


def _scatter_points(ax: Any) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for c in ax.collections for x, y in c.get_offsets()]


def test_memory_axes_frame_the_probes_not_the_prediction_or_the_budget() -> None:
    from autobatch._report._plots import memory_figure

    plan = far_prediction_plan()
    ax = memory_figure(plan).axes[0]
    largest_probe = max(p["batch_size"] for p in plan["ceiling"]["probes"])
    left, right = ax.get_xlim()
    assert largest_probe < right <= 2 * largest_probe  # not 16,384 for a prediction
    bottom, top = ax.get_ylim()
    highest = max(p["peak_memory_bytes"] for p in plan["ceiling"]["probes"]) / MiB
    assert bottom == 0 and highest < top <= 1.5 * highest  # MiB: the 20 GiB is not the frame
    # What lies beyond the frame is said, with the way it lies.
    said = "\n".join(t.get_text() for t in ax.texts)
    assert "predicted ceiling 14,998 →" in said
    assert "memory budget 20.58 GiB ↑" in said
    assert "search budget 19.24 GiB (budget less 1.34 GiB kept for model.fit) ↑" in said


def test_markers_sit_inside_the_frame_with_room() -> None:
    from autobatch._report._plots import memory_figure, throughput_figure

    for plan in (full_plan(), far_prediction_plan()):
        for fig in (memory_figure(plan), throughput_figure(plan)):
            ax = fig.axes[0]
            (left, right), (bottom, top) = ax.get_xlim(), ax.get_ylim()
            for x, y in _scatter_points(ax):
                assert left * 1.2 < x < right / 1.2, (ax.get_title(), x)
                assert bottom <= y <= top / 1.1, (ax.get_title(), y)  # the star's points too
    # The untuned default, the fastest point here, is not cut at the top.
    plan = full_plan()
    plan["baseline"]["examples_per_s"] = 2000.0
    ax = throughput_figure(plan).axes[0]
    assert ax.get_ylim()[1] >= 2000.0 * 1.1


def test_one_memory_budget_and_a_named_search_budget(tmp_path: Path) -> None:
    plan = far_prediction_plan()
    files = write_report(plan, tmp_path / "r.html")
    text = files.html.read_text(encoding="utf-8")
    keys = [n["data-key"] for n in _parse(files.html).numbers if "data-key" in n]
    assert keys.count("measured.memory_budget_bytes") >= 3  # summary, caption, hardware
    assert "20.58 GiB" in text
    # The smaller figure appears once, called what it is.
    assert keys.count("ceiling.budget_bytes") == 1
    assert re.search(r'search budget of <span class="num" data-key="ceiling.budget_bytes"', text)
    assert text.count("19.24 GiB") == 1


def test_finalists_show_their_readings_and_why_some_have_none(tmp_path: Path) -> None:
    plan = full_plan()
    plan["measured"]["finalists"][0]["relative_score"] = 1.0621
    files = write_report(plan, tmp_path / "r.html")
    rows = re.findall(r"<tr>(.*?)</tr>", re.search(r'<table id="finalists">(.*?)</table>',
                                                   files.html.read_text()).group(1))
    first = re.sub(r"<[^>]+>", "", rows[1])
    assert "760.5 examples/s, 741.2 examples/s" in first and "1.06×" in first
    # Every finalist without a round (the deadline came first): one note, not a row each.
    for entry in plan["measured"]["finalists"]:
        entry.update(fit_examples_per_s=[], relative_score=None, failed_under_fit=False)
    files = write_report(plan, tmp_path / "r2.html")
    ids = _parse(files.html).ids
    assert ids["finalists-unmeasured"].startswith("No finalist got a model.fit round: the time "
                                                  "budget ran out")
    text = files.html.read_text()
    assert "not measured (time budget)" not in text
    assert "812.3 examples/s" in re.search(r'<table id="finalists">(.*?)</table>',
                                           text).group(1)  # the trial reading is still shown


def test_dashboard_command_runs_as_printed_for_the_default_storage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shlex

    import optuna

    from autobatch._search._study import default_storage_url

    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path / "cache"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="autobatch-abc", storage=default_storage_url())
    for storage in ("default (user cache SQLite)", default_storage_url()):
        plan = full_plan()
        plan["study"] = {"storage": storage, "study_name": "autobatch-abc"}
        files = write_report(plan, tmp_path / "r.html")
        command = _parse(files.html).ids["dashboard-command"]
        assert command == f"optuna-dashboard {default_storage_url()}"
        program, url = shlex.split(command)
        assert program == "optuna-dashboard"
        # The URL opens the study the plan names, as optuna-dashboard would open it.
        assert optuna.load_study(study_name="autobatch-abc", storage=url).study_name
    redacted = dict(full_plan(), study={"storage": "postgresql://tuner:***@db/optuna",
                                        "study_name": "s"})
    files = write_report(redacted, tmp_path / "r.html")
    assert (_parse(files.html).ids["dashboard-command"]
            == "optuna-dashboard postgresql://tuner:PASSWORD@db/optuna")


def _versus(decision: str, ratios: list[float]) -> dict[str, Any]:
    import statistics

    return {"decision": decision, "paired_ratios": ratios,
            "median_ratio": statistics.median(ratios) if ratios else None,
            "low": min(ratios) if ratios else None, "high": max(ratios) if ratios else None,
            "rounds": len(ratios), "noise": 0.05, "reason": "why, in the tune's words"}


def test_headline_is_the_paired_speedup_over_the_default(tmp_path: Path) -> None:
    plan = full_plan()
    plan["measured"]["versus_default"] = _versus("tuned", [1.3754, 1.4884, 1.0852])
    files = write_report(plan, tmp_path / "r.html")
    page = _parse(files.html)
    assert page.ids["headline"].startswith("1.38× the training speed of the untuned default "
                                           "(batch 32, AUTOTUNE)")
    assert "over 3 interleaved model.fit rounds, spread 1.09×–1.49×" in page.ids["headline"]
    shown = {n["data-key"]: n for n in page.numbers if "data-key" in n}
    assert json.loads(shown["measured.versus_default.median_ratio"]["data-value"]) == 1.3754
    assert not [n for n in page.numbers if n.get("data-derived") == "speedup"]


@pytest.mark.parametrize(("decision", "ratios", "expected"), [
    ("default", [0.97, 1.02, 1.01], "Kept the untuned default: no candidate beat it beyond "
                                    "the noise (why, in the tune's words)."),
    ("default", [], "Kept the untuned default: no candidate beat it beyond the noise"),
    ("tuned", [0.8, 0.9, 0.95], "No speed-up over the untuned default (batch 32, AUTOTUNE) "
                                "beyond the noise"),
])
def test_headline_never_reports_a_slowdown(tmp_path: Path, decision: str, ratios: list[float],
                                           expected: str) -> None:
    plan = full_plan()
    plan["measured"]["versus_default"] = _versus(decision, ratios)
    files = write_report(plan, tmp_path / "r.html")
    headline = _parse(files.html).ids["headline"]
    assert headline.startswith(expected)
    assert "×" not in headline  # no ratio at all, let alone one below 1


def test_old_plan_without_the_comparison_never_calls_a_slowdown_a_result(
        tmp_path: Path) -> None:
    plan = full_plan()
    plan["baseline"]["examples_per_s"] = 900.0  # above the plan's 812.3
    files = write_report(plan, tmp_path / "r.html")
    page = _parse(files.html)
    assert page.ids["headline"].startswith("No speed-up over the untuned default")
    assert not [n for n in page.numbers if n.get("data-derived") == "speedup"]
    assert "900.0 examples/s" in files.html.read_text()  # the default's reading is still shown


def test_the_page_says_what_the_tune_cost_and_what_it_should_win_back(tmp_path: Path) -> None:
    plan = full_plan()
    plan["measured"]["tune_time"] = {"total_s": 16.7, "phases_s": {"ceiling": 3.3}}
    plan["measured"]["effort"] = {
        "epochs": 40, "untuned_training_s": 69.2, "budget_s": 20.0, "tuned": True,
        "expected_saving_s": 36.7,
        "reason": "40 epoch(s) of 3000 examples at the untuned default's 1735/s take about "
                  "69 s: tuned for 20 s, 20% of that"}
    text = _parse(write_report(plan, tmp_path / "r.html").html).ids["tune-cost"]
    assert text.startswith("The tune took 16.70 s. 40 epoch(s) of 3000 examples")
    assert "Expected saving over the untuned job, the tune's cost taken off: 36.70 s." in text
    assert text.endswith("A later fit with this cached plan tunes nothing.")
    del plan["measured"]["effort"], plan["measured"]["tune_time"]
    assert "tune-cost" not in _parse(write_report(plan, tmp_path / "s.html").html).ids
