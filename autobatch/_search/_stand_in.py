"""Sources the probe worker cannot take as they are: a generator cannot be sent to it.

``Source.tuning_source`` says what to tune instead: a stand-in of the same shapes (a sample
of a single-example generator function, as arrays), or nothing (a batched generator keeps
the batch size its code chose; a one-shot one cannot be sampled without losing examples).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from autobatch._data import Source

logger = logging.getLogger(__name__)


def plan_without_tuning(source: Source, *, channels: int | None) -> Any:
    """The plan for a source that is not tuned: its own batch size, default settings."""
    from autobatch._plan import Plan
    from autobatch._settings import PipelineSettings

    own = source.fixed_batch_size
    if own is None:
        logger.warning(
            "a one-shot generator cannot be sampled for tuning without losing examples: "
            "training at batch size 32; pass a generator function or a plan to tune")
    epoch = source.epoch(own or 32)
    return Plan(
        batch_size=epoch.batch_size,
        num_examples=epoch.num_examples or 0,
        ceiling_batch_size=epoch.batch_size,
        pipeline=PipelineSettings(),
        channels=channels or 3,
        data=source.summary(),
        measured={"note": "generator batch size taken as given; not tuned"},
    )


def tune_source(tune: Callable[..., Any], model: Any, source: Source, **options: Any) -> Any:
    """``tune(model, source)`` for any source: on its stand-in when it has one (the plan
    then describes ``source``: its examples and data summary), untuned when it has none."""
    stand_in = source.tuning_source()
    if stand_in is None:
        return plan_without_tuning(source, channels=options.get("channels"))
    plan = tune(model, stand_in, **options)
    if stand_in is source:
        return plan
    updated = dataclasses.replace(plan, num_examples=source.num_examples or 0,
                                  data=source.summary())
    updated.path, updated.cache_hit = plan.path, plan.cache_hit
    return updated
