"""The probe's questions about its data, answered by the ``Source`` (``autobatch._data``):
no type tests here. No TensorFlow at import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autobatch._data import Source, rebuild_source, resolve_source
from autobatch._errors import ModelError

# ---------------------------------------------------------------- parent side


def probe_source(data: Any) -> Source:
    """The source a runner probes, from anything ``resolve_source`` takes."""
    return resolve_source(data)


def num_classes(source: Source) -> int | None:
    """The classes the source's labels span; None if unknown."""
    return source.num_classes


def image_size_from_data(source: Source) -> tuple[int, int] | None:
    """Image size of a model that declares no input shape yet: the images' own size when
    they all share it; None for data that are not resized images.

    Raises:
        ModelError: the images differ in size.
    """
    if not source.needs_image_size:
        return None
    size = source.image_size_hint()
    if size is not None:
        return size
    raise ModelError(
        "the model declares no input shape yet (a subclassed model not built) and the "
        "images differ in size; pass {param}=N or build the model first: "
        "model.build((None, H, W, C))", parameter="image_size")


def write_data_description(source: Source, work_dir: Path) -> dict[str, Any]:
    """Write what the worker needs to rebuild ``source`` (``Source.describe``)."""
    return source.describe(work_dir)


# ---------------------------------------------------------------- worker side


def load_source(data: dict[str, Any]) -> Source:
    """Rebuild the data source the parent described."""
    return rebuild_source(data)


def probe_subset(source: Source, count: int) -> Source | None:
    """The first ``count`` examples of ``source`` (a cached probe's subset), or None when
    the source cannot be cut (a generator)."""
    if count <= 0 or not source.can_subset:
        return None
    return source.head(count)
