"""What every phase of one tune shares: the runner, the study, the options, the clock, the
data's shape and the progress emitter (``SearchRun``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autobatch._search._ceiling import MAX_BATCH_SIZE
from autobatch._search._config import TuneConfig
from autobatch._search._events import Emitter
from autobatch._search._tracked import TrackedRunner

if TYPE_CHECKING:
    import optuna

    from autobatch._search._shared import SharedStudy


MIN_STEPS_PER_EPOCH = 4
"""The study's batches leave at least this many weight updates per epoch (above batch 32)."""


def training_batch_cap(num_examples: int | None) -> int:
    """The largest batch the study tries: ``num_examples // 4``, but never below 32."""
    if not num_examples:
        return MAX_BATCH_SIZE
    return max(32, int(num_examples) // MIN_STEPS_PER_EPOCH)


@dataclass(frozen=True)
class SearchRun:
    """One tune's search, as its phases see it."""

    runner: TrackedRunner
    study: optuna.Study
    stored: dict[str, Any]
    """The study's user attributes as the tune found them (what a resumed tune skips)."""
    config: TuneConfig
    emit: Emitter
    deadline: float
    """``time.perf_counter()`` value the search must end by (inf: no time budget)."""
    count: int
    """Examples per epoch."""
    size: tuple[int, int] | None
    channels: int
    source: Any
    env: Any
    replicas: int = 1
    """Replicas of the strategy the worker probes under: every batch the search names is
    per replica; the global batch is that times ``replicas``."""
    model: Any = None
    """The model as the caller gave it (a SPEC, a file, a ``keras.Model``)."""
    physical_batch: int | None = None
    """The one batch the study tries under an effective-batch contract (``_effective``)."""
    weight: Callable[[int], float] | None = None
    """The goodput objective's statistical efficiency of a batch (``_goodput``); None:
    the search ranks by examples/s."""
    shared: SharedStudy | None = None
    """This process's membership of a study other processes work on too (a journal file or
    a database server), else None."""
    quick: bool = False
    """A tune cut short to fit the job (``_effort.size_to_the_job``): its ceiling stops at
    the largest batch the study would try, and its verify reuses the worker."""

    @property
    def batch_cap(self) -> int:
        """The largest per-replica batch one epoch can fill (``count // replicas``)."""
        return max(1, self.count // max(1, self.replicas))

    @property
    def max_batch_size(self) -> int:
        """``--max-batch-size`` (a global batch) per replica."""
        return max(1, self.config.max_batch_size // max(1, self.replicas))
