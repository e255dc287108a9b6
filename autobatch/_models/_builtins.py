"""The built-in models (``small_cnn`` and three Keras applications, ``weights=None``) and
the compile defaults every built-in and every uncompiled model gets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autobatch._errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    import keras


BUILTIN_MODELS: tuple[str, ...] = ("small_cnn", "mobilenet_v2", "resnet50", "efficientnet_b0")


def is_builtin(spec: Any) -> bool:
    return isinstance(spec, str) and spec in BUILTIN_MODELS


def builtin_image_size(name: str, image_size: Any) -> tuple[int, int]:
    """The ``(height, width)`` a built-in is built at: ``image_size``, which it needs.

    The one "needs an image size" check (tune, fit and probe ask it of a built-in SPEC).

    Raises:
        ModelError: (about ``image_size``) no image size was given.
    """
    from autobatch._data import normalize_image_size

    size = normalize_image_size(image_size)
    if size is None:
        raise ModelError(f"built-in model {name!r} needs an image size; pass {{param}} N",
                         parameter="image_size")
    return size


def build_builtin(name: str, *, num_classes: int, image_size: Any, channels: int = 3,
                  jit_compile: bool | str = False) -> keras.Model:
    """The built-in ``name``, sized to the classes and image size, compiled with Adam.

    Raises:
        ModelError: no image size, or fewer than one class.
    """
    size = builtin_image_size(name, image_size)
    if num_classes < 1:
        raise ModelError(f"num_classes must be >= 1 for {name!r}, got {num_classes}")
    model = _BUILDERS[name](num_classes, size, int(channels))
    compile_default(model, jit_compile)
    return model


def compile_default(model: keras.Model, jit_compile: bool | str) -> None:
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )


def _small_cnn(num_classes: int, size: tuple[int, int], channels: int) -> keras.Model:
    import keras
    from keras import layers

    inputs = keras.Input((size[0], size[1], channels))
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(8, 3, activation="relu", padding="same")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(16, 3, activation="relu", padding="same")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(32, 3, activation="relu", padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def _application(name: str, num_classes: int, size: tuple[int, int], channels: int) -> keras.Model:
    import keras
    from keras import layers

    shape = (size[0], size[1], channels)
    inputs = keras.Input(shape)
    if name == "mobilenet_v2":
        # MobileNetV2 expects pixels in [-1, 1].
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
        base = keras.applications.MobileNetV2(input_shape=shape, weights=None,
                                              classes=num_classes, include_top=True)
    elif name == "resnet50":
        # ResNet50 expects mean-centred pixels ("caffe" mode); the BGR swap does not matter
        # for weights=None.
        x = layers.Rescaling(1.0, offset=-117.0)(inputs)
        base = keras.applications.ResNet50(input_shape=shape, weights=None,
                                           classes=num_classes, include_top=True)
    elif name == "efficientnet_b0":
        # EfficientNet rescales inside the model: it takes 0..255 as is.
        x = inputs
        base = keras.applications.EfficientNetB0(input_shape=shape, weights=None,
                                                 classes=num_classes, include_top=True)
    else:  # pragma: no cover
        raise ModelError(f"unknown built-in model {name!r}")
    outputs = base(x)
    return keras.Model(inputs, outputs, name=name)


_BUILDERS: dict[str, Any] = {
    "small_cnn": _small_cnn,
    "mobilenet_v2": lambda n, s, c: _application("mobilenet_v2", n, s, c),
    "resnet50": lambda n, s, c: _application("resnet50", n, s, c),
    "efficientnet_b0": lambda n, s, c: _application("efficientnet_b0", n, s, c),
}
