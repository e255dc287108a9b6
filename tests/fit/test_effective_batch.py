"""The effective batch as the user's contract: gradient accumulation where memory caps the
physical batch (``_search/_effective.py``, ``_fit/_lr.accumulating_as_planned``).

Real TensorFlow on the CPU: a BN-free model trained by ``autobatch.fit`` with a plan of
4 accumulated micro-batches of 16 ends with the weights of one plain step of 64; a tune
whose memory caps the batch at 16 (the simulated worker stands in for the hardware) plans
16 x 4 and trains with it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "search"))
from _simulated import SimulatedTraining  # noqa: E402

from autobatch._errors import UsageError  # noqa: E402
from autobatch._search._effective import physical_split  # noqa: E402

MIB = 1 << 20


def _data(count: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.integers(0, 255, size=(count, 8, 8, 3), dtype=np.uint8),
            (np.arange(count) % 2).astype("int64"))


def _model(seed: int = 0):  # type: ignore[no-untyped-def]
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Flatten(), keras.layers.Dense(4, activation="tanh"),
                              keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.parametrize(("effective", "ceiling", "expected"),
                         [(64, 16, (16, 4)), (100, 30, (25, 4)), (64, 200, (64, 1)),
                          (7, 2, (2, 4)), (1, 1, (1, 1))])
def test_the_physical_batch_splits_the_effective_one_evenly(
        effective: int, ceiling: int, expected: tuple[int, int]) -> None:
    batch, steps = physical_split(effective, ceiling)
    assert (batch, steps) == expected
    assert batch <= ceiling and batch * steps >= effective
    assert batch * (steps - 1) < effective  # no micro-batch more than needed


def test_four_accumulated_micro_batches_of_16_equal_one_step_of_64() -> None:
    import autobatch
    from autobatch._plan import Plan
    from autobatch._settings import PipelineSettings

    x, y = _data(64)
    reference = _model()
    start = [w.copy() for w in reference.get_weights()]
    reference.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)

    accumulated = _model()
    assert all(np.array_equal(a, b) for a, b in zip(start, accumulated.get_weights(),
                                                    strict=True))
    plan = Plan(batch_size=16, num_examples=64, ceiling_batch_size=16,
                pipeline=PipelineSettings(num_parallel_calls=1, prefetch=1),
                gradient_accumulation_steps=4, image_size=(8, 8), channels=3)
    history = autobatch.fit(accumulated, (x, y), plan=plan, epochs=1, seed=0, verbose=0)
    assert history.steps_per_epoch == 4 and history.coverage.complete
    for ours, theirs in zip(accumulated.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=0)
    # Four micro-steps made one update, and the optimizer has its own setting back.
    assert accumulated.optimizer.gradient_accumulation_steps is None
    assert int(accumulated.optimizer.iterations.numpy()) == 4
    assert not np.allclose(start[-2], accumulated.get_weights()[-2])


def test_a_memory_cap_of_16_with_effective_64_plans_16_x_4_and_trains(tmp_path: Path) -> None:
    import autobatch

    # 16 examples fit the search's budget (less the reading noise), 17 do not (the
    # worker's memory is simulated).
    sim = SimulatedTraining(10 * MIB, 100 * MIB, 1700 * MIB, best_batch=64, wall_s=0.01)
    x, y = _data(256)
    plan = autobatch.tune(_model(), (x, y), trials=3, seed=0, try_xla=False, runner=sim,
                          storage=f"sqlite:///{tmp_path / 'study.db'}", use_cache=False,
                          verbose=0, effective_batch_size=64)
    assert plan.ceiling_batch_size == 16
    assert (plan.batch_size, plan.gradient_accumulation_steps) == (16, 4)
    assert plan.effective_batch_size == 64
    record = plan.measured["effective_batch"]
    assert record["physical_batch_size"] == 16 and record["gradient_accumulation_steps"] == 4
    assert "memory caps the batch at 16" in record["reason"]
    # Every trial and finalist ran the one physical batch; the learning-rate rule is for 64.
    assert {t["batch_size"] for t in plan.trials} == {16}
    assert plan.learning_rate.factor == pytest.approx(64 / 32)  # SGD: linear
    model = _model()
    history = autobatch.fit(model, (x, y), plan=plan, epochs=2, seed=0, verbose=0)
    assert history.coverage.complete and history.steps_per_epoch == 16
    assert int(model.optimizer.iterations.numpy()) == 2 * 16  # micro-steps: 8 updates
    # The plan round-trips through JSON with its accumulation.
    import json

    again = autobatch.Plan.from_dict(json.loads(plan.to_json()))
    assert again.gradient_accumulation_steps == 4


def test_an_effective_batch_under_a_strategy_is_refused_in_one_line() -> None:
    import autobatch

    with pytest.raises(UsageError, match="keras-team/keras#20582") as raised:
        autobatch.tune("small_cnn", _data(), image_size=8, effective_batch_size=64,
                       strategy="mirrored", verbose=0)
    assert "\n" not in str(raised.value)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(UsageError, match="effective_batch_size"):
            autobatch.tune("small_cnn", _data(), image_size=8, effective_batch_size=bad,
                           verbose=0)
