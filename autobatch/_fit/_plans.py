"""The plan ``fit`` trains with: given (a ``Plan`` or its file), or asked of ``tune``, then
adapted to this model (its image size and channels, pixels it can take, its optimizer's
learning-rate rule). No tuning here: ``fit`` calls the public tune."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from autobatch._data import Source
from autobatch._fit._lr import copy_plan, for_this_model
from autobatch._fit._preflight import InputSpec
from autobatch._plan import load_plan

logger = logging.getLogger(__name__)


def obtain_plan(model: Any, source: Source, spec: InputSpec, plan: Any, *,
                tune_options: dict[str, Any], model_spec: Any = None,
                verbose: int | str = "auto", epochs: int | None = None) -> tuple[Any, float]:
    """The plan to train with and the seconds it took (tuning, or the cache look-up)."""
    started = time.perf_counter()
    if plan is not None:
        plan = load_plan(plan)
        if plan.num_examples != (source.num_examples or plan.num_examples):
            logger.info("the plan was tuned on %d examples, training on %s: steps recomputed",
                        plan.num_examples, source.num_examples)
        return plan, time.perf_counter() - started
    from autobatch._search import tune

    if epochs is not None and not {"time_budget", "trials", "time_budget_s",
                                   "effective_batch_size"} & set(tune_options):
        from autobatch._fit._small_job import plan_for_a_small_job

        small = plan_for_a_small_job(model, source, spec, epochs)
        if small is not None:
            return small, time.perf_counter() - started
    options = dict(tune_options)
    # The tune sizes its effort to this job (unless a time budget or trials were given).
    options.setdefault("epochs", epochs)
    # The size and channels the model takes, as tune reads them from the model when not
    # given: the same fingerprints, so fit finds the plan tune made (and the SPEC the user
    # gave, not the model built from it: a .keras file fingerprints by its bytes, a
    # built-in by its name).
    if spec.image_size is not None:
        options.setdefault("image_size", spec.image_size)
    if spec.channels is not None:
        options.setdefault("channels", spec.channels)
    plan = tune(model_spec if model_spec is not None else model, source, verbose=verbose,
                **options)
    return plan, time.perf_counter() - started


def adapt_plan(plan: Any, spec: InputSpec, model: Any, source: Source,
               reference_batch_size: int | None) -> Any:
    """The plan for this model and data: the model's image size and channels (the model
    is the truth), float32 pixels where uint8 cannot apply, its optimizer's LR rule."""
    plan = for_this_model(plan, model, reference_batch_size)
    changes: dict[str, Any] = {}
    if spec.image_size is not None and plan.image_size != spec.image_size:
        if plan.image_size is not None:
            logger.warning("the plan was tuned at %s px; the model takes %s px: using the model's",
                           plan.image_size, spec.image_size)
        changes["image_size"] = spec.image_size
    if spec.channels is not None and plan.channels != spec.channels:
        changes["channels"] = spec.channels
    if changes:
        plan = copy_plan(plan, **changes)
    return _pixels_for(plan, model, source)


def for_replicas(plan: Any, replicas: int) -> Any:
    """The plan for training on ``replicas`` replicas (a ``tf.distribute`` strategy's).

    A plan tuned under another replica count keeps what it measured on both sides: no
    device gets more than the plan's per-replica batch, and the global batch never grows
    past the plan's (its learning rate was judged for it): ``min(batch_size,
    per_replica_batch_size x replicas)``, rounded down to a multiple of ``replicas``."""
    replicas = max(1, int(replicas))
    if int(plan.num_replicas or 1) == replicas:
        return plan
    per_replica = int(plan.per_replica_batch_size or plan.batch_size)
    batch = min(int(plan.batch_size), per_replica * replicas)
    batch = max(replicas, batch - batch % replicas)
    logger.warning(
        "the plan was tuned for %d replica(s) (batch %d per replica); training on %d: global "
        "batch %d (%d per replica). Tune with the same strategy for a measured plan",
        plan.num_replicas, per_replica, replicas, batch, batch // replicas)
    return copy_plan(plan, batch_size=batch, per_replica_batch_size=batch // replicas,
                     num_replicas=replicas)


def _pixels_for(plan: Any, model: Any, source: Source) -> Any:
    """float32 pixels where the plan's uint8 cannot apply to this model or data (a plan tuned
    for another model, or applied to float arrays)."""
    if plan.pipeline.pixels != "uint8":
        return plan
    from autobatch._models import model_accepts_uint8
    from autobatch._settings import choose_pixels

    pixels, why = choose_pixels(
        "auto", eight_bit=source.eight_bit,
        model_accepts_uint8=lambda: model_accepts_uint8(model, plan.image_size, plan.channels))
    if pixels == "uint8":
        return plan
    logger.warning("the plan's uint8 pixels do not apply (%s): training with float32",
                   why.replace("the model's", "this model's"))
    return copy_plan(plan, pipeline=plan.pipeline.replace(pixels="float32"))


@contextlib.contextmanager
def jit_as_planned(model: Any, plan: Any) -> Iterator[None]:
    """Train with XLA when the plan measured the step compiled with it, and give the model
    its own setting (off) back afterwards."""
    if not plan.jit_compile or getattr(model, "jit_compile", False):
        yield
        return
    model.jit_compile = True
    model.train_function = None  # a cached train function would keep the old setting
    logger.info("training with jit_compile=True for this fit, as the plan measured")
    try:
        yield
    finally:
        model.jit_compile = False
        model.train_function = None
