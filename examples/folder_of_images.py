"""A folder of images: the naive tf.data code silently skips files; autobatch.fit does not.

Run: python examples/folder_of_images.py   (CPU, about a minute)

Builds a Keras-style folder from scikit-image's sample photos in which some files are
saved as .jpeg/.png and one PNG is named .jpg, as real folders are. The "before" is
the pipeline users write by hand (glob '*/*.jpg', decode_jpeg, folder-name labels made
usable with a lookup): it trains on the .jpg files only, and says nothing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

IMG = 32


def make_folder(root: Path) -> Path:
    from PIL import Image

    from autobatch._demo import make_photo_folder  # sample-photo crops, 3 uneven classes

    make_photo_folder(root, images_per_class=[60, 45, 30], size=(48, 48))
    for i, path in enumerate(sorted(root.rglob("*.jpg"))):
        if i % 5 == 1:  # some files use other extensions, as folders collected by hand do
            Image.open(path).save(path.with_suffix(".png"))
            path.unlink()
        elif i % 5 == 2:
            path.rename(path.with_suffix(".jpeg"))
    return root


def small_cnn(num_classes: int):
    import keras

    inputs = keras.Input((IMG, IMG, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def before(data_dir: Path) -> int:
    """The naive code; returns how many images one epoch trains on."""
    import tensorflow as tf

    class_names = sorted(p.name for p in data_dir.iterdir())
    lookup = tf.keras.layers.StringLookup(vocabulary=class_names, num_oov_indices=0)

    def process_path(file_path):
        img = tf.image.decode_jpeg(tf.io.read_file(file_path), channels=3)
        return tf.image.resize(img, [IMG, IMG])

    list_ds = tf.data.Dataset.list_files(str(data_dir / "*/*.jpg"))
    ds = list_ds.map(lambda x: (process_path(x), lookup(tf.strings.split(x, os.sep)[-2])))
    ds = ds.shuffle(1000).batch(32).prefetch(tf.data.AUTOTUNE)
    small_cnn(len(class_names)).fit(ds, epochs=1, verbose=0)
    return sum(int(x.shape[0]) for x, _ in ds)


def main() -> None:
    import autobatch

    data_dir = make_folder(Path(tempfile.mkdtemp(prefix="autobatch-example-")) / "photos")
    total = sum(1 for p in data_dir.rglob("*") if p.is_file())
    print(f"folder: {total} image files in 3 classes")
    print(f"before: one epoch trained on {before(data_dir)} of {total} images, without a word")

    report = autobatch.audit(data_dir)
    print(f"audit: {report.summary_sentence()}")
    history = autobatch.fit(small_cnn(len(report.class_names)), data_dir, epochs=2, verbose=0,
                            tune_options={"time_budget": 20, "max_batch_size": 128})
    for entry in history.coverage.epochs:
        print("after:", entry.line("images"))
    print(f"plan: batch size {history.plan.batch_size}, {history.steps_per_epoch} steps per epoch")


if __name__ == "__main__":
    main()
