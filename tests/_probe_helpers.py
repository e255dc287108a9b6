"""Importable helpers for the probe tests: a custom layer the worker loads by module path,
which misbehaves on demand inside the worker (hang or raise while the train step traces),
the tests' image folder and their small probe request."""

from __future__ import annotations

import os
import time
from pathlib import Path

import keras

from autobatch._data import FileSource
from autobatch._probe import ProbeRequest

# Read in the worker: "sleep" hangs the train step's trace, "raise" makes it fail.
MISBEHAVE_ENV = "AUTOBATCH_TEST_MISBEHAVE"

PROBE_FOLDER_CLASSES = {"birds": 6, "cats": 10, "dogs": 8}
"""The probe tests' image folder: 24 images in three uneven classes."""


@keras.saving.register_keras_serializable(package="autobatch_tests")
class Misbehave(keras.layers.Layer):
    """Identity, except in a training call inside a worker told to misbehave."""

    def call(self, inputs, training=None):  # type: ignore[no-untyped-def]
        mode = os.environ.get(MISBEHAVE_ENV, "")
        if training and mode == "sleep":
            time.sleep(3600)
        if training and mode == "raise":
            raise RuntimeError("probe helper asked to fail: injected failure in Misbehave.call")
        return inputs


def tiny_model(num_classes: int = 3, size: int = 32) -> keras.Model:
    """A compiled few-layer CNN with the ``Misbehave`` layer in it."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = Misbehave()(x)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def folder_source(root: Path) -> FileSource:
    """A FileSource in Keras order (sorted classes, sorted files), without the audit."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    paths: list[str] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        for file in sorted((root / name).iterdir()):
            paths.append(str(file))
            labels.append(index)
    return FileSource(tuple(paths), tuple(labels), tuple(classes), str(root))


def small(batch_size: int, **kwargs: object) -> ProbeRequest:
    """A short probe: 3 timed steps, 120 s at most, unless told otherwise."""
    kwargs.setdefault("steps", 3)
    kwargs.setdefault("timeout_s", 120.0)
    return ProbeRequest(batch_size=batch_size, **kwargs)  # type: ignore[arg-type]
