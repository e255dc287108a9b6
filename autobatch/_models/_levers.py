"""Memory levers applied to a built model: a mixed-precision dtype policy
(``mixed_float16`` / ``mixed_bfloat16``) and rematerialisation (``keras.RematScope``).

Neither can be switched on a model in place. A layer's dtype policy is fixed when it is
built (a ``.keras`` file's layer configs even name ``float32`` explicitly, so a global policy
set before loading changes nothing), and ``RematScope`` is read when a layer is *created*
(``Operation.__init__`` keeps ``get_current_remat_mode()``), not when it is called. So the
model is cloned (``keras.models.clone_model``, nested models too) with every layer's config
given the policy, inside the scope, and the weights are copied over. The layers that produce
the model's outputs stay ``float32`` (the softmax of a float16 logit loses the small
probabilities: Keras' mixed-precision guide). TensorFlow/Keras are imported inside.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

from autobatch._errors import ModelError
from autobatch._models._saving import all_layers
from autobatch._plan._schema import MIXED_PRECISION_POLICIES, REMAT_MODES


def lever_key(mixed_precision: str | None, remat: str | None) -> tuple[str | None, str | None]:
    """The levers as one hashable key (``(None, None)``: the model as given).

    Raises:
        ModelError: an unknown policy or mode.
    """
    if mixed_precision is not None and mixed_precision not in MIXED_PRECISION_POLICIES:
        raise ModelError(f"mixed_precision must be one of {MIXED_PRECISION_POLICIES} or None, "
                         f"got {mixed_precision!r}")
    if remat is not None and remat not in REMAT_MODES:
        raise ModelError(f"remat must be one of {REMAT_MODES} or None, got {remat!r}")
    return mixed_precision, remat


def remat_scope(remat: str | None) -> Any:
    """``keras.RematScope(mode=remat)``, or a no-op context for None."""
    if remat is None:
        return contextlib.nullcontext()
    import keras

    return keras.RematScope(mode=remat)


def apply_levers(model: Any, *, mixed_precision: str | None = None,
                 remat: str | None = None) -> Any:
    """A copy of ``model`` (weights and compile settings included) built under the dtype
    policy ``mixed_precision`` and the remat mode ``remat``; ``model`` itself when both are
    None.

    Raises:
        ModelError: the model cannot be cloned (a subclassed model: build it under the
            policy and scope yourself).
    """
    lever_key(mixed_precision, remat)
    if mixed_precision is None and remat is None:
        return model
    import keras

    output_layers = {id(layer) for layer in _output_layers(model)}

    def clone_layer(layer: Any) -> Any:
        config = layer.get_config()
        if mixed_precision is not None and "dtype" in config:
            keep = id(layer) in output_layers
            config["dtype"] = keras.DTypePolicy("float32" if keep else mixed_precision)
        return layer.__class__.from_config(config)

    previous = keras.mixed_precision.global_policy()
    try:
        with remat_scope(remat):
            if mixed_precision is not None:
                # The model itself (its dtype_policy: compile's loss scaling reads it).
                keras.mixed_precision.set_global_policy(mixed_precision)
            clone = keras.models.clone_model(model, clone_function=clone_layer,
                                             recursive=True)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise ModelError(f"cannot rebuild {getattr(model, 'name', 'the model')} under "
                         f"mixed_precision={mixed_precision!r}, remat={remat!r}: {exc}") from exc
    finally:
        keras.mixed_precision.set_global_policy(previous)
    clone.set_weights(model.get_weights())
    if getattr(model, "compiled", False):
        # compile, not compile_from_config: that one builds the optimizer, and a plan that
        # accumulates gradients must set gradient_accumulation_steps before it is built.
        clone.compile(**keras.saving.deserialize_keras_object(model.get_compile_config()))
    return clone


def _output_layers(model: Any) -> list[Any]:
    """The layers whose outputs are the model's outputs (the last layer of a Sequential)."""
    import keras

    history = [getattr(t, "_keras_history", None)
               for t in keras.tree.flatten(getattr(model, "outputs", None) or [])]
    layers = [h[0] for h in history if h is not None]
    if not layers and getattr(model, "layers", None):
        layers = [model.layers[-1]]
    return layers


def levers_in_effect(model: Any) -> dict[str, Any]:
    """What the model computes in: the compute dtype most of its layers use, and the remat
    mode most of its layers were created under (None: none)."""
    layers = [layer for layer in all_layers(model)
              if not hasattr(layer, "layers") and type(layer).__name__ != "InputLayer"]
    dtypes = Counter(str(getattr(layer, "compute_dtype", "") or "") for layer in layers)
    dtypes.pop("", None)
    modes = Counter(getattr(getattr(layer, "_remat_mode", None), "mode", None)
                    for layer in layers)
    mode = modes.most_common(1)[0][0] if modes else None
    return {"compute_dtype": dtypes.most_common(1)[0][0] if dtypes else None,
            "remat": mode}

