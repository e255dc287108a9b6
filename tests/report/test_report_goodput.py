"""Issue #21: the report of a goodput plan shows the noise scale, efficiency and goodput
against batch size; a throughput plan's page is as it was."""

from __future__ import annotations

import base64
import copy
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from _plans import _parse, full_plan

from autobatch._report import write_report
from autobatch._report._format import FORMATTERS, lookup

B_NOISE, LOW, HIGH, REFERENCE = 180.4, 121.7, 302.2, 32


def efficiency(batch: float, noise: float = B_NOISE) -> float:
    return (noise + REFERENCE) / (noise + batch)


def goodput_plan(resolved: bool = True) -> dict[str, Any]:
    """``full_plan`` as ``tune --objective goodput`` writes it: trials with their efficiency
    and goodput, and ``measured.objective`` with the noise scale and the finalists."""
    plan = full_plan()
    noise = {"b_simple": B_NOISE, "low": LOW, "high": HIGH, "gradient_sq_norm": 0.0125,
             "trace_covariance": 2.255, "small_batch_size": 16, "large_batch_size": 128,
             "repeats": 12, "resolved": True}
    if not resolved:
        noise.update(b_simple=None, low=None, high=None, gradient_sq_norm=-0.003,
                     resolved=False)
    weigh = efficiency if resolved else (lambda batch: 1.0)
    for trial in plan["trials"]:
        if weigh(trial["batch_size"]) != 1.0:
            trial["efficiency"] = weigh(trial["batch_size"])
            trial["goodput"] = trial["examples_per_s"] * trial["efficiency"]
    rows = [(64, 750.875, False), (128, 790.0, False), (32, 512.5, True)]
    plan["measured"]["objective"] = {
        "name": "goodput", "reference_batch_size": REFERENCE, "noise_scale": noise,
        "finalists": [{"batch_size": batch, "examples_per_s": rate,
                       "efficiency": weigh(batch), "goodput": rate * weigh(batch),
                       "is_default": default} for batch, rate, default in rows]}
    return plan


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Any, str]:
    plan = goodput_plan()
    out = tmp_path_factory.mktemp("goodput")
    files = write_report(copy.deepcopy(plan), out / "r.html")
    return plan, files, files.html.read_text(encoding="utf-8")


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


def test_the_section_states_the_objective_and_the_noise_scale(
        page: tuple[dict[str, Any], Any, str]) -> None:
    _, files, _ = page
    ids = _parse(files.html).ids
    objective = ids["objective"]
    assert objective.startswith("Ranked by goodput: examples/s × statistical efficiency "
                                "(B_noise + 32) / (B_noise + B)")
    assert (f"Gradient noise scale B_simple {B_NOISE:.0f} examples (spread {LOW:.0f}–"
            f"{HIGH:.0f}, the bootstrap's 16th to 84th percentile) from 12 draws of batches "
            "of 16 and 128.") in objective
    # The chosen batch 64 keeps (180.4 + 32) / (180.4 + 64) = 87% of its examples.
    assert ids["objective-summary"] == (f"Ranked by goodput under a gradient noise scale "
                                        f"B_simple of 180 (122–302): batch 64 keeps "
                                        f"{efficiency(64) * 100:.0f}% statistical efficiency.")


def test_each_finalist_shows_its_examples_efficiency_and_goodput(
        page: tuple[dict[str, Any], Any, str]) -> None:
    plan, _, html = page
    table = re.search(r'<table id="objective-finalists">(.*?)</table>', html)
    assert table is not None
    rows = [[_text(c) for c in re.findall(r"<td>(.*?)</td>", r)]
            for r in re.findall(r"<tr>(.*?)</tr>", table.group(1))][1:]
    finalists = plan["measured"]["objective"]["finalists"]
    assert len(rows) == len(finalists) == 3
    for row, entry in zip(rows, finalists, strict=True):
        goodput = entry["examples_per_s"] * efficiency(entry["batch_size"])
        assert row[1:] == [f"{entry['batch_size']}", f"{entry['examples_per_s']:,.1f} examples/s",
                           f"{efficiency(entry['batch_size']) * 100:.0f}%",
                           f"{goodput:,.1f} examples/s"]
    assert rows[0] == ["1", "64", "750.9 examples/s", "87%", "652.6 examples/s"]  # x 0.8691
    assert rows[2] == ["3 (untuned default)", "32", "512.5 examples/s", "100%",
                       "512.5 examples/s"]


def test_every_goodput_number_is_the_plans(page: tuple[dict[str, Any], Any, str]) -> None:
    plan, files, _ = page
    numbers = [n for n in _parse(files.html).numbers if "data-key" in n]
    keys = {n["data-key"] for n in numbers}
    for needed in ("measured.objective.noise_scale.b_simple",
                   "measured.objective.noise_scale.low", "measured.objective.noise_scale.high",
                   "measured.objective.noise_scale.large_batch_size",
                   "measured.objective.finalists.2.goodput",
                   "measured.objective.finalists.1.efficiency"):
        assert needed in keys, needed
    for number in numbers:
        value = lookup(plan, number["data-key"])
        assert json.loads(number["data-value"]) == value, number["data-key"]
        assert number["text"] == FORMATTERS[number["data-kind"]](value), number["data-key"]


def test_the_goodput_plot_is_embedded_and_written(page: tuple[dict[str, Any], Any, str]) -> None:
    from PIL import Image

    _, files, _ = page
    images = _parse(files.html).images
    assert [img["id"] for img in images] == ["plot-memory", "plot-throughput", "plot-goodput"]
    assert files.goodput_png == files.html.parent / "r-goodput.png"
    embedded = base64.b64decode(images[2]["src"].removeprefix("data:image/png;base64,"))
    assert embedded == files.goodput_png.read_bytes()
    with Image.open(io.BytesIO(embedded)) as image:
        assert image.format == "PNG" and image.width > 300 and image.height > 200


