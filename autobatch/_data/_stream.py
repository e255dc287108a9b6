"""Reading a user's generator or ``keras.utils.PyDataset``: one stream per source, the first
element peeked once and kept, epochs restarted or continued, a pass counted.

What a generator means to autobatch (the README's "Generators" section):

* A **generator function** (a callable returning a fresh iterator) is called once per epoch;
  one epoch is one full pass. If it never ends (``while True``), its length is given as
  ``num_examples`` and each epoch takes exactly that many examples from a fresh call.
* A **one-shot iterator** (a generator object) is consumed as one stream: each epoch takes
  the next ``num_examples`` examples.
* Elements are single examples (``x`` or ``(x, y)`` or ``(x, y, w)``) unless the source says
  ``batched=True``; every ``PyDataset`` yields batches.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from autobatch._errors import DataError, UsageError

COUNT_MAX_ELEMENTS = 1_000_000
COUNT_MAX_S = 30.0
"""Limits of the counting pass over a generator function of unknown length: a pass that
has not ended by then is taken for an endless (``while True``) generator."""


def is_py_dataset(obj: Any) -> bool:
    """True for ``keras.utils.PyDataset`` (and the legacy ``Sequence`` alias) instances."""
    try:
        from keras.utils import PyDataset
    except ImportError:  # pragma: no cover - keras is a dependency
        return False
    return isinstance(obj, PyDataset)


def as_numpy(element: Any) -> Any:
    """An element with every array-like leaf as a numpy array."""
    import numpy as np

    if isinstance(element, (tuple, list)):
        return tuple(as_numpy(e) for e in element)
    if isinstance(element, dict):
        return {k: as_numpy(v) for k, v in element.items()}
    if element is None:
        return None
    return np.asarray(element)


def batch_length(element: Any) -> int:
    """The batch dimension of a batched element (of its first array)."""
    first = element[0] if isinstance(element, tuple) else element
    while isinstance(first, (tuple, list, dict)):
        leaves = list(first.values()) if isinstance(first, dict) else list(first)
        leaves = [leaf for leaf in leaves if leaf is not None]
        if not leaves:
            raise DataError("the generator yielded an empty element; yield (x, y) pairs")
        first = leaves[0]
    if first is None:
        raise DataError("the generator yielded an empty element; yield (x, y) pairs")
    if first.ndim == 0:
        raise DataError(
            "the generator is marked batched but yields scalars; yield arrays of shape (batch, ...)"
        )
    return int(first.shape[0])


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


class Stream:
    """The user's generator, read by one object: what kind of generator it is, its first
    element (peeked once; a one-shot iterator keeps it for the first epoch), and the
    iterator each epoch reads."""

    def __init__(self, generator: Any) -> None:
        self.py_dataset = is_py_dataset(generator)
        self.one_shot = (not self.py_dataset and not callable(generator)
                         and hasattr(generator, "__next__"))
        if not (self.py_dataset or self.one_shot or callable(generator)
                or hasattr(generator, "__iter__")):
            raise DataError(
                f"cannot iterate a {type(generator).__name__}: pass a generator function, "
                "a generator, or a keras.utils.PyDataset")
        if self.one_shot and not isinstance(generator, PeekableIterator):
            generator = PeekableIterator(generator)
        self.generator = generator
        self._first: Any = None
        self._peeked = False

    def fresh(self) -> Iterator[Any]:
        """A new pass (a generator function called again, a PyDataset from index 0)."""
        gen = self.generator
        if self.py_dataset:
            return iterate_py_dataset(gen)
        if callable(gen):
            return iter(gen())
        return iter(gen)

    def first(self) -> Any:
        """The first element, as numpy arrays (read once)."""
        if not self._peeked:
            try:
                first = self.generator.peek() if self.one_shot else next(self.fresh())
            except StopIteration:
                raise DataError("the generator yielded nothing; check that it has data") from None
            self._first, self._peeked = as_numpy(first), True
        return self._first

    def epoch_iterator(self) -> Iterator[Any]:
        """What ``from_generator`` calls at the start of each epoch: a fresh pass, or for a
        one-shot iterator the same stream, continuing where the last epoch stopped."""
        return self.generator if self.one_shot else self.fresh()


def iterate_py_dataset(py_dataset: Any) -> Iterator[Any]:
    """One epoch of a PyDataset, in index order, then its ``on_epoch_end`` hook."""
    length = py_dataset.num_batches
    if length is None:
        raise DataError(
            "this PyDataset has no length (num_batches is None); give it __len__ so one "
            "epoch is well defined")
    py_dataset.on_epoch_begin()
    for index in range(length):
        yield py_dataset[index]
    py_dataset.on_epoch_end()


def count_examples(stream: Stream, *, batched: bool, max_elements: int = COUNT_MAX_ELEMENTS,
                   max_s: float = COUNT_MAX_S) -> tuple[int, float]:
    """Examples in one fresh pass of a generator function, counted without training.

    Returns:
        ``(examples, seconds the pass took)``.

    Raises:
        UsageError: the pass did not end within ``max_elements`` elements or ``max_s``
            seconds (an endless generator: its length must be given).
        DataError: the generator yields nothing.
    """
    started = time.perf_counter()
    count = elements = 0
    for element in stream.fresh():
        elements += 1
        count += batch_length(as_numpy(element)) if batched else 1
        if elements >= max_elements or (
                elements % 1024 == 0 and time.perf_counter() - started > max_s):
            raise UsageError(
                f"the generator did not end within {elements} elements "
                f"({time.perf_counter() - started:.1f} s): it looks endless (a 'while True' "
                "generator), so an epoch would never end; pass {param}=N (examples per "
                "epoch)", parameter="num_examples")
    if count == 0:
        raise DataError("the generator yielded nothing; check that it has data")
    return count, time.perf_counter() - started


def signature(element: Any, *, batched: bool) -> Any:
    """The ``output_signature`` of ``from_generator`` for elements like ``element``."""
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


def cast_float64(element: Any) -> Any:
    """float64 arrays as float32 (matching ``signature``)."""
    import numpy as np

    def cast(array: Any) -> Any:
        array = np.asarray(array)
        return array.astype(np.float32) if array.dtype == np.float64 else array

    if isinstance(element, (tuple, list)):
        return tuple(cast(e) if e is not None else None for e in element)
    return cast(element)
