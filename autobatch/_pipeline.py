"""The one tf.data pipeline builder: probes measure exactly what ``fit`` will run.

Every ``PipelineSettings`` field maps to one concrete tf.data knob (see ``build_dataset``).
TensorFlow is imported inside the functions only.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from autobatch._errors import DataError
from autobatch._settings import PipelineSettings
from autobatch._sources import ArraySource, FileSource, GeneratorSource, resolve_source

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

logger = logging.getLogger(__name__)


def normalize_image_size(
    image_size: int | tuple[int, int] | list[int] | None,
) -> tuple[int, int] | None:
    """``96`` -> ``(96, 96)``; ``(h, w)`` stays; None stays None."""
    if image_size is None:
        return None
    if isinstance(image_size, int):
        size = (image_size, image_size)
    else:
        values = tuple(int(v) for v in image_size)
        if len(values) != 2:
            raise DataError(f"image_size must be N or (height, width), got {image_size!r}")
        size = (values[0], values[1])
    if min(size) < 1:
        raise DataError(f"image_size must be positive, got {image_size!r}")
    return size


def build_dataset(
    source: Any,
    *,
    batch_size: int,
    settings: PipelineSettings,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    shuffle: bool = True,
    seed: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    repeat: bool = False,
    repeat_epochs: bool = False,
) -> tf.data.Dataset:
    """Build the batched ``tf.data.Dataset`` of ``(images, labels)`` for ``source``.

    Images are float32 in 0..255 (as Keras' own loaders give them), or uint8 with
    ``settings.pixels == "uint8"`` (resized images rounded to whole levels; the model's input
    layer casts them); labels are integers in Keras' class order. The last partial batch is
    kept (the batch dimension stays None), so one pass over the dataset is one epoch that
    sees every example exactly once; with ``shuffle`` the order changes every epoch (seeded
    by ``seed``).

    Settings map to tf.data as follows: ``num_parallel_calls`` -> ``map``; ``prefetch`` ->
    ``prefetch`` (0: none); ``cache`` -> ``cache()`` in memory or in a file under
    ``cache_dir``; ``private_threadpool_size``, ``max_intra_op_parallelism`` and
    ``deterministic`` -> ``tf.data.Options``; ``shuffle_buffer`` (0 = full shuffle);
    ``arrays_in_memory`` -> one constant tensor vs batches gathered from the array;
    ``pixels`` -> the images' dtype from the decode (or the array) on.

    Args:
        source: a ``FileSource``, ``ArraySource``, ``GeneratorSource`` or anything
            ``resolve_source`` takes.
        batch_size: examples per batch.
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
            epoch's first batches (a full shuffle buffer must fill before its first batch)
            while the last ones train; a dataset one epoch long is restarted by Keras after
            each epoch with the model waiting. Image folders and arrays only.

    Returns:
        The dataset.

    Raises:
        DataError: the source cannot be built as asked.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    source = resolve_source(source)
    if settings.pixels == "uint8" and not has_8bit_pixels(source):
        raise DataError(
            "pixels='uint8' needs 8-bit images (an image folder or uint8 arrays); "
            "use pixels='float32' for this data")
    size = normalize_image_size(image_size)
    if isinstance(source, FileSource):
        ds = _file_dataset(source, batch_size, settings, size, channels, shuffle, seed,
                           cache_dir, repeat, repeat_epochs)
    elif isinstance(source, ArraySource):
        ds = _array_dataset(source, batch_size, settings, size, channels, shuffle, seed,
                            cache_dir, repeat, repeat_epochs)
    elif isinstance(source, GeneratorSource):
        from autobatch._generators import build_generator_dataset

        ds = build_generator_dataset(source, batch_size=batch_size, settings=settings, seed=seed)
        if repeat:
            ds = ds.repeat()
        return ds
    else:  # pragma: no cover - resolve_source only returns the three kinds
        raise DataError(f"unknown data source {type(source).__name__}")
    return ds.with_options(dataset_options(settings))


def has_8bit_pixels(source: Any) -> bool:
    """Whether ``source``'s images are whole levels 0..255 (folders decode to uint8; arrays
    count when their dtype is uint8), so that ``pixels="uint8"`` loses nothing but the
    resize's fractions."""
    source = resolve_source(source)
    if isinstance(source, FileSource):
        return True
    if isinstance(source, ArraySource):
        import numpy as np

        return np.asarray(source.x[:1]).dtype == np.uint8
    return False


def to_pixels(images: tf.Tensor, settings: PipelineSettings) -> tf.Tensor:
    """Images (any dtype, 0..255) in the dtype ``settings.pixels`` names: uint8 rounds to the
    nearest level (what PIL and torchvision deliver after a resize)."""
    import tensorflow as tf

    if settings.pixels == "uint8":
        if images.dtype == tf.uint8:
            return images
        return tf.saturate_cast(tf.round(images), tf.uint8)
    return tf.cast(images, tf.float32)


def dataset_options(settings: PipelineSettings) -> tf.data.Options:
    """The ``tf.data.Options`` for ``settings``."""
    options = autotune_options(settings)
    options.deterministic = bool(settings.deterministic)
    options.threading.private_threadpool_size = int(settings.private_threadpool_size)
    options.threading.max_intra_op_parallelism = int(settings.max_intra_op_parallelism)
    return options


def autotune_options(settings: PipelineSettings) -> tf.data.Options:
    """Options with tf.data's autotuner on only where a setting is AUTOTUNE.

    Concrete settings leave the autotuner nothing to choose, and its background thread has a
    cost: an iterator being destroyed waits for the thread's next wake-up, whose period
    doubles from 10 ms (wake-ups at 10, 30, 70, ... 2550, 5110 ms). Every ``model.fit``
    call deletes its iterator: a fit of a small CNN that trained for 1.4 s returned after
    exactly 2.55 s in 3 of 8 calls (1.05-1.16 s passed after ``on_train_end``), 0 of 8
    with the autotuner off; MobileNetV2 epochs measured that way stuck at 40.98 s (the
    wake-up at 40.95 s) in 16 of 30 samples.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = bool(settings.uses_autotune)
    return options


# ---------------------------------------------------------------- image folders


def _file_dataset(
    source: FileSource,
    batch_size: int,
    settings: PipelineSettings,
    size: tuple[int, int] | None,
    channels: int | None,
    shuffle: bool,
    seed: int | None,
    cache_dir: str | os.PathLike[str] | None,
    repeat: bool,
    repeat_epochs: bool = False,
) -> tf.data.Dataset:
    import tensorflow as tf

    if size is None:
        raise DataError("image_size is needed to batch an image folder; pass image_size=N")
    if source.num_examples == 0:
        raise DataError("the image folder holds no usable images; run 'autobatch audit'")
    channels = 3 if channels is None else int(channels)
    _check_channels(channels)
    n = source.num_examples
    # Paths as bytes: a non-UTF-8 file name (surrogate-escaped in Python) still reaches TF.
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant([os.fsencode(p) for p in source.paths]),
         tf.constant(list(source.labels), dtype=tf.int32))
    )
    # TF's BMP decoder refuses channels=1: decode to RGB, then convert.
    decode_channels = 3 if channels == 1 else channels

    def load(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        raw = tf.io.read_file(path)
        # Decode by content, not by extension: a PNG named .jpg still decodes.
        image = tf.io.decode_image(raw, channels=decode_channels, expand_animations=False)
        if channels == 1:
            image = tf.image.rgb_to_grayscale(image)
        image = tf.image.resize(image, size, method="bilinear")
        image = to_pixels(image, settings)
        image.set_shape((size[0], size[1], channels))
        return image, label

    map_kwargs = {"num_parallel_calls": settings.num_parallel_calls,
                  "deterministic": settings.deterministic}
    if settings.cache == "none":
        # Shuffle file names, not pixels: a full shuffle costs a few bytes per example.
        if shuffle:
            ds = ds.shuffle(_buffer(settings, n), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        ds = ds.map(load, **map_kwargs)
    else:
        ds = ds.map(load, **map_kwargs)
        return _cached_examples_to_batches(ds, n, batch_size, settings, shuffle, seed,
                                           cache_dir, repeat, repeat_epochs)
    ds = ds.batch(batch_size, drop_remainder=False)
    if repeat_epochs and not repeat:
        ds = ds.repeat()
    return _prefetch(ds, settings)


def _cached_examples_to_batches(
    ds: tf.data.Dataset,
    n: int,
    batch_size: int,
    settings: PipelineSettings,
    shuffle: bool,
    seed: int | None,
    cache_dir: str | os.PathLike[str] | None,
    repeat: bool,
    repeat_epochs: bool,
) -> tf.data.Dataset:
    """Examples in their own order -> cache -> shuffle -> batches, for folders and arrays.

    The shuffle comes after the cache (a cache after it would replay the first epoch's
    order in every later one). After the cache the buffer holds decoded pixels: a memory
    cache shares them (a full shuffle is free), a disk cache reads fresh copies (bounded).
    """
    ds = _cache(ds, settings, cache_dir)
    if shuffle:
        buffer = _buffer(settings, n) if settings.cache == "memory" else min(
            n, settings.shuffle_buffer or 1024)
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=False)
    if repeat_epochs and not repeat:
        ds = ds.repeat()
    return _prefetch(ds, settings)


# ---------------------------------------------------------------- arrays


def _array_dataset(
    source: ArraySource,
    batch_size: int,
    settings: PipelineSettings,
    size: tuple[int, int] | None,
    channels: int | None,
    shuffle: bool,
    seed: int | None,
    cache_dir: str | os.PathLike[str] | None,
    repeat: bool,
    repeat_epochs: bool = False,
) -> tf.data.Dataset:
    import numpy as np
    import tensorflow as tf

    x = source.x
    n = source.num_examples
    y = source.y if source.y is not None else np.zeros((n,), dtype=np.int32)
    y_dtype = tf.int32 if np.issubdtype(np.asarray(y[:1]).dtype, np.integer) else tf.float32
    x_dtype = tf.as_dtype(np.asarray(x[:1]).dtype)

    if settings.arrays_in_memory:
        x_const = tf.constant(np.asarray(x))
        y_const = tf.constant(np.asarray(y), dtype=y_dtype)

        def gather(idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return tf.gather(x_const, idx), tf.gather(y_const, idx)
    else:
        x_shape = tuple(x.shape[1:])
        y_shape = tuple(np.shape(y)[1:])

        def take(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            order = np.asarray(idx)
            return np.asarray(x[np.sort(order)])[np.argsort(np.argsort(order))], np.asarray(
                y[order]).astype(y_dtype.as_numpy_dtype)

        def gather(idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            xb, yb = tf.numpy_function(take, [idx], (x_dtype, y_dtype), stateful=False)
            xb.set_shape((None, *x_shape))
            yb.set_shape((None, *y_shape))
            return xb, yb

    def convert(xb: tf.Tensor, yb: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # uint8 arrays stay uint8 through the channel conversion (no float copy of a batch).
        images = xb if settings.pixels == "uint8" else tf.cast(xb, tf.float32)
        if images.shape.rank == 3:  # (N, H, W): grayscale without a channel axis
            images = images[..., tf.newaxis]
        if images.shape.rank == 4:
            if channels is not None:
                images = convert_channels(images, int(channels))
            if size is not None and tuple(images.shape[1:3]) != size:
                images = tf.image.resize(images, size, method="bilinear")
        return to_pixels(images, settings), yb

    map_kwargs = {"num_parallel_calls": settings.num_parallel_calls,
                  "deterministic": settings.deterministic}
    if settings.cache != "none":
        # Converted examples, in their own order, into the cache (as for image folders).
        ds = tf.data.Dataset.range(n).batch(min(n, 256))
        ds = ds.map(gather, **map_kwargs).map(convert, **map_kwargs).unbatch()
        return _cached_examples_to_batches(ds, n, batch_size, settings, shuffle, seed,
                                           cache_dir, repeat, repeat_epochs)

    # Shuffle and batch indices, then gather whole batches: no per-example copies in a
    # shuffle buffer, and streamed arrays (memory maps) are read one batch at a time.
    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(_buffer(settings, n), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=False)
    ds = ds.map(gather, **map_kwargs)
    ds = ds.map(convert, **map_kwargs)
    if repeat_epochs and not repeat:
        # After the parallel maps: with deterministic=False they may reorder batches, which
        # must stay inside their own epoch.
        ds = ds.repeat()
    return _prefetch(ds, settings)


def convert_channels(images: tf.Tensor, channels: int) -> tf.Tensor:
    """Convert a batch (N, H, W, C) to ``channels``: gray <-> RGB, RGBA -> RGB (drop alpha)."""
    import tensorflow as tf

    _check_channels(channels)
    have = images.shape[-1]
    if have is None or have == channels:
        return images
    if have == 2:  # gray + alpha
        images, have = images[..., :1], 1
    if have == 4 and channels in (1, 3):
        images, have = images[..., :3], 3
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return tf.image.grayscale_to_rgb(images)
    if have == 3 and channels == 1:
        return tf.image.rgb_to_grayscale(images)
    if have in (1, 3) and channels == 4:
        rgb = tf.image.grayscale_to_rgb(images) if have == 1 else images
        alpha = tf.fill(tf.shape(rgb[..., :1]), tf.constant(255, dtype=rgb.dtype))
        return tf.concat([rgb, alpha], axis=-1)
    raise DataError(f"cannot convert images with {have} channels to {channels}")


# ---------------------------------------------------------------- shared pieces


def _check_channels(channels: int) -> None:
    if channels not in (1, 3, 4):
        raise DataError(f"channels must be 1, 3 or 4, got {channels}")


def _buffer(settings: PipelineSettings, n: int) -> int:
    return n if settings.shuffle_buffer <= 0 else min(n, settings.shuffle_buffer)


def _cache(ds: tf.data.Dataset, settings: PipelineSettings,
           cache_dir: str | os.PathLike[str] | None) -> tf.data.Dataset:
    if settings.cache == "memory":
        return ds.cache()
    if settings.cache == "disk":
        folder = os.fspath(cache_dir) if cache_dir is not None else _private_cache_folder()
        os.makedirs(folder, exist_ok=True)
        return ds.cache(_disk_cache_prefix(folder))
    return ds


_FILLING: dict[str, int] = {}
"""Disk-cache folders this process may fill, by path: the open file that holds the lock."""
_CACHE_PREFIX = "tfdata"


_PRIVATE_FOLDERS: list[str] = []
"""Disk-cache folders of this process's own, removed when it exits."""


def _private_cache_folder() -> str:
    """A temporary folder for a disk cache of this process's own, removed when it exits."""
    import atexit
    import tempfile

    folder = tempfile.mkdtemp(prefix="autobatch-cache-")
    if not _PRIVATE_FOLDERS:
        atexit.register(remove_private_cache_folders)
    _PRIVATE_FOLDERS.append(folder)
    return folder


def remove_private_cache_folders() -> None:
    """Remove the private disk-cache folders (at exit; a test session calls it earlier)."""
    import shutil

    while _PRIVATE_FOLDERS:
        shutil.rmtree(_PRIVATE_FOLDERS.pop(), ignore_errors=True)


def _disk_cache_prefix(folder: str) -> str:
    """The file prefix of the disk cache in ``folder``, cleared of a dead fill's leftovers.

    While tf.data fills a file cache it holds ``<prefix>_<shard>.lockfile`` and removes it
    when its iterator is destroyed; a process killed mid-fill (SIGKILL, a crash, the OOM
    killer) leaves it behind, and every later iterator on that cache fails with
    AlreadyExistsError (tensorflow#28798). A finished cache (``<prefix>.index``) is only read,
    by any number of processes. Otherwise this process takes an advisory lock on the folder
    for its lifetime: with the lock, what other fills left there is dead and is removed; where
    another live process holds it (filling the same cache now), this one caches in a private
    temporary folder instead of failing."""
    folder = os.path.realpath(folder)
    prefix = os.path.join(folder, _CACHE_PREFIX)
    if os.path.exists(f"{prefix}.index") or folder in _FILLING:
        return prefix
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no advisory locks, TF's own check
        return prefix
    handle = os.open(os.path.join(folder, ".autobatch-fill.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(handle)
        private = _private_cache_folder()
        logger.warning("another process is filling the disk cache in %s; this one caches in "
                       "%s instead", folder, private)
        return os.path.join(private, _CACHE_PREFIX)
    _FILLING[folder] = handle
    import glob

    leftovers = glob.glob(f"{glob.escape(prefix)}_*")
    if leftovers:
        logger.info("removing %d file(s) of an unfinished disk cache in %s (its filling "
                    "process ended without cleaning up)", len(leftovers), folder)
    for leftover in leftovers:
        os.remove(leftover)
    return prefix


def _prefetch(ds: tf.data.Dataset, settings: PipelineSettings) -> tf.data.Dataset:
    if settings.prefetch == 0:
        return ds
    return ds.prefetch(settings.prefetch)
