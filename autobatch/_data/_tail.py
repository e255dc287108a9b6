"""The tail every pipeline shares, written once: cache, shuffle, batch, prefetch, the
``tf.data.Options``, the disk-cache lock, and the image helpers (size, pixels, channels).

Each source builds its examples (``Source._build``) and hands them here, so probes and
``fit`` run the same code for every kind. TensorFlow is imported inside the functions only.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autobatch._data._service import distribute
from autobatch._errors import DataError
from autobatch._settings import AUTOTUNE, PipelineSettings

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildRequest:
    """How to build a pipeline: the arguments of ``Source.build_dataset``, checked once."""

    batch_size: int
    settings: PipelineSettings
    image_size: tuple[int, int] | None
    channels: int | None
    shuffle: bool
    seed: int | None
    cache_dir: str | os.PathLike[str] | None
    repeat: bool
    repeat_epochs: bool
    label_mode: str | None = None
    """``"categorical"`` or ``"binary"``: class indices converted (``_labels.LABEL_MODES``)."""
    num_classes: int | None = None
    augment: Any = None
    """A function of one image or a Keras layer (``_augment``), applied after the cache."""
    data_service: str | None = None
    """``grpc://HOST:PORT``: the examples are made on that tf.data service (``_service``)."""


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
            raise DataError("{param} must be N or (height, width), got " + repr(image_size),
                            parameter="image_size")
        size = (values[0], values[1])
    if min(size) < 1:
        raise DataError("{param} must be positive, got " + repr(image_size), parameter="image_size")
    return size


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
    doubles from 10 ms, and every ``model.fit`` call deletes its iterator (measurements:
    docs/tune.md, "Measurements behind the constants").
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = bool(settings.uses_autotune)
    return options


def convert_channels(images: tf.Tensor, channels: int) -> tf.Tensor:
    """Convert a batch (N, H, W, C) to ``channels``: gray <-> RGB, RGBA -> RGB (drop alpha)."""
    import tensorflow as tf

    check_channels(channels)
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


def check_channels(channels: int) -> None:
    if channels not in (1, 3, 4):
        raise DataError(f"channels must be 1, 3 or 4, got {channels}")


def shuffle_buffer(settings: PipelineSettings, n: int) -> int:
    return n if settings.shuffle_buffer <= 0 else min(n, settings.shuffle_buffer)


