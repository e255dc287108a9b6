"""Model SPECs: a ``.keras`` file, a built-in name or a model-building function, resolved to
a compiled Keras model; saving a model for the probe worker, with the modules that define its
custom objects, and errors that name the cause.

A model-building function is ``"module:function"`` (the CLI's ``--model``) or a module-level
callable (the API); it is called with no arguments and returns a ``keras.Model`` (compiled
with the built-ins' defaults when it is not). The probe worker imports and calls it itself,
which serves models that a ``.keras`` file cannot carry (Lambda layers, subclassed models
without ``get_config``).

TensorFlow/Keras are imported inside the functions only.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import sys
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
    import keras

    if isinstance(spec, keras.Model):
        if not spec.compiled:
            _compile(spec, jit_compile)
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
                    jit_compile: bool | str = False,
                    custom_objects: dict[str, Any] | None = None) -> keras.Model:
    """Load a ``.keras`` file (compiled as saved, or compiled here when it was not).

    ``custom_objects`` (name -> class or function, as ``import_custom_objects_for_worker``
    returns them) add to those of ``custom_objects_module``.
    """
    import keras

    file = Path(path)
    if file.suffix != ".keras":
        raise ModelError(
            f"model SPEC {str(path)!r} is neither a .keras file nor a built-in; use one of "
            f"{', '.join(BUILTIN_MODELS)} or a path ending in .keras"
        )
    if not file.is_file():
        raise ModelError(f"model file {str(path)!r} does not exist; check the path")
    custom_objects = {**(custom_objects or {}),
                      **(import_custom_objects(custom_objects_module) or {})} or None
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


def optimizer_name(model: Any) -> str | None:
    """The optimizer's class name (``"Adam"``, ``"SGD"``, ...), without TensorFlow where it can.

    The one implementation every caller uses (tune's plan, fit's learning-rate check).

    - a built-in name: ``"Adam"`` (built-ins compile with it);
    - a path to a ``.keras`` file: read from the zip's ``config.json`` (``compile_config``);
      a ``LossScaleOptimizer`` gives the optimizer it wraps;
    - a ``"module:function"`` spec or another path: None (known only once the function runs);
    - a live model: ``type(model.optimizer).__name__``, the wrapped one for a
      ``LossScaleOptimizer``; None when it is not compiled.
    """
    if is_builtin(model):
        return "Adam"
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if path.endswith(".keras") and os.path.isfile(path):
            return _saved_optimizer_name(path)
        return None
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    inner = getattr(optimizer, "inner_optimizer", None)  # LossScaleOptimizer wraps the real one
    return type(inner if inner is not None else optimizer).__name__


def _saved_optimizer_name(path: str) -> str | None:
    """The optimizer named in a ``.keras`` file's ``config.json``; None when unreadable."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    compile_config = config.get("compile_config") if isinstance(config, dict) else None
    if not isinstance(compile_config, dict):
        return None  # saved uncompiled
    optimizer = compile_config.get("optimizer")
    if isinstance(optimizer, str):
        return optimizer
    if not isinstance(optimizer, dict):
        return None
    name = optimizer.get("class_name")
    inner = (optimizer.get("config") or {}).get("inner_optimizer")
    if name == "LossScaleOptimizer" and isinstance(inner, dict):
        return inner.get("class_name") if isinstance(inner.get("class_name"), str) else name
    return name if isinstance(name, str) else None


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


WAYS_OUT = ("move it to an importable module (a .py file beside your script, imported there), "
            "or pass a function that builds the compiled model instead: "
            "autobatch.tune(build_model, data), or --model module:function")
"""The two ways out of a model the probe worker cannot rebuild from a ``.keras`` file."""

_NOT_CUSTOM = frozenset({"keras", "tensorflow", "tf_keras", "keras_hub", "keras_cv",
                         "keras_nlp", "builtins"})
