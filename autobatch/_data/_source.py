"""The ``Source`` base class: everything the rest of autobatch asks of an input.

Search, probe, plan and fit never test what kind of input they hold; they ask the source.
One subclass per input kind (``_folder``, ``_arrays``, ``_generator``); ``resolve_source``
is the one place that looks at the type of the user's object. No TensorFlow at import.
"""

from __future__ import annotations

import abc
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from autobatch._data._augment import check_augment
from autobatch._data._labels import LabelSpec, check_fraction, label_mode_for, stratified_split
from autobatch._data._service import check_address, check_servable
from autobatch._data._tail import BuildRequest, dataset_options, normalize_image_size
from autobatch._errors import DataError, UsageError
from autobatch._settings import PipelineSettings, check_pixels_request

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import tensorflow as tf

@dataclass(frozen=True)
class EpochShape:
    """One epoch of a source at a batch size: what ``fit`` steps and counts.

    Attributes:
        batch_size: the batch size training uses (a batched generator's own).
        num_examples: examples in one epoch, when known.
        steps: batches in one epoch, when known (``ceil(num_examples / batch_size)``).
        last_batch_size: examples in the epoch's last batch, when known.
        note: said in the coverage report (a batched generator's short last batch).
    """

    batch_size: int
    num_examples: int | None
    steps: int | None
    last_batch_size: int | None
    note: str | None = None

    @property
    def uneven(self) -> bool:
        return self.last_batch_size is not None and self.last_batch_size != self.batch_size

    @classmethod
    def of(cls, num_examples: int | None, batch_size: int) -> EpochShape:
        """Single examples batched at ``batch_size``, the last partial batch kept."""
        if num_examples is None:
            return cls(batch_size, None, None, None)
        steps = max(1, math.ceil(num_examples / batch_size))
        return cls(batch_size, num_examples, steps, num_examples - batch_size * (steps - 1))


