"""A ``tf.data`` graph as autobatch reads it: serialized for the probe worker (refused when
it calls back into Python), keyed for the plan cache (stable when the same pipeline is built
again, in any process), searched for random-number ops; element specs as text. TensorFlow is
imported inside the functions only."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from autobatch._errors import DataError

_PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
# Per-process counters tf.data puts in a graph's names (traced functions, dataset metadata,
# seed generators): the same pipeline built again differs only there.
_COUNTERS = re.compile(r"(__inference_\w*?_|SeedGenerator_|FileIdentity/)\d+")


def serialize(dataset: Any, *, check_python: bool = False) -> bytes:
    """The dataset's serialized ``GraphDef``; with ``check_python``, a ``DataError`` when the
    graph calls back into Python (which another process cannot run)."""
    import tensorflow as tf

    graph = bytes(tf.raw_ops.DatasetToGraphV2(
        input_dataset=dataset._variant_tensor,  # noqa: SLF001 - tf.data's own handle
        external_state_policy=0, strip_device_assignment=True).numpy())
    if check_python and calls_python(graph):
        raise DataError(
            "the dataset runs Python code (tf.py_function, tf.numpy_function or "
            "Dataset.from_generator), which the probe worker cannot carry over; pass "
            "the function that builds the dataset as 'module:function' instead (a "
            "module the worker can import)")
    return graph


def calls_python(graph: bytes) -> bool:
    """Whether the graph calls back into Python (``tf.py_function``, ``tf.numpy_function``,
    ``Dataset.from_generator``), which no other process can run."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef.FromString(graph)
    ops = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        ops.update(node.op for node in function.node_def)
    return bool(ops & _PYTHON_OPS)


def graph_key(graph: bytes) -> bytes:
    """A digest of the graph without what differs when the same pipeline is built again (the
    dataset ops' per-process ``metadata``, the counters in names), in a fixed order (the
    function library's order is TensorFlow's own); large constants by their digest."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef.FromString(graph)
    parts: list[str] = []

    def strip(nodes: Any) -> None:
        for node in nodes:
            if "metadata" in node.attr:
                del node.attr["metadata"]
            tensor = node.attr["value"].tensor if "value" in node.attr else None
            if tensor is not None and len(tensor.tensor_content) > 1024:
                tensor.tensor_content = hashlib.blake2b(
                    tensor.tensor_content, digest_size=16).digest()

    strip(graph_def.node)
    for function in graph_def.library.function:
        strip(function.node_def)
        parts.append(_COUNTERS.sub(r"\1", str(function)))
    del graph_def.library.function[:]
    parts.sort()
    parts.insert(0, _COUNTERS.sub(r"\1", str(graph_def)))
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(part.encode("utf-8", "surrogateescape"))
    return digest.digest()


def draws_random_numbers(graph: bytes) -> bool:
    """Whether a serialized dataset graph's functions (its maps) hold random-number ops."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef.FromString(graph)
    return any("Random" in node.op or node.op.startswith(("Stateful", "Rng"))
               for function in graph_def.library.function for node in function.node_def)


_STAGE = re.compile(r"^(\w+?)Dataset(?:V\d+)?$")


def dataset_stages(graph: bytes) -> list[str]:
    """The user's stages as the graph holds them, in order: ``["TensorSlice", "Shuffle",
    "Map"]`` (a dataset op's name without ``Dataset`` and its version)."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef.FromString(graph)
    return [match.group(1) for node in graph_def.node if (match := _STAGE.match(node.op))]


def shape_list(shape: Any) -> list[int | None] | None:
    return None if shape.rank is None else [None if d is None else int(d) for d in shape]


def shape_text(shape: Any) -> str:
    dims = shape_list(shape)
    return "unknown" if dims is None else "(" + ", ".join(
        "None" if d is None else str(d) for d in dims) + ")"


def spec_text(spec: Any) -> str:
    if isinstance(spec, tuple):
        return "(" + ", ".join(spec_text(part) for part in spec) + ")"
    if isinstance(spec, dict):
        return "{" + ", ".join(f"{k!r}: {spec_text(v)}" for k, v in spec.items()) + "}"
    if hasattr(spec, "shape") and hasattr(spec, "dtype"):
        return f"{spec.dtype.name}{shape_text(spec.shape)}"
    return json.dumps(str(spec))