def cache(ds: tf.data.Dataset, settings: PipelineSettings,
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


def prefetch(ds: tf.data.Dataset, settings: PipelineSettings) -> tf.data.Dataset:
    """``prefetch`` batches ahead (0: none; AUTOTUNE only for the untuned default)."""
    import tensorflow as tf

    if settings.prefetch == 0:
        return ds
    return ds.prefetch(tf.data.AUTOTUNE if settings.prefetch == AUTOTUNE else settings.prefetch)


def map_kwargs(settings: PipelineSettings) -> dict[str, object]:
    """The parallelism and order of a ``Dataset.map`` the pipeline adds."""
    return {"num_parallel_calls": settings.num_parallel_calls,
            "deterministic": settings.deterministic}


def examples_to_batches(ds: tf.data.Dataset, n: int, request: BuildRequest) -> tf.data.Dataset:
    """Examples in their own order -> cache -> shuffle -> batches, for folders and arrays.

    The shuffle comes after the cache (a cache after it would replay the first epoch's
    order in every later one). After the cache the buffer holds decoded pixels: a memory
    cache shares them (a full shuffle is free), a disk cache reads fresh copies (bounded).
    """
    settings = request.settings
    if request.data_service is not None:
        ds = distribute(ds, request.data_service)  # made there; cached and shuffled here
    ds = cache(ds, settings, request.cache_dir)
    if request.shuffle:
        buffer = shuffle_buffer(settings, n) if settings.cache == "memory" else min(
            n, settings.shuffle_buffer or 1024)
        ds = ds.shuffle(buffer, seed=request.seed, reshuffle_each_iteration=True)
    if request.repeat:
        ds = ds.repeat()
    return batches_to_epochs(batch_examples(ds, request), request)


def batch_examples(ds: tf.data.Dataset, request: BuildRequest) -> tf.data.Dataset:
    """Examples (after any cache) -> augmented -> batches of ``request.batch_size``, the last
    partial batch kept; a Keras-layer augmentation goes over each batch."""
    ds = augment_examples(ds, request)
    return augment_batches(ds.batch(request.batch_size, drop_remainder=False), request)


def augment_examples(ds: tf.data.Dataset, request: BuildRequest) -> tf.data.Dataset:
    """Examples through ``request.augment`` when it is a function (a parallel map; a
    ``seed`` parameter gets a per-example seed, new each epoch, from the pipeline's seed)."""
    import tensorflow as tf

    from autobatch._data._augment import is_layer, takes_seed

    augment, settings = request.augment, request.settings
    if augment is None or is_layer(augment):
        return ds
    before = ds.element_spec[0]
    if takes_seed(augment):
        seeds = tf.data.Dataset.random(seed=request.seed, rerandomize_each_iteration=True)
        paired = tf.data.Dataset.zip((ds, seeds.batch(2, drop_remainder=True)))

        def seeded(xy: Any, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return to_pixels(augment(xy[0], seed=seed), settings), xy[1]

        out = paired.map(seeded, **map_kwargs(settings))
    else:
        def plain(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return to_pixels(augment(x), settings), y

        out = ds.map(plain, **map_kwargs(settings))
    _check_shape(before.shape, out.element_spec[0].shape)
    return out


def augment_batches(ds: tf.data.Dataset, request: BuildRequest) -> tf.data.Dataset:
    """Batches through ``request.augment`` when it is a Keras layer (``training=True``), in
    order, so that the layer's own seed generator repeats a seeded run."""
    from autobatch._data._augment import is_layer

    augment, settings = request.augment, request.settings
    if augment is None or not is_layer(augment):
        return ds
    before = ds.element_spec[0]

    def apply(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return to_pixels(augment(x, training=True), settings), y

    out = ds.map(apply)
    _check_shape(before.shape[1:], out.element_spec[0].shape[1:])
    return out


def augment_batched(ds: tf.data.Dataset, request: BuildRequest) -> tf.data.Dataset:
    """``augment`` for a pipeline that makes whole batches itself (arrays gathered batch by
    batch): a function goes over the examples of each batch, a layer over the batch."""
    from autobatch._data._augment import is_layer

    if request.augment is None:
        return ds
    if is_layer(request.augment):
        return augment_batches(ds, request)
    return batch_examples(ds.unbatch(), request)


def _check_shape(before: Any, after: Any) -> None:
    if before.rank is not None and after.as_list() != before.as_list():
        raise DataError(
            f"the augmentation changes the image shape from {before.as_list()} to "
            f"{after.as_list()}; it must keep it (crop, then resize back to the input size)")


def batches_to_epochs(ds: tf.data.Dataset, request: BuildRequest) -> tf.data.Dataset:
    """Batches of one epoch -> endless whole epochs (``repeat_epochs``) -> prefetch.

    Call after every parallel map: with ``deterministic=False`` such a map may reorder
    batches, which must stay inside their own epoch.
    """
    ds = convert_labels(ds, request)
    if request.repeat_epochs and not request.repeat:
        ds = ds.repeat()
    return prefetch(ds, request.settings)


def convert_labels(ds: tf.data.Dataset, request: BuildRequest) -> tf.data.Dataset:
    """Batches of class indices as ``request.label_mode`` asks: one-hot float32 rows over
    ``num_classes`` ("categorical"), or float32 0/1 of shape (batch, 1) ("binary")."""
    import tensorflow as tf

    mode, depth = request.label_mode, request.num_classes
    if mode not in ("categorical", "binary"):
        return ds
    if mode == "categorical" and not depth:
        raise DataError("label_mode='categorical' needs the number of classes")

    def convert(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        indices = tf.reshape(tf.cast(y, tf.int32), [-1])
        if mode == "categorical":
            return x, tf.one_hot(indices, int(depth or 0), dtype=tf.float32)
        return x, tf.cast(indices, tf.float32)[:, tf.newaxis]

    return ds.map(convert)
