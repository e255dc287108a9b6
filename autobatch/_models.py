"""Model SPECs: a ``.keras`` file or a built-in name, resolved to a compiled Keras model;
saving a model for the probe worker with errors that name the cause.

TensorFlow/Keras are imported inside the functions only.
"""

from __future__ import annotations

import logging
import os
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autobatch._errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    import keras

logger = logging.getLogger(__name__)

BUILTIN_MODELS: tuple[str, ...] = ("small_cnn", "mobilenet_v2", "resnet50", "efficientnet_b0")


def is_builtin(spec: Any) -> bool:
    return isinstance(spec, str) and spec in BUILTIN_MODELS


def resolve_model(
    spec: Any,
    *,
    num_classes: int,
    image_size: int | tuple[int, int] | None,
    channels: int = 3,
    custom_objects_module: str | None = None,
    jit_compile: bool | str = False,
) -> keras.Model:
    """Resolve a model SPEC to a compiled ``keras.Model``.

    Args:
        spec: a ``keras.Model`` (compiled if it is not yet), a path to a ``.keras`` file, or
            a built-in name: ``small_cnn``, ``mobilenet_v2``, ``resnet50``,
            ``efficientnet_b0`` (``weights=None``, sized to the classes and image size).
        num_classes: output units of a built-in.
        image_size: ``N`` or ``(height, width)`` of a built-in's input.
        channels: input channels of a built-in.
        custom_objects_module: importable module that registers the custom layers of a
            ``.keras`` file (imported before loading; its ``custom_objects`` dict is used
            when it has one).
        jit_compile: passed to ``compile`` for built-ins and uncompiled models.

    Returns:
        The compiled model (Adam, sparse categorical crossentropy for built-ins).

    Raises:
        ModelError: unknown name, missing or unloadable file.
    """
    import keras

    if isinstance(spec, keras.Model):
        if not spec.compiled:
            _compile(spec, jit_compile)
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        raise ModelError(
            f"cannot use a model of type {type(spec).__name__}: pass a keras.Model, a path to "
            f"a .keras file, or one of {', '.join(BUILTIN_MODELS)}"
        )
    text = os.fspath(spec)
    if text in BUILTIN_MODELS:
        from autobatch._pipeline import normalize_image_size

        size = normalize_image_size(image_size)
        if size is None:
            raise ModelError(f"built-in model {text!r} needs an image size; pass --image-size N")
        if num_classes < 1:
            raise ModelError(f"num_classes must be >= 1 for {text!r}, got {num_classes}")
        model = _BUILDERS[text](num_classes, size, int(channels))
        _compile(model, jit_compile)
        return model
    return load_model_file(text, custom_objects_module=custom_objects_module,
                           jit_compile=jit_compile)


def load_model_file(path: str | os.PathLike[str], *, custom_objects_module: str | None = None,
                    jit_compile: bool | str = False) -> keras.Model:
    """Load a ``.keras`` file (compiled as saved, or compiled here when it was not)."""
    import keras

    file = Path(path)
    if file.suffix != ".keras":
        raise ModelError(
            f"model SPEC {str(path)!r} is neither a .keras file nor a built-in; use one of "
            f"{', '.join(BUILTIN_MODELS)} or a path ending in .keras"
        )
    if not file.is_file():
        raise ModelError(f"model file {str(path)!r} does not exist; check the path")
    custom_objects = import_custom_objects(custom_objects_module)
    try:
        model = keras.models.load_model(file, custom_objects=custom_objects, compile=True)
    except Exception as exc:
        raise ModelError(f"cannot load {str(path)!r}: {_first_line(exc)}{_hint(exc)}") from exc
    if not model.compiled:
        _compile(model, jit_compile)
    return model


def import_custom_objects(module_name: str | None) -> dict[str, Any] | None:
    """Import the module that registers custom objects; return its ``custom_objects``."""
    if not module_name:
        return None
    try:
        module = import_module(module_name)
    except ImportError as exc:
        raise ModelError(
            f"cannot import custom objects module {module_name!r}: {_first_line(exc)}; make it "
            "importable (on PYTHONPATH)"
        ) from exc
    objects = getattr(module, "custom_objects", None)
    if callable(objects):
        objects = objects()
    return dict(objects) if isinstance(objects, dict) else None


def model_input_shape(model: keras.Model) -> tuple[int | None, ...]:
    """The per-example input shape, batch axis dropped: ``(height, width, channels)``."""
    shape = model.input_shape
    if isinstance(shape, list):
        if len(shape) != 1:
            raise ModelError(
                f"the model takes {len(shape)} inputs; autobatch tunes one image input")
        shape = shape[0]
    if isinstance(shape, dict):
        raise ModelError("the model takes a dict of inputs; autobatch tunes one image input")
    return tuple(shape[1:])


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


