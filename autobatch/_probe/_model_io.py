"""How the model travels to the probe worker: the parent describes it (a built-in's name, a
model-building function, a ``.keras`` file it saves) and the worker builds or loads it."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autobatch._errors import ModelError
from autobatch._models import (
    BUILTIN_MODELS,
    build_model_from_function,
    builtin_image_size,
    import_custom_objects_for_worker,
    is_builtin,
    load_model_file,
    model_function_spec,
    model_input_shape,
    rebuildable_class_spec,
    resolve_model,
    save_model_for_worker,
)
from autobatch._models._files import check_keras_file
from autobatch._probe._data_io import image_size_from_data, num_classes

logger = logging.getLogger(__name__)


@dataclass
class ModelDescription:
    """What the worker is told about the model, and what describing it found out.

    Attributes:
        config: the worker config's ``model`` entry.
        modules: modules the worker imports for the model (their folders join its path).
        image_size: the input size, when given or read from the model or the data.
        channels: the input channels, likewise.
    """

    config: dict[str, Any]
    modules: list[str] = field(default_factory=list)
    image_size: tuple[int, int] | None = None
    channels: int | None = None


def looks_like_keras_model(model: Any) -> bool:
    module = type(model).__module__ or ""
    return hasattr(model, "save") and hasattr(model, "fit") and (
        module.startswith("keras") or hasattr(model, "get_config"))


def describe_model(model: Any, source: Any, *, image_size: tuple[int, int] | None,
                   channels: int | None, custom_objects_module: str | None,
                   work_dir: Path) -> ModelDescription:
    """Describe ``model`` for the worker (saving a live model under ``work_dir``).

    Raises:
        ModelError: the model cannot be sent (no image size for a built-in, an unknown
            class count, a missing file, a model Keras cannot save or rebuild).
    """
    if is_builtin(model):
        image_size = builtin_image_size(model, image_size)
        classes = num_classes(source)
        if classes is None:
            raise ModelError(f"cannot tell how many classes {model!r} needs from this data; "
                             "pass a compiled keras.Model instead")
        channels = 3 if channels is None else channels
        return ModelDescription({"builtin": model, "num_classes": classes,
                                 "image_size": list(image_size), "channels": channels},
                                image_size=image_size, channels=channels)
    # A model-building function ("module:function" or a callable), or a model one built
    # (resolve_model tags it): the worker calls the function itself.
    function = model_function_spec(model) or getattr(model, "_autobatch_model_function",
                                                     None)
    if isinstance(function, str):
        return ModelDescription({"function": function}, [function.partition(":")[0]],
                                image_size, channels)
    if isinstance(model, (str, os.PathLike)):
        check_keras_file(model)  # a zip with a config, checked before the worker starts
        path = Path(model)
        modules = [custom_objects_module] if custom_objects_module else []
        return ModelDescription({"path": str(path.resolve()),
                                 "custom_objects_module": custom_objects_module},
                                modules, image_size, channels)
    if looks_like_keras_model(model):
        return _describe_live_model(model, source, image_size=image_size, channels=channels,
                                    custom_objects_module=custom_objects_module,
                                    work_dir=work_dir)
    raise ModelError(f"cannot probe a model of type {type(model).__name__}: pass a compiled "
                     "keras.Model, a .keras path, a model-building function or one of "
                     f"{', '.join(BUILTIN_MODELS)}")


def _describe_live_model(model: Any, source: Any, *, image_size: tuple[int, int] | None,
                         channels: int | None, custom_objects_module: str | None,
                         work_dir: Path) -> ModelDescription:
    """A ``keras.Model`` object: saved to a ``.keras`` file, or rebuilt in the worker by
    calling its class when Keras cannot revive it."""
    shape = model_input_shape(model)
    if shape is None:
        # A subclassed model not built yet: it is built on the data in the worker.
        if image_size is None:
            image_size = image_size_from_data(source)
    else:
        if image_size is None and len(shape) == 3 and shape[0] and shape[1]:
            image_size = (int(shape[0]), int(shape[1]))
        if channels is None and len(shape) == 3 and shape[-1]:
            channels = int(shape[-1])
    try:
        path, imports = save_model_for_worker(model, work_dir / "model.keras",
                                              custom_objects_module)
    except ModelError:
        # Keras cannot revive it (a subclassed model whose __init__ takes nothing), but its
        # class builds it: the worker calls the class, compiled as here.
        spec = rebuildable_class_spec(model) if model.compiled else None
        if spec is None:
            raise
        logger.info("model %s is rebuilt in the worker by calling %s()",
                    getattr(model, "name", "?"), spec)
        return ModelDescription({"function": spec, "compile_config": model.get_compile_config()},
                                [spec.partition(":")[0]], image_size, channels)
    return ModelDescription({"path": str(path), "custom_objects_module": custom_objects_module,
                             **imports}, list(imports["modules"]), image_size, channels)


def load_model(model: dict[str, Any], source: Any) -> Any:
    """Worker side: build or load the model the parent described: a built-in, a
    model-building function (imported and called here), or a ``.keras`` file after importing
    the modules that define its custom objects (``save_model_for_worker`` recorded them)."""
    if model.get("builtin"):
        return resolve_model(model["builtin"], num_classes=int(model["num_classes"]),
                             image_size=model["image_size"], channels=int(model["channels"]))
    if model.get("function"):
        return build_model_from_function(model["function"],
                                         compile_config=model.get("compile_config"))
    custom_objects = import_custom_objects_for_worker(model.get("modules"),
                                                      model.get("custom_objects"))
    return load_model_file(model["path"], custom_objects=custom_objects,
                           custom_objects_module=model.get("custom_objects_module"))