_UNIMPORTABLE = frozenset({"__main__", "__mp_main__"})
_FUNCTION_SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


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
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.Lambda):
            raise ModelError(
                f"layer {layer.name!r} is a Lambda layer, which a .keras file cannot load "
                "safely; replace it with a custom layer, registered with "
                f"@keras.saving.register_keras_serializable(), in an importable module; {WAYS_OUT}"
            )
    _create_variables(model)
    try:
        config = keras.saving.serialize_keras_object(model)
    except Exception as exc:
        raise ModelError(_rebuild_error(model, exc)) from exc
    objects = custom_objects_in(config)
    lookup = {**{o["name"]: o["object"] for o in objects},
              **(import_custom_objects(custom_objects_module) or {})}
    try:
        # A round trip through the config catches a missing get_config or an unregistered
        # class now (cheap: no weights), instead of a crash in the worker.
        with keras.saving.custom_object_scope(lookup):
            keras.saving.deserialize_keras_object(config)
    except Exception as exc:
        raise ModelError(_rebuild_error(model, exc)) from exc
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, target)
    except Exception as exc:
        raise ModelError(f"model {model.name!r} cannot be saved: {_first_line(exc)}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
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
            if isinstance(module, str) and isinstance(class_name, str) and _is_custom(module):
                name = item.get("config") if class_name == "function" else class_name
                key = registered if isinstance(registered, str) else name
                if isinstance(key, str) and key not in found:
                    obj = GLOBAL_CUSTOM_OBJECTS.get(key)
                    if obj is None and isinstance(name, str):
                        obj = _attribute(sys.modules.get(module), name)
                    found[key] = _importable(obj, key, module, name)
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif isinstance(item, str):
            strings.append(item)
    for text in strings:  # e.g. activation="Custom>my_act": a registered name, by itself
        obj = GLOBAL_CUSTOM_OBJECTS.get(text)
        if obj is not None and text not in found and _is_custom(_module_of(obj)):
            found[text] = _importable(obj, text, _module_of(obj), text)
    return list(found.values())


def _importable(obj: Any, key: str, module: str, name: Any) -> dict[str, Any]:
    """The record of one custom object, or the one-line error why a worker cannot get it."""
    what = f"{'class' if inspect.isclass(obj) or obj is None else 'function'} {name or key}"
    if obj is None and module in _UNIMPORTABLE:
        raise ModelError(
            f"{what} is defined in {module} (your script or a notebook cell), which the probe "
            f"worker cannot import; {WAYS_OUT}")
    if obj is None:
        raise ModelError(
            f"{what} (module {module}) is not in module {module} itself, so the probe worker "
            f"cannot find it; {WAYS_OUT}")
    module = _module_of(obj) or module
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", "")
    if module in _UNIMPORTABLE:
        raise ModelError(
            f"{what} is defined in {module} (your script or a notebook cell), which the probe "
            f"worker cannot import; {WAYS_OUT}")
    if "<" in qualname or _attribute(sys.modules.get(module), qualname) is not obj:
        raise ModelError(
            f"{what} is defined inside a function ({module}.{qualname}), which the probe "
            f"worker cannot import; {WAYS_OUT}")
    return {"module": module, "qualname": qualname, "name": key, "object": obj}


def import_custom_objects_for_worker(modules: list[str] | None,
                                     objects: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Worker side of ``save_model_for_worker``: import the recorded modules (their
    ``register_keras_serializable`` decorators run) and return ``{name: object}`` for
    ``load_model(custom_objects=...)`` (unregistered classes are found by name that way)."""
    for name in modules or []:
        _import_user_module(name, "that defines the model's custom objects")
    found: dict[str, Any] = {}
    for record in objects or []:
        module = _import_user_module(record["module"], "that defines the model's custom objects")
        obj = _attribute(module, record["qualname"])
        if obj is None:
            raise ModelError(f"module {record['module']!r} has no {record['qualname']!r} in the "
                             "probe worker; check that it is defined at module level")
        found[record["name"]] = obj
    return found


def _import_user_module(name: str, why: str) -> Any:
    try:
        return import_module(name)
    except Exception as exc:
        raise ModelError(
            f"the probe worker cannot import module {name!r} {why}: {_first_line(exc)}; make "
            "it importable from where you run (a .py file beside your script, or installed)"
        ) from exc


def _attribute(module: Any, qualname: str) -> Any:
    obj = module
    for part in qualname.split("."):
        if obj is None:
            return None
        obj = getattr(obj, part, None)
    return obj


def _module_of(obj: Any) -> str:
    return getattr(obj, "__module__", None) or ""


def _is_custom(module: str) -> bool:
    top = module.split(".")[0]
    return bool(top) and top not in _NOT_CUSTOM


def _create_variables(model: Any) -> None:
    """Create the variables of a subclassed model built with ``model.build(shape)``.

    Keras 3 marks such a model built without building the layers its ``call`` uses: it has
    no variables yet, and a ``.keras`` file saved from it cannot be loaded ("Layer 'conv2d'
    expected 2 variables, but received 0", measured with Keras 3.15). One call on a batch of
    zeros creates them, as the first training step would.
    """
    if not getattr(model, "built", False) or all(
            getattr(layer, "built", True) for layer in _all_layers(model)):
        return
    shape = model_input_shape(model)
    if not shape or any(d is None for d in shape):
        return
    import numpy as np

    try:
        model(np.zeros((1, *shape), dtype="float32"), training=False)
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
        why = _first_line(exc)
    return (f"model {getattr(model, 'name', '?')!r} cannot be serialised for the probe worker: "
            f"{culprit}: {why}; or pass a function that builds the compiled model instead: "
            "autobatch.tune(build_model, data), or --model module:function")


def _class_named_in(text: str) -> str | None:
    match = (re.search(r"Object (\w+) was created", text)
             or re.search(r"<class '(?:[\w.]+\.)?(\w+)'> could not be deserialized", text)
             or re.search(r"Could not locate (?:class|function) '([\w>]+)'", text))
    return f"class {match.group(1)}" if match else None


# ---------------------------------------------------------------- model-building functions


def model_function_spec(spec: Any) -> str | None:
    """``"module:function"`` when ``spec`` names a model-building function, else None.

    ``spec`` is that text (not a built-in name, not an existing path), or a function or class
    defined at module level of an importable module (its ``__module__`` and
    ``__qualname__`` are what the worker imports). A Keras model or layer is not one.

    Raises:
        ModelError: a callable the worker cannot import (defined in ``__main__``, a notebook,
            inside a function, a lambda, a ``functools.partial``).
    """
    if isinstance(spec, str):
        if spec in BUILTIN_MODELS or os.path.exists(spec) or not _FUNCTION_SPEC.match(spec):
            return None
        return spec
    if isinstance(spec, os.PathLike) or not callable(spec):
        return None
    is_classmethod = inspect.ismethod(spec) and inspect.isclass(getattr(spec, "__self__", None))
    if not (inspect.isfunction(spec) or inspect.isclass(spec) or is_classmethod):
        if hasattr(spec, "get_config"):
            return None  # a Keras model or layer instance, not a function that builds one
        raise ModelError(
            f"cannot use {type(spec).__name__} {spec!r:.60} as a model-building function: pass "
            "a function defined at module level of an importable module (or 'module:function')")
    module = _module_of(spec)
    qualname = getattr(spec, "__qualname__", "")
    name = f"model-building function {qualname or spec!r}"
    if module in _UNIMPORTABLE or not module:
        raise ModelError(
            f"{name} is defined in {module or 'no module'} (your script or a notebook cell), "
            "which the probe worker cannot import; move it to an importable module (a .py "
            "file beside your script) and pass it from there, or name it as 'module:function'")
    if "<" in qualname or _attribute(sys.modules.get(module), qualname) is None:
        raise ModelError(
            f"{name} is defined inside a function ({module}.{qualname}), which the probe "
            "worker cannot import; define it at module level of an importable module")
    return f"{module}:{qualname}"


def model_function_file(spec: str) -> str | None:
    """The source file of a ``"module:function"`` spec's module, found without importing it
    (None when it is not found): plan fingerprints follow edits to the function."""
    from importlib.machinery import PathFinder

    if not isinstance(spec, str) or not _FUNCTION_SPEC.match(spec):
        return None
    module = sys.modules.get(spec.partition(":")[0])
    file = getattr(module, "__file__", None)
    if file:
        return str(file)
    parts = spec.partition(":")[0].split(".")
    search: list[str] | None = [p or os.getcwd() for p in sys.path] + [os.getcwd()]
    found = None
    for index, part in enumerate(parts):
        found = PathFinder.find_spec(part if index == 0 else ".".join(parts[:index + 1]),
                                     search)
        if found is None:
            return None
        search = list(found.submodule_search_locations or [])
    return found.origin if found is not None and found.has_location else None


def rebuildable_class_spec(model: Any) -> str | None:
    """``"module:Class"`` when ``model``'s class lives at module level of an importable
    module and can be constructed with no arguments (TensorFlow's quickstart model:
    ``__init__(self)``, layers made inside), so that the worker can build it by calling the
    class, as a model-building function, where Keras cannot revive it from its config."""
    cls = type(model)
    if not _is_custom(_module_of(cls)):
        return None
    try:
        spec = model_function_spec(cls)
        inspect.signature(cls).bind()
    except (ModelError, TypeError, ValueError):
        return None
    return spec


def build_model_from_function(spec: str, *, jit_compile: bool | str = False,
                              compile_config: dict[str, Any] | None = None) -> keras.Model:
    """Import ``"module:function"``, call it with no arguments and return the model,
    compiled as ``compile_config`` says (a caller's ``model.get_compile_config()``), else
    with the built-ins' defaults when the function did not compile it.

    Raises:
        ModelError: (one line) the module does not import, has no such function, the call
            fails or returns something other than a ``keras.Model``.
    """
    import keras

    module_name, _, qualname = spec.partition(":")
    module = _import_user_module(module_name, f"for the model-building function {spec!r}")
    function = _attribute(module, qualname)
    if not callable(function):
        raise ModelError(f"module {module_name!r} has no function {qualname!r}; check the "
                         f"name in {spec!r} (module:function)")
    try:
        model = function()
    except Exception as exc:
        raise ModelError(f"the model-building function {spec!r} failed: "
                         f"{type(exc).__name__}: {_first_line(exc)}") from exc
    if not isinstance(model, keras.Model):
        raise ModelError(f"the model-building function {spec!r} returned "
                         f"{type(model).__name__}, not a keras.Model; return the model")
    if not model.compiled and compile_config:
        try:
            model.compile_from_config(compile_config)
        except Exception as exc:  # noqa: BLE001 - the defaults below still train it
            logger.warning("could not compile %s as its caller did (%s: %s); using Adam and "
                           "sparse categorical crossentropy", spec, type(exc).__name__,
                           _first_line(exc))
    if not model.compiled:
        _compile(model, jit_compile)
    # The probe worker builds the model with the same function (a .keras file may not
    # carry it): SubprocessProbeRunner sends this instead of saving the model.
    model._autobatch_model_function = spec
    return model


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
