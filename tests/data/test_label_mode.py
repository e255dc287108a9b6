"""Labels fed as the loss takes them (issue #18, item 5): Keras' ``label_mode`` meanings for
class indices, chosen from the loss when not given, the same in ``fit`` and in the probe
worker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder

import autobatch
from autobatch._data import LabelSpec, resolve_source
from autobatch._data._labels import label_mode_for
from autobatch._errors import UsageError
from autobatch._plan import Plan
from autobatch._settings import PipelineSettings


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("labels") / "data",
                             {"a": 4, "b": 3, "c": 2}, size=(16, 16))


def test_the_label_mode_follows_the_loss_unless_given() -> None:
    three = LabelSpec("index", 3, exact=True)
    two = LabelSpec("index", 2, exact=True)
    assert label_mode_for("one_hot", three) == "categorical"
    assert label_mode_for("binary", two) == "binary"
    assert label_mode_for("binary", three) is None  # 3 classes are not 0/1
    assert label_mode_for("index", three) is None
    assert label_mode_for("one_hot", LabelSpec("one_hot", 3, exact=True)) is None  # already
    assert label_mode_for("index", three, "categorical") == "categorical"
    assert label_mode_for("one_hot", three, "int") is None
    with pytest.raises(UsageError, match="label_mode must be one of int, categorical, binary"):
        label_mode_for("index", three, "sparse")
    with pytest.raises(UsageError, match="label_mode='binary' needs two classes"):
        label_mode_for("index", three, "binary")


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_categorical_and_binary_batches(folder: Path, cache: str) -> None:
    source = resolve_source(folder)
    settings = PipelineSettings(cache=cache, deterministic=True)  # the two builds compare in order
    build = dict(batch_size=9, settings=settings, image_size=16, shuffle=False)
    (_, y), = source.build_dataset(**build).as_numpy_iterator()
    (_, one_hot), = source.build_dataset(**build, label_mode="categorical").as_numpy_iterator()
    assert one_hot.shape == (9, 3) and one_hot.dtype == np.float32
    assert (one_hot.argmax(axis=1) == y).all() and (one_hot.sum(axis=1) == 1).all()
    x = np.zeros((6, 8, 8, 3), np.uint8)
    pairs = resolve_source((x, np.array([0, 1, 1, 0, 1, 0])))
    (_, binary), = pairs.build_dataset(batch_size=6, settings=settings, shuffle=False,
                                       label_mode="binary").as_numpy_iterator()
    assert binary.shape == (6, 1) and binary.dtype == np.float32
    assert binary[:, 0].tolist() == [0, 1, 1, 0, 1, 0]


def test_the_worker_feeds_a_categorical_model_one_hot_rows(folder: Path) -> None:
    import keras

    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "categorical_crossentropy")
    result = autobatch.probe(model, folder, batch_size=4, steps=2)
    assert result.outcome == "ok", result.error


def test_fit_chooses_binary_for_binary_crossentropy_on_two_classes(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "two", {"no": 3, "yes": 4}, size=(16, 16))
    import keras

    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
    plan = Plan(batch_size=4, num_examples=7, ceiling_batch_size=8, image_size=(16, 16))
    history = autobatch.fit(model, data, plan=plan, epochs=1, verbose=0)
    assert history.history["examples_seen"] == [7] and history.coverage.complete
