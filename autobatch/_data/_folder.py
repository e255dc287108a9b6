"""An image folder as a source: the files the audit found usable by content, with integer
labels in Keras' class order (one sub-folder per class), and the options of Keras'
``image_dataset_from_directory`` with their meaning there (``FolderOptions``)."""

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
from autobatch._errors import DataError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import tensorflow as tf

COLOR_MODES = {"grayscale": 1, "rgb": 3, "rgba": 4}
INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5",
                  "gaussian", "mitchellcubic")


@dataclass(frozen=True)
class FolderOptions:
    """How images are read, as ``keras.utils.image_dataset_from_directory`` means it.

    Attributes:
        color_mode: ``"grayscale"``, ``"rgb"`` or ``"rgba"`` (None: the model's channels).
        interpolation: the resize method (``tf.image.resize``'s names).
        crop_to_aspect_ratio: crop the centre to the target's aspect ratio, then resize
            (Keras' ``smart_resize``), instead of stretching.
        pad_to_aspect_ratio: pad to the target's aspect ratio, then resize.
    """

    color_mode: str | None = None
    interpolation: str = "bilinear"
    crop_to_aspect_ratio: bool = False
    pad_to_aspect_ratio: bool = False

    def __post_init__(self) -> None:
        if self.color_mode is not None and self.color_mode not in COLOR_MODES:
            raise UsageError("{param} must be one of " + ", ".join(COLOR_MODES) + ", got "
                             + repr(self.color_mode), parameter="color_mode")
        if self.interpolation not in INTERPOLATIONS:
            raise UsageError("{param} must be one of " + ", ".join(INTERPOLATIONS) + ", got "
                             + repr(self.interpolation), parameter="interpolation")
        if self.crop_to_aspect_ratio and self.pad_to_aspect_ratio:
            raise UsageError("{param} and {p:pad_to_aspect_ratio} exclude each other; choose one",
                             parameter="crop_to_aspect_ratio")

    @property
    def channels(self) -> int | None:
        return COLOR_MODES[self.color_mode] if self.color_mode else None

    def to_dict(self) -> dict[str, Any]:
        return {"color_mode": self.color_mode, "interpolation": self.interpolation,
                "crop_to_aspect_ratio": self.crop_to_aspect_ratio,
                "pad_to_aspect_ratio": self.pad_to_aspect_ratio}


@dataclass(frozen=True)
class FileSource(Source):
    """Image files with integer labels in Keras' class order."""

    paths: tuple[str, ...]
    labels: tuple[int, ...]
    class_names: tuple[str, ...]
    root: str | None = None
    audit: Any = field(default=None, compare=False, repr=False)
    """The ``AuditReport`` this source was built from, when it was."""
    options: FolderOptions = field(default_factory=FolderOptions)

    kind: ClassVar[str] = "directory"
    noun: ClassVar[str] = "images"
    needs_image_size: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if len(self.paths) != len(self.labels):
            raise DataError(f"{len(self.paths)} paths but {len(self.labels)} labels")

    @classmethod
    def from_directory(cls, data_dir: str | os.PathLike[str], *,
                       max_pixels: int | None = None,
                       class_names: list[str] | tuple[str, ...] | None = None,
                       options: FolderOptions | None = None) -> FileSource:
        """Index a folder through the header audit: only files usable by content count.

        ``max_pixels`` is the audit's pixel limit (None: its default): a larger image is
        left out, so that no pipeline built from this source ever decodes it.
        ``class_names`` chooses and orders the classes (Keras' meaning: the sub-folders
        named, labelled in that order; the others left out)."""
        from autobatch._audit import audit

        report = audit(data_dir, max_pixels=max_pixels)
        if not report.usable_files:
            raise DataError(f"no usable images in {data_dir}; run 'autobatch audit {data_dir}'")
        names = tuple(report.class_names)
        pairs = list(report.usable_files)
        if class_names is not None:
            chosen = tuple(class_names)
            unknown = [c for c in chosen if c not in names]
            if unknown or len(set(chosen)) != len(chosen):
                raise UsageError(
                    f"{{param}} must name distinct class sub-folders of {str(data_dir)!r} "
                    f"({', '.join(names) or 'none'}); not found or repeated: "
                    f"{', '.join(unknown) or 'a repeated name'}", parameter="class_names")
            order = {names.index(c): i for i, c in enumerate(chosen)}
            pairs = [(p, order[label]) for p, label in pairs if label in order]
            names = chosen
        paths = tuple(p for p, _ in pairs)
        labels = tuple(label for _, label in pairs)
        return cls(paths, labels, names, str(data_dir), audit=report,
                   options=options or FolderOptions())

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

    def prepared(self, input_shape: tuple[int | None, ...] | None, *,
                 steps_given: bool) -> FileSource:
        if input_shape:
            self._channels(input_shape[-1])
        return self

    def _channels(self, wanted: int | None) -> int:
        """The channels to decode to: ``color_mode``'s, else ``wanted`` (the model's), else
        3; a ``color_mode`` the model cannot take is a ``DataError``."""
        fixed = self.options.channels
        if fixed is not None and wanted is not None and int(wanted) != fixed:
            raise DataError(
                f"color_mode={self.options.color_mode!r} gives {fixed} channel(s) but the model "
                f"takes {wanted}; choose the color_mode of the model's input")
        return fixed or (3 if wanted is None else int(wanted))

    # ---- subsets
    def subset(self, indices: Any) -> FileSource:
        return FileSource(tuple(self.paths[i] for i in indices),
                          tuple(self.labels[i] for i in indices),
                          self.class_names, self.root, audit=self.audit, options=self.options)

    # ---- identity and summaries
    def fingerprint(self) -> str:
        digest = hashlib.blake2b(digest_size=16)
        digest.update("\0".join(self.class_names).encode())
        if self.options != FolderOptions():  # (folders read as Keras' defaults keep their key)
            digest.update(json.dumps(self.options.to_dict(), sort_keys=True).encode())
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
            "class_names": list(self.class_names), "root": self.root,
            "options": self.options.to_dict()}).encode())
        return {"kind": self.kind, "index_path": str(index)}

    @classmethod
    def rebuild(cls, description: dict[str, Any]) -> FileSource:
        index = json.loads(Path(description["index_path"]).read_text())
        return cls(tuple(index["paths"]), tuple(index["labels"]),
                   tuple(index["class_names"]), index.get("root"),
                   options=FolderOptions(**(index.get("options") or {})))

    # ---- the pipeline
    def _build(self, request: BuildRequest) -> tf.data.Dataset:
        import tensorflow as tf

        if self.num_examples == 0:
            raise DataError("the image folder holds no usable images; run 'autobatch audit'")
        size = request.image_size
        assert size is not None  # build_dataset checks needs_image_size
        options = self.options
        channels = self._channels(request.channels)
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
            image = _resize(image, size, options)
            image = tail.to_pixels(image, settings)
            image.set_shape((size[0], size[1], channels))
            return image, label

        if settings.cache != "none" or request.data_service is not None:
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


