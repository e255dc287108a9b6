"""A Python generator: the generator users write, and the same generator handed to
``autobatch.fit`` with its length.

Run: python examples/generator.py   (CPU, about a minute)

The naive code floors ``steps_per_epoch`` (the last partial batch of every pass is lost)
and, because its generator loops forever, each epoch starts where the last one stopped, so
which images are skipped changes from epoch to epoch. (It also counts
``os.listdir(data_dir)``, which are the class folders, not the images; fixed here so that
it runs at all.)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

IMG = 32
BATCH_SIZE = 32


def list_files(data_dir: Path) -> list[tuple[Path, int]]:
    classes = sorted(p.name for p in data_dir.iterdir() if p.is_dir())
    return [(f, classes.index(f.parent.name)) for f in sorted(data_dir.glob("*/*.jpg"))]


def image_generator(files: list[tuple[Path, int]], batch_size: int):
    """Example 3's generator, with its undefined ``img``/``label`` filled in."""
    import numpy as np
    from PIL import Image

    while True:  # infinite loop for continuous data generation
        for i in range(0, len(files), batch_size):
            batch_images, batch_labels = [], []
            for path, label in files[i:i + batch_size]:
                img = Image.open(path).convert("RGB").resize((IMG, IMG))
                batch_images.append(np.asarray(img, dtype=np.float32))
                batch_labels.append(label)
            yield np.array(batch_images), np.array(batch_labels)


def small_cnn():
    import keras

    inputs = keras.Input((IMG, IMG, 3))
    h = keras.layers.Rescaling(1 / 255)(inputs)
    h = keras.layers.Conv2D(8, 3, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main() -> None:
    import autobatch
    from autobatch._demo import make_photo_folder  # sample-photo crops, 3 uneven classes

    data_dir = Path(tempfile.mkdtemp(prefix="autobatch-example-")) / "photos"
    make_photo_folder(data_dir, images_per_class=[60, 45, 30], size=(48, 48))
    files = list_files(data_dir)
    n = len(files)

    steps = n // BATCH_SIZE  # before: floors
    small_cnn().fit(image_generator(files, BATCH_SIZE), steps_per_epoch=steps, epochs=2,
                    verbose=0)
    print(f"before: each epoch trained on {steps * BATCH_SIZE} of {n} images, without a word")

    # After: the same one-shot, endless generator; autobatch needs only its length. It keeps
    # the generator's own batch size (a generator cannot be sent to the tuning worker).
    history = autobatch.fit(small_cnn(), image_generator(files, BATCH_SIZE), epochs=2,
                            num_examples=n, verbose=0)
    for entry in history.coverage.epochs:
        print("after:", entry.line("images"))
    if history.coverage.uneven_last_batch:
        print(f"note: {history.coverage.notes[0]} (trained on, not dropped)")


if __name__ == "__main__":
    main()
