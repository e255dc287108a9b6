"""Saving a model for the probe worker: the ``.keras`` file, the modules that define its
custom objects, and one-line errors naming what another process could not rebuild."""

from __future__ import annotations

import inspect
import logging
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autobatch._atomic import atomic_target
from autobatch._errors import ModelError
from autobatch._models._shapes import model_input_shape
from autobatch._models._userland import (
    UNIMPORTABLE,
    attribute,
    first_line,
    import_custom_objects,
    import_user_module,
    is_custom,
    module_of,
)

if TYPE_CHECKING:  # pragma: no cover
    import keras

logger = logging.getLogger(__name__)


WAYS_OUT = ("move it to an importable module (a .py file beside your script, imported there), "
            "or give {param} a function that builds the compiled model instead (a module-level "
            "function, or 'module:function')")
"""The two ways out of a model the probe worker cannot rebuild from a ``.keras`` file (a
template: raise it with ``parameter="model"``, so that the CLI names ``--model``)."""


def save_for_worker(model: keras.Model, path: str | os.PathLike[str],
                    custom_objects_module: str | None = None) -> Path:
    """Save ``model`` as a ``.keras`` file the probe worker can load (see
    ``save_model_for_worker``, which also says what the worker must import)."""
    return save_model_for_worker(model, path, custom_objects_module)[0]


def save_model_for_worker(model: keras.Model, path: str | os.PathLike[str],
                          custom_objects_module: str | None = None
                          ) -> tuple[Path, dict[str, Any]]:
    """Save ``model`` as a ``.keras`` file the probe worker can load.

    Records what the worker must import first: the modules that define the model's classes
    and functions (its class, its layers, its compiled loss, metrics and optimizer, and the
    names it refers to in Keras' registry), found in its serialised config. Then checks what
    would make the worker fail to load it, so the error names the cause here rather than as
    a crash in the child.

    Returns:
        ``(path, {"modules": [...], "custom_objects": [{module, qualname, name}]})``.

    Raises:
        ModelError: (one line, naming the object) the model cannot be rebuilt in another
            process: a Lambda layer, a class or function defined in ``__main__`` or inside a
            function, a subclassed model or layer Keras cannot rebuild from its config.
    """
    import keras

    target = Path(path)
    if target.suffix != ".keras":
        target = target.with_suffix(".keras")
    if not model.compiled:
        raise ModelError("the model is not compiled; call model.compile(...) before tuning")
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.Lambda):
            raise ModelError(
                f"layer {layer.name!r} is a Lambda layer, which a .keras file cannot load "
                "safely; replace it with a custom layer, registered with "
                f"@keras.saving.register_keras_serializable(), in an importable module; {WAYS_OUT}",
                parameter="model")
    _create_variables(model)
    try:
        config = keras.saving.serialize_keras_object(model)
    except Exception as exc:
        raise ModelError(_rebuild_error(model, exc), parameter="model") from exc
    objects = custom_objects_in(config)
    lookup = {**{o["name"]: o["object"] for o in objects},
              **(import_custom_objects(custom_objects_module) or {})}
    try:
        # A round trip through the config catches a missing get_config or an unregistered
        # class now (cheap: no weights), instead of a crash in the worker.
        with keras.saving.custom_object_scope(lookup):
            keras.saving.deserialize_keras_object(config)
    except Exception as exc:
        raise ModelError(_rebuild_error(model, exc), parameter="model") from exc
    try:
        with atomic_target(target, suffix=".keras") as tmp:
            model.save(tmp)
    except Exception as exc:
        raise ModelError(f"model {model.name!r} cannot be saved: {first_line(exc)}") from exc
    modules = list(dict.fromkeys(o["module"] for o in objects))
    if custom_objects_module:
        modules.append(custom_objects_module)
    return target, {
        "modules": list(dict.fromkeys(modules)),
        "custom_objects": [{k: o[k] for k in ("module", "qualname", "name")} for o in objects],
    }


def custom_objects_in(config: Any) -> list[dict[str, Any]]:
    """The custom classes and functions a serialised model refers to.

    Walks the config (the model's class, its layers and their initializers, regularizers,
    constraints and activations, the compiled loss, metrics and optimizer) for objects whose
    module is not Keras' or TensorFlow's, and its strings for names registered in Keras'
    registry (``keras.saving.register_keras_serializable``) by such a module.

    Returns:
        ``[{"module", "qualname", "name", "object"}]`` in first-seen order; ``name`` is the
        key Keras looks the object up by when loading.

    Raises:
        ModelError: one of them cannot be imported by another process (defined in
            ``__main__``, a notebook cell or inside a function).
    """
    from keras.src.saving.object_registration import GLOBAL_CUSTOM_OBJECTS

    found: dict[str, dict[str, Any]] = {}
    strings: list[str] = []
    stack: list[Any] = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            module, class_name = item.get("module"), item.get("class_name")
            registered = item.get("registered_name")
            if module is None and isinstance(class_name, str) and isinstance(registered, str):
                module = "__main__"  # Keras writes no module for a class of the script
            if isinstance(module, str) and isinstance(class_name, str) and is_custom(module):
                name = item.get("config") if class_name == "function" else class_name
                key = registered if isinstance(registered, str) else name
                if isinstance(key, str) and key not in found:
                    obj = GLOBAL_CUSTOM_OBJECTS.get(key)
                    if obj is None and isinstance(name, str):
                        obj = attribute(sys.modules.get(module), name)
                    found[key] = _importable(obj, key, module, name)
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif isinstance(item, str):
            strings.append(item)
    for text in strings:  # e.g. activation="Custom>my_act": a registered name, by itself
        obj = GLOBAL_CUSTOM_OBJECTS.get(text)
        if obj is not None and text not in found and is_custom(module_of(obj)):
            found[text] = _importable(obj, text, module_of(obj), text)
    return list(found.values())


