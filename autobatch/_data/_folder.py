"""An image folder as a source: the files the audit found usable by content, with integer
labels in Keras' class order (one sub-folder per class)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from autobatch._atomic import atomic_write_bytes
from autobatch._data import _tail as tail
from autobatch._data._labels import LabelSpec
from autobatch._data._source import Source
from autobatch._data._tail import BuildRequest
from autobatch._errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import tensorflow as tf


@dataclass(frozen=True)
class FileSource(Source):
    """Image files with integer labels in Keras' class order."""

    paths: tuple[str, ...]
    labels: tuple[int, ...]
    class_names: tuple[str, ...]
    root: str | None = None
    audit: Any = field(default=None, compare=False, repr=False)
    """The ``AuditReport`` this source was built from, when it was."""

    kind: ClassVar[str] = "directory"
    noun: ClassVar[str] = "images"
    needs_image_size: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if len(self.paths) != len(self.labels):
            raise DataError(f"{len(self.paths)} paths but {len(self.labels)} labels")

    @classmethod
    def from_directory(cls, data_dir: str | os.PathLike[str], *,
                       max_pixels: int | None = None) -> FileSource:
        """Index a folder through the header audit: only files usable by content count.

        ``max_pixels`` is the audit's pixel limit (None: its default): a larger image is
        left out, so that no pipeline built from this source ever decodes it."""
        from autobatch._audit import audit

        report = audit(data_dir, max_pixels=max_pixels)
        if not report.usable_files:
            raise DataError(f"no usable images in {data_dir}; run 'autobatch audit {data_dir}'")
        paths = tuple(p for p, _ in report.usable_files)
        labels = tuple(label for _, label in report.usable_files)
        return cls(paths, labels, tuple(report.class_names), str(data_dir), audit=report)

    # ---- size and labels
    @property
    def num_examples(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def label_spec(self) -> LabelSpec:
        return LabelSpec("index", len(self.class_names), exact=True)

    def label_indices(self) -> np.ndarray:
        import numpy as np

        return np.asarray(self.labels)

    @property
    def eight_bit(self) -> bool:
        return True  # every format the audit accepts decodes to 8-bit levels

    def image_size_hint(self) -> tuple[int, int] | None:
        sizes = getattr(self.audit, "image_sizes", None) or {}
        width, height = sizes.get("width") or {}, sizes.get("height") or {}
        if width and height and width.get("min") == width.get("max") and \
                height.get("min") == height.get("max"):
            return int(height["min"]), int(width["min"])
        return None

    def check_learnable(self) -> None:
        """A labelled folder whose usable images all sit in one class (or a folder with a
        single usable image) trains to a loss of 0 at once, and a tune on it measures batch
        sizes no real training will use. Unlabelled folders (no class folders) with two or
        more images pass: their labels are the user's business."""
        where = f"{self.root!r}" if self.root else "the image folder"
        if self.num_examples < 2:
            raise DataError(
                f"{where} holds 1 usable image: there is nothing to tune or learn on; add "
                "images (at least two classes, one sub-folder each); 'autobatch audit' lists "
                "what is skipped")
        if self.class_names:
            used = sorted(set(self.labels))
            if len(used) < 2:
                name = self.class_names[used[0]] if used else "?"
                raise DataError(
                    f"{where} has usable images in one class only ({name!r}): a classifier "
                    "learns nothing from one class; add a sub-folder of images per class "
                    "(two or more)")

    # ---- subsets
    def subset(self, indices: Any) -> FileSource:
        return FileSource(tuple(self.paths[i] for i in indices),
                          tuple(self.labels[i] for i in indices),
                          self.class_names, self.root, audit=self.audit)

    # ---- identity and summaries
    def fingerprint(self) -> str:
        digest = hashlib.blake2b(digest_size=16)
        digest.update("\0".join(self.class_names).encode())
        for path, label in zip(self.paths, self.labels, strict=True):
            try:
                st = os.stat(path)
                stamp = f"{st.st_size}:{st.st_mtime_ns}"
            except OSError:
                stamp = "missing"
            digest.update(f"{path}\0{label}\0{stamp}\n".encode("utf-8", "surrogateescape"))
        return digest.hexdigest()

    def unavailable(self) -> list[str]:
        """The files that no longer read as the audit found them (deleted, unreadable, or no
        longer a usable image by their header), in this source's order: what to name when
        training fails on a file that changed after indexing."""
        from concurrent.futures import ThreadPoolExecutor

        from autobatch._audit import inspect_file

        def changed(path: str) -> bool:
            return inspect_file(path).problem is not None

        with ThreadPoolExecutor(max_workers=min(32, 4 * (os.cpu_count() or 1))) as pool:
            flags = list(pool.map(changed, self.paths, chunksize=256))
        return [path for path, flag in zip(self.paths, flags, strict=True) if flag]

    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.root, "class_names": list(self.class_names)}

    def audit_summary(self) -> dict[str, Any] | None:
        report = self.audit
        for name in ("summary", "to_dict"):
            fn = getattr(report, name, None)
            if callable(fn):
                try:
                    value = fn()
                except Exception:  # the audit summary is informative only
                    return None
                return value if isinstance(value, dict) else None
        return None

    # ---- the probe worker
    def describe(self, work_dir: Path) -> dict[str, Any]:
        index = work_dir / "data_index.json"
        atomic_write_bytes(index, json.dumps({
            "paths": list(self.paths), "labels": list(self.labels),
            "class_names": list(self.class_names), "root": self.root}).encode())
        return {"kind": self.kind, "index_path": str(index)}

    @classmethod
    def rebuild(cls, description: dict[str, Any]) -> FileSource:
        index = json.loads(Path(description["index_path"]).read_text())
        return cls(tuple(index["paths"]), tuple(index["labels"]),
                   tuple(index["class_names"]), index.get("root"))

    # ---- the pipeline
    def _build(self, request: BuildRequest) -> tf.data.Dataset:
        import tensorflow as tf

        if self.num_examples == 0:
            raise DataError("the image folder holds no usable images; run 'autobatch audit'")
        size = request.image_size
        assert size is not None  # build_dataset checks needs_image_size
        channels = 3 if request.channels is None else int(request.channels)
        tail.check_channels(channels)
        settings = request.settings
        n = self.num_examples
        # Paths as bytes: a non-UTF-8 file name (surrogate-escaped in Python) still reaches TF.
        ds = tf.data.Dataset.from_tensor_slices(
            (tf.constant([os.fsencode(p) for p in self.paths]),
             tf.constant(list(self.labels), dtype=tf.int32)))
        # TF's BMP decoder refuses channels=1: decode to RGB, then convert.
        decode_channels = 3 if channels == 1 else channels

        def load(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            raw = tf.io.read_file(path)
            # Decode by content, not by extension: a PNG named .jpg still decodes.
            image = tf.io.decode_image(raw, channels=decode_channels, expand_animations=False)
            if channels == 1:
                image = tf.image.rgb_to_grayscale(image)
            image = tf.image.resize(image, size, method="bilinear")
            image = tail.to_pixels(image, settings)
            image.set_shape((size[0], size[1], channels))
            return image, label

        if settings.cache != "none":
            return tail.examples_to_batches(ds.map(load, **tail.map_kwargs(settings)), n,
                                             request)
        # Shuffle file names, not pixels: a full shuffle costs a few bytes per example.
        if request.shuffle:
            ds = ds.shuffle(tail.shuffle_buffer(settings, n), seed=request.seed,
                            reshuffle_each_iteration=True)
        if request.repeat:
            ds = ds.repeat()
        ds = ds.map(load, **tail.map_kwargs(settings))
        return tail.batches_to_epochs(tail.batch_examples(ds, request), request)
