"""The plan's memory levers at training time: a model ``fit`` built itself (a SPEC, a
``.keras`` file) is rebuilt under the plan's ``mixed_precision`` policy and ``remat`` scope,
as the probes measured it; a model the caller built is trained as given, with one line
saying how to build it the way the plan measured."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

logger = logging.getLogger(__name__)

_COMPUTE_DTYPES = {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16", None: "float32"}


def build_as_planned(model: Any, plan: Any, *, rebuildable: bool, strategy: Any = None) -> Any:
    """``model`` under the plan's levers: rebuilt when ``rebuildable``, else as it is."""
    if not plan.mixed_precision and not plan.remat:
        return model
    from autobatch._models._levers import apply_levers, levers_in_effect

    effect = levers_in_effect(model)
    if effect["compute_dtype"] == _COMPUTE_DTYPES.get(plan.mixed_precision) and \
            effect["remat"] == plan.remat:
        return model  # built that way already
    if not rebuildable:
        logger.warning("%s; this model was passed built, so it trains as it is",
                       plan.lever_hint())
        return model
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        return apply_levers(model, mixed_precision=plan.mixed_precision, remat=plan.remat)
