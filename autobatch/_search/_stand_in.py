"""Sources the probe worker cannot take as they are: a generator cannot be sent to it.

``Source.tuning_source`` says what to tune instead: a stand-in of the same shapes (a sample
of a single-example generator function, as arrays), or nothing (a batched generator keeps
the batch size its code chose; a one-shot one cannot be sampled without losing examples).
"""

from __future__ import annotations

import dataclasses
import logging

from autobatch._data import Source
from autobatch._plan import Plan
from autobatch._settings import PipelineSettings

logger = logging.getLogger(__name__)


def plan_without_tuning(source: Source, *, channels: int | None) -> Plan:
    """The plan for a source that is not tuned: its own batch size, default settings."""
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


def for_source(plan: Plan, source: Source) -> Plan:
    """A plan tuned on ``source``'s stand-in, describing ``source`` itself (its examples and
    data record); the plan as it is when it was tuned on ``source``."""
    if plan.data == source.summary() and plan.num_examples == (source.num_examples or 0):
        return plan
    updated = dataclasses.replace(plan, num_examples=source.num_examples or 0,
                                  data=source.summary())
    updated.path, updated.cache_hit = plan.path, plan.cache_hit
    return updated
