"""Arrays in memory (or memory-mapped) as a source: ``x`` of shape (N, ...) and labels ``y``
of length N (class indices or one-hot), or no labels."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from autobatch._data import _tail as tail
from autobatch._data._labels import LabelSpec
from autobatch._data._source import Source
from autobatch._data._tail import BuildRequest
from autobatch._errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import tensorflow as tf


@dataclass(frozen=True)
class ArraySource(Source):
    """Arrays already in memory: ``x`` of shape (N, ...) and labels ``y`` of length N."""

    x: Any
    y: Any

    kind: ClassVar[str] = "arrays"

    def __post_init__(self) -> None:
        if self.y is not None and len(self.x) != len(self.y):
            raise DataError(
                f"x has {len(self.x)} examples but y has {len(self.y)}; they must match")
        if len(self.x) == 0:
            raise DataError("the arrays hold no examples")

    # ---- size and labels
    @property
    def num_examples(self) -> int:
        return len(self.x)

    @property
    def nbytes(self) -> int:
        return int(getattr(self.x, "nbytes", 0)) + int(getattr(self.y, "nbytes", 0) or 0)

    def label_spec(self) -> LabelSpec:
        from autobatch._data._labels import label_spec_of

        return label_spec_of(self.y)

    def label_indices(self) -> np.ndarray | None:
        from autobatch._data._labels import class_indices

        return class_indices(self.y)

    def example_shape(self) -> tuple[int, ...]:
        import numpy as np

        return tuple(int(d) for d in np.shape(self.x)[1:])

    def service_refusal(self) -> str | None:
        return "arrays live in this process's memory, with nothing to offload"

    @property
    def eight_bit(self) -> bool:
        import numpy as np

        return bool(np.asarray(self.x[:1]).dtype == np.uint8)

    # ---- subsets
    def subset(self, indices: Any) -> ArraySource:
        import numpy as np

        if isinstance(indices, range) and indices.step == 1:
            # A contiguous head stays a view (a memory map is not read into memory).
            part = slice(indices.start, indices.stop)
            return ArraySource(self.x[part], None if self.y is None else self.y[part])
        idx = np.asarray(indices, dtype=int)
        return ArraySource(self.x[idx], None if self.y is None else self.y[idx])

    # ---- identity
    def fingerprint(self) -> str:
        import numpy as np

        digest = hashlib.blake2b(digest_size=16)
        for array in (self.x, self.y):
            if array is None:
                continue
            arr = np.asarray(array)
            digest.update(f"{arr.shape}{arr.dtype}".encode())
            flat = arr.reshape(-1)
            # Hash at most ~64 MiB, strided, so huge arrays fingerprint in well under a second.
            step = max(1, flat.nbytes // (64 << 20))
            digest.update(np.ascontiguousarray(flat[::step]).tobytes())
        return digest.hexdigest()

    # ---- the probe worker
    def describe(self, work_dir: Path) -> dict[str, Any]:
        """.npy files, memory-mapped by the worker."""
        import numpy as np

        x_path = work_dir / "x.npy"
        np.save(x_path, np.asarray(self.x))
        description: dict[str, Any] = {"kind": self.kind, "x_path": str(x_path), "y_path": None}
        if self.y is not None:
            y_path = work_dir / "y.npy"
            np.save(y_path, np.asarray(self.y))
            description["y_path"] = str(y_path)
        return description

    @classmethod
    def rebuild(cls, description: dict[str, Any]) -> ArraySource:
        import numpy as np

        x = np.load(description["x_path"], mmap_mode="r")
        y = np.load(description["y_path"], mmap_mode="r") if description.get("y_path") else None
        return cls(x, y)

    # ---- the pipeline
    def _build(self, request: BuildRequest) -> tf.data.Dataset:
        import numpy as np
        import tensorflow as tf

        settings, size, channels = request.settings, request.image_size, request.channels
        x = self.x
        n = self.num_examples
        y = self.y if self.y is not None else np.zeros((n,), dtype=np.int32)
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
                rows = np.asarray(x[np.sort(order)])[np.argsort(np.argsort(order))]
                return rows, np.asarray(y[order]).astype(y_dtype.as_numpy_dtype)

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
                    images = tail.convert_channels(images, int(channels))
                if size is not None and tuple(images.shape[1:3]) != size:
                    images = tf.image.resize(images, size, method="bilinear")
            return tail.to_pixels(images, settings), yb

        kwargs = tail.map_kwargs(settings)
        if settings.cache != "none":
            # Converted examples, in their own order, into the cache (as for image folders).
            ds = tf.data.Dataset.range(n).batch(min(n, 256))
            ds = ds.map(gather, **kwargs).map(convert, **kwargs).unbatch()
            return tail.examples_to_batches(ds, n, request)

        # Shuffle and batch indices, then gather whole batches: no per-example copies in a
        # shuffle buffer, and streamed arrays (memory maps) are read one batch at a time.
        ds = tf.data.Dataset.range(n)
        if request.shuffle:
            ds = ds.shuffle(tail.shuffle_buffer(settings, n), seed=request.seed,
                            reshuffle_each_iteration=True)
        if request.repeat:
            ds = ds.repeat()
        ds = ds.batch(request.batch_size, drop_remainder=False)
        ds = ds.map(gather, **kwargs).map(convert, **kwargs)
        return tail.batches_to_epochs(tail.augment_batched(ds, request), request)
