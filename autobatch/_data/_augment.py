"""Augmentation autobatch adds to a pipeline: after the cache (which holds decoded, resized,
un-augmented images) and around the batch, so that every epoch sees new pixels.

Two forms, as users write them:

* a function of one image, ``augment(image)`` or ``augment(image, seed)``: applied to each
  example before batching, in a parallel map (the plan's ``num_parallel_calls``). Given a
  ``seed`` parameter it receives a per-example seed (``shape [2]``, int64) for
  ``tf.image.stateless_random_*``, drawn from the pipeline's seed and new each epoch: epochs
  differ, and a seeded run repeats exactly, whatever the parallelism;
* a Keras layer (``keras.Sequential([RandomFlip(), RandomRotation(0.1)])``): applied to each
  batch with ``training=True``, in order (its own seed generator then repeats a seeded run).

The probe worker rebuilds it from ``describe_augment``: a function by its importable name (by
value, with cloudpickle, when it lives in the script being run or a notebook), a layer from
its Keras config. No TensorFlow at import.
"""

from __future__ import annotations

import inspect
import json
import sys
from typing import Any

from autobatch._errors import DataError, UsageError


def is_layer(augment: Any) -> bool:
    """Whether ``augment`` is a Keras layer (or model), without importing Keras."""
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(augment, keras.layers.Layer)


def check_augment(augment: Any) -> None:
    """A ``UsageError`` unless ``augment`` is None, a function or a Keras layer."""
    if augment is not None and not callable(augment):
        raise UsageError("{param} must be a function of one image or a Keras layer, got "
                         f"{type(augment).__name__}", parameter="augment")


def takes_seed(augment: Any) -> bool:
    """Whether a function has a ``seed`` parameter (it then gets a per-example seed)."""
    try:
        return "seed" in inspect.signature(augment).parameters
    except (TypeError, ValueError):
        return False


def describe_augment(augment: Any) -> dict[str, Any] | None:
    """What the worker rebuilds ``augment`` from (JSON-able), or None for no augmentation.

    Raises:
        DataError: a function the worker cannot import (a lambda, a nested function, one in
            ``__main__``).
    """
    if augment is None:
        return None
    if is_layer(augment):
        import keras

        return {"keras": keras.saving.serialize_keras_object(augment)}
    from autobatch._data._userland import importable_name

    name = importable_name(augment)
    if name is not None:
        return {"function": name}
    # Defined in the script being run (``__main__``), a notebook or a function: by value.
    import base64

    import cloudpickle

    try:
        payload = cloudpickle.dumps(augment)
    except Exception as exc:
        raise DataError(
            f"the augment function cannot be sent to the probe worker ({exc}); define it at "
            "module level in an importable module, or pass Keras preprocessing layers"
        ) from exc
    return {"pickle": base64.b64encode(payload).decode("ascii")}


def augment_modules(description: dict[str, Any] | None) -> list[str]:
    """The module the worker imports for an augmentation carried by name (none for layers
    and for one carried by value)."""
    name = (description or {}).get("function")
    return [name.partition(":")[0]] if name else []


def rebuild_augment(description: dict[str, Any] | None) -> Any:
    """The augmentation ``describe_augment`` described (in the worker)."""
    if not description:
        return None
    if "keras" in description:
        import keras

        return keras.saving.deserialize_keras_object(description["keras"])
    if "pickle" in description:
        import base64
        import pickle

        return pickle.loads(base64.b64decode(description["pickle"]))
    from autobatch._data._userland import import_function

    return import_function(description["function"], what="augment function")


def augment_key(augment: Any) -> str | None:
    """A stable text for the options fingerprint (a tune with other augmentation measures
    another pipeline)."""
    description = describe_augment(augment)
    return None if description is None else json.dumps(description, sort_keys=True,
                                                       default=str)
