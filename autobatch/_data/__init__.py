"""Data sources: the ``Source`` base and one module per input kind.

    _source.py     the ``Source`` base (what the rest asks of an input), ``LabelSpec``,
                   ``EpochShape``, ``BuildRequest``
    _folder.py     ``FileSource``: an image folder, as the audit found it
    _arrays.py     ``ArraySource``: arrays in memory or memory-mapped
    _generator.py  ``GeneratorSource``: a generator function, a generator, a PyDataset
    _tfdata.py     ``DatasetSource``: the user's own ``tf.data.Dataset`` of ``(x, y)``
    _tfrecord.py   ``TFRecordSource``: TFRecord shards and the user's parse function
    _graphs.py     a dataset's graph: serialized for the worker, keyed, searched for randomness
    _userland.py   the user's functions by ``module:qualname`` (for the worker)
    _augment.py    augmentation after the cache: a function of one image or Keras layers
    _stream.py     reading a generator: peeked once, epochs restarted or continued, counted
    _labels.py     label encodings, class counts, the stratified split
    _tail.py       the tail every pipeline shares: cache, shuffle, batch, prefetch, options
    _resolve.py    ``resolve_source``: the one dispatch on the type of the user's object

No TensorFlow at import: the pipeline builders import it inside.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autobatch._data._arrays import ArraySource
from autobatch._data._folder import FileSource, FolderOptions, image_folder
from autobatch._data._generator import GeneratorSource
from autobatch._data._labels import LabelSpec
from autobatch._data._resolve import rebuild_source, resolve_source
from autobatch._data._source import EpochShape, Source
from autobatch._data._tail import normalize_image_size, remove_private_cache_folders
from autobatch._data._tfdata import DatasetSource

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

__all__ = [
    "ArraySource",
    "DatasetSource",
    "EpochShape",
    "FileSource",
    "FolderOptions",
    "GeneratorSource",
    "LabelSpec",
    "Source",
    "build_dataset",
    "check_learnable",
    "has_8bit_pixels",
    "image_folder",
    "normalize_image_size",
    "rebuild_source",
    "remove_private_cache_folders",
    "resolve_source",
]


def build_dataset(source: Any, **options: Any) -> tf.data.Dataset:
    """The batched ``tf.data.Dataset`` of ``(images, labels)`` for ``source``: the one builder
    that probes and ``fit`` both run.

    Images are float32 in 0..255 (as Keras' own loaders give them), or uint8 with
    ``settings.pixels == "uint8"`` (resized images rounded to whole levels; the model's input
    layer casts them); labels are integers in Keras' class order (or the arrays' own). The
    last partial batch is kept (the batch dimension stays None), so one pass over the dataset
    is one epoch that sees every example exactly once; with ``shuffle`` the order changes
    every epoch (seeded by ``seed``).

    Settings map to tf.data as follows: ``num_parallel_calls`` -> ``map``; ``prefetch`` ->
    ``prefetch`` (0: none); ``cache`` -> ``cache()`` in memory or in a file under
    ``cache_dir``; ``private_threadpool_size``, ``max_intra_op_parallelism`` and
    ``deterministic`` -> ``tf.data.Options``; ``shuffle_buffer`` (0 = full shuffle);
    ``arrays_in_memory`` -> one constant tensor vs batches gathered from the array;
    ``pixels`` -> the images' dtype from the decode (or the array) on.

    Args:
        source: a ``Source`` or anything ``resolve_source`` takes.
        **options: the keyword arguments of ``Source.build_dataset``:
        batch_size: examples per batch (a batched generator keeps its own).
        settings: the pipeline settings.
        image_size: ``N`` or ``(height, width)`` to resize to (bilinear, like Keras);
            required for image folders, optional for arrays.
        channels: channels the model takes (1, 3 or 4); images are converted to it.
        shuffle: reshuffle every epoch.
        seed: shuffle seed.
        cache_dir: folder for ``cache="disk"`` (a temp folder when None).
        repeat: repeat forever so that every batch is full even when ``batch_size`` exceeds
            the data (probes use this to measure full batches; ``fit`` does not).
        repeat_epochs: repeat whole epochs forever (each pass still ends with its partial
            batch, so ``steps_per_epoch = ceil(N / batch_size)`` steps are exactly one
            epoch). One iterator then serves every epoch, and the prefetch prepares the next
            epoch's first batches while the last ones train.
        label_mode: ``"int"``, ``"categorical"`` (one-hot float32 rows) or ``"binary"``
            (float32 0/1 of shape (batch, 1)) for class-index labels, as Keras' loaders
            mean it; None: the labels as the data gives them.
        augment: a function of one image (``augment(image)`` or ``augment(image, seed)``)
            or a Keras layer, applied after the cache: new pixels every epoch, the cache
            un-augmented (see ``_augment``).

        data_service: ``grpc://HOST:PORT`` of a tf.data service dispatcher: the examples
            are made on its workers (``distributed_epoch``), then cached, shuffled and
            batched here (``_service``).

    Raises:
        DataError: the source cannot be built as asked.
    """
    return resolve_source(source).build_dataset(**options)


def has_8bit_pixels(source: Any) -> bool:
    """Whether ``source``'s images are whole levels 0..255 (``Source.eight_bit``)."""
    return resolve_source(source).eight_bit


def check_learnable(source: Any) -> None:
    """Refuse data a classifier learns nothing from (``Source.check_learnable``)."""
    resolve_source(source).check_learnable()
