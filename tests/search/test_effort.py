"""A tune sized to the job (issue #22, item 1): the budget from the untuned default's
measured rate and the epochs to train, a job too small to pay back any tune left untuned
(the measured default, one line why), an explicit budget always winning, and a cached plan
of a smaller job tuned again for a larger one."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_image_folder

from autobatch._plan import Plan
from autobatch._search._config import DEFAULT_TIME_BUDGET_S, TuneConfig
from autobatch._search._effort import (
    PAYBACK_SHARE,
    QUICK_TUNE_S,
    cached_plan_fits_the_job,
    size_effort,
)


def test_the_budget_is_a_share_of_the_untuned_training_time() -> None:
    # 4000 photos x 3 epochs at 100/s: two minutes untuned -> a fifth of it.
    effort = size_effort(count=4000, epochs=3, default_rate=100.0,
                         default_budget_s=DEFAULT_TIME_BUDGET_S)
    assert effort.untuned_training_s == pytest.approx(120.0)
    assert effort.budget_s == pytest.approx(PAYBACK_SHARE * 120.0)
    # A long job: the default budget is the limit.
    long = size_effort(count=50_000, epochs=50, default_rate=100.0,
                       default_budget_s=DEFAULT_TIME_BUDGET_S)
    assert long.budget_s == DEFAULT_TIME_BUDGET_S and "default budget" in long.reason
    # Worth a tune, but a short one: never below the quick tune.
    short = size_effort(count=600, epochs=10, default_rate=100.0,
                        default_budget_s=DEFAULT_TIME_BUDGET_S)
    assert short.budget_s == QUICK_TUNE_S


def test_a_job_too_small_to_pay_back_is_not_tuned_and_says_why() -> None:
    effort = size_effort(count=300, epochs=3, default_rate=150.0,
                         default_budget_s=DEFAULT_TIME_BUDGET_S)
    assert effort.budget_s is None
    assert effort.reason.startswith("not tuned: 3 epoch(s) of 300 examples at the untuned "
                                    "default's 150/s take about 6 s")
    assert "\n" not in effort.reason


def test_an_explicit_budget_or_trials_always_wins() -> None:
    assert not TuneConfig.create(time_budget_s=None, trials=None, epochs=3).budget_given
    assert TuneConfig.create(time_budget_s=30.0, trials=None, epochs=3).budget_given
    assert TuneConfig.create(time_budget_s=None, trials=4, epochs=3).budget_given


def test_a_cached_plan_of_a_smaller_job_is_tuned_again_for_a_larger_one() -> None:
    small = Plan(batch_size=32, num_examples=300, ceiling_batch_size=32,
                 baseline={"batch_size": 32, "examples_per_s": 150.0},
                 measured={"effort": {"budget_s": None, "tuned": False}})
    config = TuneConfig.create(time_budget_s=None, trials=None, epochs=3)
    assert cached_plan_fits_the_job(small, config, 300)  # the same small job
    big = TuneConfig.create(time_budget_s=None, trials=None, epochs=200)
    assert not cached_plan_fits_the_job(small, big, 300)  # 400 s untuned: worth a tune
    given = TuneConfig.create(time_budget_s=60.0, trials=None, epochs=200)
    assert cached_plan_fits_the_job(small, given, 300)  # the caller's budget decides


def _tiny_model() -> object:
    import keras

    built = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2, activation="softmax")])
    built.compile("adam", "sparse_categorical_crossentropy")
    return built


def test_fit_of_a_small_job_trains_at_once_without_a_worker(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fifty images for one epoch: fit estimates the untuned training in its own process
    (a few batches decoded, one forward pass timed) and starts training with Keras'
    default batch and AUTOTUNE, no probe worker started."""
    import autobatch

    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path / "cache"))
    folder = make_image_folder(tmp_path / "data", {"a": 30, "b": 20}, size=(32, 32))
    history = autobatch.fit(_tiny_model(), folder, epochs=1, verbose=0)
    plan = history.plan
    effort = plan.measured["effort"]
    assert effort["tuned"] is False and effort["estimated_in_process"]
    assert effort["reason"].startswith("not tuned: 1 epoch(s) of 50 examples take about")
    assert plan.keeps_default and plan.trials == [] and plan.batch_size == 32
    assert "tune_time" not in plan.measured  # no tune ran
    assert history.history["examples_seen"] == [50] and history.tune_time_s < 5.0


@pytest.mark.slow
def test_tune_told_the_epochs_measures_the_default_and_stops_for_a_small_job(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``tune(epochs=1)``: the worker's first probe (the untuned default) shows the job is
    too small; the plan is that measured default, and the same call again is a cache hit."""
    import autobatch

    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path / "cache"))
    folder = make_image_folder(tmp_path / "data", {"a": 30, "b": 20}, size=(32, 32))
    model = _tiny_model()
    plan = autobatch.tune(model, folder, epochs=1, verbose=0)
    effort = plan.measured["effort"]
    assert effort["tuned"] is False and effort["reason"].startswith("not tuned: 1 epoch(s)")
    assert plan.keeps_default and plan.trials == [] and plan.batch_size == 32
    assert plan.measured["tune_time"]["probes"] == 1  # the default's own probe, nothing more
    assert plan.baseline["outcome"] == "ok" and plan.peak_memory_bytes
    again = autobatch.tune(model, folder, epochs=1, verbose=0)
    assert again.cache_hit


@pytest.mark.slow
def test_a_quick_tune_takes_its_largest_batch_straight_to_model_fit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job worth only a short tune: the ceiling stops at the study's largest batch (a
    quarter of the data), no bare trial runs, and that batch meets the untuned default in
    ``model.fit`` at once; the plan is the candidate only where it won decisively."""
    import autobatch
    from autobatch._search import _study_phase
    from autobatch._search._finalists import DECISIVE_RATIO

    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path / "cache"))
    # However fast this machine, the short study goes straight to model.fit.
    monkeypatch.setattr(_study_phase, "FIT_ONLY_S", DEFAULT_TIME_BUDGET_S)
    folder = make_image_folder(tmp_path / "data", {"a": 200, "b": 200}, size=(32, 32))
    plan = autobatch.tune(_tiny_model(), folder, epochs=2000, verbose=0)
    effort = plan.measured["effort"]
    assert effort["tuned"] and effort["budget_s"] < DEFAULT_TIME_BUDGET_S
    assert plan.ceiling["batch_size"] <= 100  # 400 // 4: never the whole data set
    assert plan.ceiling["capped_by"] == "search_batch_cap"
    assert plan.trials == []  # no bare trial: the rounds judge
    versus = plan.measured["versus_default"]
    assert versus["rounds"] >= 1
    candidate = [row for row in plan.measured["finalists"] if not row["is_default"]]
    assert [row["batch_size"] for row in candidate] == [plan.ceiling["batch_size"]]
    assert candidate[0]["fit_examples_per_s"]  # measured with model.fit
    if versus["decision"] == "tuned":
        assert plan.batch_size == plan.ceiling["batch_size"]
        assert min(versus["paired_ratios"]) >= DECISIVE_RATIO or versus["rounds"] >= 3
        assert plan.measured["peak_memory_fresh_worker"] is False  # an upper bound
    else:
        assert plan.batch_size == 32 and plan.keeps_default