class Source(abc.ABC):
    """An input autobatch can tune and train on.

    Subclasses answer the questions below; the defaults fit a source that can be indexed
    (a folder, arrays). A source is immutable: ``subset`` and ``prepared`` return new ones.
    """

    kind: ClassVar[str] = "source"
    """The plan's ``data.kind`` (schema v1: "directory", "arrays", "generator")."""
    noun: ClassVar[str] = "examples"
    """What the coverage line calls one example."""
    needs_image_size: ClassVar[bool] = False
    """Examples are images resized to the model's input (so an image size is required)."""
    endless_epochs: ClassVar[bool] = True
    """``fit`` may train from one endless iterator of whole epochs (``repeat_epochs``)."""
    can_subset: ClassVar[bool] = True
    """``subset`` and ``split`` work (a generator cannot be indexed without reading it)."""
    title: ClassVar[str] = "the data"
    """How a message names this kind of input."""
    can_augment: ClassVar[bool] = True
    """``augment=`` applies (a generator yields what its own code made)."""

    # ---- size and labels
    @property
    @abc.abstractmethod
    def num_examples(self) -> int | None:
        """Examples in one epoch; None when unknown (a generator not counted yet)."""

    @property
    def num_classes(self) -> int | None:
        """Classes the labels span, when known (a folder's class count; 0: unlabelled)."""
        return self.label_spec().num_classes

    @abc.abstractmethod
    def label_spec(self) -> LabelSpec:
        """The labels' encoding and class count."""

    def label_indices(self) -> np.ndarray | None:
        """One class index per example (for a stratified split), or None when unknown."""
        return None

    def example_shape(self) -> tuple[int, ...] | None:
        """The shape of one example's ``x``; None for images resized to the model's size."""
        return None

    @property
    def eight_bit(self) -> bool:
        """Whether the pixels are whole levels 0..255, so ``pixels="uint8"`` loses nothing
        but a resize's fractions (folders decode to uint8; uint8 arrays)."""
        return False

    def unavailable(self) -> list[str]:
        """Examples that no longer read as they were indexed (files deleted or changed
        since); in-memory kinds: none."""
        return []

    def image_size_hint(self) -> tuple[int, int] | None:
        """The images' own size when they all share it (for a model without an input
        shape); None when unknown or mixed."""
        return None

    def service_refusal(self) -> str | None:
        """Why a tf.data service worker cannot make these examples (``_service``); None
        when it can."""
        return None

    # ---- checks
    def check_learnable(self) -> None:  # noqa: B027 - most sources have nothing to check
        """Refuse data a classifier can learn nothing from, before any work (DataError)."""

    def prepared(self, input_shape: tuple[int | None, ...] | None, *,
                 steps_given: bool) -> Source:
        """The source ready for ``fit``: its epoch length known (or an error), its element
        kind detected against the model's per-example ``input_shape`` (None: not known).
        ``steps_given``: the user passed steps_per_epoch."""
        return self

    def with_num_examples(self, num_examples: int) -> Source:
        """The source with its epoch length given (a generator's); others know theirs."""
        return self

    # ---- subsets
    def subset(self, indices: Any) -> Source:
        """The examples at ``indices`` (in that order), as a source of the same kind."""
        raise UsageError(f"{self.kind} data cannot be split or subset without reading it")

    def head(self, n: int) -> Source:
        """The first ``n`` examples (the probe worker's cache subset); self when smaller or
        when the source cannot be subset."""
        total = self.num_examples or 0
        if not self.can_subset or n <= 0 or n >= total:
            return self
        return self.subset(range(n))

    def shard(self, count: int, index: int) -> Source:
        """Worker ``index`` of ``count``'s part for ``distribute_datasets_from_function``:
        every ``count``-th example from ``index`` on (a folder's files one by one), so that
        the parts are disjoint and cover the data."""
        if not self.can_subset:
            raise UsageError(f"{self.title} cannot be sharded across workers; give each "
                             "worker its own part of the data")
        return self.subset(range(index, self.num_examples or 0, count))

    def split(self, fraction: float, seed: int | None) -> tuple[Source, Source]:
        """Disjoint training and validation parts, stratified by class where labels are
        class indices, deterministic for a seed (see ``_labels.stratified_split``)."""
        check_fraction(fraction)
        if not self.can_subset:
            raise UsageError(
                "{param} cannot split " + self.title + "; pass validation_data=... instead",
                parameter="validation_split")
        train_idx, val_idx = stratified_split(self.label_indices(), self.num_examples or 0,
                                              fraction, seed)
        return self.subset(train_idx), self.subset(val_idx)

    # ---- epochs and batches
    def epoch(self, batch_size: int) -> EpochShape:
        """One epoch at ``batch_size``: steps and the last batch."""
        return EpochShape.of(self.num_examples, batch_size)

    @property
    def fixed_batch_size(self) -> int | None:
        """The batch size baked into the user's code (a batched generator), else None."""
        return None

    def tuning_source(self) -> Source | None:
        """What the probe worker tunes on for this source: itself, a stand-in of the same
        shapes (a sample of a generator, as arrays), or None when it cannot be tuned (a
        batched or one-shot generator keeps its own batch size)."""
        return self

    # ---- identity and summaries
    @abc.abstractmethod
    def fingerprint(self) -> str:
        """A digest that changes when the data do (the plan cache's key)."""

    def summary(self) -> dict[str, Any]:
        """The plan's ``data`` record: ``{kind, path, class_names}``."""
        return {"kind": self.kind, "path": None, "class_names": []}

    def audit_summary(self) -> dict[str, Any] | None:
        """The plan's ``audit`` record (image folders), else None."""
        return None

    # ---- the probe worker
    def modules(self) -> list[str]:
        """The user's modules the worker must import to rebuild this source (a dataset's
        function, a parse function): their folders join its import path if need be."""
        return []

    @abc.abstractmethod
    def describe(self, work_dir: Path) -> dict[str, Any]:
        """Write what the worker needs to rebuild this source into ``work_dir`` and return
        the description (JSON-able; its ``kind`` names the subclass)."""

    @classmethod
    @abc.abstractmethod
    def rebuild(cls, description: dict[str, Any]) -> Source:
        """The source ``describe`` wrote, rebuilt in the worker."""

    # ---- the pipeline
    def build_dataset(
        self,
        *,
        batch_size: int,
        settings: PipelineSettings,
        image_size: int | tuple[int, int] | list[int] | None = None,
        channels: int | None = None,
        shuffle: bool = True,
        seed: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        repeat: bool = False,
        repeat_epochs: bool = False,
        label_mode: str | None = None,
        augment: Any = None,
        data_service: str | None = None,
    ) -> tf.data.Dataset:
        """The batched ``tf.data.Dataset`` of ``(x, y)`` (see ``autobatch._data.build_dataset``
        for what each argument and setting does). The source builds its examples; the tail
        every source shares (``_tail``) caches, shuffles, batches and prefetches them."""
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        check_pixels_request(settings.pixels, eight_bit=self.eight_bit)
        size = normalize_image_size(image_size)
        if size is None and self.needs_image_size:
            raise DataError("image_size is needed to batch an image folder; pass image_size=N")
        check_augment(augment)
        if augment is not None and not self.can_augment:
            raise UsageError("{param} cannot be applied to " + self.title + "; augment inside "
                             "it, or pass a folder, arrays or a tf.data.Dataset",
                             parameter="augment")
        labels = self.label_spec() if label_mode is not None else None
        mode = label_mode_for("unknown", labels, label_mode) if labels is not None else None
        if data_service is not None:
            check_servable(self)
        request = BuildRequest(batch_size, settings, size, channels, shuffle, seed, cache_dir,
                               repeat, repeat_epochs, mode,
                               labels.num_classes if labels is not None else None, augment,
                               check_address(data_service))
        return self._build(request).with_options(dataset_options(settings))

    @abc.abstractmethod
    def _build(self, request: BuildRequest) -> tf.data.Dataset:
        """This kind's pipeline for ``request`` (options are added by ``build_dataset``)."""
