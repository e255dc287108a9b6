"""The user's own functions, named ``module:qualname`` so that another process (the probe
worker) can import them: a dataset's builder, a TFRecord parse function, an augmentation."""

from __future__ import annotations

import importlib
import re
from typing import Any

from autobatch._errors import DataError

FACTORY_PATTERN = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
"""``module:function``: an importable function (one that returns a dataset, say)."""


def import_function(spec: str, *, what: str) -> Any:
    """The function ``module:qualname`` names (the module imported from the caller's path)."""
    module_name, _, name = spec.partition(":")
    try:
        function: Any = importlib.import_module(module_name)
        for part in name.split("."):
            function = getattr(function, part)
    except (ImportError, AttributeError) as exc:
        raise DataError(f"cannot import the {what} {spec!r} ({exc}); pass module:function "
                        "of an importable module") from exc
    return function


def importable_name(function: Any) -> str | None:
    """``module:qualname`` of a function another process can import, else None."""
    module, name = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    if not module or module == "__main__" or "<" in name:
        return None
    return f"{module}:{name}"
