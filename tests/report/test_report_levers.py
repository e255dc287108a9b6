"""The report's memory levers section: each lever tried with its readings and decision,
the levers that could not apply here, and no section for a plan without the record."""

from __future__ import annotations

from pathlib import Path

from _plans import full_plan

from autobatch._report import write_report
from autobatch._report._format import fmt_bytes, fmt_rate


def _levers() -> dict:
    return {"mixed_precision": "mixed_bfloat16", "remat": None, "tried": [
        {"lever": "mixed_precision", "value": "mixed_bfloat16", "decision": "adopted",
         "reason": "1.24-1.31x the speed in 3 paired rounds (median 1.28x)",
         "median_examples_per_s_without": 12733.5, "median_examples_per_s_with": 16298.1,
         "peak_memory_bytes_without": 790 << 20, "peak_memory_bytes_with": 751 << 20},
        {"lever": "remat", "value": "larger_than", "decision": "rejected",
         "reason": "the probe with it failed (crash)", "median_examples_per_s_without": None,
         "median_examples_per_s_with": None, "peak_memory_bytes_without": None,
         "peak_memory_bytes_with": None}],
        "not_applicable": [{"lever": "mixed_precision", "value": "mixed_float16",
                            "reason": "no GPU"}]}


def test_each_lever_tried_shows_its_readings_and_decision(tmp_path: Path) -> None:
    plan = full_plan()
    plan["measured"]["levers"] = _levers()
    text = write_report(plan, tmp_path / "r.html").html.read_text(encoding="utf-8")
    section = text[text.index("<h2>Memory levers</h2>"):]
    section = section[:section.index("<h2>", 5)]
    for shown in (fmt_rate(12733.5), fmt_rate(16298.1), fmt_bytes(790 << 20),
                  fmt_bytes(751 << 20), "adopted: 1.24-1.31x", "larger_than",
                  "rejected: the probe with it failed", "not tried, no GPU"):
        assert shown in section, shown
    assert 'data-key="measured.levers.tried.0.median_examples_per_s_with"' in section


def test_a_plan_without_the_record_has_no_levers_section(tmp_path: Path) -> None:
    text = write_report(full_plan(), tmp_path / "r.html").html.read_text(encoding="utf-8")
    assert "Memory levers" not in text
