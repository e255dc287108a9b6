"""A Python generator (a function returning a fresh iterator per epoch, or a one-shot
iterator) or a ``keras.utils.PyDataset`` as a source.

Single examples are batched at the plan's batch size, never dropping the last partial
batch; batches (and every ``PyDataset``) keep the batch size the user's code chose. A
generator cannot be sent to the probe worker, so a single-example generator function is
tuned on a sample drawn as arrays (memory and speed per batch depend on shapes, not on where
the pixels came from), and a batched or one-shot one is not tuned (``tuning_source``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from autobatch._atomic import atomic_write_bytes
from autobatch._data import _tail as tail
from autobatch._data._labels import LabelSpec
from autobatch._data._source import EpochShape, Source
from autobatch._data._stream import (
    Stream,
    as_numpy,
    batch_length,
    cast_float64,
    count_examples,
    signature,
)
from autobatch._data._tail import BuildRequest
from autobatch._errors import DataError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

logger = logging.getLogger(__name__)

SAMPLE_EXAMPLES = 256
"""Examples drawn from a single-example generator function to tune on (as arrays)."""


@dataclass(frozen=True)
class GeneratorSource(Source):
    """A generator function, a one-shot generator or a ``keras.utils.PyDataset``.

    ``num_examples_hint`` is how many examples one epoch yields, when known; ``batched``
    is True when each element is already a batch (as a ``PyDataset`` yields), None: detect
    from the model (``prepared``). One ``Stream`` reads the generator for the source and
    every copy made of it (``dataclasses.replace`` keeps it), so the first element is read
    once and a one-shot iterator never loses it.
    """

    generator: Any
    num_examples_hint: int | None = None
    batched: bool | None = None
    stream: Stream | None = field(default=None, compare=False, repr=False)

    kind: ClassVar[str] = "generator"
    endless_epochs: ClassVar[bool] = False
    can_subset: ClassVar[bool] = False
    title: ClassVar[str] = "a generator"
    can_augment: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.stream is None:
            object.__setattr__(self, "stream", Stream(self.generator))

    @property
    def _stream(self) -> Stream:
        assert self.stream is not None  # set in __post_init__
        return self.stream

    @property
    def one_shot(self) -> bool:
        return self._stream.one_shot

    @property
    def is_batched(self) -> bool:
        return bool(self._stream.py_dataset or self.batched)

    def service_refusal(self) -> str | None:
        return "a Python generator runs only in the process that made it"

    def with_hints(self, num_examples: int | None, batched: bool | None) -> GeneratorSource:
        """The source with the user's ``num_examples=`` and ``batched=``."""
        changes: dict[str, Any] = {}
        if num_examples is not None:
            if num_examples < 1:
                raise UsageError("{param} must be >= 1, got " + str(num_examples),
                                 parameter="num_examples")
            changes["num_examples_hint"] = int(num_examples)
        if batched is not None:
            changes["batched"] = bool(batched)
        return dataclasses.replace(self, **changes) if changes else self

    def with_num_examples(self, num_examples: int) -> GeneratorSource:
        return self.with_hints(num_examples, None)

    # ---- size and labels
    @property
    def num_examples(self) -> int | None:
        if self._stream.py_dataset:
            return self.epoch(0).num_examples
        return self.num_examples_hint

    def _x_y(self) -> tuple[Any, Any]:
        first = self._stream.first()
        x = first[0] if isinstance(first, tuple) else first
        y = first[1] if isinstance(first, tuple) and len(first) > 1 else None
        return x, y

    def label_spec(self) -> LabelSpec:
        import numpy as np

        from autobatch._data._labels import label_spec_of

        _, y = self._x_y()
        if y is not None and not self.is_batched:
            y = np.asarray(y)[None, ...]  # one example: add the batch axis
        return label_spec_of(y)

    def example_shape(self) -> tuple[int, ...]:
        import numpy as np

        x, _ = self._x_y()
        shape = tuple(int(d) for d in np.shape(x))
        return shape[1:] if self.is_batched else shape

    # ---- checks
    def prepared(self, input_shape: tuple[int | None, ...] | None, *,
                 steps_given: bool) -> GeneratorSource:
        """Detect batches vs single examples from the model's input rank; know the epoch's
        length before any tuning or training (an endless generator would never end one)."""
        source = self
        if not steps_given and self.one_shot:
            source = source.with_known_length()  # an error without a length: read nothing
        if source.batched is None and not self._stream.py_dataset:
            source = dataclasses.replace(source, batched=source._detect_batched(input_shape))
        if not steps_given:
            source = source.with_known_length()
        return source

    def _detect_batched(self, input_shape: tuple[int | None, ...] | None) -> bool:
        """Batches when the first element has one axis more than the model's input."""
        import numpy as np

        if input_shape is None:
            return False
        x, _ = self._x_y()
        return bool(np.ndim(x) == len(input_shape) + 1)

    def with_known_length(self) -> GeneratorSource:
        """The source with its epoch length known.

        A ``PyDataset`` or a source with ``num_examples_hint`` is returned as it is; a
        one-shot generator cannot be counted without using up the examples it is meant to
        train on (``UsageError``); a generator function is counted in one fresh pass, in
        this process, without training (an endless one is a ``UsageError``)."""
        if self.num_examples_hint is not None or self._stream.py_dataset:
            return self
        if self.one_shot:
            raise UsageError(
                "a generator object can be read only once, so its length cannot be counted "
                "and, if it loops forever, the first epoch would never end; pass {param}=N "
                "(examples per epoch), or pass the generator function itself",
                parameter="num_examples")
        count, seconds = count_examples(self._stream, batched=bool(self.batched))
        logger.info("counted %d examples in one pass of the generator (%.1f s); pass "
                    "num_examples= to skip the count", count, seconds)
        return dataclasses.replace(self, num_examples_hint=count)

    # ---- epochs and batches
    @property
    def fixed_batch_size(self) -> int | None:
        return batch_length(self._stream.first()) if self.is_batched else None

    def epoch(self, batch_size: int) -> EpochShape:
        stream = self._stream
        if not self.is_batched:
            shape = EpochShape.of(self.num_examples_hint, batch_size)
        else:
            own = batch_length(stream.first())
            if stream.py_dataset:
                steps = int(stream.generator.num_batches)
                last = batch_length(as_numpy(stream.generator[steps - 1]))
                shape = EpochShape(own, own * (steps - 1) + last, steps, last)
            else:
                shape = EpochShape.of(self.num_examples_hint, own)
        if shape.uneven:
            note = (f"the generator's {shape.num_examples} examples do not divide into batches "
                    f"of {shape.batch_size}: the last batch holds {shape.last_batch_size}")
            shape = dataclasses.replace(shape, note=note)
        return shape

    def tuning_source(self) -> Source | None:
        if self.is_batched or self.one_shot:
            return None
        return self.sample_arrays()

    def sample_arrays(self, max_examples: int = SAMPLE_EXAMPLES) -> Source:
        """Up to ``max_examples`` single examples from a fresh pass, as an ``ArraySource``."""
        import numpy as np

        from autobatch._data._arrays import ArraySource

        if self.one_shot:
            raise DataError(
                "a one-shot generator cannot be sampled for tuning without losing examples; "
                "pass a generator function or a plan")
        xs: list[Any] = []
        ys: list[Any] = []
        for element in itertools.islice(self._stream.fresh(), max_examples):
            element = as_numpy(element)
            if isinstance(element, tuple):
                xs.append(element[0])
                ys.append(element[1] if len(element) > 1 else None)
            else:
                xs.append(element)
                ys.append(None)
        if not xs:
            raise DataError("the generator yielded nothing; check that it has data")
        x = np.stack(xs)
        if x.dtype == np.float64:
            x = x.astype(np.float32)
        return ArraySource(x, None if ys[0] is None else np.stack(ys))

    # ---- identity and summaries
    def fingerprint(self) -> str:
        name = getattr(self.generator, "__qualname__", type(self.generator).__qualname__)
        module = getattr(self.generator, "__module__", "")
        return hashlib.blake2b(
            f"{module}.{name}:{self.num_examples_hint}".encode(), digest_size=16
        ).hexdigest()

    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": None, "class_names": None}

    # ---- the probe worker
    def describe(self, work_dir: Path) -> dict[str, Any]:
        """A pickle (cloudpickle when plain pickle cannot) of the generator."""
        import pickle

        try:
            payload = pickle.dumps(self.generator)
        except Exception:
            try:
                import cloudpickle

                payload = cloudpickle.dumps(self.generator)
            except Exception as exc:
                raise DataError(
                    f"the generator cannot be sent to the probe worker ({exc}); define it at "
                    "module level in an importable module") from exc
        path = work_dir / "generator.pkl"
        atomic_write_bytes(path, payload)
        return {"kind": self.kind, "pickle_path": str(path),
                "num_examples_hint": self.num_examples_hint, "batched": self.batched}

    @classmethod
    def rebuild(cls, description: dict[str, Any]) -> GeneratorSource:
        import pickle

        with open(description["pickle_path"], "rb") as handle:
            generator = pickle.load(handle)
        return cls(generator, description.get("num_examples_hint"), description.get("batched"))

    # ---- the pipeline
    def _build(self, request: BuildRequest) -> tf.data.Dataset:
        """One epoch of the generator per pass (``take`` of its length when known, even if it
        loops forever); single examples batched, the last partial batch kept. The generator
        runs in Python one element at a time: of the settings, only ``prefetch`` applies."""
        import tensorflow as tf

        epoch = self.epoch(request.batch_size)
        if epoch.uneven:
            logger.warning(
                "the generator's %s examples do not divide into batches of %d: the last batch "
                "of each epoch holds %d; it is trained on, not dropped",
                epoch.num_examples, epoch.batch_size, epoch.last_batch_size)
        stream = self._stream

        def generate() -> Iterator[Any]:
            for element in stream.epoch_iterator():
                yield cast_float64(element)

        ds = tf.data.Dataset.from_generator(
            generate, output_signature=signature(stream.first(), batched=self.is_batched))
        if self.is_batched:
            if epoch.steps is not None and not stream.py_dataset:
                ds = ds.take(epoch.steps)
        else:
            if epoch.num_examples is not None:
                ds = ds.take(epoch.num_examples)
            ds = ds.batch(epoch.batch_size, drop_remainder=False)
        if request.repeat:
            ds = ds.repeat()
        return tail.batches_to_epochs(ds, request)
