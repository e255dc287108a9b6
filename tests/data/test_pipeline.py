"""The one pipeline builder, on real image files and real arrays (TF on CPU)."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from _probe_helpers import folder_source  # noqa: E402
from conftest import make_image_folder, write_image  # noqa: E402

from autobatch._data import (
    ArraySource,  # noqa: E402
    build_dataset,  # noqa: E402
)
from autobatch._errors import DataError  # noqa: E402
from autobatch._settings import PipelineSettings  # noqa: E402

SETTINGS = PipelineSettings(num_parallel_calls=2, prefetch=1)


def epoch(ds) -> tuple[list[int], list[float], list[int]]:  # type: ignore[no-untyped-def]
    """(batch sizes, per-image pixel sums in order, labels in order) of one pass."""
    sizes, sums, labels = [], [], []
    for images, batch_labels in ds:
        sizes.append(int(images.shape[0]))
        sums.extend(np.round(images.numpy().reshape(images.shape[0], -1).sum(axis=1), 1))
        labels.extend(batch_labels.numpy().tolist())
    return sizes, sums, labels


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("pipe") / "data",
                             {"cats": 10, "dogs": 8, "birds": 5})


def test_every_image_once_per_epoch_with_the_last_partial_batch(folder: Path) -> None:
    source = folder_source(folder)
    ds = build_dataset(source, batch_size=5, settings=SETTINGS, image_size=16, seed=1)
    assert ds.element_spec[0].shape.as_list() == [None, 16, 16, 3]
    assert ds.element_spec[0].dtype.name == "float32"
    assert ds.element_spec[1].dtype.name == "int32"
    sizes, sums, labels = epoch(ds)
    assert sizes == [5, 5, 5, 5, 3]
    assert Counter(labels) == Counter(source.labels) == {0: 5, 1: 10, 2: 8}
    unshuffled = epoch(build_dataset(source, batch_size=5, settings=SETTINGS, image_size=16,
                                     shuffle=False))
    assert sorted(sums) == sorted(unshuffled[1])
    assert len(set(unshuffled[1])) == 23  # random images: sums tell the examples apart


def test_reshuffles_every_epoch_and_is_seeded(folder: Path) -> None:
    source = folder_source(folder)
    ds = build_dataset(source, batch_size=8, settings=SETTINGS, image_size=8, seed=7)
    first, second = epoch(ds)[1], epoch(ds)[1]
    assert sorted(first) == sorted(second) and first != second
    again = epoch(build_dataset(source, batch_size=8, settings=SETTINGS, image_size=8, seed=7))[1]
    assert again == first


def test_matches_keras_own_loader_pixels_and_labels(folder: Path) -> None:
    import keras

    keras_ds = keras.utils.image_dataset_from_directory(
        folder, image_size=(20, 24), batch_size=64, shuffle=False, label_mode="int")
    keras_images, keras_labels = next(iter(keras_ds))
    ours = build_dataset(folder_source(folder), batch_size=64, settings=SETTINGS,
                         image_size=(20, 24), shuffle=False)
    images, labels = next(iter(ours))
    assert keras_ds.class_names == ["birds", "cats", "dogs"]
    np.testing.assert_array_equal(labels.numpy(), keras_labels.numpy())
    np.testing.assert_allclose(images.numpy(), keras_images.numpy(), atol=1e-3)
    assert 0.0 <= float(images.numpy().min()) and float(images.numpy().max()) <= 255.0


def test_channels_converted_to_what_the_model_takes(tmp_path: Path) -> None:
    gray = write_image(tmp_path / "d" / "a" / "gray.png", size=(12, 10), mode="L", fmt="PNG")
    rgba = write_image(tmp_path / "d" / "b" / "rgba.png", size=(12, 10), mode="RGBA", fmt="PNG")
    # A PNG named .jpg: decoded by content, not by extension.
    write_image(tmp_path / "d" / "b" / "png_named.jpg", size=(12, 10), mode="RGB", fmt="PNG")
    source = folder_source(tmp_path / "d")
    images, labels = next(iter(build_dataset(source, batch_size=8, settings=SETTINGS,
                                             image_size=(10, 12), channels=3, shuffle=False)))
    assert images.shape == (3, 10, 12, 3)
    from PIL import Image

    gray_pixels = np.asarray(Image.open(gray), dtype=np.float32)
    np.testing.assert_allclose(images[0].numpy(), np.repeat(gray_pixels[..., None], 3, -1))
    rgba_index = source.paths.index(str(rgba))
    rgb_pixels = np.asarray(Image.open(rgba), dtype=np.float32)[..., :3]
    np.testing.assert_allclose(images[rgba_index].numpy(), rgb_pixels)
    one = next(iter(build_dataset(source, batch_size=8, settings=SETTINGS, image_size=10,
                                  channels=1, shuffle=False)))[0]
    assert one.shape[-1] == 1


@pytest.mark.parametrize("in_memory", [True, False])
def test_arrays_every_example_once_and_converted(in_memory: bool) -> None:
    x = np.arange(13, dtype=np.uint8)[:, None, None].repeat(4, 1).repeat(4, 2)  # (13, 4, 4)
    y = np.arange(13) % 3
    settings = SETTINGS.replace(arrays_in_memory=in_memory)
    ds = build_dataset(ArraySource(x, y), batch_size=4, settings=settings, channels=3, seed=3)
    assert ds.element_spec[0].shape.as_list() == [None, 4, 4, 3]
    sizes, ids, labels = [], [], []
    for images, batch_labels in ds:
        sizes.append(int(images.shape[0]))
        ids.extend(images.numpy()[:, 0, 0, 0].astype(int).tolist())
        labels.extend(batch_labels.numpy().tolist())
        assert images.dtype.name == "float32"
    # deterministic=False: the parallel gather may hand the partial batch out early.
    assert sorted(sizes) == [1, 4, 4, 4]
    assert sorted(ids) == list(range(13)) and ids != list(range(13))
    assert labels == [i % 3 for i in ids]  # each image keeps its own label


@pytest.mark.parametrize("kind", ["folder", "arrays", "arrays_cached"])
def test_repeat_epochs_keeps_every_pass_one_whole_epoch(folder: Path, kind: str) -> None:
    if kind == "folder":
        source, n = folder_source(folder), 23
        key = lambda images: np.round(images.reshape(images.shape[0], -1).sum(axis=1), 1)  # noqa: E731
    else:
        n = 23
        x = np.arange(n, dtype=np.uint8)[:, None, None].repeat(4, 1).repeat(4, 2)
        source = ArraySource(x, np.arange(n) % 3)
        key = lambda images: images[:, 0, 0, 0].astype(int)  # noqa: E731
    settings = SETTINGS.replace(cache="memory") if kind == "arrays_cached" else SETTINGS
    ds = build_dataset(source, batch_size=5, settings=settings, image_size=8, seed=2,
                       repeat_epochs=True)
    it = iter(ds)  # one iterator for three epochs, as Keras keeps it with steps_per_epoch
    epochs = []
    for _ in range(3):
        batches = [next(it)[0].numpy() for _ in range(5)]  # ceil(23 / 5) steps
        # deterministic=False may put the partial batch anywhere in its epoch, never
        # across the boundary.
        assert sorted(b.shape[0] for b in batches) == [3, 5, 5, 5, 5]
        epochs.append([v for b in batches for v in key(b).tolist()])
    assert len(set(epochs[0])) == n
    for order in epochs[1:]:
        assert sorted(order) == sorted(epochs[0])  # every example exactly once per epoch
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2]  # reshuffled


def test_cached_arrays_reshuffle_every_epoch() -> None:
    # The cache holds examples in their own order; a cache after the shuffle would replay
    # the first epoch's order forever.
    x = np.arange(40, dtype=np.uint8)[:, None, None].repeat(4, 1).repeat(4, 2)
    ds = build_dataset(ArraySource(x, np.arange(40) % 3), batch_size=8,
                       settings=SETTINGS.replace(cache="memory"), seed=5)
    passes = [[int(v) for images, _ in ds for v in images.numpy()[:, 0, 0, 0]]
              for _ in range(3)]
    assert all(sorted(p) == list(range(40)) for p in passes)
    assert len({tuple(p) for p in passes}) == 3


def test_repeat_fills_every_batch(folder: Path) -> None:
    ds = build_dataset(folder_source(folder), batch_size=40, settings=SETTINGS, image_size=8,
                       repeat=True)
    images, _ = next(iter(ds))
    assert images.shape[0] == 40


def _chain(ds):  # type: ignore[no-untyped-def]
    """The dataset and its inputs, outermost first."""
    found = []
    while ds is not None:
        found.append(ds)
        ds = getattr(ds, "_input_dataset", None)
    return found


def test_every_setting_reaches_tf_data(folder: Path, tmp_path: Path) -> None:
    settings = PipelineSettings(num_parallel_calls=3, prefetch=5, cache="disk",
                                private_threadpool_size=4, deterministic=True,
                                max_intra_op_parallelism=2, shuffle_buffer=6)
    ds = build_dataset(folder_source(folder), batch_size=4, settings=settings, image_size=8,
                       cache_dir=tmp_path / "cache")
    options = ds.options()
    assert options.deterministic is True
    assert options.threading.private_threadpool_size == 4
    assert options.threading.max_intra_op_parallelism == 2
    # Concrete settings leave tf.data's autotuner nothing to do: it is off (its thread
    # would delay every iterator's deletion, i.e. the end of every model.fit call).
    assert options.autotune.enabled is False
    kinds = {type(d).__name__: d for d in _chain(ds)}
    assert int(kinds["_PrefetchDataset"]._buffer_size) == 5
    assert int(kinds["_ParallelMapDataset"]._num_parallel_calls) == 3
    assert int(kinds["_ShuffleDataset"]._buffer_size) == 6
    assert "CacheDataset" in " ".join(kinds)
    epoch(ds)
    assert any((tmp_path / "cache").iterdir())  # the disk cache was written there

    memory = build_dataset(folder_source(folder), batch_size=4, image_size=8,
                           settings=PipelineSettings(cache="memory", prefetch=0))
    names = [type(d).__name__ for d in _chain(memory)]
    assert "_PrefetchDataset" not in names and any("Cache" in n for n in names)
    assert memory.options().deterministic is False


def test_keras_default_baseline_uses_autotune(folder: Path) -> None:
    ds = build_dataset(folder_source(folder), batch_size=4, image_size=8,
                       settings=PipelineSettings.keras_default())
    kinds = {type(d).__name__: d for d in _chain(ds)}
    assert int(kinds["_PrefetchDataset"]._buffer_size) == -1
    assert int(kinds["_ParallelMapDataset"]._num_parallel_calls) == -1
    assert ds.options().autotune.enabled is True


def test_folder_without_image_size_is_a_data_error(folder: Path) -> None:
    with pytest.raises(DataError, match="image_size"):
        build_dataset(folder_source(folder), batch_size=4, settings=SETTINGS)


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_uint8_pixels_are_the_float_pixels_rounded(folder: Path, cache: str) -> None:
    def pixels(pipeline: PipelineSettings) -> np.ndarray:
        ds = build_dataset(folder_source(folder), batch_size=4, settings=pipeline,
                           image_size=(20, 24), shuffle=False)
        return np.concatenate([images.numpy() for images, _ in ds])

    base = PipelineSettings(cache=cache, deterministic=True)
    as_float = pixels(base)
    as_uint8 = pixels(base.replace(pixels="uint8"))
    assert as_float.dtype == np.float32 and as_uint8.dtype == np.uint8
    assert as_uint8.shape == as_float.shape == (23, 20, 24, 3)
    # The resize's fractions are rounded to the nearest level; nothing else changes.
    assert np.array_equal(as_uint8, np.round(as_float).astype(np.uint8))
    assert np.abs(as_uint8.astype(np.float32) - as_float).max() <= 0.5
    assert not np.array_equal(as_float, np.round(as_float))  # there were fractions to round


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_uint8_arrays_pass_through_exactly(cache: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(11, 16, 16, 1), dtype=np.uint8)
    y = np.arange(11)
    settings = PipelineSettings(cache=cache, pixels="uint8", deterministic=True)
    ds = build_dataset(ArraySource(x, y), batch_size=4, settings=settings, channels=3,
                       shuffle=False)
    images = np.concatenate([b.numpy() for b, _ in ds])
    assert images.dtype == np.uint8 and images.shape == (11, 16, 16, 3)
    assert all(np.array_equal(images[..., c], x[..., 0]) for c in range(3))
    rgba = build_dataset(ArraySource(x, y), batch_size=11, settings=settings, channels=4)
    alpha = next(iter(rgba))[0].numpy()[..., 3]
    assert alpha.dtype == np.uint8 and (alpha == 255).all()


def test_uint8_pixels_need_8bit_images() -> None:
    from autobatch._data import GeneratorSource

    settings = PipelineSettings(pixels="uint8")
    floats = np.zeros((4, 8, 8, 3), dtype=np.float32)
    with pytest.raises(DataError, match="8-bit images"):
        build_dataset(ArraySource(floats, np.zeros(4)), batch_size=2, settings=settings)

    def gen():  # type: ignore[no-untyped-def]
        yield np.zeros((8, 8, 3), np.uint8), 0

    with pytest.raises(DataError, match="8-bit images"):
        build_dataset(GeneratorSource(gen, num_examples_hint=1), batch_size=1, settings=settings)
    with pytest.raises(Exception, match="pixels must be one of"):
        PipelineSettings(pixels="float16")  # type: ignore[arg-type]


DISK = PipelineSettings(cache="disk", prefetch=0)
FILL_AND_DIE = """
import os, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from _probe_helpers import folder_source
from autobatch._data import build_dataset
from autobatch._settings import PipelineSettings
ds = build_dataset(folder_source(Path({folder!r})), batch_size=4, image_size=8,
                   settings=PipelineSettings(cache="disk", prefetch=0), cache_dir={cache!r},
                   shuffle=False)  # a full shuffle would read (and cache) every example first
