"""Learning-rate scaling at ``fit``: the plan's factor for this model's optimizer and the
user's reference batch, reported always and applied with ``scale_lr``."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)


def for_this_model(plan: Any, model: Any, reference_batch_size: int | None) -> Any:
    """The plan with its learning-rate rule for ``model``'s optimizer and the reference
    batch (a copy: the caller's or the cached plan stays as it was tuned)."""
    from autobatch._models import optimizer_name
    from autobatch._plan import learning_rate_scaling

    lr = plan.learning_rate
    name = optimizer_name(model)
    wanted_ref = reference_batch_size or lr.reference_batch_size
    if lr.rule != "none" and lr.optimizer == name and wanted_ref == lr.reference_batch_size:
        return plan
    return copy_plan(plan, learning_rate=learning_rate_scaling(
        name, plan.effective_batch_size, wanted_ref))


def copy_plan(plan: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` that keeps where the plan came from (path, cache hit)."""
    updated = dataclasses.replace(plan, **changes)
    updated.path = plan.path
    updated.cache_hit = plan.cache_hit
    return updated


def apply_learning_rate(model: Any, plan: Any, *, scale_lr: bool) -> dict[str, Any]:
    """Report the plan's learning-rate factor, and apply it when ``scale_lr``.

    Returns:
        ``{reference_batch_size, batch_size, factor, rule, optimizer, applied,
        learning_rate_before, learning_rate_after}``.
    """
    lr = plan.learning_rate
    optimizer = getattr(model, "optimizer", None)
    before = _current_lr(optimizer)
    info = {
        "reference_batch_size": lr.reference_batch_size,
        "batch_size": plan.batch_size,
        "factor": lr.factor,
        "rule": lr.rule,
        "optimizer": lr.optimizer,
        "applied": False,
        "learning_rate_before": before,
        "learning_rate_after": before,
    }
    if not scale_lr:
        if lr.factor != 1.0:
            logger.info(
                "batch %d vs reference %d: a %s rule suggests learning rate x%.3g "
                "(pass scale_lr=True / --scale-lr to apply)",
                plan.batch_size, lr.reference_batch_size, lr.rule, lr.factor,
            )
        return info
    if before is None or optimizer is None:
        logger.warning("the optimizer's learning rate is a schedule or missing; not scaled")
        return info
    after = before * float(lr.factor)
    optimizer.learning_rate = after
    info.update(applied=True, learning_rate_after=after)
    logger.info("learning rate scaled x%.3g (%s rule): %.3g -> %.3g",
                lr.factor, lr.rule, before, after)
    return info


def _current_lr(optimizer: Any) -> float | None:
    if optimizer is None:
        return None
    import keras

    value = getattr(optimizer, "_learning_rate", None)
    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule) or callable(value):
        return None
    try:
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    except (TypeError, ValueError):
        return None


@contextlib.contextmanager
def accumulating_as_planned(model: Any, plan: Any, replicas: int = 1) -> Iterator[None]:
    """Accumulate gradients over the plan's micro-batches for this fit (Keras' optimizer
    ``gradient_accumulation_steps``), and give the optimizer its own setting back.

    Raises:
        UsageError: under a strategy (keras-team/keras#20582), or an optimizer already built
            (its accumulators would be missing): one line each.
    """
    from autobatch._errors import UsageError
    from autobatch._search._effective import has_batch_norm

    steps = int(getattr(plan, "gradient_accumulation_steps", 1) or 1)
    optimizer = getattr(model, "optimizer", None)
    if steps <= 1 or optimizer is None:
        yield
        return
    if replicas > 1:
        raise UsageError("the plan accumulates gradients, which Keras' model.fit refuses under "
                         "a tf.distribute strategy (keras-team/keras#20582): tune without "
                         "--effective-batch-size, or train on one device")
    before = getattr(optimizer, "gradient_accumulation_steps", None)
    if before != steps and getattr(optimizer, "built", False):
        raise UsageError(f"the plan accumulates {steps} micro-batches, but the model's "
                         "optimizer was already built without accumulators: compile the "
                         "model afresh (model.compile(...)) before autobatch.fit")
    optimizer.gradient_accumulation_steps = steps
    if has_batch_norm(model):
        logger.warning("gradient accumulation over %d micro-batches of %d: BatchNormalization "
                       "still normalises each micro-batch of %d", steps, plan.batch_size,
                       plan.batch_size)
    logger.info("accumulating gradients over %d micro-batches of %d (%d examples per update)",
                steps, plan.batch_size, steps * plan.batch_size)
    try:
        yield
    finally:
        optimizer.gradient_accumulation_steps = before

