"""The user's own ``tf.data.Dataset`` of unbatched ``(x, y)`` elements as a source.

autobatch keeps the user's stages as they are (their reads, decodes, maps) and tunes what
it adds after them: the cache (of the user's output), the shuffle, the batch, the prefetch
and the threading. String labels (Keras' folder-name labels, as ``tf.strings.split(path,
"/")[-2]`` gives them) become class indices in sorted order, as Keras' own loader numbers its
classes.

The probe worker rebuilds the dataset from its serialized graph, or, when the dataset was
given as ``"module:function"`` (or came from an importable function), by calling that
function again. A graph that runs Python (``tf.py_function``, ``tf.numpy_function``,
``from_generator``) cannot be carried; the error says to pass the function instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from autobatch._atomic import atomic_write_bytes
from autobatch._data import _tail as tail
from autobatch._data._graphs import (
    calls_python,
    dataset_stages,
    draws_random_numbers,
    graph_key,
    serialize,
    shape_list,
    shape_text,
    spec_text,
)
from autobatch._data._labels import LabelSpec
from autobatch._data._source import Source
from autobatch._data._tail import BuildRequest
from autobatch._data._userland import import_function
from autobatch._errors import DataError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

    from autobatch._settings import PipelineSettings

logger = logging.getLogger(__name__)

LABEL_SAMPLE = 256
"""Elements read to see integer labels (their largest value bounds the class count)."""


@dataclass
class _Read:
    """What was read of the dataset, shared by every copy of a source (read once): the
    labels, and whether its own stages draw random numbers."""

    vocabulary: tuple[str, ...] | None = None
    spec: LabelSpec | None = None
    random: bool | None = None
    warned: bool = False


@dataclass(frozen=True)
class DatasetSource(Source):
    """A ``tf.data.Dataset`` of unbatched ``(x, y)``.

    ``factory`` is the ``module:function`` that returns it, when known (the worker calls it
    instead of carrying the graph); ``num_examples_hint`` the epoch's length where the
    dataset cannot say (an unknown or infinite cardinality); ``limit`` a ``take`` of the
    first examples (the worker's cache subset).
    """

    dataset: Any
    factory: str | None = None
    num_examples_hint: int | None = None
    limit: int | None = None
    vocabulary: tuple[str, ...] | None = None
    read: _Read = field(default_factory=_Read, compare=False, repr=False)

    kind: ClassVar[str] = "dataset"
    can_subset: ClassVar[bool] = False
    title: ClassVar[str] = "a tf.data.Dataset"

    def __post_init__(self) -> None:
        spec = self.dataset.element_spec
        if not (isinstance(spec, tuple) and len(spec) == 2
                and all(hasattr(part, "shape") and hasattr(part, "dtype") for part in spec)):
            raise DataError(
                f"the dataset's elements must be (image, label) pairs of tensors, got "
                f"{spec_text(spec)}; map it to (x, y), e.g. ds.map(lambda x: (x['image'], "
                "x['label']))")
        if self.vocabulary is not None:
            self.read.vocabulary = self.vocabulary

    @classmethod
    def from_factory(cls, factory: str) -> DatasetSource:
        """The dataset ``module:function`` returns (the module imported from the caller's
        path)."""
        dataset = import_function(factory, what="dataset function")()
        if not is_dataset(dataset):
            raise DataError(f"{factory} returned {type(dataset).__name__}, not a "
                            "tf.data.Dataset of (x, y)")
        return cls(dataset, factory=factory)

    def with_num_examples(self, num_examples: int) -> DatasetSource:
        if num_examples < 1:
            raise UsageError("{param} must be >= 1, got " + str(num_examples),
                             parameter="num_examples")
        return dataclasses.replace(self, num_examples_hint=int(num_examples))

    # ---- size and labels
    @property
    def cardinality(self) -> int:
        """tf.data's count: >= 0, or -1 (infinite) / -2 (unknown)."""
        return int(self.dataset.cardinality())

    @property
    def num_examples(self) -> int | None:
        count = self.cardinality
        n = count if count >= 0 else self.num_examples_hint
        if n is not None and self.num_examples_hint is not None:
            n = min(n, self.num_examples_hint)
        if n is not None and self.limit is not None:
            n = min(n, self.limit)
        return n

    def _x_spec(self) -> Any:
        return self.dataset.element_spec[0]

    def _y_spec(self) -> Any:
        return self.dataset.element_spec[1]

    @property
    def string_labels(self) -> bool:
        return bool(self._y_spec().dtype.name == "string")

    def class_names(self) -> tuple[str, ...] | None:
        """The sorted string labels (read in one pass), or None for numeric labels."""
        if not self.string_labels:
            return None
        if self.read.vocabulary is None:
            self.read.vocabulary = self._read_vocabulary()
        return self.read.vocabulary

    def _read_vocabulary(self) -> tuple[str, ...]:
        import time

        if self.num_examples is None:
            self._require_length()
        started = time.perf_counter()
        seen: set[str] = set()
        labels = self._epoch(None).map(lambda x, y: y).batch(1024)
        for y in labels.as_numpy_iterator():
            seen.update(v.decode("utf-8", "surrogateescape") for v in y.reshape(-1))
        logger.info("read %d class names from the dataset's string labels in one pass (%.1f s)",
                    len(seen), time.perf_counter() - started)
        return tuple(sorted(seen))

    def label_spec(self) -> LabelSpec:
        if self.read.spec is None:
            self.read.spec = self._label_spec()
        return self.read.spec

    def _label_spec(self) -> LabelSpec:
        from autobatch._data._labels import label_spec_of

        names = self.class_names()
        if names is not None:
            return LabelSpec("index", len(names), exact=True)
        y = next(self.dataset.map(lambda x, y: y).take(LABEL_SAMPLE).batch(LABEL_SAMPLE)
                 .as_numpy_iterator(), None)
        return label_spec_of(y)

    def example_shape(self) -> tuple[int, ...] | None:
        shape = self._x_spec().shape
        return tuple(int(d) for d in shape) if shape.is_fully_defined() else None

    def service_refusal(self) -> str | None:
        if calls_python(self._graph()):
            return ("the dataset runs Python code (tf.py_function, tf.numpy_function or "
                    "Dataset.from_generator), which only this process can run")
        return None

    @property
    def eight_bit(self) -> bool:
        return bool(self._x_spec().dtype.name == "uint8")

    def image_size_hint(self) -> tuple[int, int] | None:
        shape = self.example_shape()
        return (shape[0], shape[1]) if shape is not None and len(shape) == 3 else None

    # ---- checks
    def check_learnable(self) -> None:
        names = self.class_names() if self.num_examples is not None else None
        if names is not None and len(names) < 2:
            raise DataError(f"the dataset's labels hold one class ({names[0] if names else '-'})"
                            "; a classifier needs two or more")

    def prepared(self, input_shape: tuple[int | None, ...] | None, *,
                 steps_given: bool) -> DatasetSource:
        rank = self._x_spec().shape.rank
        if rank is None:
            raise DataError(
                "the dataset's images have an unknown rank (tf.io.decode_image gives no "
                "shape); give them one in your map, e.g. tf.ensure_shape(image, (None, None, "
                "3)) or decode_jpeg/decode_png, then resize")
        if input_shape is not None and rank == len(input_shape) + 1:
            raise UsageError(
                f"the dataset yields batches (x of shape {shape_text(self._x_spec().shape)}); "
                "pass it unbatched (drop its .batch(...), or call .unbatch()) so that "
                "autobatch chooses the batch size")
        if not steps_given:
            self._require_length()
        return self

    def _require_length(self) -> None:
        if self.num_examples is None:
            what = "infinite (it repeats)" if self.cardinality == -1 else "unknown"
            raise UsageError(
                f"the dataset's length is {what}, so an epoch has no end; pass {{param}}=N "
                "(examples per epoch)", parameter="num_examples")

    def shard(self, count: int, index: int) -> DatasetSource:
        n = self.num_examples
        part = None if n is None else len(range(index, n, count))
        return dataclasses.replace(self, dataset=self._epoch(None).shard(count, index),
                                   num_examples_hint=part, limit=None, factory=None)

    def head(self, n: int) -> DatasetSource:
        total = self.num_examples or 0
        return self if n <= 0 or n >= total else dataclasses.replace(self, limit=n)

    # ---- identity and summaries
    def fingerprint(self) -> str:
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{self.factory}:{self.num_examples}:{self.limit}".encode())
        digest.update(spec_text(self.dataset.element_spec).encode())
        try:
            digest.update(self._graph_key())
        except Exception:  # noqa: BLE001 - a graph TF cannot serialize: the name stands for it
            if self.factory is None:
                raise
        return digest.hexdigest()

    def summary(self) -> dict[str, Any]:
        """The plan's ``data`` record, with the user's own stages, which autobatch leaves as
        they are (``stages``: ``["TensorSlice", "Shuffle", "Map"]``, say)."""
        names = self.read.vocabulary
        try:
            stages: list[str] | None = dataset_stages(self._graph())
        except Exception:  # noqa: BLE001 - a graph TF cannot serialize: not reported
            stages = None
        return {"kind": self.kind, "path": self.factory,
                "class_names": list(names) if names is not None else None, "stages": stages}

    # ---- the probe worker
    def modules(self) -> list[str]:
        return [self.factory.partition(":")[0]] if self.factory else []

    def describe(self, work_dir: Path) -> dict[str, Any]:
        description: dict[str, Any] = {
            "kind": self.kind, "factory": self.factory, "limit": self.limit,
            "num_examples_hint": self.num_examples_hint, "vocabulary": self.class_names()}
        if self.factory is None:
            path = work_dir / "dataset.graph"
            atomic_write_bytes(path, self._graph(check_python=True))
            description["graph_path"] = str(path)
            description["element_spec"] = [
                [shape_list(part.shape), part.dtype.name] for part in self.dataset.element_spec]
        return description

    @classmethod
    def rebuild(cls, description: dict[str, Any]) -> DatasetSource:
        vocabulary = description.get("vocabulary")
        options: dict[str, Any] = {
            "num_examples_hint": description.get("num_examples_hint"),
            "limit": description.get("limit"),
            "vocabulary": tuple(vocabulary) if vocabulary is not None else None}
        if description.get("factory"):
            return dataclasses.replace(cls.from_factory(description["factory"]), **options)
        import tensorflow as tf

        graph = Path(description["graph_path"]).read_bytes()
        structure = tuple(tf.TensorSpec(shape, dtype)
                          for shape, dtype in description["element_spec"])
        variant = tf.raw_ops.DatasetFromGraph(graph_def=graph)
        dataset = tf.data.experimental.from_variant(variant, structure=structure)
        return cls(dataset, **options)

    def _graph(self, check_python: bool = False) -> bytes:
        """The dataset's serialized ``GraphDef`` (``_graphs.serialize``)."""
        return serialize(self.dataset, check_python=check_python)

    def _graph_key(self) -> bytes:
        return graph_key(self._graph())

    # ---- the pipeline
    def elements(self, settings: PipelineSettings | None) -> tf.data.Dataset:
        """The user's elements, before anything autobatch adds (a kind that reads files
        itself builds its reads with ``settings``' parallelism; None: its default)."""
        return self.dataset

    def _epoch(self, settings: PipelineSettings | None) -> tf.data.Dataset:
        """One epoch of the user's elements (``take`` of the given length when the dataset
        cannot say, or repeats)."""
        ds = self.elements(settings)
        n = self.num_examples
        if n is not None and (self.cardinality < 0 or n < self.cardinality):
            ds = ds.take(n)
        return ds

    @property
    def random_stages(self) -> bool:
        """Whether the user's own maps draw random numbers (augmentation in their map):
        such a pipeline is never cached, or every epoch would replay the first one's."""
        if self.read.random is None:
            try:
                self.read.random = draws_random_numbers(self._graph())
            except Exception:  # noqa: BLE001 - a graph TF cannot serialize: assume it may
                self.read.random = True
        return self.read.random

    def _build(self, request: BuildRequest) -> tf.data.Dataset:
        import tensorflow as tf

        self._require_length()
        if request.settings.cache != "none" and self.random_stages:
            if not self.read.warned:
                self.read.warned = True
                logger.warning("the dataset's own map draws random numbers (augmentation?): it "
                               "is not cached, which would replay epoch 1's pixels in every "
                               "epoch; pass augment= instead to augment after a cache")
            request = dataclasses.replace(
                request, settings=dataclasses.replace(request.settings, cache="none"))
        n = int(self.num_examples or 0)
        settings, size, channels = request.settings, request.image_size, request.channels
        names = self.class_names()
        table = None
        if names is not None:
            table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(list(names)), tf.range(len(names), dtype=tf.int32)), -1)
        have = self.example_shape()

        def convert(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            images = x if settings.pixels == "uint8" else tf.cast(x, tf.float32)
            if images.shape.rank == 2:  # (H, W): grayscale without a channel axis
                images = images[..., tf.newaxis]
            if images.shape.rank == 3:
                if channels is not None:
                    images = tail.convert_channels(images[tf.newaxis], int(channels))[0]
                if size is not None and (have is None or tuple(have[:2]) != size):
                    images = tf.image.resize(images, size, method="bilinear")
            labels = table.lookup(y) if table is not None else y
            return tail.to_pixels(images, settings), labels

        ds = self._epoch(settings).map(convert, **tail.map_kwargs(settings))
        return tail.examples_to_batches(ds, n, request)


def is_dataset(data: Any) -> bool:
    """Whether ``data`` is a ``tf.data.Dataset`` (without importing TensorFlow)."""
    import sys

    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(data, tf.data.Dataset)
