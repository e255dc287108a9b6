"""``fit(..., adapt=True)``: the noise scale measured inside training from the steps' own
gradients, and the batch moved between epochs among the plan's verified batch sizes by
goodput (``_fit/_adapt.py``, ``_fit/_noise_tracking.py``).

Real TensorFlow on the CPU with a small MLP-like model on 4x4 "images": the in-training
estimate at fixed weights against a brute-force ``tr(Σ)/|G|²``; a run that starts at batch
16 and moves to 128 once the noise scale has grown past the point where 128's goodput wins,
every epoch a whole pass, the learning rate moved by the linear rule, the user's callbacks
seeing one training run."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_noise import _brute_force  # noqa: E402

from autobatch._errors import UsageError  # noqa: E402

COUNT = 1024


def _task(seed: int = 0, lr: float = 0.1) -> tuple[Any, np.ndarray, np.ndarray]:
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(COUNT, 4, 4, 1)).astype("float32")
    flat = x.reshape(COUNT, -1)
    # A learnable rule with 10% of the labels flipped (as tests/test_noise.py's MLP): the
    # gradient falls as the rule is learnt, the flipped labels keep the examples noisy.
    y = (flat[:, 0] + 0.5 * flat[:, 1] > 0).astype("int64")
    flip = rng.random(COUNT) < 0.1
    y[flip] = 1 - y[flip]
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="tanh"),
                              keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, x, y


def _plan(rates: dict[int, float], start: int, **changes: Any) -> Any:
    from autobatch._plan import Plan
    from autobatch._settings import PipelineSettings

    trials = [{"number": i, "state": "COMPLETE", "batch_size": batch,
               "settings": {"prefetch": 1 + i}, "jit_compile": False,
               "examples_per_s": rate, "outcome": "ok"}
              for i, (batch, rate) in enumerate(sorted(rates.items()))]
    return Plan(batch_size=start, num_examples=COUNT, ceiling_batch_size=max(rates),
                pipeline=PipelineSettings(num_parallel_calls=1, prefetch=1),
                image_size=(4, 4), channels=1, trials=trials, **changes)


def test_the_in_training_estimate_at_fixed_weights_is_within_2x_of_brute_force() -> None:
    from autobatch._fit._noise_tracking import tracking_noise
    from autobatch._noise import combine

    model, x, y = _task(lr=0.0)  # the weights stay where the brute force reads them
    flat_model_truth = _brute_force(_Flat(model), x.reshape(COUNT, -1), y)
    with tracking_noise(model) as tracker:
        model.fit(x, y, batch_size=16, epochs=1, shuffle=True, verbose=0)
        small, large = tracker.epoch_draws()
    assert len(small) == COUNT // 16 - 1  # every step but the first makes a pair
    estimate = combine(small, large, 16, 32)
    assert flat_model_truth > 0 and math.isfinite(estimate.b_simple)
    assert 0.5 <= estimate.b_simple / flat_model_truth <= 2.0, (estimate, flat_model_truth)
    # The wrappers are gone: the model trains as before, with no draws taken.
    assert "train_step" not in vars(model)
    assert "apply_gradients" not in vars(model.optimizer)


class _Flat:
    """The model on flat rows (the brute force feeds (N, 16))."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.trainable_variables = model.trainable_variables

    def __call__(self, x: Any, training: bool = False) -> Any:
        import tensorflow as tf

        return self.model(tf.reshape(x, (-1, 4, 4, 1)), training=training)


def test_adapt_moves_the_batch_up_as_the_noise_scale_grows() -> None:
    import keras

    import autobatch
    from autobatch._fit._adapt import MOVE_MARGIN

    model, x, y = _task()
    rates = {16: 100.0, 128: 120.0}  # 128 wins by the margin once B_simple passes 768

    class Runs(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[str] = []

        def on_train_begin(self, logs: Any = None) -> None:
            self.calls.append("begin")

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.calls.append(f"epoch {epoch}")

        def on_train_end(self, logs: Any = None) -> None:
            self.calls.append("end")

    runs = Runs()
    epochs = 10
    history = autobatch.fit(model, (x, y), plan=_plan(rates, 16), epochs=epochs, seed=0,
                            verbose=0, adapt=True, callbacks=[runs])
    batches = history.history["batch_size"]
    noise = history.history["noise_scale"]
    assert len(batches) == len(noise) == len(history.epoch) == epochs
    assert history.epoch == list(range(epochs))
    assert batches[0] == 16 and batches[-1] == 128, (batches, noise)
    assert all(n is not None for n in noise)
    # Every epoch, at whatever batch, was one whole pass.
    assert history.history["examples_seen"] == [COUNT] * epochs
    assert history.coverage.complete and len(history.coverage.epochs) == epochs
    assert int(model.optimizer.iterations.numpy()) == sum(math.ceil(COUNT / b)
                                                          for b in batches)

    # Each epoch's pick follows the goodput rule under the noise scale logged for it.
    def goodput(batch: int, b_noise: float) -> float:
        if math.isinf(b_noise):  # unresolved: every batch counts fully
            return rates[batch]
        return rates[batch] * (b_noise + 32) / (b_noise + batch)

    for now, after, b_noise in zip(batches, batches[1:], noise, strict=False):
        if after != now:
            assert goodput(after, b_noise) > goodput(now, b_noise) * (1 + MOVE_MARGIN)
        else:
            assert goodput(128 if now == 16 else 16, b_noise) <= goodput(now, b_noise) * (
                1 + MOVE_MARGIN)
    [move] = history.adapt["moves"]
    assert move["from"] == 16 and move["to"] == 128
    # It grew while training at 16 (inf: past what the draws resolve from the noise).
    assert noise[move["epoch"] - 2] > noise[0]
    assert move["epoch"] == batches.index(128) + 1 > 2  # 1-based: the first epoch at 128
    # The learning rate moved with the batch by SGD's linear rule: 0.1 x 128/16.
    assert move["learning_rate_before"] == pytest.approx(0.1)
    assert move["learning_rate_after"] == pytest.approx(0.8)
    # After fit, the rate training started with is back (a later fit starts at 16 again).
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.1)
    assert history.adapt["learning_rate_start"] == pytest.approx(0.1)
    assert history.adapt["batch_sizes"] == [16, 128]
    # The user's callback saw one run of all the epochs.
    assert runs.calls == ["begin", *[f"epoch {e}" for e in range(epochs)], "end"]


