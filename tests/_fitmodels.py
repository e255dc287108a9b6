"""Tiny Keras models for the fit/coverage tests (imported lazily: TensorFlow inside)."""

from __future__ import annotations

from typing import Any


def counting_model(input_shape: tuple[int, ...] = (16, 16, 3), units: int = 3, *,
                   loss: str = "sparse_categorical_crossentropy", optimizer: Any = "adam",
                   steps_per_execution: int = 1) -> Any:
    """A functional model whose own ``train_step`` adds each batch's size to ``model.seen``.

    The count is the model's, independent of autobatch's counter: it is what the
    acceptance tests compare against.
    """
    import keras
    import tensorflow as tf

    class CountingModel(keras.Model):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.seen = tf.Variable(0, dtype=tf.int64, trainable=False)

        def train_step(self, data: Any) -> Any:
            x = data[0] if isinstance(data, tuple) else data
            self.seen.assign_add(tf.cast(tf.shape(x)[0], tf.int64))
            return super().train_step(data)

    inputs = keras.Input(input_shape)
    h = inputs
    if len(input_shape) == 3:
        h = keras.layers.Rescaling(1.0 / 255)(h)
        h = keras.layers.Conv2D(4, 3, activation="relu")(h)
        h = keras.layers.GlobalAveragePooling2D()(h)
    else:
        h = keras.layers.Flatten()(h)
    activation = "sigmoid" if loss == "binary_crossentropy" else "softmax"
    outputs = keras.layers.Dense(units, activation=activation)(h)
    model = CountingModel(inputs, outputs)
    model.compile(optimizer=optimizer, loss=loss, steps_per_execution=steps_per_execution)
    return model