def _resize(image: tf.Tensor, size: tuple[int, int], options: FolderOptions) -> tf.Tensor:
    """To ``size`` as Keras' loader does it: stretched, centre-cropped to the aspect ratio
    (``smart_resize``), or padded to it."""
    import tensorflow as tf

    if options.crop_to_aspect_ratio:
        from keras.preprocessing.image import smart_resize

        return smart_resize(image, size, interpolation=options.interpolation)
    if options.pad_to_aspect_ratio:
        return tf.image.resize_with_pad(image, size[0], size[1], method=options.interpolation)
    return tf.image.resize(image, size, method=options.interpolation)


def image_folder(
    directory: str | os.PathLike[str],
    *,
    class_names: list[str] | tuple[str, ...] | None = None,
    color_mode: str | None = None,
    interpolation: str = "bilinear",
    crop_to_aspect_ratio: bool = False,
    pad_to_aspect_ratio: bool = False,
    max_pixels: int | None = None,
) -> FileSource:
    """An image folder read as ``keras.utils.image_dataset_from_directory`` reads it, to pass
    as ``data`` to ``tune``, ``fit``, ``dataset`` or ``plan.dataset``.

    The folder is audited first (files usable by content only, as for a plain path); the
    batch size, shuffling, caching and image size are the plan's, and the labels follow the
    loss unless ``label_mode=`` is given to ``fit``.

    Args:
        directory: a folder with one sub-folder per class.
        class_names: the classes to use, in label order (the others are left out); default
            every sub-folder, alphabetically.
        color_mode: ``"grayscale"``, ``"rgb"`` or ``"rgba"``; default the model's channels.
        interpolation: the resize method: ``"bilinear"`` (default), ``"nearest"``,
            ``"bicubic"``, ``"area"``, ``"lanczos3"``, ``"lanczos5"``, ``"gaussian"``,
            ``"mitchellcubic"``.
        crop_to_aspect_ratio: crop the centre to the target aspect ratio before resizing.
        pad_to_aspect_ratio: pad to the target aspect ratio before resizing.
        max_pixels: the audit's pixel limit (see ``autobatch.audit``).

    Raises:
        UsageError: an option outside Keras' values, both aspect-ratio options, or a class
            name that is no sub-folder.
        DataError: the folder is missing or holds no usable image.
    """
    options = FolderOptions(color_mode, interpolation, bool(crop_to_aspect_ratio),
                            bool(pad_to_aspect_ratio))
    path = check_folder(directory)
    return FileSource.from_directory(path, max_pixels=max_pixels, class_names=class_names,
                                     options=options)


def check_folder(directory: str | os.PathLike[str]) -> str:
    """The folder's path; a one-line ``DataError`` when it is missing or not a folder."""
    path = os.fspath(directory)
    if not os.path.exists(path):
        raise DataError(f"data folder {path!r} does not exist; pass an image folder")
    if not os.path.isdir(path):
        raise DataError(f"{path!r} is not a folder; pass a folder of class sub-folders")
    return path
