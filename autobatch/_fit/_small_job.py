"""A job plainly too small to tune, told before any worker starts (issue #22, item 1).

A probe worker costs its start-up (a TensorFlow import, the model loaded) and the untuned
default's probe: about 6 s here, more than a few hundred images for a few epochs take to
train. ``fit`` therefore first estimates the untuned training time in its own process,
without training: a few batches of Keras' default pipeline (batch 32, AUTOTUNE) decoded,
and the model's forward pass on one batch (a training step costs about three). Where even
a plan ``LIKELY_SPEEDUP`` times as fast could not save half the quickest tune, training
starts at once with that default; otherwise the tune measures and decides
(``autobatch._search._effort``). Only re-readable data (folders, arrays) is sampled.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from autobatch._data import Source
from autobatch._search._effort import LIKELY_SPEEDUP, QUICK_TUNE_S, untuned_plan
from autobatch._settings import PipelineSettings

logger = logging.getLogger(__name__)

SAMPLE_BATCHES = 3
"""Batches timed after the first (which starts the pipeline's threads)."""
TRAIN_STEP_FACTOR = 3.0
"""A training step's cost in forward passes (forward, backward, the update)."""


def estimate_untuned_s(model: Any, source: Source, spec: Any, epochs: int) -> float | None:
    """Seconds Keras' default pipeline and batch would take to train ``epochs`` epochs, from
    a few decoded batches and one timed forward pass; None where the data cannot be read
    twice or the model runs under a strategy."""
    count = source.num_examples or 0
    if not source.endless_epochs or not count or getattr(
            model.distribute_strategy, "num_replicas_in_sync", 1) > 1:
        return None
    batch = min(32, count)
    ds = source.build_dataset(batch_size=batch, settings=PipelineSettings.keras_default(),
                              image_size=spec.image_size, channels=spec.channels,
                              shuffle=False, repeat=True)
    batches = iter(ds)
    x, _ = next(batches)
    started = time.perf_counter()
    for _ in range(SAMPLE_BATCHES):
        next(batches)
    decode_s = (time.perf_counter() - started) / (SAMPLE_BATCHES * batch)
    model(x, training=False)  # traced once
    started = time.perf_counter()
    for _ in range(2):
        model(x, training=False)
    step_s = TRAIN_STEP_FACTOR * (time.perf_counter() - started) / (2 * batch)
    return count * epochs * max(decode_s, step_s)


def plan_for_a_small_job(model: Any, source: Source, spec: Any, epochs: int) -> Any:
    """The untuned default's plan when the job is plainly too small to tune, else None."""
    try:
        estimate = estimate_untuned_s(model, source, spec, epochs)
    except Exception as exc:  # noqa: BLE001 - an estimate only: the tune decides instead
        logger.info("no quick estimate of the untuned training time (%s)", exc)
        return None
    if estimate is None or estimate * (1 - 1 / LIKELY_SPEEDUP) >= QUICK_TUNE_S / 2:
        return None
    count = int(source.num_examples or 0)
    batch = min(32, count)
    rate = count * epochs / max(estimate, 1e-9)
    reason = (f"not tuned: {epochs} epoch(s) of {count} examples take about {estimate:.0f} s "
              f"untuned (estimated here: {rate:.0f}/s), too little for any tune to pay "
              "back, so training starts at once with Keras' default batch and AUTOTUNE "
              "(pass time_budget= to tune anyway)")
    logger.info("%s", reason)
    plan = untuned_plan(
        baseline={"batch_size": batch, "examples_per_s": rate, "outcome": "estimated",
                  "settings": "keras default (AUTOTUNE)"},
        count=count, replicas=1, size=spec.image_size,
        channels=int(spec.channels or 3), memory_budget_bytes=None, reason=reason)
    plan.measured["effort"] = {"epochs": epochs, "untuned_training_s": round(estimate, 1),
                               "budget_s": None, "tuned": False, "reason": reason,
                               "estimated_in_process": True}
    return plan
