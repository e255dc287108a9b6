"""The input pipelines users write, as the benchmark runs them side by side.

Each builder returns ``(dataset_or_generator, fit_kwargs)`` for ``model.fit``. They are the
three situations users meet (arrays in RAM, a tf.data file pipeline, a Python
generator) plus Keras' own loader, written the way users write them, with the silent label
bugs of the note fixed so that every pipeline trains on the same task.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def list_files(data_dir: Path) -> tuple[list[str], list[int], list[str]]:
    class_names = sorted(p.name for p in data_dir.iterdir() if p.is_dir())
    paths, labels = [], []
    for index, name in enumerate(class_names):
        for file in sorted((data_dir / name).iterdir()):
            if file.suffix.lower() in IMAGE_EXTENSIONS:
                paths.append(str(file))
                labels.append(index)
    return paths, labels, class_names


def keras_default(data_dir: Path, image_size: int):
    """``keras.utils.image_dataset_from_directory`` with its defaults (batch 32, AUTOTUNE)."""
    import keras

    ds = keras.utils.image_dataset_from_directory(
        str(data_dir), image_size=(image_size, image_size), verbose=False
    )
    return ds, {}


def classic_file_pipeline(data_dir: Path, image_size: int):
    """The hand-written tf.data pipeline users copy: map(AUTOTUNE), batch 32, prefetch(AUTOTUNE)."""
    import tensorflow as tf

    paths, labels, _ = list_files(data_dir)

    def process_path(path, label):
        image = tf.io.read_file(path)
        image = tf.image.decode_jpeg(image, channels=3)
        image = tf.image.resize(image, [image_size, image_size])
        return image, label

    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    ds = ds.shuffle(len(paths)).map(process_path, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(32).prefetch(tf.data.AUTOTUNE)
    return ds, {}


def load_arrays(data_dir: Path, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    paths, labels, _ = list_files(data_dir)
    x = np.empty((len(paths), image_size, image_size, 3), dtype=np.float32)
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            x[i] = np.asarray(image.convert("RGB").resize((image_size, image_size),
                                                          Image.Resampling.BILINEAR))
    return x, np.asarray(labels, dtype=np.int32)


def preloaded_arrays(data_dir: Path, image_size: int, arrays=None):
    """Example 1 of the note: every image decoded into RAM, then from_tensor_slices, batch 32."""
    import tensorflow as tf

    x, y = arrays if arrays is not None else load_arrays(data_dir, image_size)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x)).batch(32)
    return ds, {}


def python_generator(data_dir: Path, image_size: int):
    """Example 3 of the note, with its bugs fixed: a generator of batches, PIL decoding,
    ``steps_per_epoch = ceil(N / 32)`` so that no image is dropped."""
    from PIL import Image

    paths, labels, _ = list_files(data_dir)
    batch_size = 32
    rng = np.random.default_rng(0)

    def generator():
        while True:
            order = rng.permutation(len(paths))
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                images = []
                for i in idx:
                    with Image.open(paths[i]) as image:
                        images.append(np.asarray(image.convert("RGB").resize(
                            (image_size, image_size), Image.Resampling.BILINEAR), dtype=np.float32))
                yield np.stack(images), np.asarray([labels[i] for i in idx], dtype=np.int32)

    return generator(), {"steps_per_epoch": math.ceil(len(paths) / batch_size)}


def count_images(data_dir: Path) -> int:
    return len(list_files(data_dir)[0])


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
