"""The tune's phases in order against a simulated runner (a ``ProbeRunner`` subclass): the
untuned default, the ceiling, the pixels, the study (real Optuna, SQLite), the verify
rounds and the Plan, then a resumed tune that skips what the study stored. Fast: no worker,
no TensorFlow model; the real worker runs in ``test_tune.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _simulated import SimulatedTraining

from autobatch._errors import UsageError
from autobatch._search import TuneEvent, tune
from autobatch._search._ceiling import READING_NOISE

MIB = 1 << 20
BUDGET = 300 * MIB


def _arrays(count: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(count, 16, 16, 3), dtype=np.uint8)
    return x, np.arange(count) % 2


def _tune(sim: SimulatedTraining, storage: str, **options: Any) -> tuple[Any, list[TuneEvent]]:
    events: list[TuneEvent] = []
    plan = tune("small_cnn", _arrays(), image_size=16, trials=4, seed=0, try_xla=False,
                storage=storage, use_cache=False, runner=sim, on_event=events.append,
                **options)
    return plan, events


def test_phases_run_in_order_and_the_plan_holds_what_they_found(tmp_path: Path) -> None:
    sim = SimulatedTraining(100 * MIB, 1 * MIB, BUDGET, best_batch=64)
    plan, events = _tune(sim, f"sqlite:///{tmp_path / 'study.db'}")
    phases = [e.phase for e in events]
    firsts = sorted({p: phases.index(p) for p in phases}.items(), key=lambda kv: kv[1])
    assert [p for p, _ in firsts] == ["baseline", "ceiling", "pixels", "search", "verify",
                                      "done"]
    # The ceiling's probes are model.fit in fresh workers, judged against the budget less
    # the spread of one reading between processes (no allowance for fit's first step).
    assert plan.ceiling["budget_bytes"] == int(BUDGET * (1 - READING_NOISE))
    assert sim.true_peak(plan.ceiling_batch_size) <= plan.ceiling["budget_bytes"]
    # 400 examples: the study keeps at least four weight updates per epoch.
    assert plan.ceiling["search_batch_cap"] <= 100
    assert plan.measured["pixels"] == {
        "dtype": "float32", "reason": "the model's output changes when given uint8 images"}
    assert len(plan.trials) == 4 and plan.baseline["batch_size"] == 32
    # Finalists ran under model.fit beside the default, which the simulated speed beats.
    assert "fit" in sim.modes
    table = plan.measured["finalists"]
    assert table[-1]["is_default"] and not any(row["is_default"] for row in table[:-1])
    versus = plan.measured["versus_default"]
    assert versus["decision"] == "tuned" and versus["beats_default"]
    assert plan.batch_size <= plan.ceiling["search_batch_cap"]
    assert not plan.pipeline.uses_autotune
    assert plan.measured["memory_budget_bytes"] == BUDGET
    assert plan.learning_rate.optimizer == "Adam"
    assert set(plan.fingerprints) == {"model", "data", "hardware", "tensorflow", "options"}
    assert plan.study["study_name"].startswith("autobatch-")
    assert events[-1].message.startswith(f"batch {plan.batch_size}:")


def test_a_resumed_tune_skips_what_the_study_stored(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first, _ = _tune(SimulatedTraining(100 * MIB, 1 * MIB, BUDGET), storage)
    sim = SimulatedTraining(100 * MIB, 1 * MIB, BUDGET)
    again, events = _tune(sim, storage, time_budget=None)
    messages = [e.message for e in events]
    assert not any(e.phase in ("baseline", "pixels") for e in events)
    assert f"resumed: ceiling batch {first.ceiling_batch_size}" in messages
    assert any(m == "resumed 4 stored trials" for m in messages)
    assert again.ceiling_batch_size == first.ceiling_batch_size
    assert [t["number"] for t in again.trials] == [t["number"] for t in first.trials]
    # Only the verify phase probed again: model.fit rounds and the long run, as the plan
    # trains, then one bare-loop probe of the winner for its input-wait share. No trial.
    assert sim.modes and sim.modes[-1] == "loop"
    assert set(sim.modes[:-1]) == {"fit"}
    assert again.study["study_name"] == first.study["study_name"]


def test_no_batch_that_fits_is_a_usage_error_about_the_memory_budget(tmp_path: Path) -> None:
    sim = SimulatedTraining(400 * MIB, 1 * MIB, BUDGET)  # the fixed cost alone is over
    with pytest.raises(UsageError) as caught:
        _tune(sim, f"sqlite:///{tmp_path / 'study.db'}")
    assert caught.value.parameter == "memory_budget"
    assert "does not fit the memory budget" in str(caught.value)
    assert "raise memory_budget" in str(caught.value)
    assert "raise --memory-budget" in caught.value.message_for("--memory-budget")
