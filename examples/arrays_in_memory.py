"""Arrays in memory: a floored steps_per_epoch drops the last partial batch every epoch.

Run: python examples/arrays_in_memory.py   (CPU, about a minute)

The arrays are crops of scikit-image's sample photos (three classes). The "before" is
the arrays-in-RAM pipeline users write, with the step count many scripts add for a repeated
dataset: ``steps_per_epoch = len(x) // batch_size``. The "after" is ``autobatch.fit``,
whose plan also decides whether the arrays go in as one tensor or are streamed in slices.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

IMG = 32
N = 1003


def make_arrays():
    import numpy as np
    from skimage import data
    from skimage.transform import resize

    rng = np.random.default_rng(0)
    photos = [data.astronaut(), data.coffee(), data.chelsea()]
    x = np.empty((N, IMG, IMG, 3), dtype=np.float32)
    y = rng.choice(3, size=N, p=[0.5, 0.33, 0.17])  # uneven classes
    for i, label in enumerate(y):
        photo = photos[label]
        top = rng.integers(0, photo.shape[0] - 128)
        left = rng.integers(0, photo.shape[1] - 128)
        x[i] = resize(photo[top:top + 128, left:left + 128], (IMG, IMG)) * 255
    return x, y


def small_cnn():
    import keras

    inputs = keras.Input((IMG, IMG, 3))
    h = keras.layers.Rescaling(1 / 255)(inputs)
    h = keras.layers.Conv2D(8, 3, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def before(x, y) -> int:
    """The naive code; returns how many examples one epoch trains on."""
    import tensorflow as tf

    batch_size = 128
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x)).repeat().batch(batch_size)
    steps = len(x) // batch_size  # floors: the last 1003 - 7 * 128 = 107 never train
    small_cnn().fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch_size  # every batch of a repeated dataset is full


def main() -> None:
    import autobatch

    x, y = make_arrays()
    print(f"arrays: {len(x)} examples of {x.shape[1:]}")
    print(f"before: one epoch trained on {before(x, y)} of {len(x)} examples, without a word")
    history = autobatch.fit(small_cnn(), (x, y), epochs=2, verbose=0,
                            tune_options={"time_budget": 20, "max_batch_size": 256})
    for entry in history.coverage.epochs:
        print("after:", entry.line("examples"))
    plan = history.plan
    where = "one in-memory tensor" if plan.pipeline.arrays_in_memory else "streamed slices"
    print(f"plan: batch size {plan.batch_size}, {history.steps_per_epoch} steps per epoch, "
          f"arrays as {where}")


if __name__ == "__main__":
    main()
