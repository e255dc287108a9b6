"""Data-source descriptors: what a pipeline is built from. No TensorFlow here.

Three kinds, as a Keras user has them: an image folder (``FileSource``, built from the audit
so that files are chosen by content), arrays in memory (``ArraySource``), and a Python
generator or ``keras.utils.PyDataset`` (``GeneratorSource``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autobatch._errors import DataError


@dataclass(frozen=True)
class FileSource:
    """Image files with integer labels in Keras' class order."""

    paths: tuple[str, ...]
    labels: tuple[int, ...]
    class_names: tuple[str, ...]
    root: str | None = None
    audit: Any = field(default=None, compare=False, repr=False)
    """The ``AuditReport`` this source was built from, when it was."""

    kind = "directory"

    def __post_init__(self) -> None:
        if len(self.paths) != len(self.labels):
            raise DataError(f"{len(self.paths)} paths but {len(self.labels)} labels")

    @property
    def num_examples(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def from_directory(cls, data_dir: str | os.PathLike[str]) -> FileSource:
        """Index a folder through the header audit: only files usable by content count."""
        from autobatch._audit import audit

        report = audit(data_dir)
        if not report.usable_files:
            raise DataError(f"no usable images in {data_dir}; run 'autobatch audit {data_dir}'")
        paths = tuple(p for p, _ in report.usable_files)
        labels = tuple(label for _, label in report.usable_files)
        return cls(paths, labels, tuple(report.class_names), str(data_dir), audit=report)

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


@dataclass(frozen=True)
class ArraySource:
    """Arrays already in memory: ``x`` of shape (N, ...) and labels ``y`` of length N."""

    x: Any
    y: Any

    kind = "arrays"

    def __post_init__(self) -> None:
        if self.y is not None and len(self.x) != len(self.y):
            raise DataError(
                f"x has {len(self.x)} examples but y has {len(self.y)}; they must match")
        if len(self.x) == 0:
            raise DataError("the arrays hold no examples")

    @property
    def num_examples(self) -> int:
        return len(self.x)

    @property
    def nbytes(self) -> int:
        return int(getattr(self.x, "nbytes", 0)) + int(getattr(self.y, "nbytes", 0) or 0)

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


@dataclass(frozen=True)
class GeneratorSource:
    """A Python generator (a callable returning a fresh iterator per epoch, or a one-shot
    iterator) or a ``keras.utils.PyDataset``.

    ``num_examples`` is how many examples one epoch yields, when known.
    """

    generator: Any
    num_examples_hint: int | None = None
    batched: bool | None = None
    """True when each element is already a batch (as ``PyDataset`` yields); None: detect."""

    kind = "generator"

    @property
    def num_examples(self) -> int | None:
        return self.num_examples_hint

    def fingerprint(self) -> str:
        name = getattr(self.generator, "__qualname__", type(self.generator).__qualname__)
        module = getattr(self.generator, "__module__", "")
        return hashlib.blake2b(
            f"{module}.{name}:{self.num_examples_hint}".encode(), digest_size=16
        ).hexdigest()


DataSource = FileSource | ArraySource | GeneratorSource


def check_learnable(source: Any) -> None:
    """Refuse an image folder that gives a classifier nothing to learn, before any work.

    A labelled folder whose usable images all sit in one class (or a folder with a single
    usable image) trains to a loss of 0 at once, and a tune on it measures batch sizes no
    real training will use (one image caps the batch at 1). That is a mistake in the data,
    so it is an error (one line, with the fix), not a warning after minutes of tuning.
    Unlabeled folders (no class folders) with two or more images pass: their labels are
    the user's business. Arrays and generators are not checked.

    Raises:
        DataError: the folder has one usable image, or usable images in one class only.
    """
    if not isinstance(source, FileSource):
        return
    where = f"{source.root!r}" if source.root else "the image folder"
    if source.num_examples < 2:
        raise DataError(
            f"{where} holds 1 usable image: there is nothing to tune or learn on; add images "
            "(at least two classes, one sub-folder each); 'autobatch audit' lists what is skipped"
        )
    if source.class_names:
        used = sorted(set(source.labels))
        if len(used) < 2:
            name = source.class_names[used[0]] if used else "?"
            raise DataError(
                f"{where} has usable images in one class only ({name!r}): a classifier learns "
                "nothing from one class; add a sub-folder of images per class (two or more)"
            )


def resolve_source(data: Any) -> DataSource:
    """Turn what a user passes (a folder, ``(x, y)``, a generator, a PyDataset) into a source."""
    if isinstance(data, (FileSource, ArraySource, GeneratorSource)):
        return data
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if not path.exists():
            raise DataError(f"data folder {str(path)!r} does not exist; pass an image folder")
        if not path.is_dir():
            raise DataError(f"{str(path)!r} is not a folder; pass a folder of class sub-folders")
        return FileSource.from_directory(path)
    if isinstance(data, tuple) and len(data) == 2 and hasattr(data[0], "shape"):
        return ArraySource(data[0], data[1])
    if hasattr(data, "shape") and hasattr(data, "__len__"):
        return ArraySource(data, None)
    if callable(data) or hasattr(data, "__next__") or hasattr(data, "__getitem__"):
        # No size hint here: a PyDataset's len() counts batches, and the generator module
        # sizes every kind of generator when it builds the pipeline.
        return GeneratorSource(data)
    raise DataError(
        f"cannot use data of type {type(data).__name__}: pass an image folder path, "
        "an (x, y) tuple of arrays, a generator function, or a keras.utils.PyDataset"
    )
