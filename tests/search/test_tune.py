"""``tune`` end to end on CPU: small_cnn at 32 px, real JPEG files, the real probe worker.

One module-scoped tune is interrupted after two trials (Ctrl-C raised from the progress
callback) and resumed; the tests then read the resumed plan, the study storage and the
plan cache (in a fresh interpreter, which must not import TensorFlow). The pure parts are
in ``test_space.py``, ``test_finalists.py`` and ``test_ceiling.py``; the options in
``test_tune_config.py``; the phases against a simulated runner in ``test_phases.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from conftest import make_image_folder

from autobatch._plan import Plan
from autobatch._search._ceiling import (
    FULL_ENOUGH,
    READING_NOISE,
    MemoryModel,
    probe_fits,
    room_left,
)
from autobatch._search._tune import (
    FINALIST_ROUNDS,
    MAX_FINALIST_ROUNDS,
    WIN_MARGIN,
    TuneEvent,
    tune,
)
from autobatch._settings import AUTOTUNE

# Every test here reads the one real tune (the subprocess worker, minutes on a CPU).
pytestmark = pytest.mark.slow

# A worker idles at 600-750 MiB (TensorFlow, the model, the data): the budget leaves room for
# a few hundred 32 px examples, so the ceiling is memory-bound (under 600) on the machines seen.
BUDGET_MIB = 900
BUDGET = f"{BUDGET_MIB}MiB"
TRIALS = 5
OPTIONS: dict[str, Any] = dict(image_size=32, memory_budget=BUDGET, trials=TRIALS, seed=0,
                               try_xla=False)


# ---------------------------------------------------------------- one real tune, resumed


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("search")
    cache = root / "cache"
    old_cache = os.environ.get("AUTOBATCH_CACHE_DIR")
    os.environ["AUTOBATCH_CACHE_DIR"] = str(cache)
    # 600 real JPEGs of 32 x 32 in 3 classes: large enough that the ceiling is memory-bound.
    data = make_image_folder(root / "data", {"a": 200, "b": 200, "c": 200}, size=(32, 32))

    first_events: list[TuneEvent] = []

    def interrupt_after_two_trials(event: TuneEvent) -> None:
        first_events.append(event)
        if event.phase == "search" and event.trial == 2:
            raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            tune("small_cnn", data, **OPTIONS, on_event=interrupt_after_two_trials)
        events: list[TuneEvent] = []
        plan = tune("small_cnn", data, **OPTIONS, output=root / "plan.json",
                    on_event=events.append)
        yield {"plan": plan, "events": events, "first_events": first_events, "data": data,
               "cache": cache, "root": root}
    finally:
        if old_cache is None:
            os.environ.pop("AUTOBATCH_CACHE_DIR", None)
        else:
            os.environ["AUTOBATCH_CACHE_DIR"] = old_cache


def test_ceiling_is_verified_under_the_budget(tuned: dict[str, Any]) -> None:
    from autobatch._probe._types import ProbeResult

    plan: Plan = tuned["plan"]
    ceiling = plan.ceiling
    budget = ceiling["budget_bytes"]
    # Every memory verdict is a fresh process's model.fit, judged against the whole budget.
    # (less the spread of one batch's reading between fresh processes).
    assert budget == int((BUDGET_MIB << 20) * (1 - READING_NOISE))
    assert "fit_allowance_bytes" not in ceiling
    assert plan.measured["memory_budget_bytes"] == BUDGET_MIB << 20
    probes = [ProbeResult.from_dict(p) for p in ceiling["probes"]]
    assert probes and all(p.mode == "fit" for p in probes)
    # The first probe starts a worker; a later one may reuse it where the line puts it
    # under FRESH_ABOVE of the budget (an ascending reading bounds the peak from above).
    assert probes[0].worker_started
    # A miss in a reused worker is rerun fresh, so every verdict against a batch is a
    # fresh process's own.
    for i, p in enumerate(probes):
        if p.outcome != "crash" and not probe_fits(p, budget) and not p.worker_started:
            rerun = probes[i + 1]
            assert rerun.batch_size == p.batch_size and rerun.worker_started
    at_ceiling = [p for p in probes if p.batch_size == plan.ceiling_batch_size]
    assert any(probe_fits(p, budget) for p in at_ceiling), "ceiling was never run successfully"
    assert len(probes) <= 8
    failing = ceiling["first_failing_batch_size"]
    fitting = [p for p in probes if probe_fits(p, budget)]
    assert all(p.batch_size <= plan.ceiling_batch_size for p in fitting)
    if failing is not None:
        # A larger batch was run and did not fit; nothing fitting lies above it.
        assert failing > plan.ceiling_batch_size
        assert all(not probe_fits(p, budget) for p in probes if p.batch_size >= failing)
    elif ceiling["capped_by"] is None:
        # Memory-bound without a miss: the search stopped because the verified batch reads
        # close to the budget, or the line leaves under 5% more batch above it.
        line = MemoryModel(**ceiling["memory_model"])
        peak = max(p.peak_memory_bytes or 0 for p in at_ceiling if probe_fits(p, budget))
        assert not room_left(line, budget, plan.ceiling_batch_size, peak)
    else:
        assert plan.ceiling_batch_size == plan.num_examples
    model = ceiling["memory_model"]
    if model is None:
        # One batch size fitted, so no line: the search stopped because that batch already
        # read within the noise of the budget (a worker's fixed footprint near the budget).
        assert len({p.batch_size for p in fitting}) == 1
        peak = max(p.peak_memory_bytes or 0 for p in at_ceiling if probe_fits(p, budget))
        assert peak >= FULL_ENOUGH * budget
    else:
        assert model["slope_bytes_per_example"] > 0


def test_plan_is_complete_and_concrete(tuned: dict[str, Any]) -> None:
    plan: Plan = tuned["plan"]
    assert plan.num_examples == 600
    assert 1 <= plan.batch_size <= plan.ceiling_batch_size
    assert plan.steps_per_epoch * plan.batch_size >= 600
    # Concrete numbers, unless the plan keeps the untuned default because nothing beat it.
    assert plan.pipeline.uses_autotune == plan.keeps_default
    assert plan.measured["examples_per_s"] > 0
    # Rates are over an epoch of 600 (the last batch partial): the verify run's full-batch
    # rate times the share of the epoch's steps that carries examples.
    efficiency = plan.measured["epoch_efficiency"]
    assert efficiency == pytest.approx(600 / (plan.steps_per_epoch * plan.batch_size))
    assert plan.measured["examples_per_s"] == pytest.approx(
        plan.measured["full_batch_examples_per_s"] * efficiency)
    assert plan.measured["peak_memory_bytes"] <= plan.measured["memory_budget_bytes"]
    assert plan.baseline is not None and plan.baseline["batch_size"] == 32
    assert plan.baseline["examples_per_s"] == pytest.approx(
        plan.baseline["full_batch_examples_per_s"] * 600 / 608)
    assert plan.baseline["examples_per_s"] > 0
    assert plan.learning_rate.rule == "sqrt" and plan.learning_rate.optimizer == "Adam"
    # 8-bit JPEGs and a model that casts its input: the pipeline carries uint8, every trial too
    # (the untuned default, when kept, is Keras' float32).
    assert plan.pipeline.pixels == ("float32" if plan.keeps_default else "uint8")
    assert plan.measured["pixels"]["dtype"] == "uint8" and plan.measured["pixels"]["reason"]
    assert {t["settings"].get("pixels") for t in plan.trials} == {"uint8"}
    assert len(plan.trials) == TRIALS
    assert set(plan.fingerprints) == {"model", "data", "hardware", "tensorflow", "options"}
    saved = Plan.load(tuned["root"] / "plan.json")
    assert saved.batch_size == plan.batch_size and saved.trials == plan.trials


def test_finalists_are_judged_with_model_fit(tuned: dict[str, Any]) -> None:
    plan: Plan = tuned["plan"]
    table = plan.measured["finalists"]
    # The untuned default is always a finalist, listed last.
    default, finalists = table[-1], table[:-1]
    assert default["is_default"] and default["batch_size"] == 32
    assert default["num_parallel_calls"] == AUTOTUNE and default["prefetch"] == AUTOTUNE
    assert 2 <= len(finalists) <= 3 and not any(e["is_default"] for e in finalists)
    # No time budget: every finalist ran its interleaved fit rounds (at least three, more
    # while undecided); one that failed under fit (over the memory budget near the ceiling)
    # says so and ranks last.
    measured = [e for e in finalists if not e["failed_under_fit"]]
    failed = [e for e in finalists if e["failed_under_fit"]]
    assert finalists == measured + failed and measured
    rounds = len(default["fit_examples_per_s"])
    assert FINALIST_ROUNDS <= rounds <= MAX_FINALIST_ROUNDS
    for entry in measured:
        assert len(entry["fit_examples_per_s"]) == rounds
        assert all(value > 0 for value in entry["fit_examples_per_s"])
        # The paired ratios are the finalist's readings over the default's, round by round.
        ratios = [a / b for a, b in zip(entry["fit_examples_per_s"],
                                        default["fit_examples_per_s"], strict=True)]
        assert entry["versus_default"]["paired_ratios"] == pytest.approx(ratios, rel=1e-3)
    # Ranked by (beat the default beyond the noise, median paired ratio).
    keys = [(e["versus_default"]["beats_default"], e["versus_default"]["median_ratio"])
            for e in measured]
    assert keys == sorted(keys, reverse=True)
    # A failed finalist missed at least one round (it may have read in another).
    assert all(len(e["fit_examples_per_s"]) < rounds for e in failed)
    # The plan is the best finalist when it beat the default, else the default itself.
    versus = plan.measured["versus_default"]
    best = measured[0]
    if best["versus_default"]["beats_default"]:
        assert versus["decision"] == "tuned" or plan.batch_size != best["batch_size"]
    else:
        assert versus["decision"] == "default" and plan.keeps_default
        assert plan.batch_size == 32 and plan.pipeline.uses_autotune
        assert plan.speedup_over_baseline == 1.0
    if versus["decision"] == "tuned":
        assert versus["low"] > 1 + WIN_MARGIN and versus["rounds"] >= FINALIST_ROUNDS
        assert plan.speedup_over_baseline == versus["median_ratio"]
    # The long runs followed that order.
    events = [e for e in tuned["events"] if e.phase == "verify"]
    assert any("with model.fit" in e.message for e in events)
    long_runs = [e.message for e in events if e.message.startswith("long run of batch")]
    first = best if best["versus_default"]["beats_default"] else default
    assert long_runs[0].startswith(f"long run of batch {first['batch_size']} ")
    verified = [e.message for e in events if e.message.startswith("verified batch")]
    assert verified == [e for e in verified if e.startswith(f"verified batch {plan.batch_size}:")]
    if len(long_runs) == 1:  # passed at once: the plan is that entry, settings and all
        assert first["batch_size"] == plan.batch_size
        assert (first["prefetch"], first["num_parallel_calls"], first["cache"]) == (
            plan.pipeline.prefetch, plan.pipeline.num_parallel_calls, plan.pipeline.cache)


def test_interrupted_tune_resumes_from_stored_trials(tuned: dict[str, Any]) -> None:
    import optuna

    first = [e for e in tuned["first_events"] if e.phase == "search" and e.trial]
    assert [e.trial for e in first] == [1, 2]
    events = tuned["events"]
    messages = [e.message for e in events]
    assert any("resumed 2 stored trials" in m for m in messages)
    assert any(m.startswith("resumed: ceiling batch") for m in messages)
    assert not any(e.phase == "baseline" for e in events)  # measured before the interrupt
    plan: Plan = tuned["plan"]
    numbers = [t["number"] for t in plan.trials]
    assert numbers[:2] == [0, 1] and len(set(numbers)) == TRIALS
    study = optuna.load_study(study_name=plan.study["study_name"],
                              storage=f"sqlite:///{tuned['cache'] / 'optuna.db'}")
    assert len(study.trials) == TRIALS
    trial = study.trials[0]
    for key in ("batch_size", "examples_per_s", "peak_memory_bytes", "outcome", "settings"):
        assert key in trial.user_attrs
    assert {"model", "data", "hardware", "ceiling", "baseline"} <= set(study.user_attrs)


def test_cache_hit_in_a_fresh_interpreter_does_not_import_tensorflow(
    tuned: dict[str, Any],
) -> None:
    out = tuned["root"] / "again.json"
    code = (
        "import sys, json\n"
        "from autobatch._cli import main\n"
        f"rc = main(['tune', {str(tuned['data'])!r}, '--model', 'small_cnn', '--image-size', "
        f"'32', '--memory-budget', {BUDGET!r}, '--trials', '{TRIALS}', '--seed', '0', "
        f"'--no-xla', '--output', {str(out)!r}, '--json'])\n"
        "print(json.dumps({'rc': rc, 'tf': 'tensorflow' in sys.modules,"
        " 'optuna': 'optuna' in sys.modules}))\n"
    )
    env = {**os.environ, "AUTOBATCH_CACHE_DIR": str(tuned["cache"])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout.strip().splitlines()[-1])
    assert status == {"rc": 0, "tf": False, "optuna": False}
    assert Plan.load(out).batch_size == tuned["plan"].batch_size


def test_levers_are_tried_where_they_apply_and_kept_only_on_a_gain(
        tuned: dict[str, Any]) -> None:
    from autobatch._env import cpu_bf16_flags

    plan: Plan = tuned["plan"]
    levers = plan.measured["levers"]
    tried = {t["value"]: t for t in levers["tried"]}
    # This CPU's flags decide whether bfloat16 is tried at all; without one, never planned.
    assert ("mixed_bfloat16" in tried) == bool(cpu_bf16_flags())
    if not cpu_bf16_flags():
        assert plan.mixed_precision is None
        assert "mixed_precision" in [s["lever"] for s in levers["not_applicable"]]
    for entry in tried.values():
        assert entry["decision"] in ("adopted", "rejected") and entry["reason"]
        if entry["speed"]["rounds"]:
            assert len(entry["examples_per_s_with"]) == entry["speed"]["rounds"]
            assert all(v > 0 for v in entry["examples_per_s_with"]
                       + entry["examples_per_s_without"])
        if entry["decision"] == "adopted" and entry["ceiling_batch_size_with"] is None:
            assert entry["speed"]["beats_default"] and entry["speed"]["low"] > 1 + WIN_MARGIN
    adopted = {t["lever"]: t["value"] for t in levers["tried"] if t["decision"] == "adopted"}
    assert (levers["mixed_precision"], levers["remat"]) == (adopted.get("mixed_precision"),
                                                            adopted.get("remat"))
    # The plan turns on what the tuned points ran with; the untuned default ran without.
    planned = {} if plan.keeps_default else adopted
    assert plan.mixed_precision == planned.get("mixed_precision")
    assert plan.remat == planned.get("remat")