def test_the_figure_draws_both_series_the_curve_and_the_noise_scale() -> None:
    import numpy as np

    from autobatch._report._goodput import goodput_figure

    plan = goodput_plan()
    fig = goodput_figure(plan)
    ax, twin = fig.axes
    assert ax.get_title() == "Goodput against batch size: B_simple 180 (122–302)"
    assert ax.get_xscale() == "log" and ax.get_xlim() == twin.get_xlim()
    labels = ax.get_legend().get_texts()
    said = [t.get_text() for t in labels]
    assert said == ["trial: examples/s", "trial: goodput (examples/s × efficiency)",
                    f"chosen: batch 64, goodput {750.875 * efficiency(64):,.1f}/s",
                    "efficiency (B_noise + 32) / (B_noise + B)",
                    "B_simple spread (16th–84th percentile)", "B_simple 180"]
    rates, goodputs = (ax.collections[0].get_offsets(), ax.collections[1].get_offsets())
    trials = plan["trials"]
    assert [tuple(p) for p in rates] == [(t["batch_size"], t["examples_per_s"]) for t in trials]
    assert [p[1] for p in goodputs] == pytest.approx(
        [t["examples_per_s"] * efficiency(t["batch_size"]) for t in trials])
    xs, ys = twin.lines[0].get_data()
    assert ys == pytest.approx([efficiency(x) for x in xs])
    assert max(ys) > 1 > min(ys)  # above 1 below the reference batch 32, below it above
    assert twin.get_ylim()[0] == 0
    noise_line = twin.lines[1]
    assert list(noise_line.get_xdata()) == [B_NOISE, B_NOISE]
    band = twin.patches[0].get_window_extent()  # in display units: back to batch sizes
    inverse = twin.transData.inverted()
    edges = [inverse.transform((x, 0))[0] for x in (band.x0, band.x1)]
    assert edges == pytest.approx([LOW, HIGH], rel=1e-6)
    assert ax.get_xlim()[1] > B_NOISE  # the knee is in the frame
    assert np.all(np.diff(ys) < 0)


def test_an_unresolved_noise_scale_says_so_and_draws_efficiency_one(tmp_path: Path) -> None:
    from autobatch._report._goodput import goodput_figure

    plan = goodput_plan(resolved=False)
    fig = goodput_figure(plan)
    ax, twin = fig.axes
    assert ax.get_title() == ("Goodput against batch size: noise scale unresolved: "
                              "efficiency 1 for every batch")
    xs, ys = twin.lines[0].get_data()
    assert len(xs) > 2 and set(ys) == {1.0}
    assert len(twin.lines) == 1 and not twin.patches  # no B_simple line, no band
    rates, goodputs = ax.collections[0].get_offsets(), ax.collections[1].get_offsets()
    assert [p[1] for p in goodputs] == [p[1] for p in rates]
    ids = _parse(write_report(plan, tmp_path / "r.html").html).ids
    assert ("The gradient noise scale was unresolved from 12 draws of batches of 16 and 128: "
            "|G|² did not stand out of the noise") in ids["objective"]
    assert "B_simple <b>" not in ids["objective"] and "B_simple of" not in ids["objective-summary"]
    assert ids["objective-summary"].startswith("Ranked by goodput, but with no resolved")
    plan["measured"]["objective"]["noise_scale"] = None  # the noise probe failed
    assert goodput_figure(plan).axes[0].get_title().endswith(
        "noise scale not measured: efficiency 1 for every batch")
    ids = _parse(write_report(plan, tmp_path / "s.html").html).ids
    assert ids["objective"].endswith("The noise probe failed: no gradient noise scale was "
                                     "measured, so every batch counts fully (efficiency 1) and "
                                     "the ranking is by examples/s.")


def test_a_noise_scale_far_beyond_the_batches_is_annotated_not_the_frame() -> None:
    from autobatch._report._goodput import goodput_figure

    plan = goodput_plan()
    plan["measured"]["objective"]["noise_scale"].update(b_simple=9000.0, low=7000.0,
                                                        high=12000.0)
    ax, twin = goodput_figure(plan).axes
    assert ax.get_xlim()[1] < 1000
    assert [t.get_text() for t in ax.texts] == ["beyond the frame:\nB_simple 9,000 →"]
    assert len(twin.lines) == 1  # the curve only


def test_a_throughput_plan_has_no_goodput_section_and_is_unchanged(tmp_path: Path) -> None:
    plan = full_plan()
    files = write_report(plan, tmp_path / "t.html")
    text = files.html.read_text(encoding="utf-8")
    assert files.goodput_png is None and files.pngs == (files.memory_png, files.throughput_png)
    assert not (tmp_path / "t-goodput.png").exists()
    for absent in ("Objective: goodput", 'id="objective', "plot-goodput", "B_simple"):
        assert absent not in text
    # The goodput parts are additions: taken out of a goodput page, what is left is the
    # throughput plan's page byte for byte (same trials, same plots).
    goodput = write_report(goodput_plan(), tmp_path / "t.html").html.read_text(encoding="utf-8")
    assert goodput != text
    stripped = re.sub(r'<p id="objective-summary">.*?</p>', "", goodput)
    stripped = re.sub(r"<h2>Objective: goodput</h2>.*?(?=<h2>Chosen settings</h2>)", "",
                      stripped)
    assert stripped == text
    # A record of another objective is not a goodput one.
    plan["measured"]["objective"] = {"name": "throughput", "finalists": []}
    assert write_report(plan, tmp_path / "t.html").html.read_text(encoding="utf-8") == text
