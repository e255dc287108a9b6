"""The image size and channels a tune runs at, read from the caller or the model itself.

``tune`` and ``fit`` both go through ``tune_geometry`` so that their plan-cache
fingerprints agree; a ``.keras`` file is read without TensorFlow (a cache hit stays
TensorFlow-free).
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any


def keras_file_input_shape(path: str | os.PathLike[str]) -> tuple[int | None, ...] | None:
    """The per-example input shape a ``.keras`` file declares, read from its
    ``config.json`` without TensorFlow (so a cache hit stays TensorFlow-free); None when
    the file does not say (or is not a readable ``.keras`` zip, or has several inputs)."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    if not isinstance(config, dict):
        return None
    shape = (config.get("build_config") or {}).get("input_shape")
    if not isinstance(shape, list) or not shape or isinstance(shape[0], list):
        inputs = [layer.get("config") or {} for layer in
                  (config.get("config") or {}).get("layers") or []
                  if isinstance(layer, dict) and layer.get("class_name") == "InputLayer"]
        if len(inputs) != 1:
            return None
        shape = inputs[0].get("batch_shape") or inputs[0].get("batch_input_shape")
    if not isinstance(shape, list) or len(shape) < 2:
        return None
    return tuple(None if d is None else int(d) for d in shape[1:])


def tune_geometry(model: Any, image_size: Any = None,
                  channels: int | None = None) -> tuple[tuple[int, int] | None, int]:
    """The image size and channels a tune runs at, the same way in ``tune`` and ``fit``
    (their plan-cache fingerprints must agree): what the caller gave, else the model's
    own input (a ``keras.Model``, or a ``.keras`` file read without TensorFlow); 3
    channels when nothing says. A built-in SPEC has no size of its own.

    Returns:
        ``((height, width) or None, channels)``.
    """
    from autobatch._data import normalize_image_size

    size = normalize_image_size(image_size)
    if size is not None and channels is not None:
        return size, int(channels)
    shape: tuple[int | None, ...] | None = None
    if isinstance(model, (str, os.PathLike)):
        text = os.fspath(model)
        if text.endswith(".keras") and os.path.isfile(text):
            shape = keras_file_input_shape(text)
    elif callable(getattr(model, "to_json", None)):  # a keras.Model: TensorFlow is loaded
        from autobatch._models import model_input_shape

        shape = model_input_shape(model)
    if shape is not None and len(shape) == 3:
        if size is None and shape[0] and shape[1]:
            size = (int(shape[0]), int(shape[1]))
        if channels is None and shape[2]:
            channels = int(shape[2])
    return size, int(channels) if channels is not None else 3
