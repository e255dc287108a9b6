"""The user's own modules: importing them (custom objects, model-building functions),
finding an object by its qualified name, telling Keras' own modules from the user's."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from autobatch._errors import ModelError

NOT_CUSTOM = frozenset({"keras", "tensorflow", "tf_keras", "keras_hub", "keras_cv",
                         "keras_nlp", "builtins"})


UNIMPORTABLE = frozenset({"__main__", "__mp_main__"})


def import_custom_objects(module_name: str | None) -> dict[str, Any] | None:
    """Import the module that registers custom objects; return its ``custom_objects``."""
    if not module_name:
        return None
    try:
        module = import_module(module_name)
    except ImportError as exc:
        raise ModelError(
            f"cannot import custom objects module {module_name!r}: {first_line(exc)}; make it "
            "importable (on PYTHONPATH)"
        ) from exc
    objects = getattr(module, "custom_objects", None)
    if callable(objects):
        objects = objects()
    return dict(objects) if isinstance(objects, dict) else None


def import_user_module(name: str, why: str) -> Any:
    try:
        return import_module(name)
    except Exception as exc:
        raise ModelError(
            f"the probe worker cannot import module {name!r} {why}: {first_line(exc)}; make "
            "it importable from where you run (a .py file beside your script, or installed)"
        ) from exc


def attribute(module: Any, qualname: str) -> Any:
    obj = module
    for part in qualname.split("."):
        if obj is None:
            return None
        obj = getattr(obj, part, None)
    return obj


def module_of(obj: Any) -> str:
    return getattr(obj, "__module__", None) or ""


def is_custom(module: str) -> bool:
    top = module.split(".")[0]
    return bool(top) and top not in NOT_CUSTOM


def first_line(exc: BaseException) -> str:
    # Keras wraps its messages over several lines; the cause is often on the second.
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