def save_for_worker(model: keras.Model, path: str | os.PathLike[str],
                    custom_objects_module: str | None = None) -> Path:
    """Save ``model`` as a ``.keras`` file the probe worker can load.

    Checks first what would make the worker fail to load it, so the error names the cause
    here rather than as a crash in the child.

    Raises:
        ModelError: the model cannot be serialised (a Lambda layer, a subclassed model or
            layer without ``get_config``, an unregistered custom class, ...).
    """
    import keras

    target = Path(path)
    if target.suffix != ".keras":
        target = target.with_suffix(".keras")
    if not model.compiled:
        raise ModelError("the model is not compiled; call model.compile(...) before tuning")
    custom_objects = import_custom_objects(custom_objects_module)
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.Lambda):
            raise ModelError(
                f"layer {layer.name!r} is a Lambda layer, which a .keras file cannot load safely; "
                "replace it with a custom layer registered with "
                "@keras.saving.register_keras_serializable() in an importable module and pass "
                "custom_objects_module"
            )
    try:
        config = keras.saving.serialize_keras_object(model)
        # A round trip through the config catches a missing get_config or an unregistered
        # class now (cheap: no weights), instead of a crash in the worker.
        with keras.saving.custom_object_scope(custom_objects or {}):
            keras.saving.deserialize_keras_object(config)
    except Exception as exc:
        raise ModelError(
            f"model {model.name!r} cannot be serialised: {_first_line(exc)}{_hint(exc)}"
        ) from exc
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, target)
    except Exception as exc:
        raise ModelError(f"model {model.name!r} cannot be saved: {_first_line(exc)}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


# ---------------------------------------------------------------- built-ins


def _compile(model: keras.Model, jit_compile: bool | str) -> None:
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )


def _small_cnn(num_classes: int, size: tuple[int, int], channels: int) -> keras.Model:
    import keras
    from keras import layers

    inputs = keras.Input((size[0], size[1], channels))
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(8, 3, activation="relu", padding="same")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(16, 3, activation="relu", padding="same")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(32, 3, activation="relu", padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def _application(name: str, num_classes: int, size: tuple[int, int], channels: int) -> keras.Model:
    import keras
    from keras import layers

    shape = (size[0], size[1], channels)
    inputs = keras.Input(shape)
    if name == "mobilenet_v2":
        # MobileNetV2 expects pixels in [-1, 1].
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
        base = keras.applications.MobileNetV2(input_shape=shape, weights=None,
                                              classes=num_classes, include_top=True)
    elif name == "resnet50":
        # ResNet50 expects mean-centred pixels ("caffe" mode); the BGR swap does not matter
        # for weights=None.
        x = layers.Rescaling(1.0, offset=-117.0)(inputs)
        base = keras.applications.ResNet50(input_shape=shape, weights=None,
                                           classes=num_classes, include_top=True)
    elif name == "efficientnet_b0":
        # EfficientNet rescales inside the model: it takes 0..255 as is.
        x = inputs
        base = keras.applications.EfficientNetB0(input_shape=shape, weights=None,
                                                 classes=num_classes, include_top=True)
    else:  # pragma: no cover
        raise ModelError(f"unknown built-in model {name!r}")
    outputs = base(x)
    return keras.Model(inputs, outputs, name=name)


_BUILDERS: dict[str, Any] = {
    "small_cnn": _small_cnn,
    "mobilenet_v2": lambda n, s, c: _application("mobilenet_v2", n, s, c),
    "resnet50": lambda n, s, c: _application("resnet50", n, s, c),
    "efficientnet_b0": lambda n, s, c: _application("efficientnet_b0", n, s, c),
}


def _all_layers(model: Any) -> list[Any]:
    found = []
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        found.append(layer)
        stack.extend(getattr(layer, "layers", []) or [])
    return found


def _first_line(exc: BaseException) -> str:
    # Keras wraps its messages over several lines; the cause is often on the second.
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _hint(exc: BaseException) -> str:
    text = str(exc)
    if "get_config" in text or "NotImplementedError" in type(exc).__name__:
        return "; implement get_config() on the subclassed model/layer"
    if "Could not locate" in text or "Unknown" in text:
        return ("; register the class with @keras.saving.register_keras_serializable() in an "
                "importable module and pass custom_objects_module")
    return ""
