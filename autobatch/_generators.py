"""tf.data pipelines from Python generators and ``keras.utils.PyDataset``.

What a generator means to autobatch (documented in the README's "Generators" section):

* A **generator function** (a callable returning a fresh iterator) is called once per epoch;
  one epoch is one full pass. If it never ends (``while True``, as many tutorials write
  it), pass its length as ``num_examples`` and each epoch takes exactly that many examples
  from a fresh call.
* A **one-shot iterator** (a generator object) is consumed as one stream: each epoch takes
  the next ``num_examples`` examples (or the rest, if no length is known, which leaves later
  epochs empty: the coverage report flags that).
* Elements are single examples (``x`` or ``(x, y)`` or ``(x, y, w)``) unless the source says
  ``batched=True``. Single examples are batched at the plan's batch size, never dropping
  the last partial batch. Batches (and every ``PyDataset``) keep the batch size the user's
  code chose, because it is baked into that code; the plan then only counts steps.
* A generator cannot be sent to the probe worker, so tuning does not run it there: for
  single examples, ``fit`` tunes on a sample drawn from the generator as arrays (the model's
  memory and speed per batch depend on shapes, not on where the pixels came from); for
  batched generators it takes the generator's own batch size.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from autobatch._errors import DataError
from autobatch._settings import AUTOTUNE, PipelineSettings
from autobatch._sources import GeneratorSource

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeneratorInfo:
    """What autobatch learned about a generator before training.

    Attributes:
        batched: elements are batches (True) or single examples (False).
        batch_size: the batch size training uses (the generator's own when batched).
        num_examples: examples in one epoch, when known.
        steps_per_epoch: batches in one epoch, when known.
        last_batch_size: size of the last batch of an epoch when known.
        uneven: True when the last batch is smaller than the others.
        one_shot: the source is an iterator that can be consumed only once.
        first_element: the first element, as numpy arrays (shapes and dtypes).
    """

    batched: bool
    batch_size: int
    num_examples: int | None
    steps_per_epoch: int | None
    last_batch_size: int | None
    uneven: bool
    one_shot: bool
    first_element: Any


def is_py_dataset(obj: Any) -> bool:
    """True for ``keras.utils.PyDataset`` (and the legacy ``Sequence`` alias) instances."""
    try:
        from keras.utils import PyDataset
    except ImportError:  # pragma: no cover - keras is a dependency
        return False
    return isinstance(obj, PyDataset)


def _as_numpy(element: Any) -> Any:
    import numpy as np

    if isinstance(element, (tuple, list)):
        return tuple(_as_numpy(e) for e in element)
    if isinstance(element, dict):
        return {k: _as_numpy(v) for k, v in element.items()}
    if element is None:
        return None
    return np.asarray(element)


def _first_leaf(element: Any) -> Any:
    import tensorflow as tf

    leaves = [leaf for leaf in tf.nest.flatten(element) if leaf is not None]
    if not leaves:
        raise DataError("the generator yielded an empty element; yield (x, y) pairs")
    return leaves[0]


def _batch_length(element: Any) -> int:
    first = element[0] if isinstance(element, tuple) else element
    leaf = _first_leaf(first)
    if leaf.ndim == 0:
        raise DataError(
            "the generator is marked batched but yields scalars; yield arrays of shape (batch, ...)"
        )
    return int(leaf.shape[0])


class PeekableIterator:
    """A one-shot iterator whose first element can be looked at any number of times."""

    _EMPTY = object()

    def __init__(self, iterator: Any) -> None:
        self._iterator: Iterator[Any] = iter(iterator)
        self._head: Any = self._EMPTY

    def peek(self) -> Any:
        if self._head is self._EMPTY:
            self._head = next(self._iterator)  # StopIteration propagates: nothing to peek
        return self._head

    def __iter__(self) -> PeekableIterator:
        return self

    def __next__(self) -> Any:
        if self._head is not self._EMPTY:
            head, self._head = self._head, self._EMPTY
            return head
        return next(self._iterator)


class _Stream:
    """Holds the user's source and hands tf.data a fresh (or the continuing) iterator."""

    def __init__(self, source: GeneratorSource) -> None:
        self.source = source
        gen = source.generator
        self.py_dataset = is_py_dataset(gen)
        self.one_shot = not self.py_dataset and not callable(gen) and hasattr(gen, "__next__")
        if not (self.py_dataset or self.one_shot or callable(gen) or hasattr(gen, "__iter__")):
            raise DataError(
                f"cannot iterate a {type(gen).__name__}: pass a generator function, "
                "a generator, or a keras.utils.PyDataset"
            )
        self._stream: Iterator[Any] | None = None

    def _fresh(self) -> Iterator[Any]:
        gen = self.source.generator
        if self.py_dataset:
            return _iterate_py_dataset(gen)
        if callable(gen):
            return iter(gen())
        return iter(gen)

    def peek(self) -> Any:
        """The first element; a one-shot iterator keeps it for the first epoch."""
        try:
            if self.one_shot:
                if not isinstance(self.source.generator, PeekableIterator):
                    self._stream = PeekableIterator(self.source.generator)
                else:
                    self._stream = self.source.generator
                first = self._stream.peek()
            else:
                first = next(self._fresh())
        except StopIteration:
            raise DataError("the generator yielded nothing; check that it has data") from None
        return _as_numpy(first)

    def iterator(self) -> Iterator[Any]:
        """What ``from_generator`` calls at the start of each epoch."""
        if self.one_shot:
            if self._stream is None:
                self._stream = iter(self.source.generator)
            # The same stream every epoch: each epoch continues where the last one stopped.
            return self._stream
        return self._fresh()


def _iterate_py_dataset(py_dataset: Any) -> Iterator[Any]:
    """One epoch of a PyDataset, in index order, then its ``on_epoch_end`` hook."""
    length = py_dataset.num_batches
    if length is None:
        raise DataError(
            "this PyDataset has no length (num_batches is None); give it __len__ so one "
            "epoch is well defined"
        )
    py_dataset.on_epoch_begin()
    for index in range(length):
        yield py_dataset[index]
    py_dataset.on_epoch_end()


def inspect_generator(source: GeneratorSource, *, batch_size: int,
                      warn: bool = False) -> tuple[GeneratorInfo, _Stream]:
    """Peek at the source and work out batch size, steps and evenness of one epoch.

    Args:
        source: the generator source.
        batch_size: the batch size to use for single-example generators.
        warn: log a warning when the last batch is smaller (once, by the builder).

    Returns:
        The ``GeneratorInfo`` and the stream object the pipeline reads from.
    """
    stream = _Stream(source)
    first = stream.peek()
    batched = source.batched
    if stream.py_dataset:
        batched = True
    if batched is None:
        batched = False
    num_examples = source.num_examples_hint
    last_batch_size: int | None = None
    if batched:
        own_batch = _batch_length(first)
        steps: int | None = None
        if stream.py_dataset:
            steps = int(stream.source.generator.num_batches)
            last = _as_numpy(stream.source.generator[steps - 1])
            last_batch_size = _batch_length(last)
            num_examples = own_batch * (steps - 1) + last_batch_size
        elif num_examples is not None:
            steps = math.ceil(num_examples / own_batch)
            last_batch_size = num_examples - own_batch * (steps - 1)
        effective_batch = own_batch
        if batch_size and batch_size != own_batch:
            logger.info(
                "the generator yields batches of %d; keeping its own batch size, not %d",
                own_batch,
                batch_size,
            )
    else:
        effective_batch = batch_size
        steps = math.ceil(num_examples / batch_size) if num_examples is not None else None
        if num_examples is not None:
            last_batch_size = num_examples - batch_size * (steps - 1) if steps else None
    uneven = last_batch_size is not None and last_batch_size != effective_batch
    if uneven and warn:
        logger.warning(
            "the generator's %s examples do not divide into batches of %d: the last batch "
            "of each epoch holds %d; it is trained on, not dropped",
            num_examples,
            effective_batch,
            last_batch_size,
        )
    info = GeneratorInfo(
        batched=bool(batched),
        batch_size=int(effective_batch),
        num_examples=num_examples,
        steps_per_epoch=steps,
        last_batch_size=last_batch_size,
        uneven=bool(uneven),
        one_shot=stream.one_shot,
        first_element=first,
    )
    return info, stream


COUNT_MAX_ELEMENTS = 1_000_000
COUNT_MAX_S = 30.0
"""Limits of the counting pass over a generator function of unknown length: a pass that
has not ended by then is taken for an endless (``while True``) generator."""


def ensure_known_length(source: GeneratorSource, *, max_elements: int = COUNT_MAX_ELEMENTS,
                        max_s: float = COUNT_MAX_S) -> GeneratorSource:
    """The source with its epoch length known, before any tuning or training starts.

    An epoch of a generator ends when the generator does; an endless one (``while True``,
    as tutorials write it) without ``num_examples`` would make the first epoch last
    forever. So:

    * a ``PyDataset``, or a source with ``num_examples_hint``, is returned as it is;
    * a **one-shot** generator (a generator object) cannot be counted without using up
      the examples it is meant to train on, so its length must be given: ``UsageError``;
    * a **generator function** is called once more and its fresh pass counted (examples,
      or the examples in its batches when ``source.batched``), in this process, without
      training; a pass longer than ``max_elements`` elements or ``max_s`` seconds is taken
      for an endless generator: ``UsageError``.

    Raises:
        UsageError: the length cannot be known without ``num_examples=``.
        DataError: the generator yields nothing.
    """
    import time

    from autobatch._errors import UsageError

    gen = source.generator
    if source.num_examples_hint is not None or is_py_dataset(gen):
        return source
    if not callable(gen):
        raise UsageError(
            "a generator object can be read only once, so its length cannot be counted and, "
            "if it loops forever, the first epoch would never end; pass num_examples=N "
            "(examples per epoch), or pass the generator function itself"
        )
    started = time.perf_counter()
    count = elements = 0
    for element in iter(gen()):
        elements += 1
        count += _batch_length(_as_numpy(element)) if source.batched else 1
        if elements >= max_elements or (
                elements % 1024 == 0 and time.perf_counter() - started > max_s):
            raise UsageError(
                f"the generator did not end within {elements} elements "
                f"({time.perf_counter() - started:.1f} s): it looks endless (a 'while True' "
                "generator), so an epoch would never end; pass num_examples=N (examples "
                "per epoch)"
            )
    if count == 0:
        raise DataError("the generator yielded nothing; check that it has data")
    logger.info("counted %d examples in one pass of the generator (%.1f s); pass "
                "num_examples= to skip the count", count, time.perf_counter() - started)
    return dataclasses.replace(source, num_examples_hint=count)


def _signature(element: Any, *, batched: bool) -> Any:
    import tensorflow as tf

    def spec(array: Any) -> Any:
        if array is None:
            return None
        shape = list(array.shape)
        if batched and shape:
            shape[0] = None
        dtype = tf.as_dtype(array.dtype) if array.dtype.kind != "U" else tf.string
        if dtype == tf.float64:
            dtype = tf.float32  # Keras trains in float32; float64 would only double memory
        return tf.TensorSpec(shape=shape, dtype=dtype)

    return tf.nest.map_structure(spec, element)


def _cast_float64(element: Any) -> Any:
    import numpy as np

    def cast(array: Any) -> Any:
        array = np.asarray(array)
        return array.astype(np.float32) if array.dtype == np.float64 else array

    if isinstance(element, (tuple, list)):
        return tuple(cast(e) if e is not None else None for e in element)
    return cast(element)


def build_generator_dataset(
    source: GeneratorSource,
    *,
    batch_size: int,
    settings: PipelineSettings | None = None,
    seed: int | None = None,
) -> Any:
    """A ``tf.data.Dataset`` that yields one epoch of the generator per iteration.

    Args:
        source: the generator, generator function or PyDataset.
        batch_size: batch size for single-example generators (batched ones keep theirs).
        settings: pipeline settings; only ``prefetch`` applies (the generator itself runs
            in Python, one element at a time).
        seed: unused (generator order is the user's); kept for the builder's signature.

    Returns:
        The dataset, with ``autobatch_info`` (a ``GeneratorInfo``) attached as an attribute.
    """
    import tensorflow as tf

    del seed
    settings = settings or PipelineSettings()
    info, stream = inspect_generator(source, batch_size=batch_size, warn=True)
    signature = _signature(info.first_element, batched=info.batched)

    def generate() -> Iterator[Any]:
        for element in stream.iterator():
            yield _cast_float64(element)

    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    if info.batched:
        if info.steps_per_epoch is not None and not stream.py_dataset:
            # A length was given: one epoch is exactly that many batches, even if the
            # generator loops forever.
            dataset = dataset.take(info.steps_per_epoch)
    else:
        if info.num_examples is not None:
            dataset = dataset.take(info.num_examples)
        dataset = dataset.batch(info.batch_size, drop_remainder=False)
    prefetch = settings.prefetch
    if prefetch == AUTOTUNE:
        dataset = dataset.prefetch(tf.data.AUTOTUNE)
    elif prefetch > 0:
        dataset = dataset.prefetch(prefetch)
    from autobatch._pipeline import autotune_options

    dataset = dataset.with_options(autotune_options(settings))
    dataset.autobatch_info = info  # type: ignore[attr-defined]
    return dataset


def sample_arrays(source: GeneratorSource, *, max_examples: int = 256) -> tuple[Any, Any]:
    """Draw up to ``max_examples`` single examples from a fresh pass, as ``(x, y)`` arrays.

    Used to tune a single-example generator in the probe worker, which cannot receive the
    generator itself. Not for one-shot iterators (drawing would consume training data).
    """
    import numpy as np

    stream = _Stream(source)
    if stream.one_shot:
        raise DataError(
            "a one-shot generator cannot be sampled for tuning without losing examples; "
            "pass a generator function or a plan"
        )
    xs: list[Any] = []
    ys: list[Any] = []
    for element in itertools.islice(stream.iterator(), max_examples):
        element = _as_numpy(element)
        if isinstance(element, tuple):
            xs.append(element[0])
            ys.append(element[1] if len(element) > 1 else None)
        else:
            xs.append(element)
            ys.append(None)
    if not xs:
        raise DataError("the generator yielded nothing; check that it has data")
    x = np.stack(xs).astype(np.float32) if np.asarray(xs[0]).dtype == np.float64 else np.stack(xs)
    y = None if ys[0] is None else np.stack(ys)
    return x, y