def test_a_users_stop_ends_adaptive_training() -> None:
    import keras

    import autobatch

    model, x, y = _task(seed=1)

    class StopAfterTwo(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if epoch == 1:
                self.model.stop_training = True

    # 128 is so much faster that the first epoch already moves to it.
    history = autobatch.fit(model, (x, y), plan=_plan({16: 1.0, 128: 1e6}, 16), epochs=6,
                            seed=0, verbose=0, adapt=True, callbacks=[StopAfterTwo()])
    assert history.history["batch_size"] == [16, 128]
    assert len(history.epoch) == 2 and history.coverage.complete


def test_what_adapt_cannot_keep_is_refused_in_one_line() -> None:
    import autobatch

    model, x, y = _task()
    cases = [
        ({"objective": "throughput"}, _plan({16: 1.0, 64: 2.0}, 16), "goodput"),
        ({}, _plan({16: 1.0, 64: 2.0}, 16, gradient_accumulation_steps=4),
         "effective batch"),
        ({"steps_per_epoch": 3}, _plan({16: 1.0, 64: 2.0}, 16), "steps_per_epoch"),
        # Refused before any tune runs (no plan given: a tune would take minutes).
        ({"effective_batch_size": 64}, None, "effective batch"),
    ]
    for kwargs, plan, words in cases:
        with pytest.raises(UsageError, match=words) as raised:
            autobatch.fit(model, (x, y), plan=plan, epochs=1, verbose=0, adapt=True,
                          tune_options={"runner": _NoTune()}, **kwargs)
        assert "\n" not in str(raised.value)

    def batches():  # a generator with its own batch size
        for start in range(0, COUNT, 32):
            yield x[start:start + 32], y[start:start + 32]

    with pytest.raises(UsageError, match="batches of 32 itself") as raised:
        autobatch.fit(model, batches, plan=_plan({16: 1.0, 64: 2.0}, 16), epochs=1,
                      verbose=0, adapt=True, num_examples=COUNT)
    assert "\n" not in str(raised.value)


class _NoTune:
    """A probe runner that fails the test if a tune starts."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a tune started (runner.{name})")


def test_the_ladder_keeps_each_batchs_fastest_trial_under_the_ceiling() -> None:
    from autobatch._fit._adapt import ladder

    plan = _plan({16: 100.0, 64: 300.0, 128: 500.0}, 64)
    plan.trials.append({"number": 9, "state": "COMPLETE", "batch_size": 64,
                        "settings": {"prefetch": 7}, "jit_compile": False,
                        "examples_per_s": 350.0, "outcome": "ok"})
    plan.trials[0]["settings"]["pixels"] = "uint8"  # fit turned the plan's to float32
    plan.trials.append({"number": 10, "state": "FAIL", "batch_size": 32, "settings": {},
                        "jit_compile": False, "examples_per_s": 999.0, "outcome": "oom"})
    plan.ceiling_batch_size = 100  # 128 was measured, but above the ceiling now
    rungs = ladder(plan)
    assert [r.batch_size for r in rungs] == [16, 64]
    # The plan's own batch keeps its own pipeline, at its fastest trial's rate.
    assert rungs[1].pipeline == plan.pipeline and rungs[1].examples_per_s == 350.0
    assert rungs[0].pipeline.prefetch == 1  # trial 0's settings
    assert rungs[0].pipeline.pixels == plan.pipeline.pixels == "float32"  # the plan's win
    # A plan with no rate for its own batch has nothing to compare a move with.
    plan.trials = [t for t in plan.trials if t["batch_size"] != 64]
    assert ladder(plan) == []


def test_a_step_whose_gradients_overflowed_is_no_draw() -> None:
    import tensorflow as tf

    from autobatch._fit._noise_tracking import NoiseTracker

    model, _, _ = _task()
    tracker = NoiseTracker(model)
    tracker.batch.assign(8)
    shapes = [v.shape for v in model.trainable_variables]

    def grads(value: float) -> list[Any]:
        return [tf.fill(shape, value) for shape in shapes]

    tracker.observe(grads(1.0))  # the first step: nothing to pair with
    tracker.observe(grads(float("inf")))  # overflowed (mixed_float16): no draw
    tracker.observe(grads(2.0))  # its pair holds the overflowed step: no draw
    tracker.observe(grads(4.0), loss_scale=tf.constant(2.0))  # scaled: really 2.0
    small, large = tracker.epoch_draws()
    size = sum(int(np.prod(s)) for s in shapes)
    assert small == [pytest.approx(4.0 * size)]  # |g|² of the two unscaled steps of 2.0
    assert large == [pytest.approx(4.0 * size)]
