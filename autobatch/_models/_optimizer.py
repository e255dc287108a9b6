"""The optimizer's name, the one implementation (tune's plan, fit's learning-rate check)."""

from __future__ import annotations

import os
from typing import Any

from autobatch._models._builtins import is_builtin


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
