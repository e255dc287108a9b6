"""Every place the probe looks at the kind of a data source, together (parent and worker):
resolving the user's data, class counts, the image size of a folder, describing a source
for the worker and rebuilding it there, and the worker's subset for a cached probe.
No TensorFlow at import.

The seam the ``Source`` protocol (``autobatch._data``) replaces: each function below tests
the type of a source; nothing else in ``autobatch._probe`` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autobatch._atomic import atomic_write_bytes
from autobatch._errors import DataError, ModelError, ProbeError
from autobatch._sources import ArraySource, FileSource, GeneratorSource, resolve_source

# ---------------------------------------------------------------- parent side


def probe_source(data: Any) -> Any:
    """The source a runner probes, from anything ``resolve_source`` takes."""
    return resolve_source(data)


def num_classes(source: Any) -> int | None:
    """Classes of a folder, or of arrays with one-hot or integer labels; None if unknown."""
    if isinstance(source, FileSource):
        return source.num_classes
    if isinstance(source, ArraySource) and source.y is not None:
        import numpy as np

        y = np.asarray(source.y)
        if y.ndim >= 2 and y.shape[-1] > 1:
            return int(y.shape[-1])
        if np.issubdtype(y.dtype, np.integer) and y.size:
            return int(y.max()) + 1
    return None


def image_size_from_data(source: Any) -> tuple[int, int] | None:
    """Image size of a model that declares no input shape yet: a folder's images' own size
    when they all share it (the audit measured them); None for data that are not a folder.

    Raises:
        ModelError: the folder's images differ in size.
    """
    if not isinstance(source, FileSource):
        return None
    sizes = getattr(source.audit, "image_sizes", None) or {}
    width, height = sizes.get("width") or {}, sizes.get("height") or {}
    if width and height and width.get("min") == width.get("max") and \
            height.get("min") == height.get("max"):
        return (int(height["min"]), int(width["min"]))
    raise ModelError(
        "the model declares no input shape yet (a subclassed model not built) and the "
        "images differ in size; pass {param}=N or build the model first: "
        "model.build((None, H, W, C))", parameter="image_size")


def write_data_description(source: Any, work_dir: Path) -> dict[str, Any]:
    """Write what the worker needs to rebuild ``source``: an index file for a folder, .npy
    files for arrays (memory-mapped by the worker), a pickle for a generator."""
    if isinstance(source, FileSource):
        index = work_dir / "data_index.json"
        atomic_write_bytes(index, json.dumps({
            "paths": list(source.paths), "labels": list(source.labels),
            "class_names": list(source.class_names), "root": source.root}).encode())
        return {"kind": "directory", "index_path": str(index)}
    if isinstance(source, ArraySource):
        import numpy as np

        x_path = work_dir / "x.npy"
        np.save(x_path, np.asarray(source.x))
        description: dict[str, Any] = {"kind": "arrays", "x_path": str(x_path), "y_path": None}
        if source.y is not None:
            y_path = work_dir / "y.npy"
            np.save(y_path, np.asarray(source.y))
            description["y_path"] = str(y_path)
        return description
    if isinstance(source, GeneratorSource):
        path = work_dir / "generator.pkl"
        try:
            import pickle

            payload = pickle.dumps(source.generator)
        except Exception:
            try:
                import cloudpickle

                payload = cloudpickle.dumps(source.generator)
            except Exception as exc:
                raise DataError(
                    f"the generator cannot be sent to the probe worker ({exc}); define it at "
                    "module level in an importable module"
                ) from exc
        atomic_write_bytes(path, payload)
        return {"kind": "generator", "pickle_path": str(path),
                "num_examples_hint": source.num_examples_hint, "batched": source.batched}
    raise DataError(f"unknown data source {type(source).__name__}")


# ---------------------------------------------------------------- worker side


def load_source(data: dict[str, Any]) -> Any:
    """Rebuild the data source the parent described (index file, .npy files, pickle)."""
    kind = data["kind"]
    if kind == "directory":
        index = json.loads(Path(data["index_path"]).read_text())
        return FileSource(tuple(index["paths"]), tuple(index["labels"]),
                          tuple(index["class_names"]), index.get("root"))
    if kind == "arrays":
        import numpy as np

        x = np.load(data["x_path"], mmap_mode="r")
        y = np.load(data["y_path"], mmap_mode="r") if data.get("y_path") else None
        return ArraySource(x, y)
    if kind == "generator":
        import pickle

        with open(data["pickle_path"], "rb") as handle:
            generator = pickle.load(handle)
        return GeneratorSource(generator, data.get("num_examples_hint"), data.get("batched"))
    raise ProbeError(f"the probe worker was sent an unknown data kind {kind!r}")


def probe_subset(source: Any, count: int) -> Any | None:
    """The first ``count`` examples of ``source`` (a cached probe's subset), or None when
    the source cannot be cut (a generator)."""
    if count <= 0 or not isinstance(source, (FileSource, ArraySource)):
        return None
    if isinstance(source, FileSource):
        return FileSource(source.paths[:count], source.labels[:count],
                          source.class_names, source.root)
    y = None if source.y is None else source.y[:count]
    return ArraySource(source.x[:count], y)