filling = iter(ds)  # kept: a deleted iterator removes its lockfile
next(filling)  # the fill has begun
os._exit(0)  # ends like SIGKILL or the OOM killer: no destructor runs
"""


def test_a_fill_killed_midway_does_not_block_the_disk_cache(folder: Path, tmp_path: Path) -> None:
    """tf.data's lockfile, left by a process that died while filling the cache, used to fail
    every later run on that cache with AlreadyExistsError (tensorflow#28798)."""
    import subprocess

    cache = tmp_path / "cache"
    subprocess.run([sys.executable, "-c", FILL_AND_DIE.format(
        tests=str(Path(__file__).parents[1]), folder=str(folder), cache=str(cache))],
        check=True, timeout=300)
    assert list(cache.glob("tfdata_*.lockfile")), "the dead fill left no lockfile"
    assert not (cache / "tfdata.index").exists()

    ds = build_dataset(folder_source(folder), batch_size=4, image_size=8, settings=DISK,
                       cache_dir=cache)
    assert sum(epoch(ds)[0]) == 23
    assert (cache / "tfdata.index").exists() and not list(cache.glob("tfdata_*"))
    assert sum(epoch(ds)[0]) == 23  # and read back from the finished cache


def test_a_disk_cache_another_process_is_filling_is_left_alone(
        folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import fcntl

    cache = tmp_path / "cache"
    cache.mkdir()
    with open(cache / ".autobatch-fill.lock", "w") as other:
        fcntl.flock(other, fcntl.LOCK_EX)  # as another live process filling this cache
        ds = build_dataset(folder_source(folder), batch_size=4, image_size=8, settings=DISK,
                           cache_dir=cache)
        assert sum(epoch(ds)[0]) == 23
    assert "another process is filling the disk cache" in caplog.text
    assert sorted(p.name for p in cache.iterdir()) == [".autobatch-fill.lock"]
