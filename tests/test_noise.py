"""The gradient noise scale (``autobatch._noise``): the two-batch-size estimator against a
brute-force ``tr(Σ)/|G|²`` from per-example gradients of a small MLP, its growth as
training lowers the loss, and Pollux's efficiency."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autobatch._errors import UsageError
from autobatch._noise import NoiseScale, combine, noise_scale


def test_combine_recovers_the_noise_scale_from_exact_expectations() -> None:
    # E|G_B|^2 = |G|^2 + tr(S)/B with |G|^2 = 2 and tr(S) = 300: B_simple = 150.
    small = [2 + 300 / 8] * 5
    large = [2 + 300 / 128] * 5
    result = combine(small, large, 8, 128)
    assert result.b_simple == pytest.approx(150)
    assert result.gradient_sq_norm == pytest.approx(2)
    assert result.trace_covariance == pytest.approx(300)
    assert result.low == pytest.approx(150) and result.high == pytest.approx(150)


def test_efficiency_is_one_at_the_reference_and_falls_past_the_noise_scale() -> None:
    scale = NoiseScale(b_simple=200, low=150, high=250, gradient_sq_norm=1.0,
                       trace_covariance=200.0, small_batch_size=16, large_batch_size=256,
                       repeats=8)
    assert scale.efficiency(32) == pytest.approx(1.0)
    assert scale.efficiency(16) > 1.0
    effs = [scale.efficiency(b) for b in (64, 200, 1000, 4000)]
    assert effs == sorted(effs, reverse=True)
    assert scale.efficiency(200) == pytest.approx((200 + 32) / 400)


def _mlp(seed: int) -> tuple[object, np.ndarray, np.ndarray]:
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1024, 8)).astype("float32")
    # A learnable rule with 10% of the labels flipped: the gradient falls as the model
    # learns the rule, and the flipped labels keep the per-example gradients noisy.
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int32")
    flip = rng.random(len(y)) < 0.1
    y[flip] = 1 - y[flip]
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"),
                              keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, x, y


def _brute_force(model: object, x: np.ndarray, y: np.ndarray) -> float:
    """tr(S)/|G|^2 over the whole data set, from every example's own gradient."""
    import tensorflow as tf

    variables = model.trainable_variables  # type: ignore[attr-defined]
    losses_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                              reduction="none")
    with tf.GradientTape() as tape:
        per_example = losses_fn(y, model(x, training=True))  # type: ignore[operator]
    jac = tape.jacobian(per_example, variables, experimental_use_pfor=True)
    flat = np.concatenate([j.numpy().reshape(len(x), -1) for j in jac], axis=1)
    mean = flat.mean(axis=0)
    trace = float(((flat - mean) ** 2).sum(axis=1).mean())
    return trace / float((mean ** 2).sum())


def test_two_batch_estimate_is_within_2x_of_the_brute_force_noise_scale() -> None:
    model, x, y = _mlp(0)
    truth = _brute_force(model, x, y)
    estimate = noise_scale(model, x, y, small_batch_size=8, large_batch_size=128,
                           min_repeats=16, max_repeats=64, target_spread=0.3, seed=1)
    assert truth > 0 and math.isfinite(estimate.b_simple)
    assert 0.5 <= estimate.b_simple / truth <= 2.0, (estimate, truth)
    assert estimate.low <= estimate.b_simple <= estimate.high
    assert (estimate.small_batch_size, estimate.large_batch_size) == (8, 128)


def test_the_noise_scale_grows_as_training_lowers_the_loss() -> None:
    model, x, y = _mlp(3)
    before_weights = [w.numpy().copy() for w in model.weights]  # type: ignore[attr-defined]
    at_start = noise_scale(model, x, y, small_batch_size=8, large_batch_size=128,
                           min_repeats=16, seed=0)
    # The estimate leaves the weights as they were.
    assert all(np.array_equal(a, w.numpy())
               for a, w in zip(before_weights, model.weights, strict=True))  # type: ignore[attr-defined]
    model.fit(x, y, batch_size=32, epochs=15, verbose=0)  # type: ignore[attr-defined]
    later = noise_scale(model, x, y, small_batch_size=8, large_batch_size=128,
                        min_repeats=16, seed=0)
    assert later.b_simple > at_start.b_simple, (at_start, later)
    assert later.gradient_sq_norm < at_start.gradient_sq_norm


@pytest.mark.parametrize(("small", "large"), [(0, 16), (32, 32), (64, 16)])
def test_batch_sizes_that_cannot_work_are_one_line(small: int, large: int) -> None:
    model, x, y = _mlp(0)
    with pytest.raises(UsageError, match="small_batch_size") as raised:
        noise_scale(model, x, y, small_batch_size=small, large_batch_size=large)
    assert "\n" not in str(raised.value)


def test_draws_that_cannot_tell_the_gradient_from_the_noise_say_so() -> None:
    # The large batch's |G|^2 reads so low that the |G|^2 estimate is negative.
    result = combine([10.0, 12.0], [1.0, 1.2], 4, 16)
    assert result.gradient_sq_norm < 0 and not result.resolved
    assert result.b_simple == math.inf
    data = result.to_dict()
    assert data["b_simple"] is None
    assert NoiseScale.from_dict(data).b_simple == math.inf
    assert combine([2 + 300 / 8] * 3, [2 + 300 / 128] * 3, 8, 128).resolved