def _importable(obj: Any, key: str, module: str, name: Any) -> dict[str, Any]:
    """The record of one custom object, or the one-line error why a worker cannot get it."""
    what = f"{'class' if inspect.isclass(obj) or obj is None else 'function'} {name or key}"
    if obj is None and module in UNIMPORTABLE:
        raise ModelError(
            f"{what} is defined in {module} (your script or a notebook cell), which the probe "
            f"worker cannot import; {WAYS_OUT}", parameter="model")
    if obj is None:
        raise ModelError(
            f"{what} (module {module}) is not in module {module} itself, so the probe worker "
            f"cannot find it; {WAYS_OUT}", parameter="model")
    module = module_of(obj) or module
    qualname = str(getattr(obj, "__qualname__", None) or getattr(obj, "__name__", ""))
    if module in UNIMPORTABLE:
        raise ModelError(
            f"{what} is defined in {module} (your script or a notebook cell), which the probe "
            f"worker cannot import; {WAYS_OUT}", parameter="model")
    if "<" in qualname or attribute(sys.modules.get(module), qualname) is not obj:
        raise ModelError(
            f"{what} is defined inside a function ({module}.{qualname}), which the probe "
            f"worker cannot import; {WAYS_OUT}", parameter="model")
    return {"module": module, "qualname": qualname, "name": key, "object": obj}


def import_custom_objects_for_worker(modules: list[str] | None,
                                     objects: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Worker side of ``save_model_for_worker``: import the recorded modules (their
    ``register_keras_serializable`` decorators run) and return ``{name: object}`` for
    ``load_model(custom_objects=...)`` (unregistered classes are found by name that way)."""
    for name in modules or []:
        import_user_module(name, "that defines the model's custom objects")
    found: dict[str, Any] = {}
    for record in objects or []:
        module = import_user_module(record["module"], "that defines the model's custom objects")
        obj = attribute(module, record["qualname"])
        if obj is None:
            raise ModelError(f"module {record['module']!r} has no {record['qualname']!r} in the "
                             "probe worker; check that it is defined at module level")
        found[record["name"]] = obj
    return found


def _create_variables(model: Any) -> None:
    """Create the variables of a subclassed model built with ``model.build(shape)``.

    Keras 3 marks such a model built without building the layers its ``call`` uses: it has
    no variables yet, and a ``.keras`` file saved from it cannot be loaded ("Layer 'conv2d'
    expected 2 variables, but received 0", measured with Keras 3.15). One call on a batch of
    zeros creates them, as the first training step would.
    """
    if not getattr(model, "built", False) or all(
            getattr(layer, "built", True) for layer in all_layers(model)):
        return
    shape = model_input_shape(model)
    if not shape or any(d is None for d in shape):
        return
    import numpy as np

    zeros = np.zeros((1, *(int(d) for d in shape if d is not None)), dtype="float32")
    try:
        model(zeros, training=False)
    except Exception as exc:  # noqa: BLE001 - the save below reports what remains wrong
        logger.info("could not create the variables of %s by calling it (%s)",
                    getattr(model, "name", "the model"), type(exc).__name__)


def _rebuild_error(model: Any, exc: BaseException) -> str:
    """One line: which object cannot be rebuilt from its config, why, and the ways out."""
    text = str(exc)
    culprit = _class_named_in(text) or f"class {type(model).__name__}"
    if isinstance(exc, NotImplementedError) or "was created by passing" in text:
        why = ("its __init__ takes arguments and it has no get_config(); implement "
               "get_config() (and keep the class in an importable module)")
    elif "could not be deserialized properly" in text:
        why = ("Keras cannot rebuild it from its config: a subclassed model or layer without "
               "get_config() needs an __init__ that takes **kwargs and passes them to "
               "super().__init__(); add that or implement get_config()")
    elif "Could not locate" in text or "Unknown" in text:
        why = ("Keras cannot find the class when loading; register it with "
               "@keras.saving.register_keras_serializable() in an importable module")
    else:
        why = first_line(exc)
    return (f"model {getattr(model, 'name', '?')!r} cannot be serialised for the probe worker: "
            f"{culprit}: {why}; or give {{param}} a function that builds the compiled model "
            "instead (a module-level function, or 'module:function')")


def _class_named_in(text: str) -> str | None:
    match = (re.search(r"Object (\w+) was created", text)
             or re.search(r"<class '(?:[\w.]+\.)?(\w+)'> could not be deserialized", text)
             or re.search(r"Could not locate (?:class|function) '([\w>]+)'", text))
    return f"class {match.group(1)}" if match else None


def all_layers(model: Any) -> list[Any]:
    """Every layer inside ``model``, nested ones (a subclassed layer's own) included."""
    flatten = getattr(model, "_flatten_layers", None)
    if callable(flatten):
        try:
            return list(flatten(include_self=False, recursive=True))
        except TypeError:
            pass
    found = []
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        found.append(layer)
        stack.extend(getattr(layer, "layers", []) or [])
    return found
