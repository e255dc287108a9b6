"""The report reads plans through the plan schema: a malformed plan is refused on one line,
naming the field, and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _plans import full_plan

from autobatch._cli import main
from autobatch._errors import PlanError
from autobatch._plan import PlanFieldError
from autobatch._report import load_plan_dict, write_report


def _broken(key: str, value: Any) -> dict[str, Any]:
    plan = full_plan()
    if value is _DROP:
        del plan[key]
    else:
        plan[key] = value
    return plan


_DROP = object()


@pytest.mark.parametrize(("key", "value", "said"), [
    ("batch_size", -5, "'batch_size' must be a positive integer, got -5"),
    ("batch_size", 0, "'batch_size' must be a positive integer, got 0"),
    ("batch_size", "abc", "'batch_size' must be a positive integer, got 'abc'"),
    ("pipeline", _DROP, "missing pipeline"),
    ("image_size", [-1, 0], "'image_size' must be null or [height, width]"),
    ("num_examples", -3, "'num_examples' must be an integer >= 0"),
    ("channels", "rgb", "'channels' must be a positive integer"),
    ("steps_per_epoch", 0, "'steps_per_epoch' must be a positive integer"),
])
def test_cli_report_refuses_a_malformed_plan_on_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: Any,
        said: str) -> None:
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(_broken(key, value)))
    out = tmp_path / "r.html"
    assert main(["report", str(plan_path), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"autobatch report: error: {str(plan_path)!r} is not a valid "
                             "autobatch plan: ")
    assert said in err[0]
    assert "Traceback" not in err[0]
    assert list(tmp_path.iterdir()) == [plan_path]  # no page, no plots


def test_cli_report_refuses_bytes_that_are_not_utf8(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_path = tmp_path / "plan.json"
    plan_path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff")
    assert main(["report", str(plan_path), "--out", str(tmp_path / "r.html")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not UTF-8 text" in err[0]
    assert not (tmp_path / "r.html").exists()


def test_write_report_and_load_plan_dict_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(PlanFieldError) as info:
        write_report(_broken("batch_size", -5), tmp_path / "r.html")
    assert info.value.field == "batch_size"
    assert str(info.value).startswith("plan is not a valid autobatch plan: ")
    assert not list(tmp_path.iterdir())
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(_broken("ceiling_batch_size", 0)))
    with pytest.raises(PlanError, match="'ceiling_batch_size' must be a positive integer") as load:
        load_plan_dict(plan_path)
    assert isinstance(load.value, PlanFieldError) and load.value.field == "ceiling_batch_size"


def test_the_report_keeps_the_plan_as_written(tmp_path: Path) -> None:
    """Checking does not rewrite: the page shows the file's own values (no defaults added)."""
    plan = full_plan()
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(plan))
    assert load_plan_dict(plan_path) == plan
    assert "pixels" not in load_plan_dict(plan_path)["pipeline"]
