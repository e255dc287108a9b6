"""Augmentation after the cache (issue #18, item 3): the cache keeps un-augmented images,
every epoch sees new pixels, a seeded rerun sees the same ones, the probe worker measures
the pipeline with it; a shape-changing augmentation is a one-line error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from _fitmodels import counting_model
from _probe_helpers import small
from conftest import make_image_folder

import autobatch
from autobatch._data import resolve_source
from autobatch._data._augment import describe_augment, rebuild_augment
from autobatch._errors import DataError, UsageError
from autobatch._plan import Plan
from autobatch._settings import PipelineSettings

SIDE = 16
TRACE_FILE_ENV = "AUTOBATCH_TEST_AUGMENT_TRACES"
# In order (the plans' default lets parallel maps reorder examples): positions compare.
CACHED = PipelineSettings(cache="memory", deterministic=True)
STREAMED = PipelineSettings(cache="none", deterministic=True)


def flip_and_brighten(image: Any, seed: Any) -> Any:
    """Seeded, as users write it for tf.image's stateless ops."""
    image = tf.image.stateless_random_flip_left_right(image, seed)
    return tf.image.stateless_random_brightness(image, 40.0, seed + 1)


def traced_where(image: Any) -> Any:
    """Writes the tracing process's id (Python runs once, when tf.data traces the map)."""
    path = os.environ.get(TRACE_FILE_ENV)
    if path:
        with open(path, "a") as handle:
            handle.write(f"{os.getpid()}\n")
    return tf.image.flip_up_down(image)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("augment") / "data", {"a": 3, "b": 3},
                             size=(SIDE, SIDE))


def _epochs(ds: Any, n: int = 2) -> list[np.ndarray]:
    """The first batch's pixels of ``n`` whole passes (each pass one epoch)."""
    return [list(ds.as_numpy_iterator())[0][0] for _ in range(n)]


def test_a_seeded_function_gives_new_pixels_each_epoch_from_the_uncached_images(
        folder: Path) -> None:
    source = resolve_source(folder)
    build = dict(batch_size=6, settings=CACHED, image_size=SIDE, shuffle=False)
    plain = list(source.build_dataset(**build).as_numpy_iterator())[0][0]
    first, second = _epochs(source.build_dataset(**build, seed=7, augment=flip_and_brighten))
    assert not np.allclose(first, second)  # epoch 2 is not epoch 1 again
    again = _epochs(source.build_dataset(**build, seed=7, augment=flip_and_brighten))
    np.testing.assert_array_equal(again[0], first)  # a seeded rerun sees the same pixels
    np.testing.assert_array_equal(again[1], second)
    other = _epochs(source.build_dataset(**build, seed=8, augment=flip_and_brighten), 1)[0]
    assert not np.allclose(other, first)
    # Epoch 2 is the cached, un-augmented image flipped or not, plus one brightness shift:
    # an augmentation of the original, not of epoch 1's augmented pixels.
    for image, original in zip(second, plain, strict=True):
        assert any(np.ptp(image - variant) < 1e-3 for variant in (original, original[:, ::-1]))


def test_keras_preprocessing_layers_repeat_a_seeded_run(folder: Path) -> None:
    def layers() -> Any:
        return keras.Sequential([keras.layers.RandomFlip("horizontal", seed=1),
                                 keras.layers.RandomTranslation(0.2, 0.2, seed=2)])

    source = resolve_source(folder)
    build = dict(batch_size=6, settings=CACHED, image_size=SIDE, shuffle=False)
    first, second = _epochs(source.build_dataset(**build, augment=layers()))
    assert first.shape == (6, SIDE, SIDE, 3) and not np.allclose(first, second)
    again = _epochs(source.build_dataset(**build, augment=layers()))
    np.testing.assert_allclose(again[0], first)
    np.testing.assert_allclose(again[1], second)


def test_arrays_streamed_batch_by_batch_are_augmented_too() -> None:
    x = np.random.default_rng(0).integers(0, 255, (8, SIDE, SIDE, 3)).astype(np.uint8)
    source = resolve_source((x, np.arange(8) % 2))
    ds = source.build_dataset(batch_size=4, settings=STREAMED, shuffle=False, seed=3,
                              augment=flip_and_brighten)
    first, second = [np.concatenate([b[0] for b in ds.as_numpy_iterator()]) for _ in range(2)]
    assert first.shape == (8, SIDE, SIDE, 3) and not np.allclose(first, second)


def test_fit_trains_every_image_with_augmentation(folder: Path) -> None:
    model = counting_model((SIDE, SIDE, 3), 2)
    plan = Plan(batch_size=4, num_examples=6, ceiling_batch_size=8, image_size=(SIDE, SIDE))
    history = autobatch.fit(model, folder, plan=plan, epochs=2, seed=1, verbose=0,
                            augment=flip_and_brighten)
    assert int(model.seen.numpy()) == 12 and history.coverage.complete


def test_the_worker_measures_the_pipeline_with_the_augmentation(
        folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autobatch._probe import SubprocessProbeRunner

    traces = tmp_path / "traces.txt"
    monkeypatch.setenv(TRACE_FILE_ENV, str(traces))
    assert describe_augment(traced_where) == {"function": f"{__name__}:traced_where"}
    runner = SubprocessProbeRunner("small_cnn", folder, image_size=SIDE, augment=traced_where,
                                   host_memory_budget_bytes=8 << 30)
    try:
        result = runner.run(small(4))
    finally:
        runner.close()
    assert result.outcome == "ok", result.error
    pids = {int(line) for line in traces.read_text().split()}
    assert pids and os.getpid() not in pids  # traced in the worker, not here


def test_bad_augmentations_are_one_line_errors(folder: Path) -> None:
    source = resolve_source(folder)
    build = dict(batch_size=6, settings=PipelineSettings(), image_size=SIDE)
    with pytest.raises(DataError, match=r"changes the image shape from \[16, 16, 3\] to "
                                        r"\[8, 8, 3\]"):
        source.build_dataset(**build, augment=lambda image: tf.image.resize(image, (8, 8)))
    with pytest.raises(UsageError, match="augment must be a function of one image"):
        source.build_dataset(**build, augment="flip")
    # A function of the script being run (or a lambda) travels by value ...
    carried = rebuild_augment(describe_augment(lambda image: image * 2.0))
    assert float(carried(tf.constant(3.0))) == 6.0
    # ... unless it holds what cannot be pickled.
    import threading

    lock = threading.Lock()
    with pytest.raises(DataError, match="augment function cannot be sent to the probe worker"):
        describe_augment(lambda image: image if lock else image)

    def examples() -> Any:
        yield np.zeros((SIDE, SIDE, 3), np.float32), 0

    with pytest.raises(UsageError, match="augment cannot be applied to a generator"):
        resolve_source(examples).build_dataset(**build, augment=flip_and_brighten)
