"""Pre-flight checks: before the first step, the model can take the data (input rank, size
and channels; classes against output units; the loss's label encoding against the labels).
Every failure is a one-line ``DataError`` that says how to fix it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from autobatch._data import LabelSpec, Source
from autobatch._data._labels import label_mode_for
from autobatch._distribute import MWMS_REFUSAL
from autobatch._errors import DataError, ModelError, UsageError
from autobatch._models import model_input_shape
from autobatch._models._losses import loss_label_kind


@dataclass(frozen=True)
class InputSpec:
    """What the pipeline must produce for this model (from the pre-flight checks)."""

    image_size: tuple[int, int] | None
    channels: int | None
    label_kind: str
    """``"index"``, ``"one_hot"`` or ``"unknown"``."""
    num_classes: int | None
    label_mode: str | None = None
    """How class indices are fed (``"categorical"``, ``"binary"``; None: as they are)."""


def preflight(model: Any, source: Source, label_mode: str | None = None) -> InputSpec:
    """Check before the first step that the model can take the data; one-line errors.

    The labels are fed as the loss expects them (``label_mode``, else chosen from the loss:
    class indices become one-hot rows for ``categorical_crossentropy``).

    Raises:
        DataError: the model cannot take the data; the message says how to fix it.
    """
    shape = model_input_shape(model)
    units = _output_units(model)
    loss_kind = loss_label_kind(model)
    if source.needs_image_size:
        size, channels = _check_images(shape)
    else:
        size, channels = _check_arrays(shape, source.example_shape())
    labels = source.label_spec()
    mode = label_mode_for(loss_kind, labels, label_mode)
    fed = labels
    if mode == "categorical":
        fed = dataclasses.replace(labels, kind="one_hot")
    elif mode == "binary":
        fed = dataclasses.replace(labels, kind="binary")
    _check_labels(loss_kind, fed, units)
    return InputSpec(size, channels, labels.kind, labels.num_classes, mode)


def _output_units(model: Any) -> int | None:
    from autobatch._models import model_output_units

    try:
        return model_output_units(model)
    except (AttributeError, ValueError) as exc:
        if isinstance(exc, ModelError) and "outputs" in str(exc):
            raise
        return None


def _check_images(shape: Any) -> tuple[tuple[int, int], int]:
    if shape is None:
        raise DataError(
            "the model does not declare its input shape; build it first "
            "(model.build((None, H, W, C)) or an Input layer) so images can be resized to it"
        )
    if len(shape) != 3:
        raise DataError(
            f"the model takes inputs of shape {_fmt(shape)}, not images (height, width, "
            "channels); give it an image input such as keras.Input((H, W, 3))"
        )
    height, width, channels = shape
    if channels not in (1, 3, 4):
        raise DataError(
            f"the model takes {channels}-channel inputs; images convert to 1, 3 or 4 channels "
            "only: build the model with an input of 1 (gray), 3 (RGB) or 4 (RGBA) channels"
        )
    if height is None or width is None:
        raise DataError(
            f"the model takes any image size {_fmt(shape)}; build it with a fixed size "
            "(keras.Input((H, W, C))) so autobatch knows what to resize to"
        )
    return (int(height), int(width)), int(channels)


def _check_arrays(shape: Any, x_example: tuple[int, ...] | None) -> tuple[None, None]:
    if shape is None or x_example is None:
        return None, None
    example = tuple(x_example)
    # (H, W) examples feed a (H, W, 1) model: the pipeline adds the channel axis.
    if len(example) == 2 and len(shape) == 3 and shape[2] == 1:
        example = (*example, 1)
    matches = len(example) == len(shape) and all(
        want is None or want == have for want, have in zip(shape, example, strict=False))
    if not matches:
        raise DataError(
            f"the model takes examples of shape {_fmt(shape)} but the data has {_fmt(example)}; "
            "resize/reshape the data or build the model for that shape"
        )
    return None, None


def _check_labels(loss_kind: str, labels: LabelSpec, units: int | None) -> None:
    label_kind, num_classes = labels.kind, labels.num_classes
    if loss_kind == "one_hot" and label_kind == "index":
        raise DataError(
            "the loss expects one-hot labels (categorical_crossentropy) but the data gives class "
            "indices; compile with loss='sparse_categorical_crossentropy', or leave label_mode "
            "unset (or 'categorical') so that they are fed one-hot"
        )
    if loss_kind == "index" and label_kind == "one_hot":
        raise DataError(
            "the loss expects class indices (sparse_categorical_crossentropy) but the labels are "
            "one-hot; compile with loss='categorical_crossentropy' or pass y.argmax(axis=1)"
        )
    if units is None or num_classes is None or loss_kind == "unknown":
        return
    if loss_kind == "binary" or label_kind == "binary":
        if units == 1 and num_classes <= 2:
            return
        if units == num_classes and label_kind == "one_hot":
            return
    if (labels.exact and units != num_classes) or (not labels.exact and num_classes > units):
        raise DataError(
            f"the data has {num_classes} {labels.what} but the model outputs {units} units; "
            f"build the model's last layer with {num_classes} units"
        )


def _fmt(shape: Any) -> str:
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ")"


def check_strategy(model: Any) -> int:
    """The replicas a model built under a ``tf.distribute`` strategy trains on (1 without
    one); a one-line ``UsageError`` for what Keras 3 ``fit`` cannot do under a strategy.

    * ``MultiWorkerMirroredStrategy``: ``model.fit`` is broken since TF 2.16
      (keras-team/keras#20585).
    * Gradient accumulation (``gradient_accumulation_steps``) under any strategy raises inside
      ``fit`` (keras-team/keras#20582).
    """
    import tensorflow as tf

    strategy = getattr(model, "distribute_strategy", None)
    if strategy is None or type(strategy).__name__.startswith("_Default"):
        return 1  # no strategy: TensorFlow's default one
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        raise UsageError(MWMS_REFUSAL)
    replicas = int(getattr(strategy, "num_replicas_in_sync", 1) or 1)
    optimizer = getattr(model, "optimizer", None)
    steps = getattr(optimizer, "gradient_accumulation_steps", None)
    if steps:
        raise UsageError(
            f"gradient accumulation (gradient_accumulation_steps={steps}) under "
            f"{type(strategy).__name__} raises inside Keras' fit (keras-team/keras#20582): "
            "drop it (a larger batch does the same), or train without a strategy")
    return replicas
