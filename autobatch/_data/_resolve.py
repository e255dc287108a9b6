"""The one place that looks at the type of the user's object: ``resolve_source`` turns what
a user passes into a ``Source``; ``rebuild_source`` turns a worker description back into one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from autobatch._data._arrays import ArraySource
from autobatch._data._folder import FileSource, check_folder
from autobatch._data._generator import GeneratorSource
from autobatch._data._source import Source
from autobatch._data._tfdata import DatasetSource, is_dataset
from autobatch._data._tfrecord import TFRecordSource, looks_like_shards
from autobatch._data._userland import FACTORY_PATTERN, importable_name
from autobatch._errors import DataError, UsageError

_KINDS: dict[str, type[Source]] = {
    cls.kind: cls for cls in (FileSource, ArraySource, GeneratorSource, DatasetSource,
                             TFRecordSource)}


def resolve_source(data: Any, *, num_examples: int | None = None,
                   batched: bool | None = None, max_pixels: int | None = None,
                   parse: Any = None) -> Source:
    """A ``Source`` for what a user passes: an image folder, ``(x, y)`` or ``x`` arrays, a
    ``tf.data.Dataset`` of ``(x, y)`` (or a function returning one, or its
    ``"module:function"``), TFRecord shards (a folder or glob, with ``parse``), a generator
    function, a generator, or a ``keras.utils.PyDataset`` (a ``Source`` is returned as it
    is).

    Args:
        data: the user's data.
        num_examples: examples per epoch of a generator or of a dataset whose length is
            unknown or infinite.
        batched: a generator yields batches (True) or single examples (False); None: detect.
        max_pixels: an image folder's pixel limit (width x height from the header; None:
            the audit's default); a larger image is left out of every epoch.
        parse: for TFRecord shards: a function of one serialized record -> ``(x, y)``.

    Raises:
        DataError: the data cannot be used (the message says what to pass instead).
        UsageError: ``num_examples``/``batched`` given for data that is not a generator, or
            ``max_pixels`` for data that is not an image folder.
    """
    if max_pixels is not None and not isinstance(data, (str, os.PathLike, Source)):
        raise UsageError("{param} applies to image folders only; remove it",
                         parameter="max_pixels")
    if parse is not None:
        if not isinstance(data, (str, os.PathLike)):
            raise UsageError("{param} applies to TFRecord shards (a folder or glob of them) "
                             "only; remove it", parameter="parse")
        if max_pixels is not None:
            raise UsageError("{param} applies to image folders only; remove it",
                             parameter="max_pixels")
        if batched is not None:
            raise UsageError("{param} applies to generators only; remove it",
                             parameter="batched")
        return TFRecordSource.from_shards(data, parse, num_examples=num_examples)
    source = _resolve(data, max_pixels)
    if max_pixels is not None and not isinstance(source, FileSource) and \
            not isinstance(data, Source):
        raise UsageError("{param} applies to image folders only; remove it",
                         parameter="max_pixels")
    if isinstance(source, GeneratorSource):
        return source.with_hints(num_examples, batched)
    if batched is not None:
        raise UsageError("{param} applies to generators only; remove it", parameter="batched")
    if isinstance(source, DatasetSource) and num_examples is not None:
        return source.with_num_examples(num_examples)
    if num_examples is not None:
        raise UsageError("{param} applies to generators and tf.data datasets only; remove it",
                         parameter="num_examples")
    return source


def _resolve(data: Any, max_pixels: int | None = None) -> Source:
    if isinstance(data, Source):
        return data
    if is_dataset(data):
        return DatasetSource(data)
    if isinstance(data, str) and FACTORY_PATTERN.fullmatch(data) and not os.path.exists(data):
        return DatasetSource.from_factory(data)
    if isinstance(data, (str, os.PathLike)):
        path = Path(check_folder(data))
        if looks_like_shards(path):
            raise UsageError(f"{str(path)!r} holds TFRecord shards: pass {{param}}=FUNCTION "
                             "that turns one serialized record into (x, y)", parameter="parse")
        return FileSource.from_directory(path, max_pixels=max_pixels)
    if isinstance(data, tuple) and len(data) == 2 and hasattr(data[0], "shape"):
        return ArraySource(data[0], data[1])
    if hasattr(data, "shape") and hasattr(data, "__len__"):
        return ArraySource(data, None)
    dataset = _dataset_returned_by(data)
    if dataset is not None:
        return DatasetSource(dataset, factory=importable_name(data))
    if callable(data) or hasattr(data, "__next__") or hasattr(data, "__getitem__"):
        # No size hint here: a PyDataset's len() counts batches; the source sizes itself.
        return GeneratorSource(data)
    raise DataError(
        f"cannot use data of type {type(data).__name__}: pass an image folder path, "
        "an (x, y) tuple of arrays, a generator function, or a keras.utils.PyDataset")


def _dataset_returned_by(data: Any) -> Any:
    """The ``tf.data.Dataset`` a plain function without parameters returns, else None.

    Called once to see; a generator function is never called here, nor is any function
    while TensorFlow is not imported (one that builds a dataset has imported it)."""
    import inspect
    import sys

    if (not inspect.isfunction(data) or inspect.isgeneratorfunction(data)
            or "tensorflow" not in sys.modules):
        return None
    try:
        parameters = inspect.signature(data).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
           for p in parameters):
        return None
    result = data()
    return result if is_dataset(result) else None


def rebuild_source(description: dict[str, Any]) -> Source:
    """The source a parent described with ``Source.describe`` (in the probe worker)."""
    kind = description.get("kind")
    cls = _KINDS.get(str(kind))
    if cls is None:
        raise DataError(f"unknown data kind {kind!r} in the worker's data description")
    return cls.rebuild(description)
