"""Fingerprints: short hashes of what a plan depends on (model, hardware, software, options).

A plan is cached under the combination of them; nothing here imports TensorFlow, so the
cache-hit path of ``tune`` stays TensorFlow-free.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from autobatch._plan._json import canonical_json


def short_hash(text: str | bytes, size: int = 16) -> str:
    """A hex BLAKE2b digest of ``size`` bytes (text as UTF-8, odd surrogates kept)."""
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    return hashlib.blake2b(data, digest_size=size).hexdigest()


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """Hash of a file's bytes (a saved ``.keras`` model), streamed, without TensorFlow."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_fingerprint(model: Any, *, num_classes: int | None = None,
                      image_size: Any = None, channels: int | None = None) -> str:
    """Fingerprint of a model SPEC without importing TensorFlow where possible.

    * a path to a saved model file: the file's bytes;
    * a built-in name (``"small_cnn"``, ``"mobilenet_v2:alpha=0.5"``): the SPEC text and the
      arguments it is built with;
    * a live ``keras.Model`` (the caller has TF loaded already): its architecture JSON,
      compiled optimizer and loss names.
    """
    shape_args = {"num_classes": num_classes, "image_size": image_size, "channels": channels}
    if isinstance(model, (str, os.PathLike)):
        text = os.fspath(model)
        if os.path.isfile(text):
            return short_hash(canonical_json({"file": file_fingerprint(text), **shape_args}))
        from autobatch._models import model_function_file

        source = model_function_file(text)  # "module:function": edits to it count
        if source is not None and os.path.isfile(source):
            return short_hash(canonical_json({"spec": text, "source": file_fingerprint(source),
                                              **shape_args}))
        return short_hash(canonical_json({"spec": text, **shape_args}))
    to_json = getattr(model, "to_json", None)
    if callable(to_json):
        try:
            arch = to_json()
        except Exception:  # subclassed models without get_config
            arch = repr([(w.name, tuple(w.shape)) for w in getattr(model, "weights", [])])
        optimizer = getattr(model, "optimizer", None)
        loss = getattr(model, "loss", None)
        extra = {
            "optimizer": type(optimizer).__name__ if optimizer is not None else None,
            "loss": loss if isinstance(loss, str) else type(loss).__name__,
        }
        return short_hash(canonical_json({"arch": arch, **extra, **shape_args}))
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    return short_hash(canonical_json({"object": kind, **shape_args}))


def hardware_fingerprint(env: Any = None) -> str:
    """What the machine offers that a plan depends on: CPUs, memory limit, GPU models.

    Free memory is left out on purpose: it changes from minute to minute, and the budget
    (part of the options fingerprint) is what the plan was held to.
    """
    if env is None:
        from autobatch._env import environment

        env = environment()
    record = {
        "cpu_logical": env.cpu.logical,
        "cpu_effective": env.cpu.effective,
        "memory_limit_bytes": env.host.memory_limit_bytes,
        "gpus": [(g.name, g.memory_total_bytes) for g in env.gpus],
        "driver": env.driver_version,
    }
    return short_hash(canonical_json(record))


def software_fingerprint() -> str:
    """TensorFlow and Keras versions read from package metadata (no import)."""
    from autobatch._env import package_version

    return f"tensorflow={package_version('tensorflow')};keras={package_version('keras')}"


def options_fingerprint(options: dict[str, Any]) -> str:
    """Hash of the tune options that change the answer (budget, image size, trials, ...)."""
    return short_hash(canonical_json(options))


def combined_key(fingerprints: dict[str, str], keys: tuple[str, ...] | None = None) -> str:
    """One hash over the named fingerprints (all of them by default), in a stable order."""
    chosen = sorted(fingerprints) if keys is None else list(keys)
    return short_hash(canonical_json([(k, fingerprints.get(k)) for k in chosen]), 12)
