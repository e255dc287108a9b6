"""Folder options with the meaning of Keras' ``image_dataset_from_directory`` (issue #18,
item 5): the pixels of ``crop_to_aspect_ratio`` equal Keras' own, ``color_mode`` sets the
channels, ``class_names`` chooses and orders the classes, bad values are one line."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from _fitmodels import counting_model
from conftest import assert_cli_usage_errors, make_image_folder

import autobatch
from autobatch._data import FileSource, resolve_source
from autobatch._errors import DataError, UsageError
from autobatch._plan import Plan
from autobatch._settings import PipelineSettings

SIZE = (24, 24)  # square targets of 48x40 images: crop and stretch differ
IN_ORDER = PipelineSettings(deterministic=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("options") / "data",
                             {"a": 3, "b": 2, "c": 2}, size=(48, 40))


def _pixels(source: FileSource, **options: object) -> dict[str, np.ndarray]:
    ds = source.build_dataset(batch_size=64, settings=IN_ORDER, image_size=SIZE,
                              shuffle=False, **options)
    (x, _), = ds.as_numpy_iterator()
    return dict(zip(source.paths, x, strict=True))


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_crop_to_aspect_ratio_feeds_keras_own_pixels(folder: Path, interpolation: str) -> None:
    source = autobatch.image_folder(folder, crop_to_aspect_ratio=True,
                                    interpolation=interpolation)
    ours = _pixels(source)
    theirs = keras.utils.image_dataset_from_directory(
        folder, image_size=SIZE, crop_to_aspect_ratio=True, interpolation=interpolation,
        shuffle=False, batch_size=64, verbose=False)
    (x, _), = theirs.as_numpy_iterator()
    assert len(theirs.file_paths) == len(ours) == 7
    for path, image in zip(theirs.file_paths, x, strict=True):
        np.testing.assert_allclose(ours[path], image, atol=1e-5)
    stretched = _pixels(resolve_source(folder))  # the default stretches: other pixels
    assert any(not np.allclose(stretched[p], ours[p]) for p in ours)


def test_color_mode_sets_the_channels_and_class_names_the_classes(folder: Path) -> None:
    gray = autobatch.image_folder(folder, color_mode="grayscale")
    (image,) = list(_pixels(gray).values())[:1]
    assert image.shape == (*SIZE, 1)
    chosen = autobatch.image_folder(folder, class_names=["c", "a"])
    assert chosen.class_names == ("c", "a") and chosen.num_examples == 5
    assert sorted(chosen.labels) == [0, 0, 1, 1, 1]  # c first, then a; b left out
    assert all(("/c/" in p) == (label == 0) for p, label in zip(chosen.paths, chosen.labels,
                                                                 strict=True))
    assert chosen.fingerprint() != resolve_source(folder).fingerprint()
    assert gray.fingerprint() != resolve_source(folder).fingerprint()
    assert autobatch.image_folder(folder).fingerprint() == resolve_source(folder).fingerprint()


def test_the_worker_reads_the_folder_with_the_same_options(folder: Path,
                                                           tmp_path: Path) -> None:
    source = autobatch.image_folder(folder, crop_to_aspect_ratio=True, color_mode="rgb",
                                    interpolation="area")
    rebuilt = FileSource.rebuild(source.describe(tmp_path))
    assert rebuilt.options == source.options and rebuilt.paths == source.paths


def test_fit_with_grayscale_for_a_one_channel_model(folder: Path) -> None:
    plan = Plan(batch_size=4, num_examples=7, ceiling_batch_size=8, image_size=SIZE)
    model = counting_model((*SIZE, 1), 3)
    history = autobatch.fit(model, autobatch.image_folder(folder, color_mode="grayscale"),
                            plan=plan, verbose=0)
    assert int(model.seen.numpy()) == 7 and history.coverage.complete
    with pytest.raises(DataError, match="color_mode='grayscale' gives 1 channel.*takes 3"):
        autobatch.fit(counting_model((*SIZE, 3), 3),
                      autobatch.image_folder(folder, color_mode="grayscale"),
                      plan=plan, verbose=0)


def test_bad_folder_options_are_one_line_errors(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="color_mode must be one of grayscale, rgb, rgba"):
        autobatch.image_folder(folder, color_mode="cmyk")
    with pytest.raises(UsageError, match="interpolation must be one of bilinear"):
        autobatch.image_folder(folder, interpolation="linear")
    with pytest.raises(UsageError, match="crop_to_aspect_ratio and pad_to_aspect_ratio"):
        autobatch.image_folder(folder, crop_to_aspect_ratio=True, pad_to_aspect_ratio=True)
    with pytest.raises(UsageError, match="class_names must name distinct class sub-folders"):
        autobatch.image_folder(folder, class_names=["a", "zebra"])
    with pytest.raises(DataError, match="does not exist"):
        autobatch.image_folder(tmp_path / "missing")


def test_cli_fit_takes_the_folder_options_and_augment(
        folder: Path, user_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from autobatch._cli import main

    (user_folder / "cli_aug.py").write_text(
        "import tensorflow as tf\n"
        "def flip(image, seed):\n"
        "    return tf.image.stateless_random_flip_left_right(image, seed)\n")
    Plan(batch_size=4, num_examples=5, ceiling_batch_size=8, image_size=SIZE).save(
        user_folder / "plan.json")
    args = ["fit", str(folder), "--model", "small_cnn", "--image-size", str(SIZE[0]),
            "--plan", "plan.json", "--class-names", "a,b", "--crop-to-aspect-ratio",
            "--color-mode", "rgb", "--augment", "cli_aug:flip", "--label-mode", "int"]
    assert main(args) == 0, capsys.readouterr().err
    assert "epoch 1: trained on 5 of 5 usable images" in capsys.readouterr().out
    assert_cli_usage_errors([
        ([*args[:8], "--crop-to-aspect-ratio", "--pad-to-aspect-ratio"],
         "--crop-to-aspect-ratio and --pad-to-aspect-ratio exclude each other"),
        (["fit", "--dataset", "x:y", "--model", "small_cnn", "--color-mode", "rgb"],
         "--color-mode applies to an image folder"),
        ([*args[:8], "--class-names", "a,zebra"], "--class-names must name distinct"),
    ], capsys)
