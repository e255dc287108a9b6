"""Model-building functions: a ``"module:function"`` spec or a module-level callable, called
with no arguments (in the probe worker too) to give a compiled ``keras.Model``."""

from __future__ import annotations

import inspect
import logging
import os
import re
import sys
from typing import TYPE_CHECKING, Any

from autobatch._errors import ModelError
from autobatch._models._builtins import BUILTIN_MODELS, compile_default
from autobatch._models._userland import (
    UNIMPORTABLE,
    attribute,
    first_line,
    import_user_module,
    is_custom,
    module_of,
)

if TYPE_CHECKING:  # pragma: no cover
    import keras

logger = logging.getLogger(__name__)


FUNCTION_SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


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
        if spec in BUILTIN_MODELS or os.path.exists(spec) or not FUNCTION_SPEC.match(spec):
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
    module = module_of(spec)
    qualname = getattr(spec, "__qualname__", "")
    name = f"model-building function {qualname or spec!r}"
    if module in UNIMPORTABLE or not module:
        raise ModelError(
            f"{name} is defined in {module or 'no module'} (your script or a notebook cell), "
            "which the probe worker cannot import; move it to an importable module (a .py "
            "file beside your script) and pass it from there, or name it as 'module:function'")
    if "<" in qualname or attribute(sys.modules.get(module), qualname) is None:
        raise ModelError(
            f"{name} is defined inside a function ({module}.{qualname}), which the probe "
            "worker cannot import; define it at module level of an importable module")
    return f"{module}:{qualname}"


def model_function_file(spec: str) -> str | None:
    """The source file of a ``"module:function"`` spec's module, found without importing it
    (None when it is not found): plan fingerprints follow edits to the function."""
    from importlib.machinery import PathFinder

    if not isinstance(spec, str) or not FUNCTION_SPEC.match(spec):
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
    if not is_custom(module_of(cls)):
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
    module = import_user_module(module_name, f"for the model-building function {spec!r}")
    function = attribute(module, qualname)
    if not callable(function):
        raise ModelError(f"module {module_name!r} has no function {qualname!r}; check the "
                         f"name in {spec!r} (module:function)")
    try:
        model = function()
    except Exception as exc:
        raise ModelError(f"the model-building function {spec!r} failed: "
                         f"{type(exc).__name__}: {first_line(exc)}") from exc
    if not isinstance(model, keras.Model):
        raise ModelError(f"the model-building function {spec!r} returned "
                         f"{type(model).__name__}, not a keras.Model; return the model")
    if not model.compiled and compile_config:
        try:
            model.compile_from_config(compile_config)
        except Exception as exc:  # noqa: BLE001 - the defaults below still train it
            logger.warning("could not compile %s as its caller did (%s: %s); using Adam and "
                           "sparse categorical crossentropy", spec, type(exc).__name__,
                           first_line(exc))
    if not model.compiled:
        compile_default(model, jit_compile)
    # The probe worker builds the model with the same function (a .keras file may not
    # carry it): SubprocessProbeRunner sends this instead of saving the model.
    model._autobatch_model_function = spec
    return model
