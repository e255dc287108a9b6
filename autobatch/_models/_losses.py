"""What labels a compiled model's loss expects: class indices, one-hot rows or binary
0/1 (read from the loss's name; a custom loss is not second-guessed). Used by the pre-flight
checks and by the probe worker, so that both feed the labels the same way."""

from __future__ import annotations

from typing import Any

_SPARSE_LOSSES = ("sparse_categorical_crossentropy", "sparsecategoricalcrossentropy",
                  "sparse_categorical_focal", "sparse")
_ONE_HOT_LOSSES = ("categorical_crossentropy", "categoricalcrossentropy",
                   "categorical_focal_crossentropy", "categoricalfocalcrossentropy",
                   "categorical_hinge", "categoricalhinge")
_BINARY_LOSSES = ("binary_crossentropy", "binarycrossentropy", "binary_focal_crossentropy",
                  "binaryfocalcrossentropy")


def loss_label_kind(model: Any) -> str:
    """What labels the compiled loss expects: ``"index"``, ``"one_hot"``, ``"binary"``,
    or ``"unknown"`` (custom losses are not second-guessed)."""
    loss = getattr(model, "loss", None)
    if isinstance(loss, (list, tuple)) and len(loss) == 1:
        loss = loss[0]
    if isinstance(loss, dict) and len(loss) == 1:
        loss = next(iter(loss.values()))
    if isinstance(loss, str):
        name = loss
    else:
        name = getattr(loss, "name", None) or getattr(loss, "__name__", None) or type(loss).__name__
        fn = getattr(loss, "fn", None)  # LossFunctionWrapper
        if fn is not None and getattr(fn, "__name__", None):
            name = fn.__name__
    name = str(name).lower()
    if name in _SPARSE_LOSSES or name.startswith("sparse_categorical"):
        return "index"
    if name in _ONE_HOT_LOSSES:
        return "one_hot"
    if name in _BINARY_LOSSES:
        return "binary"
    return "unknown"
