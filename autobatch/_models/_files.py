"""A model file checked before TensorFlow starts: one line, at once.

A SPEC that names a file must be a ``.keras`` file, and a ``.keras`` file is a zip archive
with a ``config.json`` (what ``model.save("model.keras")`` writes). A missing file, a
folder, another extension, or a file that is not such a zip is a one-line ``ModelError``
here, read from the file's first bytes and its zip directory, before any probe and before
``import tensorflow`` (which costs 10-20 s): tune, fit and probe call it first. Built-in
names, model-building functions (``module:function``) and live models pass untouched.
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

from autobatch._errors import ModelError
from autobatch._models._builtins import BUILTIN_MODELS, is_builtin
from autobatch._models._functions import model_function_spec

KERAS_SUFFIX = ".keras"

_SAVE_HINT = "save the model with model.save('model.keras')"


def _named(path: str) -> str:
    """The path as it is printed: quoted, control characters escaped (one line)."""
    return repr(path)


def check_model_file(spec: Any) -> None:
    """Refuse a SPEC that names a file Keras cannot load as a model, without TensorFlow.

    Raises:
        ModelError: the file is missing, a folder, not ``.keras``, unreadable, not a zip,
            or a zip without a readable ``config.json``.
    """
    if not isinstance(spec, (str, os.PathLike)):
        return
    text = os.fspath(spec)
    if not isinstance(text, str) or is_builtin(text) or model_function_spec(text) is not None:
        return
    check_keras_file(text)


def check_keras_file(path: str | os.PathLike[str]) -> None:
    """``check_model_file`` for a SPEC known to name a file: it exists, it is a ``.keras``
    file, and a zip with a readable ``config.json``."""
    text = os.fspath(path)
    name = _named(text)
    if not os.path.exists(text):
        if text.endswith(KERAS_SUFFIX):
            raise ModelError(f"model file {name} does not exist; check the path",
                             parameter="model")
        raise ModelError(
            f"unknown model {name}: pass a .keras file, a model-building function "
            f"(module:function) or one of {', '.join(BUILTIN_MODELS)}", parameter="model")
    if os.path.isdir(text):
        raise ModelError(
            f"model SPEC {name} is a folder, not a .keras file; {_SAVE_HINT} and pass that file",
            parameter="model")
    if not text.endswith(KERAS_SUFFIX):
        raise ModelError(
            f"model SPEC {name} is neither a .keras file nor a built-in; use one of "
            f"{', '.join(BUILTIN_MODELS)} or a path ending in .keras ({_SAVE_HINT})",
            parameter="model")
    _check_zip(text, name)


def _check_zip(path: str, name: str) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                raise ModelError(
                    f"model file {name} is a zip without a config.json, not a Keras model; "
                    f"{_SAVE_HINT}", parameter="model")
            config = json.loads(archive.read("config.json"))
    except ModelError:
        raise
    except zipfile.BadZipFile:
        raise ModelError(
            f"model file {name} is not a Keras model (a .keras file is a zip archive with a "
            f"config.json; this one is not a zip); {_SAVE_HINT}", parameter="model") from None
    except OSError as exc:
        raise ModelError(f"cannot read model file {name}: {exc.strerror or exc}; check its "
                         "permissions", parameter="model") from None
    except (ValueError, EOFError, RuntimeError) as exc:  # bad JSON, a truncated or encrypted zip
        raise ModelError(
            f"model file {name} has an unreadable config.json ({type(exc).__name__}); it is "
            f"damaged: {_SAVE_HINT} again", parameter="model") from None
    if not isinstance(config, dict):
        raise ModelError(f"model file {name} has a config.json that is not a Keras model "
                         f"config; {_SAVE_HINT}", parameter="model")
