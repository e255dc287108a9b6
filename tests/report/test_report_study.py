"""The report and the Optuna study: annotations in storage, and a report from a real tune."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from _plans import ARTIFACTS, MiB, _parse, full_plan

from autobatch._cli import main
from autobatch._report import annotate_study, load_plan_dict
from autobatch._report._format import FORMATTERS, lookup

# ---------------------------------------------------------------- Optuna


def test_annotated_study_reads_back_from_storage(tmp_path: Path) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    plan = {**full_plan(), "study": {"storage": storage, "study_name": "s"}}
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    study.optimize(lambda trial: float(trial.suggest_categorical("batch_size", [16, 32])),
                   n_trials=2)
    annotate_study(study, plan)
    loaded = optuna.load_study(study_name="s", storage=storage)
    assert loaded.user_attrs["chosen_batch_size"] == 64
    assert loaded.user_attrs["ceiling_batch_size"] == 128
    assert loaded.user_attrs["examples_per_s"] == "812.3 examples/s"
    assert loaded.user_attrs["peak_memory"] == "700.01 MiB"
    assert loaded.metric_names == ["examples_per_s"]


def test_search_trials_carry_readable_user_attrs_in_storage(tmp_path: Path) -> None:
    """The search's own trial attributes survive a round trip through the storage."""
    import optuna

    from autobatch._probe._types import ProbeResult
    from autobatch._search._study import SearchSpace, open_study, run_trial

    class FixedRunner:  # in-process runner: the search logic's own test seam, no TF
        def run(self, request: Any) -> ProbeResult:
            return ProbeResult(outcome="ok", batch_size=request.batch_size,
                               settings=request.settings, examples_per_s=10.0 * request.batch_size,
                               peak_host_memory_bytes=request.batch_size * MiB)

    storage = f"sqlite:///{tmp_path / 'search.db'}"
    study = open_study(storage, "search", seed=0)
    space = SearchSpace(batch_sizes=(8, 16))
    record = run_trial(study, FixedRunner(), space, best=None, steps=1, warmup_steps=0,
                       timeout_s=5)
    trial = optuna.load_study(study_name="search", storage=storage).trials[0]
    batch = record.params["batch_size"]
    assert trial.user_attrs["batch_size"] == batch
    assert trial.user_attrs["examples_per_s"] == pytest.approx(10.0 * batch)
    assert trial.user_attrs["peak_memory_bytes"] == batch * MiB
    assert trial.user_attrs["outcome"] == "ok"


# ---------------------------------------------------------------- a plan from a real tune


@pytest.mark.slow
def test_report_from_a_real_tune(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """small_cnn at 32 px on 48 arrays, 2 trials, probes in-process (TF on CPU, ~30 s)."""
    import numpy as np
    import optuna

    import autobatch
    from autobatch._probe import InProcessProbeRunner

    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    data = (rng.integers(0, 255, size=(48, 32, 32, 3), dtype=np.uint8), np.arange(48) % 3)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    runner = InProcessProbeRunner("small_cnn", data, image_size=32,
                                  host_memory_budget_bytes=2 << 30)
    plan = autobatch.tune("small_cnn", data, image_size=32, trials=2, memory_budget="2GiB",
                          storage=storage, use_cache=False, try_xla=False, trial_steps=2,
                          verify_steps=3, runner=runner, output=tmp_path / "plan.json")
    html = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "plan.json"), "--out", str(html)]) == 0
    saved = load_plan_dict(tmp_path / "plan.json")
    assert saved["batch_size"] == plan.batch_size
    shown = {n["data-key"]: n for n in _parse(html).numbers if "data-key" in n}
    for key in ("batch_size", "ceiling_batch_size", "measured.examples_per_s",
                "measured.peak_memory_bytes", "measured.input_wait_fraction",
                "baseline.examples_per_s", "learning_rate.factor"):
        value = lookup(saved, key)
        assert value is not None, f"the real plan has no {key}"
        assert json.loads(shown[key]["data-value"]) == value
        assert shown[key]["text"] == FORMATTERS[shown[key]["data-kind"]](value)
    # The study behind the plan: the search's trial attributes, then ours on the study.
    study = optuna.load_study(study_name=saved["study"]["study_name"], storage=storage)
    assert {"batch_size", "examples_per_s", "outcome"} <= set(study.trials[0].user_attrs)
    annotate_study(study, plan)
    reloaded = optuna.load_study(study_name=saved["study"]["study_name"], storage=storage)
    assert reloaded.user_attrs["chosen_batch_size"] == plan.batch_size
    assert reloaded.user_attrs["model"] == study.user_attrs["model"]  # the search's, kept
    if os.environ.get("CI") or _has_browser():
        from _browser import check_page

        check = check_page(html, screenshot_path=ARTIFACTS / "report-real-tune-screenshot.png")
        assert check.errors == [] and len(check.images) == 2
        assert all(img["natural_width"] > 0 and img["visible"] for img in check.images)


def _has_browser() -> bool:
    from _browser import find_chromium

    try:
        import websocket  # noqa: F401
    except ImportError:
        return False
    return find_chromium() is not None
