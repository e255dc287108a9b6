"""The gradient noise scale (McCandlish et al. 2018, "An Empirical Model of Large-Batch
Training"): how large a batch can grow before it stops buying fewer steps.

``B_simple = tr(Σ) / |G|²``, with ``G`` the true gradient and ``Σ`` the per-example
gradients' covariance. Neither is known, but a batch of ``B`` examples gives an unbiased
``E|G_B|² = |G|² + tr(Σ)/B``, so two batch sizes at the same weights give both (the
two-batch-size estimator of the paper's appendix A, which AdaptDL/Pollux use with the
replicas' gradients as the small batches):

    |G|²  ≈ (B_big |G_big|² - B_small |G_small|²) / (B_big - B_small)
    tr(Σ) ≈ (|G_small|² - |G_big|²) / (1/B_small - 1/B_big)

Each draw is noisy (either estimate can come out negative), so draws are repeated and the
ratio is taken of the two means, as the paper advises; the spread is a bootstrap over the
draws, and draws go on until that spread is known to within ``target_spread`` (or
``max_repeats``). Pollux's statistical efficiency of batch ``B`` against a reference batch
``B0`` follows: ``(B_noise + B0) / (B_noise + B)``, the share of examples that still count.

TensorFlow is imported when an estimate runs, never at import.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from autobatch._errors import UsageError

logger = logging.getLogger(__name__)


def efficiency(b_noise: float, batch_size: float, reference_batch_size: float = 32) -> float:
    """Pollux's ``(B_noise + B0) / (B_noise + B)`` (a negative estimate counts as 0)."""
    noise = max(b_noise, 0.0)
    return (noise + reference_batch_size) / (noise + batch_size)


@dataclass(frozen=True)
class NoiseScale:
    """A measured simple noise scale, with its spread and how it was measured."""

    b_simple: float
    """``tr(Σ) / |G|²``, in examples."""
    low: float
    high: float
    """The bootstrap's 16th and 84th percentiles (one standard deviation either side)."""
    gradient_sq_norm: float
    """``|G|²`` estimated."""
    trace_covariance: float
    """``tr(Σ)`` estimated."""
    small_batch_size: int
    large_batch_size: int
    repeats: int

    def efficiency(self, batch_size: float, reference_batch_size: float = 32) -> float:
        """Pollux's statistical efficiency of ``batch_size`` against the reference batch:
        the share of its examples that buy progress as the reference's do (1 at the
        reference, below 1 above it)."""
        return efficiency(self.b_simple, batch_size, reference_batch_size)

    @property
    def resolved(self) -> bool:
        """Whether the draws could tell ``|G|²`` from the noise: with batches far below the
        noise scale the ``|G|²`` estimate can come out negative, and the noise scale is then
        only known to be large (``b_simple`` infinite; larger batches tell more)."""
        return self.gradient_sq_norm > 0 and math.isfinite(self.b_simple)

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON: a figure that is not finite is None."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NoiseScale:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        for name in ("b_simple", "low", "high"):
            if values.get(name) is None:
                values[name] = math.inf
        return cls(**values)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    if math.isinf(ordered[high]):
        return ordered[high] if position > low else ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def two_batch_terms(g_small: float, g_large: float, small_batch: float,
                    large_batch: float) -> tuple[float, float]:
    """``(|G|², tr(Σ))`` from the mean ``|G_B|²`` at a small and a large batch."""
    g2 = (large_batch * g_large - small_batch * g_small) / (large_batch - small_batch)
    trace = (g_small - g_large) / (1 / small_batch - 1 / large_batch)
    return g2, trace


def combine(small: list[float], large: list[float], small_batch: int, large_batch: int, *,
            seed: int = 0, resamples: int = 200) -> NoiseScale:
    """The noise scale from paired draws of ``|G_small|²`` and ``|G_big|²``."""
    import random

    if len(small) != len(large) or not small:
        raise ValueError("need as many small-batch as large-batch draws, at least one")

    def estimate(indices: list[int]) -> tuple[float, float, float]:
        g_small = sum(small[i] for i in indices) / len(indices)
        g_large = sum(large[i] for i in indices) / len(indices)
        g2, trace = two_batch_terms(g_small, g_large, small_batch, large_batch)
        return g2, trace, (trace / g2 if g2 > 0 else math.inf)

    everything = list(range(len(small)))
    g2, trace, b_simple = estimate(everything)
    rng = random.Random(seed)
    boot = [estimate([rng.choice(everything) for _ in everything])[2]
            for _ in range(resamples)]
    return NoiseScale(b_simple=b_simple, low=_percentile(boot, 0.16),
                      high=_percentile(boot, 0.84), gradient_sq_norm=g2,
                      trace_covariance=trace, small_batch_size=small_batch,
                      large_batch_size=large_batch, repeats=len(small))


