"""The tuning report: numbers on the page equal the plan's, plots render in a real browser."""

from __future__ import annotations

import base64
import copy
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _plans import (  # noqa: F401 - the report tests in other files import some from here
    ARTIFACTS,
    MiB,
    _PageNumbers,
    _parse,
    _probe,
    _settings,
    full_plan,
    minimal_plan,
)

from autobatch._cli import main
from autobatch._errors import PlanError, UsageError
from autobatch._report import ReportFiles, load_plan_dict, write_report
from autobatch._report._format import (
    FORMATTERS,
    INPUT_BOUND_FRACTION,
    input_bound_sentence,
    lookup,
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], ReportFiles]:
    plan = full_plan()
    out = tmp_path_factory.mktemp("report")
    return plan, write_report(copy.deepcopy(plan), out / "r.html", png_dir=out / "png")


# ---------------------------------------------------------------- numbers on the page


def test_every_number_on_the_page_is_the_plans(report: tuple[dict[str, Any], ReportFiles]) -> None:
    plan, files = report
    page = _parse(files.html)
    keys = {n["data-key"] for n in page.numbers if "data-key" in n}
    for needed in ("batch_size", "ceiling_batch_size", "steps_per_epoch", "num_examples",
                   "measured.examples_per_s", "measured.input_wait_fraction",
                   "measured.peak_memory_bytes", "measured.memory_budget_bytes",
                   "baseline.examples_per_s", "baseline.batch_size", "learning_rate.factor",
                   "ceiling.memory_model.slope_bytes_per_example", "ceiling.predicted_batch_size",
                   "audit.skipped_by_reason.truncated", "audit.skipped_by_reason.not_an_image",
                   "pipeline.prefetch", "measured.device", "fingerprints.hardware",
                   "hardware.cpus", "hardware.memory_limit_bytes", "hardware.gpus",
                   "measured.finalists.0.fit_examples_per_s.1",
                   "measured.finalists.1.trial_examples_per_s"):
        assert needed in keys, f"{needed} is not shown on the page"
    assert "failed under model.fit" in files.html.read_text(encoding="utf-8")
    for number in page.numbers:
        if "data-key" not in number:
            continue
        value = lookup(plan, number["data-key"])
        assert json.loads(number["data-value"]) == value, number["data-key"]
        assert number["text"] == FORMATTERS[number["data-kind"]](value), number["data-key"]


def test_shown_numbers_read_back_as_the_plans_values(
        report: tuple[dict[str, Any], ReportFiles]) -> None:
    # Independent of the formatters: parse the text as a reader would.
    plan, files = report
    shown = {n["data-key"]: n["text"] for n in _parse(files.html).numbers if "data-key" in n}
    assert int(shown["batch_size"]) == plan["batch_size"] == 64
    assert int(shown["ceiling_batch_size"]) == 128
    rate = float(shown["measured.examples_per_s"].split()[0].replace(",", ""))
    assert rate == pytest.approx(plan["measured"]["examples_per_s"], abs=0.05)
    value, unit = shown["measured.peak_memory_bytes"].split()
    assert unit == "MiB"
    assert float(value) * MiB == pytest.approx(plan["measured"]["peak_memory_bytes"],
                                               abs=0.005 * MiB)
    assert shown["measured.input_wait_fraction"] == "62%"
    assert shown["measured.step_time_s"] == "78.8 ms"
    assert shown["audit.skipped_by_reason.not_an_image"] == "6"
    assert shown["hardware.memory_limit_bytes"] == "8.00 GiB"
    assert shown["hardware.gpus"] == "none"


def test_speedup_is_tuned_over_baseline(report: tuple[dict[str, Any], ReportFiles]) -> None:
    plan, files = report
    derived = [n for n in _parse(files.html).numbers if n.get("data-derived") == "speedup"]
    assert len(derived) == 1
    expected = plan["measured"]["examples_per_s"] / plan["baseline"]["examples_per_s"]
    assert json.loads(derived[0]["data-value"]) == pytest.approx(expected)
    assert derived[0]["text"] == f"{expected:.2f}×"


def test_page_states_input_bound_learning_rate_and_dashboard(
        report: tuple[dict[str, Any], ReportFiles]) -> None:
    _, files = report
    ids = _parse(files.html).ids
    assert ids["input-wait"] == "input-bound: the model waits for data 62% of each step"
    assert "a tf.data service (--data-service grpc://HOST:PORT)" in ids["data-service-hint"]
    assert "by 2.00× (linear rule: batch 64 against the reference batch 32)" in ids["learning-rate"]
    assert ids["dashboard-command"] == "optuna-dashboard sqlite:////tmp/autobatch/optuna.db"


@pytest.mark.parametrize(("fraction", "sentence"), [
    (0.62, "input-bound: the model waits for data 62% of each step"),
    (INPUT_BOUND_FRACTION, "input-bound: the model waits for data 10% of each step"),
    (0.03, "compute-bound: the model waits for data only 3% of each step"),
    (None, "input wait not measured: the plan holds no input_wait_fraction"),
])
def test_input_bound_sentence(fraction: float | None, sentence: str) -> None:
    assert input_bound_sentence(fraction) == sentence


