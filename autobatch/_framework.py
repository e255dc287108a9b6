"""The TensorFlow autobatch runs on is the user's: autobatch requires Keras, not a
``tensorflow`` distribution (keras-tuner and tensorflow-datasets do the same), so that pip
never installs a second TensorFlow over ``tensorflow-cpu``, ``tensorflow[and-cuda]`` pinned to
another version, ``tf-nightly`` or ``tensorflow-macos``. What needs it checks for it first."""

from __future__ import annotations

import importlib.util
import sys

from autobatch._errors import UsageError

INSTALL_HINT = ("pip install 'autobatch[tensorflow]' (or the TensorFlow build you use: "
                "tensorflow-cpu, tensorflow[and-cuda], tf-nightly, tensorflow-macos)")


def tensorflow_available() -> bool:
    """Whether ``import tensorflow`` can work, found without importing it."""
    if sys.modules.get("tensorflow") is not None:
        return True
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        return False


def require_tensorflow(what: str = "this") -> None:
    """A one-line ``UsageError`` when no TensorFlow is importable.

    ``what`` names the work that needs it ("tuning", "training", ...)."""
    if not tensorflow_available():
        raise UsageError(f"{what} needs TensorFlow, which is not installed; {INSTALL_HINT}")