def squared_gradient_norm(model: Any, x: Any, y: Any) -> float:
    """``|∇L|²`` of the model's compiled loss (the mean over the batch) at its weights."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        y_pred = model(x, training=True)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
    grads = tape.gradient(loss, model.trainable_variables)
    return float(sum(tf.reduce_sum(tf.square(tf.cast(g, tf.float64)))
                     for g in grads if g is not None))


def noise_scale(model: Any, x: Any, y: Any, *, small_batch_size: int = 16,
                large_batch_size: int = 256, min_repeats: int = 8, max_repeats: int = 64,
                target_spread: float = 0.5, seed: int = 0) -> NoiseScale:
    """Estimate the simple noise scale of a compiled Keras ``model`` on ``(x, y)`` arrays
    at its current weights, with the two-batch-size estimator.

    Each draw takes ``large_batch_size`` examples at random (with replacement, so that the
    estimates are unbiased for the data set however small it is) and its first
    ``small_batch_size`` as the small batch. Draws go on from ``min_repeats`` until the
    bootstrap's spread ``(high - low) / b_simple`` is under ``target_spread``, or
    ``max_repeats``. The weights are not changed.

    Raises:
        UsageError: batch sizes that cannot work (small not below large), an uncompiled
            model, or fewer than two examples.
    """
    import numpy as np

    if not 1 <= small_batch_size < large_batch_size:
        raise UsageError(f"noise scale: small_batch_size ({small_batch_size}) must be at least "
                         f"1 and below large_batch_size ({large_batch_size})")
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", True):
        raise UsageError("noise scale: compile the model first (its loss is differentiated)")
    if not 2 <= min_repeats <= max_repeats:
        raise UsageError(f"noise scale: need 2 <= min_repeats ({min_repeats}) <= max_repeats "
                         f"({max_repeats})")
    count = len(x)
    if count < 2:
        raise UsageError("noise scale: needs at least two examples")
    rng = np.random.default_rng(seed)

    def draws() -> Iterator[tuple[Any, Any]]:
        while True:
            picked = rng.integers(0, count, size=large_batch_size)
            yield x[picked], y[picked]

    return estimate_from_batches(model, draws(), small_batch_size, min_repeats=min_repeats,
                                 max_repeats=max_repeats, target_spread=target_spread,
                                 seed=seed)


def estimate_from_batches(model: Any, batches: Iterator[Any], small_batch_size: int, *,
                          min_repeats: int = 8, max_repeats: int = 64,
                          target_spread: float = 0.5, seed: int = 0) -> NoiseScale:
    """The noise scale from large batches ``(x, y, ...)`` of a shuffled pipeline (the probe
    worker's own), each with its first ``small_batch_size`` examples as the small batch;
    draws stop as ``noise_scale`` says. The weights are not changed."""
    small: list[float] = []
    large: list[float] = []
    large_batch_size = 0
    result: NoiseScale | None = None
    for draw in range(max_repeats):
        batch = next(batches)
        xb, yb = batch[0], batch[1]
        large_batch_size = int(len(xb))
        if large_batch_size <= small_batch_size:
            raise UsageError(f"noise scale: the large batch ({large_batch_size}) must exceed "
                             f"small_batch_size ({small_batch_size})")
        large.append(squared_gradient_norm(model, xb, yb))
        small.append(squared_gradient_norm(model, xb[:small_batch_size], yb[:small_batch_size]))
        if draw + 1 < min_repeats:
            continue
        result = combine(small, large, small_batch_size, large_batch_size, seed=seed)
        spread = (result.high - result.low) / result.b_simple if math.isfinite(
            result.b_simple) and result.b_simple > 0 else math.inf
        if spread < target_spread:
            break
    assert result is not None
    logger.info("noise scale B_simple %.1f (%.1f-%.1f) from %d draws of %d and %d",
                result.b_simple, result.low, result.high, result.repeats, small_batch_size,
                large_batch_size)
    return result
