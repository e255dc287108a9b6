"""The gradient noise scale measured inside training, from the gradients each step computes.

The optimizer's ``apply_gradients`` is wrapped on the instance (as ``_coverage`` wraps
``train_step``): each step's gradient ``g_t`` is paired with the previous step's ``g_{t-1}``,
a disjoint batch of the same size (consecutive batches of an epoch share no example), whose
mean is a gradient over ``2B`` examples. Each pair is one draw of the two-batch-size
estimator (``_noise.combine``; AdaptDL does the same on one replica); the draws go into a ring
buffer of ``tf.Variable``s inside the traced step and are read at the epoch's end. The
weights move by one step between the two gradients; the estimate carries that bias, as
AdaptDL's does. A pair whose batches differ in size (an uneven last batch) is not a draw.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

RING = 4096
"""Draws kept per epoch at most (the latest ones)."""


class NoiseTracker:
    """The in-training two-batch estimator's ``tf.Variable``s and what reads them."""

    def __init__(self, model: Any) -> None:
        import tensorflow as tf

        self.batch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._previous_batch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._previous_sq = tf.Variable(0.0, dtype=tf.float32, trainable=False)
        self._previous = [tf.Variable(tf.zeros(v.shape, tf.float32), trainable=False)
                          for v in model.trainable_variables]
        self._small = tf.Variable(tf.zeros([RING], tf.float32), trainable=False)
        self._large = tf.Variable(tf.zeros([RING], tf.float32), trainable=False)
        self._draws = tf.Variable(0, dtype=tf.int64, trainable=False)

    def observe(self, gradients: list[Any], loss_scale: Any = None) -> None:
        """One step's gradients (traced): add the pair (this step, the last) as one draw
        when both batches had the same size and both gradients are finite (a
        ``mixed_float16`` step that overflowed is skipped by Keras, and here).

        Args:
            gradients: the step's gradients, one per trainable variable.
            loss_scale: ``LossScaleOptimizer.dynamic_scale`` (the gradients arrive scaled
                by it), or None.
        """
        import tensorflow as tf

        grads = [tf.zeros(p.shape, tf.float32) if g is None
                 else tf.cast(tf.convert_to_tensor(g), tf.float32)
                 for g, p in zip(gradients, self._previous, strict=True)]
        if loss_scale is not None:
            grads = [g / tf.cast(loss_scale, tf.float32) for g in grads]
        square = tf.add_n([tf.reduce_sum(tf.square(g)) for g in grads])
        paired = tf.add_n([tf.reduce_sum(tf.square((g + p) / 2.0))
                           for g, p in zip(grads, self._previous, strict=True)])
        batch = self.batch.read_value()
        draw = tf.reduce_all([tf.equal(batch, self._previous_batch), batch > 0,
                              tf.math.is_finite(square), tf.math.is_finite(paired),
                              tf.math.is_finite(self._previous_sq)])
        slot = tf.math.floormod(self._draws, RING)
        # Not a draw: the slot keeps what it holds (a wrapped ring holds older draws).
        small = tf.where(draw, (square + self._previous_sq) / 2.0, self._small[slot])
        large = tf.where(draw, paired, self._large[slot])
        self._small.scatter_nd_update([[slot]], [small])
        self._large.scatter_nd_update([[slot]], [large])
        self._draws.assign_add(tf.cast(draw, tf.int64))
        for previous, grad in zip(self._previous, grads, strict=True):
            previous.assign(grad)
        self._previous_sq.assign(square)
        self._previous_batch.assign(batch)

    def epoch_draws(self) -> tuple[list[float], list[float]]:
        """This epoch's draws (``|g_B|²``, ``|g_2B|²``), and start the next epoch's."""
        count = int(self._draws.numpy())
        kept = min(count, RING)
        small = [float(v) for v in self._small.numpy()[:kept]]
        large = [float(v) for v in self._large.numpy()[:kept]]
        self._draws.assign(0)
        return small, large


@contextmanager
def tracking_noise(model: Any) -> Iterator[NoiseTracker]:
    """Wrap ``train_step`` (to note the batch's size) and the optimizer's
    ``apply_gradients`` (to observe the gradients) on the instances, for the block."""
    from autobatch._fit._coverage import _leading_dimension, instance_attribute, retracing

    tracker = NoiseTracker(model)
    optimizer = model.optimizer
    step, apply = model.train_step, optimizer.apply_gradients

    def train_step(data: Any) -> Any:
        tracker.batch.assign(_leading_dimension(data))
        return step(data)

    def apply_gradients(grads_and_vars: Any) -> Any:
        pairs = list(grads_and_vars)
        tracker.observe([g for g, _ in pairs], getattr(optimizer, "dynamic_scale", None))
        return apply(pairs)

    with instance_attribute(model, "train_step", train_step), instance_attribute(
            optimizer, "apply_gradients", apply_gradients), retracing(model):
        yield tracker
