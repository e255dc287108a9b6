"""Model SPECs: a ``.keras`` file, a built-in name or a model-building function, resolved to
a compiled Keras model; saving a model for the probe worker, with the modules that define its
custom objects; what a model takes and gives; the optimizer's name.

A model-building function is ``"module:function"`` or a module-level callable; it is called
with no arguments and returns a ``keras.Model`` (compiled with the built-ins' defaults when it
is not). The probe worker imports and calls it itself, which serves models that a ``.keras``
file cannot carry (Lambda layers, subclassed models without ``get_config``).

TensorFlow/Keras are imported inside the functions only.

    _builtins   the built-in models, their compile defaults, "needs an image size"
    _userland   importing the user's modules, finding objects by qualified name
    _functions  model-building functions (specs, the worker's call)
    _resolve    a SPEC -> a compiled model; loading a .keras file
    _saving     saving for the worker, its custom objects, errors naming the cause
    _shapes     input shape, output units, uint8 input check
    _optimizer  the optimizer's name
"""

from __future__ import annotations

from autobatch._models._builtins import (
    BUILTIN_MODELS,
    build_builtin,
    builtin_image_size,
    compile_default,
    is_builtin,
)
from autobatch._models._files import check_keras_file, check_model_file
from autobatch._models._functions import (
    build_model_from_function,
    model_function_file,
    model_function_spec,
    rebuildable_class_spec,
)
from autobatch._models._optimizer import optimizer_name
from autobatch._models._resolve import load_model_file, resolve_model
from autobatch._models._saving import (
    WAYS_OUT,
    custom_objects_in,
    import_custom_objects_for_worker,
    save_for_worker,
    save_model_for_worker,
)
from autobatch._models._shapes import model_accepts_uint8, model_input_shape, model_output_units
from autobatch._models._userland import import_custom_objects

__all__ = [
    "check_keras_file",
    "check_model_file",
    "BUILTIN_MODELS",
    "WAYS_OUT",
    "build_builtin",
    "build_model_from_function",
    "builtin_image_size",
    "compile_default",
    "custom_objects_in",
    "import_custom_objects",
    "import_custom_objects_for_worker",
    "is_builtin",
    "load_model_file",
    "model_accepts_uint8",
    "model_function_file",
    "model_function_spec",
    "model_input_shape",
    "model_output_units",
    "optimizer_name",
    "rebuildable_class_spec",
    "resolve_model",
    "save_for_worker",
    "save_model_for_worker",
]
