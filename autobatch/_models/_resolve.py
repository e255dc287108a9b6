"""A model SPEC resolved to a compiled ``keras.Model``: a live model, a built-in name, a
model-building function or a ``.keras`` file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autobatch._errors import ModelError
from autobatch._models._builtins import BUILTIN_MODELS, build_builtin, compile_default
from autobatch._models._files import check_keras_file, check_model_file
from autobatch._models._functions import build_model_from_function, model_function_spec
from autobatch._models._userland import first_line, import_custom_objects

if TYPE_CHECKING:  # pragma: no cover
    import keras


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
        spec: a ``keras.Model`` (compiled if it is not yet), a path to a ``.keras`` file, a
            built-in name: ``small_cnn``, ``mobilenet_v2``, ``resnet50``,
            ``efficientnet_b0`` (``weights=None``, sized to the classes and image size), or
            a model-building function (``"module:function"`` or a module-level callable;
            see ``model_function_spec``).
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
        ModelError: unknown name, missing or unloadable file, a failing model function.
    """
    check_model_file(spec)  # a file that is no model: one line, before TensorFlow starts
    import keras

    if isinstance(spec, keras.Model):
        if not spec.compiled:
            compile_default(spec, jit_compile)
        return spec
    function = model_function_spec(spec)
    if function is not None:
        return build_model_from_function(function, jit_compile=jit_compile)
    if not isinstance(spec, (str, os.PathLike)):
        raise ModelError(
            f"cannot use a model of type {type(spec).__name__}: pass a keras.Model, a path to "
            f"a .keras file, a model-building function, or one of {', '.join(BUILTIN_MODELS)}"
        )
    text = os.fspath(spec)
    if text in BUILTIN_MODELS:
        return build_builtin(text, num_classes=num_classes, image_size=image_size,
                             channels=channels, jit_compile=jit_compile)
    return load_model_file(text, custom_objects_module=custom_objects_module,
                           jit_compile=jit_compile)


def load_model_file(path: str | os.PathLike[str], *, custom_objects_module: str | None = None,
                    jit_compile: bool | str = False,
                    custom_objects: dict[str, Any] | None = None) -> keras.Model:
    """Load a ``.keras`` file (compiled as saved, or compiled here when it was not).

    ``custom_objects`` (name -> class or function, as ``import_custom_objects_for_worker``
    returns them) add to those of ``custom_objects_module``.
    """
    check_keras_file(path)  # one line for a file that is no .keras model, before Keras
    import keras

    file = Path(path)
    custom_objects = {**(custom_objects or {}),
                      **(import_custom_objects(custom_objects_module) or {})} or None
    try:
        model = keras.models.load_model(file, custom_objects=custom_objects, compile=True)
    except Exception as exc:
        raise ModelError(f"cannot load {str(path)!r}: {first_line(exc)}{_hint(exc)}") from exc
    if not model.compiled:
        compile_default(model, jit_compile)
    return model


def _hint(exc: BaseException) -> str:
    text = str(exc)
    if "get_config" in text or "NotImplementedError" in type(exc).__name__:
        return "; implement get_config() on the subclassed model/layer"
    if "Could not locate" in text or "Unknown" in text:
        return ("; register the class with @keras.saving.register_keras_serializable() in an "
                "importable module and pass custom_objects_module")
    return ""
