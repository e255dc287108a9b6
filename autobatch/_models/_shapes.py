"""What a model takes and gives: its per-example input shape, its output units, and
whether it computes the same on uint8 images as on float32 ones."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from autobatch._errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    import keras

logger = logging.getLogger(__name__)


def model_input_shape(model: Any) -> tuple[int | None, ...] | None:
    """The per-example input shape, batch axis dropped: ``(height, width, channels)``.

    The one helper every caller uses (tune, fit, the probe worker). A functional or
    sequential model declares it; a subclassed model has no ``input_shape`` and gives the
    shape it was built with (``model.build((None, H, W, C))`` or a first call). None where the
    model declares none yet (a subclassed model not built: the data decide).

    Raises:
        ModelError: the model takes several inputs or a dict of inputs.
    """
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        shape = _built_input_shape(model)
        if shape is None:
            return None
    if isinstance(shape, list):
        if len(shape) != 1:
            raise ModelError(
                f"the model takes {len(shape)} inputs; autobatch tunes one image input")
        shape = shape[0]
    if isinstance(shape, dict):
        raise ModelError("the model takes a dict of inputs; autobatch tunes one image input")
    if not isinstance(shape, (tuple, list)) or len(shape) < 2:
        return None
    return tuple(None if d is None else int(d) for d in shape[1:])


def _built_input_shape(model: Any) -> Any:
    """The input shape a subclassed model was built with (Keras keeps it by argument name)."""
    built = getattr(model, "_build_shapes_dict", None) or {}
    if len(built) != 1:
        return None
    shape = next(iter(built.values()))
    return tuple(shape) if isinstance(shape, (tuple, list)) else shape


def model_accepts_uint8(model: Any, image_size: Any, channels: Any) -> bool:
    """Whether ``model`` gives the same output for uint8 images as for float32 ones.

    Keras' functional and sequential models cast inputs to their ``Input``'s dtype, and
    Keras layers cast what they are given; a model whose first operation is raw TensorFlow
    arithmetic may refuse uint8 or compute something else (integer overflow). Two random
    images in inference mode tell, so ``pixels="uint8"`` is used only where it changes
    nothing but the bytes moved. False when the input size is unknown or a call fails.
    """
    import numpy as np

    if not image_size or not channels:
        return False
    shape = (2, int(image_size[0]), int(image_size[1]), int(channels))
    pixels = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    try:
        import tensorflow as tf

        as_float = model(tf.constant(pixels.astype(np.float32)), training=False)
        as_uint8 = model(tf.constant(pixels), training=False)
        return bool(np.allclose(np.asarray(as_float, dtype=np.float64),
                                np.asarray(as_uint8, dtype=np.float64),
                                rtol=1e-4, atol=1e-5, equal_nan=True))
    except Exception as exc:  # noqa: BLE001 - any refusal means "no"
        logger.info("the model does not take uint8 images (%s): pixels stay float32",
                    type(exc).__name__)
        return False


def model_output_units(model: keras.Model) -> int:
    """Units of the last output axis (the number of classes of a classifier)."""
    shape = model.output_shape
    if isinstance(shape, list):
        if len(shape) != 1:
            raise ModelError(f"the model has {len(shape)} outputs; autobatch tunes one output")
        shape = shape[0]
    units = shape[-1]
    if units is None:
        raise ModelError("the model's output has no fixed size on its last axis")
    return int(units)
