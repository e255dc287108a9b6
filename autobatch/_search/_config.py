"""Tune's options, checked once before any work starts: ``TuneConfig``."""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Any

from autobatch._errors import UsageError
from autobatch._search._ceiling import MAX_BATCH_SIZE
from autobatch._search._space import SearchSpace

DEFAULT_TIME_BUDGET_S = 120.0
"""A tune's wall-clock limit when neither a time budget nor a number of trials is given."""
MAX_TRIALS = 200
PIXEL_CHOICES = ("auto", "float32", "uint8")


def validate_options(*, trials: int | None, time_budget_s: float | None, seed: int,
                     pixels: str = "auto") -> None:
    """Reject impossible options before any work starts, one line each."""
    if pixels not in PIXEL_CHOICES:
        raise UsageError(f"{{param}} must be one of {', '.join(PIXEL_CHOICES)}, got {pixels!r}",
                         parameter="pixels")
    if trials is not None and (isinstance(trials, bool) or int(trials) < 1):
        raise UsageError(f"{{param}} must be a positive whole number, got {trials}",
                         parameter="trials")
    if trials is not None and int(trials) > MAX_TRIALS:
        raise UsageError(f"{{param}} must be at most {MAX_TRIALS}, got {trials}",
                         parameter="trials")
    if time_budget_s is not None and not (float(time_budget_s) > 0):
        raise UsageError(f"{{param}} must be a positive number of seconds, got {time_budget_s}",
                         parameter="time_budget")
    if int(seed) < 0:
        raise UsageError(f"{{param}} must be >= 0, got {seed}", parameter="seed")


def check_effective_batch(effective: Any, strategy: Any) -> None:
    """A positive whole number, and no tf.distribute strategy (Keras' fit raises on
    gradient accumulation under one: keras-team/keras#20582)."""
    if isinstance(effective, bool) or not isinstance(effective, int) or effective < 1:
        raise UsageError(f"{{param}} must be a positive whole number, got {effective!r}",
                         parameter="effective_batch_size")
    if strategy is not None and getattr(strategy, "kind", "none") != "none":
        raise UsageError(
            "{param} needs gradient accumulation, which Keras' model.fit refuses under a "
            "tf.distribute strategy (keras-team/keras#20582): leave out the strategy, or "
            "the effective batch", parameter="effective_batch_size")


def resolve_time_budget(time_budget: float | None, time_budget_s: float | None, *,
                        stacklevel: int = 3) -> float | None:
    """``time_budget``, or its deprecated name ``time_budget_s`` with a warning (both: a
    usage error)."""
    if time_budget_s is None:
        return time_budget
    if time_budget is not None:
        raise UsageError("pass time_budget= only (time_budget_s= is its deprecated name)")
    warnings.warn("time_budget_s= is deprecated; pass time_budget= (seconds)",
                  DeprecationWarning, stacklevel=stacklevel)
    return time_budget_s


@dataclass(frozen=True)
class TuneConfig:
    """What a tune was asked for, beyond the model and the data (see ``tune``).

    Checked on construction (``validate_options``); ``TuneConfig.create`` also applies the
    default time budget.
    """

    image_size: int | tuple[int, int] | None = None
    channels: int | None = None
    memory_budget: str | int | None = None
    time_budget_s: float | None = None
    """None: no time limit (a number of trials was given)."""
    trials: int | None = None
    storage: str | None = None
    output: str | os.PathLike[str] | None = None
    force: bool = False
    seed: int = 0
    num_examples: int | None = None
    max_pixels: int | None = None
    """An image folder's pixel limit (None: the audit's default)."""
    augment: Any = None
    """The augmentation training applies after the cache (``_data._augment``)."""
    parse: Any = None
    """With TFRecord shards: the function of one serialized record -> ``(x, y)``."""
    measure_baseline: bool = True
    try_xla: bool = True
    try_levers: bool = True
    trial_steps: int = 5
    verify_steps: int = 15
    max_batch_size: int = MAX_BATCH_SIZE
    custom_objects_module: str | None = None
    use_cache: bool = True
    search_space: SearchSpace | None = None
    pixels: str = "auto"
    strategy: Any = None
    """The ``autobatch._distribute.StrategySpec`` the worker probes under (None: one
    device)."""
    data_service: str | None = None
    """``grpc://HOST:PORT``: the probes' examples are made on that tf.data service."""
    epochs: int | None = None
    """The epochs the plan will train: the tune sizes its effort to them (``_effort``)
    unless the caller gave a time budget or a number of trials."""
    budget_given: bool = True
    """Whether the caller chose the time budget or the trials (False: the default)."""
    objective: str = "throughput"
    """``"throughput"`` ranks by examples/s; ``"goodput"`` by examples/s times the batch's
    statistical efficiency under the measured gradient noise scale (``_goodput``)."""

    effective_batch_size: int | None = None
    """Examples per weight update the user asks for: where memory caps the physical batch
    below it, the plan accumulates gradients over micro-batches (``_effective``)."""

    def __post_init__(self) -> None:
        if self.effective_batch_size is not None:
            check_effective_batch(self.effective_batch_size, self.strategy)
        if self.objective not in ("throughput", "goodput"):
            raise UsageError(f"{{param}} must be throughput or goodput, got {self.objective!r}",
                             parameter="objective")
        validate_options(trials=self.trials, time_budget_s=self.time_budget_s, seed=self.seed,
                         pixels=self.pixels)

    @classmethod
    def create(cls, *, time_budget_s: float | None, trials: int | None,
               **options: Any) -> TuneConfig:
        """The config of a tune; with neither a time budget nor ``trials``, the default
        budget (``DEFAULT_TIME_BUDGET_S``)."""
        given = time_budget_s is not None or trials is not None
        if not given:
            time_budget_s = DEFAULT_TIME_BUDGET_S
        return cls(time_budget_s=time_budget_s, trials=trials, budget_given=given, **options)

    def deadline(self, started: float) -> float:
        """The ``time.perf_counter()`` value the tune must end by (inf without a budget)."""
        return started + float(self.time_budget_s) if self.time_budget_s is not None \
            else math.inf

    @property
    def target_trials(self) -> int:
        """The trials the study runs at most."""
        return self.trials if self.trials is not None else MAX_TRIALS
