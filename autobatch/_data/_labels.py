"""Labels: their encoding (class indices or one-hot), the classes they span, and the
stratified validation split. The one place that reads these from label arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from autobatch._errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

LabelKind = Literal["index", "one_hot", "binary", "unknown"]


@dataclass(frozen=True)
class LabelSpec:
    """The labels as the loss will see them.

    Attributes:
        kind: ``"index"`` (class indices, sparse), ``"one_hot"`` or ``"unknown"``.
        num_classes: classes the labels span, when known.
        exact: ``num_classes`` is the class count itself (a folder's classes, one-hot
            columns), not a lower bound read from the largest label seen.
        what: how a message names the classes ("classes", "label columns", ...).
    """

    kind: LabelKind
    num_classes: int | None
    exact: bool = False
    what: str = "classes"


LABEL_MODES = ("int", "categorical", "binary")
"""Keras' ``label_mode`` meanings: class indices (int32), one-hot rows (float32), or 0/1 of
shape (batch, 1) (float32, two classes)."""


def label_mode_for(loss_kind: str, labels: LabelSpec, requested: str | None = None) -> str | None:
    """The labels to feed: ``requested`` (checked), else chosen from the loss, as Keras users
    pick ``label_mode`` for their loss; None: the labels as the data gives them.

    A one-hot loss (``categorical_crossentropy``) on class indices gets ``"categorical"``; a
    binary loss on two classes of indices gets ``"binary"``."""
    if requested is not None:
        if requested not in LABEL_MODES:
            raise UsageError("{param} must be one of " + ", ".join(LABEL_MODES) + f", got "
                             f"{requested!r}", parameter="label_mode")
        if requested == "binary" and labels.num_classes is not None and labels.num_classes > 2:
            raise UsageError(f"{{param}}='binary' needs two classes; the data has "
                             f"{labels.num_classes} {labels.what}", parameter="label_mode")
        return None if requested == "int" or labels.kind != "index" else requested
    if labels.kind != "index":
        return None
    if loss_kind == "one_hot":
        return "categorical"
    if loss_kind == "binary" and (labels.num_classes or 0) <= 2:
        return "binary"
    return None


DEFAULT_SPLIT_SEED = 1337
"""Split seed when ``seed`` is None: the split stays the same run after run."""


def label_kind(y: Any) -> LabelKind:
    """``"one_hot"`` for (N, C>1) labels, ``"index"`` for whole numbers of shape (N,) or
    (N, 1), else ``"unknown"``."""
    import numpy as np

    if y is None:
        return "unknown"
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] > 1:
        return "one_hot"
    if arr.ndim <= 1 or (arr.ndim == 2 and arr.shape[1] == 1):
        return "index" if np.issubdtype(arr.dtype, np.integer) or _whole(arr) else "unknown"
    return "unknown"


def _whole(arr: Any) -> bool:
    import numpy as np

    return bool(arr.size) and np.issubdtype(arr.dtype, np.floating) and bool(
        np.all(np.mod(arr, 1) == 0))


def label_spec_of(y: Any) -> LabelSpec:
    """The ``LabelSpec`` of label array ``y`` (None: no labels)."""
    import numpy as np

    kind = label_kind(y)
    if kind == "one_hot":
        return LabelSpec("one_hot", int(np.asarray(y).shape[1]), exact=True,
                         what="label columns")
    if kind == "index" and np.asarray(y).size:
        return LabelSpec("index", int(np.asarray(y).max()) + 1, exact=False,
                         what="classes (largest label + 1)")
    return LabelSpec(kind, None)


def class_indices(y: Any) -> np.ndarray | None:
    """One class index per example (one-hot rows by their largest column), or None."""
    import numpy as np

    if y is None:
        return None
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] > 1:
        return np.asarray(arr.argmax(axis=1))
    arr = arr.reshape(len(arr), -1)[:, 0] if arr.ndim > 1 else arr
    return arr if np.issubdtype(arr.dtype, np.integer) else None


def stratified_split(labels: np.ndarray | None, n: int, fraction: float,
                     seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices of ``n`` examples: ``round(n * fraction)`` held
    out, every class keeping its share (largest remainder) when ``labels`` are given.

    Raises:
        UsageError: the fraction is out of range or leaves a part empty.
    """
    import numpy as np

    check_fraction(fraction)
    n_val = int(round(n * float(fraction)))
    if n_val < 1 or n_val >= n:
        raise UsageError(
            "{param}=" + f"{fraction} of {n} examples leaves "
            f"{'no validation' if n_val < 1 else 'no training'} examples; choose another fraction",
            parameter="validation_split")
    rng = np.random.default_rng(DEFAULT_SPLIT_SEED if seed is None else seed)
    val_idx = _stratified_pick(labels, n, n_val, rng)
    mask = np.zeros(n, dtype=bool)
    mask[val_idx] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def check_fraction(fraction: float) -> None:
    """A validation fraction strictly between 0 and 1 (UsageError otherwise)."""
    if not 0.0 < float(fraction) < 1.0:
        raise UsageError("{param} must be between 0 and 1, got " + str(fraction),
                         parameter="validation_split")


def _stratified_pick(labels: np.ndarray | None, n: int, n_val: int, rng: Any) -> np.ndarray:
    import numpy as np

    if labels is None:
        return np.asarray(rng.permutation(n)[:n_val])
    classes, counts = np.unique(labels, return_counts=True)
    share = counts * (n_val / n)
    take = np.floor(share).astype(int)
    # Largest remainder: the per-class picks add up to exactly n_val.
    for i in np.argsort(-(share - take), kind="stable")[: n_val - int(take.sum())]:
        take[i] += 1
    picked = []
    for cls, k in zip(classes, take, strict=False):
        members = np.flatnonzero(labels == cls)
        picked.append(rng.permutation(members)[:k])
    return np.concatenate(picked) if picked else np.zeros(0, dtype=int)