# ---------------------------------------------------------------- files and plots


def test_html_is_self_contained_and_embeds_the_png_files(
        report: tuple[dict[str, Any], ReportFiles]) -> None:
    from PIL import Image

    _, files = report
    text = files.html.read_text(encoding="utf-8")
    page = _parse(files.html)
    assert page.scripts == 0
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert [img["id"] for img in page.images] == ["plot-memory", "plot-throughput"]
    for img, png_path in zip(page.images, files.pngs, strict=True):
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix)
        embedded = base64.b64decode(img["src"][len(prefix):])
        assert embedded == png_path.read_bytes()
        with Image.open(io.BytesIO(embedded)) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 200
    assert files.memory_png.parent.name == "png"


def test_memory_plot_marks_budget_model_ceiling_and_oom() -> None:
    from autobatch._report._plots import memory_figure, throughput_figure

    labels = memory_figure(full_plan()).axes[0].get_legend_handles_labels()[1]
    assert "memory budget 1.00 GiB" in labels
    assert "memory model: 400.00 MiB + 4.40 MiB per example" in labels
    assert "verified ceiling 128" in labels
    assert "predicted ceiling 141" in labels
    assert "ceiling probe: out of memory" in labels
    assert "chosen batch 64" in labels
    labels = throughput_figure(full_plan()).axes[0].get_legend_handles_labels()[1]
    assert "untuned default: 401.2 examples/s" in labels
    assert "chosen: batch 64, 812.3 examples/s" in labels
    assert "trial (pruned or failed)" in labels


def test_minimal_plan_renders_with_missing_parts_said(tmp_path: Path) -> None:
    from autobatch._report._plots import memory_figure

    files = write_report(minimal_plan(), tmp_path / "min.html")
    text = files.html.read_text(encoding="utf-8")
    assert "No audit in this plan" in text
    assert "The search kept no Optuna storage" in text
    assert "input wait not measured" in text
    assert "No finalists were compared" in text
    assert "untuned default" not in text  # no baseline: no speed-up sentence
    assert files.memory_png.is_file() and files.throughput_png.is_file()
    assert files.memory_png.parent == tmp_path
    labels = memory_figure(minimal_plan()).axes[0].get_legend_handles_labels()[1]
    assert labels == ["verified ceiling 16"]
    empty = memory_figure({"schema_version": 1, "batch_size": 16}).axes[0]
    assert [t.get_text() for t in empty.texts] == ["nothing measured in this plan"]


def test_write_report_accepts_a_plan_object(tmp_path: Path) -> None:
    from autobatch._plan import Plan

    plan = Plan.from_dict(full_plan())
    files = write_report(plan, tmp_path / "obj.html")
    shown = {n["data-key"]: n["text"] for n in _parse(files.html).numbers if "data-key" in n}
    assert shown["batch_size"] == "64"
    assert shown["measured.examples_per_s"] == "812.3 examples/s"


def test_plan_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_plan_dict(tmp_path / "missing.json")
    (tmp_path / "future.json").write_text(json.dumps({**full_plan(), "schema_version": 99}))
    with pytest.raises(PlanError, match="schema version 99") as info:
        load_plan_dict(tmp_path / "future.json")
    assert "\n" not in str(info.value)
    with pytest.raises(PlanError, match="not an autobatch plan"):
        write_report({"hello": 1}, tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


# ---------------------------------------------------------------- CLI


def test_cli_writes_report_and_says_where(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(full_plan()))
    out = tmp_path / "site" / "r.html"
    argv = ["report", str(plan_path), "--out", str(out), "--png-dir", str(tmp_path / "p")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"report: {out}" in printed
    assert str(tmp_path / "p" / "r-memory.png") in printed
    assert "optuna-dashboard sqlite:////tmp/autobatch/optuna.db" in printed
    assert out.is_file() and (tmp_path / "p" / "r-throughput.png").is_file()


@pytest.mark.parametrize(("content", "code", "message"), [
    (None, 2, "does not exist"),
    ("{not json", 1, "not valid JSON"),
    ("[1, 2]", 1, "expected a JSON object, got list"),
    (json.dumps({**full_plan(), "schema_version": 7}), 1, "schema version 7"),
])
def test_cli_errors_are_one_line_without_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, code: int,
        message: str) -> None:
    plan_path = tmp_path / "plan.json"
    if content is not None:
        plan_path.write_text(content)
    assert main(["report", str(plan_path), "--out", str(tmp_path / "r.html")]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("autobatch report: error: ")
    assert message in err[0]
    assert not (tmp_path / "r.html").exists()


def test_report_command_imports_no_tensorflow(tmp_path: Path) -> None:
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(full_plan()))
    code = (
        "import sys\n"
        "import autobatch._report\n"
        "assert 'matplotlib' not in sys.modules, 'import autobatch._report loaded matplotlib'\n"
        "from autobatch._cli import main\n"
        f"assert main(['report', {str(plan_path)!r}, '--out', {str(tmp_path / 'r.html')!r}]) == 0\n"
        "assert 'tensorflow' not in sys.modules, 'report imported tensorflow'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
