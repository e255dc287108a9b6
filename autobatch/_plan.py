"""The Plan: what ``tune`` decided, as plain versioned JSON, and the plan cache.

A Plan is the contract between the search and training: enough to rebuild the tuned
pipeline (``plan.dataset(data)``) and call ``model.fit`` (``plan.fit_kwargs()``) without
searching again. Nothing here imports TensorFlow at module level, so the cache-hit path of
``tune`` (fingerprint, look up, load) stays TensorFlow-free.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from autobatch._errors import PlanError
from autobatch._settings import PipelineSettings

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEFAULT_REFERENCE_BATCH_SIZE = 32
DEFAULT_PLAN_FILENAME = "autobatch-plan.json"

LearningRateRule = Literal["linear", "sqrt", "none"]

# Optimizer class names (lower case) by LR scaling rule. SGD-family: the linear scaling rule
# (Goyal et al. 2017). Adaptive (Adam-family): square-root scaling (Hoffer et al. 2017;
# Malladi et al. 2022). Layer-wise adaptive optimizers (LARS/LAMB) and learning-rate-free
# ones are built for large batches or take no LR, so they are left alone.
_LINEAR_OPTIMIZERS = frozenset({"sgd", "momentum", "nesterov"})
_SQRT_OPTIMIZERS = frozenset(
    {"adam", "adamw", "adamax", "nadam", "amsgrad", "rmsprop", "adagrad", "lion", "adafactor"}
)


# ---------------------------------------------------------------- learning-rate scaling


@dataclass(frozen=True)
class LearningRateScaling:
    """How ``fit`` scales the model's learning rate for the tuned batch size.

    ``factor`` multiplies the learning rate the model was compiled with, which is assumed to
    have been chosen for ``reference_batch_size``.
    """

    reference_batch_size: int = DEFAULT_REFERENCE_BATCH_SIZE
    factor: float = 1.0
    rule: LearningRateRule = "none"
    optimizer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> LearningRateScaling:
        if not data:
            return cls()
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def learning_rate_rule(optimizer_name: str | None) -> LearningRateRule:
    """The scaling rule for an optimizer class name: linear for SGD, sqrt for Adam-family.

    Args:
        optimizer_name: the class name (``"SGD"``, ``"AdamW"``, ...) or a Keras string
            identifier (``"adam"``); None or unknown names get ``"none"``.
    """
    if not optimizer_name:
        return "none"
    name = optimizer_name.strip().lower().replace("_", "")
    if name.startswith("legacy") or name.startswith("keras."):
        name = name.rsplit(".", 1)[-1].replace("legacy", "")
    if name in _LINEAR_OPTIMIZERS:
        return "linear"
    if name in _SQRT_OPTIMIZERS:
        return "sqrt"
    return "none"


def learning_rate_scaling(
    optimizer_name: str | None,
    batch_size: int,
    reference_batch_size: int = DEFAULT_REFERENCE_BATCH_SIZE,
) -> LearningRateScaling:
    """The learning-rate factor for training at ``batch_size`` instead of the reference.

    Args:
        optimizer_name: optimizer class name, e.g. ``type(model.optimizer).__name__``.
        batch_size: the global batch size the plan trains at.
        reference_batch_size: the batch size the compiled learning rate was chosen for.

    Returns:
        ``factor = batch_size / reference`` (linear), its square root (sqrt), or 1.0.
    """
    if batch_size < 1 or reference_batch_size < 1:
        raise ValueError("batch sizes must be >= 1")
    rule = learning_rate_rule(optimizer_name)
    ratio = batch_size / reference_batch_size
    factor = {"linear": ratio, "sqrt": math.sqrt(ratio), "none": 1.0}[rule]
    return LearningRateScaling(
        reference_batch_size=reference_batch_size,
        factor=float(factor),
        rule=rule,
        optimizer=optimizer_name,
    )


# ---------------------------------------------------------------- the Plan


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Steps that use every example once per epoch: the last batch may be partial."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return max(1, math.ceil(num_examples / batch_size))


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _autobatch_version() -> str:
    from autobatch import __version__

    return __version__


@dataclass
class Plan:
    """The tuned batch size and pipeline settings, with the measurements behind them.

    The fields follow the schema in docs/ARCHITECTURE.md (version 1). Nested records
    (``measured``, ``baseline``, ``ceiling``, ``trials``, ...) stay plain dicts so that a
    person can read the JSON and older readers ignore keys they do not know.
    """

    batch_size: int
    num_examples: int
    ceiling_batch_size: int
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    per_replica_batch_size: int | None = None
    num_replicas: int = 1
    image_size: tuple[int, int] | None = None
    channels: int = 3
    jit_compile: bool = False
    measured: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] | None = None
    learning_rate: LearningRateScaling = field(default_factory=LearningRateScaling)
    ceiling: dict[str, Any] = field(default_factory=dict)
    trials: list[dict[str, Any]] = field(default_factory=list)
    fingerprints: dict[str, str] = field(default_factory=dict)
    study: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] | None = None
    hardware: dict[str, Any] = field(default_factory=dict)
    """Readable description of the machine it was measured on (cpus, memory, gpus)."""
    autobatch_version: str = field(default_factory=_autobatch_version)
    created_at: str = field(default_factory=_utc_now)
    schema_version: int = SCHEMA_VERSION
    cache_hit: bool = field(default=False, compare=False)
    """True when ``tune`` returned this plan from the cache (not written to JSON)."""
    path: str | None = field(default=None, compare=False)
    """Where this plan was loaded from or last saved to (not written to JSON)."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise PlanError(f"plan batch_size must be >= 1, got {self.batch_size}")
        if self.per_replica_batch_size is None:
            self.per_replica_batch_size = self.batch_size // max(1, self.num_replicas)
        if self.image_size is not None:
            self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        if self.pipeline.uses_autotune and not self.keeps_default:
            # A plan states what it measured; AUTOTUNE would hide the real choice. The one
            # exception is the untuned default itself, kept because nothing beat it.
            raise PlanError("a plan's pipeline settings must be concrete numbers, not AUTOTUNE "
                            "(only a plan that keeps the untuned default holds AUTOTUNE)")

    # ------------------------------------------------------------ derived values

    @property
    def steps_per_epoch(self) -> int:
        """``ceil(num_examples / batch_size)``: every example once per epoch."""
        return steps_per_epoch(self.num_examples, self.batch_size)

    @property
    def examples_per_s(self) -> float | None:
        return self.measured.get("examples_per_s")

    @property
    def peak_memory_bytes(self) -> int | None:
        return self.measured.get("peak_memory_bytes")

    @property
    def memory_budget_bytes(self) -> int | None:
        return self.measured.get("memory_budget_bytes")

    @property
    def versus_default(self) -> dict[str, Any] | None:
        """The plan's pick against the untuned default, measured side by side in the same
        interleaved rounds (``measured.versus_default``); None for plans without it."""
        value = self.measured.get("versus_default")
        return value if isinstance(value, dict) else None

    @property
    def keeps_default(self) -> bool:
        """True when no candidate beat the untuned default beyond the noise, so the plan is
        that default (batch 32, tf.data AUTOTUNE)."""
        return (self.versus_default or {}).get("decision") == "default"

    @property
    def speedup_over_baseline(self) -> float | None:
        """The plan's examples/s over the untuned default's, both measured in the same run:
        the median of the paired per-round ratios when the default was a finalist (1.0 when
        the plan keeps it), else the ratio of the two readings."""
        versus = self.versus_default
        if versus is not None:
            if versus.get("decision") == "default":
                return 1.0
            if versus.get("median_ratio"):
                return float(versus["median_ratio"])
        if not self.baseline:
            return None
        base = self.baseline.get("examples_per_s")
        if not base or not self.examples_per_s:
            return None
        return float(self.examples_per_s) / float(base)

    # ------------------------------------------------------------ training hand-off

    def fit_kwargs(self, num_examples: int | None = None) -> dict[str, Any]:
        """Keyword arguments for
        ``model.fit(plan.dataset(data, repeat=True), epochs=N, **plan.fit_kwargs())``.

        Everything ``model.fit`` needs from the plan so that each epoch is exactly one pass:
        ``steps_per_epoch`` (``ceil(num_examples / batch_size)``: the repeated dataset has
        no end of its own, and the last, partial batch is trained on) and ``shuffle=False``
        (the dataset reshuffles every epoch itself; Keras ignores ``shuffle`` for a
        ``tf.data`` input and warns about it). The dataset is already batched, so
        ``batch_size`` is not passed; ``epochs`` and everything else stay the caller's.
        For XLA, as the plan measured it, compile with ``**plan.compile_kwargs()``.

        Args:
            num_examples: size of the data actually trained on, when it differs from the
                data the plan was tuned on (steps are recomputed for it).
        """
        count = self.num_examples if num_examples is None else num_examples
        return {"steps_per_epoch": steps_per_epoch(count, self.batch_size), "shuffle": False}

    def compile_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``model.compile`` that the plan decided (``jit_compile``)."""
        return {"jit_compile": bool(self.jit_compile)}

    @property
    def learning_rate_factor(self) -> float:
        return float(self.learning_rate.factor)

    def dataset(self, data: Any, *, repeat: bool = False, shuffle: bool = True,
                seed: int | None = None, image_size: int | tuple[int, int] | None = None,
                cache_dir: str | os.PathLike[str] | None = None) -> Any:
        """The tuned ``tf.data.Dataset`` for ``data``, built by the one pipeline builder.

        Args:
            data: an image folder, ``(x, y)`` arrays, a generator, or a data source.
            image_size: ``N`` or ``(height, width)`` to resize images to instead of the
                plan's ``image_size`` (the size it was tuned at, the model's input size).
            shuffle: shuffle each epoch (file names, not pixels).
            seed: shuffle seed.
            cache_dir: folder for ``cache="disk"``; defaults to the user cache dir.
            repeat: repeat the epochs forever, for
                ``model.fit(plan.dataset(data, repeat=True), **plan.fit_kwargs())``: every
                pass is still exactly one epoch (``fit_kwargs()``'s ``steps_per_epoch``),
                and the next epoch's first batches are prepared while the last ones train
                (what ``autobatch.fit`` does). Image folders and arrays; a generator's
                dataset stays one epoch long. Without it, one pass is one epoch.
        """
        from autobatch._pipeline import build_dataset
        from autobatch._sources import resolve_source

        source = resolve_source(data)
        plan = self
        if image_size is not None:
            from autobatch._pipeline import normalize_image_size

            plan = dataclasses.replace(self, image_size=normalize_image_size(image_size))
        if plan.image_size is None and getattr(source, "kind", None) == "directory":
            raise PlanError(
                "this plan records no image size (it was tuned on arrays, or by an older "
                "autobatch); pass plan.dataset(data, image_size=N) or tune again"
            )
        if plan.pipeline.cache == "disk" and cache_dir is None:
            cache_dir = plan.disk_cache_dir(source)
        return build_dataset(
            source,
            batch_size=self.batch_size,
            settings=self.pipeline,
            image_size=plan.image_size,
            channels=self.channels,
            shuffle=shuffle,
            seed=seed,
            cache_dir=cache_dir,
            repeat_epochs=repeat,
        )

    def disk_cache_dir(self, source: Any) -> Path:
        """Where ``cache="disk"`` keeps ``source``'s examples by default: one folder per data
        set and per form of the cached examples (size, channels, pixel dtype). A cache file
        written for another form would be read back as the wrong shape or dtype (a float32
        cache read by a uint8 pipeline fails with "expected uint8 but got float")."""
        from autobatch._sources import resolve_source

        key = _canonical({
            "data": resolve_source(source).fingerprint(),
            "image_size": list(self.image_size) if self.image_size else None,
            "channels": self.channels,
            "pixels": self.pipeline.pixels,
        })
        return cache_root() / "tfdata" / _short_hash(key, 16)

    # ------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready plain data (schema version 1)."""
        return {
            "schema_version": self.schema_version,
            "autobatch_version": self.autobatch_version,
            "created_at": self.created_at,
            "batch_size": self.batch_size,
            "per_replica_batch_size": self.per_replica_batch_size,
            "num_replicas": self.num_replicas,
            "steps_per_epoch": self.steps_per_epoch,
            "num_examples": self.num_examples,
            "ceiling_batch_size": self.ceiling_batch_size,
            "image_size": list(self.image_size) if self.image_size is not None else None,
            "channels": self.channels,
            "jit_compile": self.jit_compile,
            "pipeline": self.pipeline.to_dict(),
            "measured": dict(self.measured),
            "baseline": dict(self.baseline) if self.baseline is not None else None,
            "learning_rate": self.learning_rate.to_dict(),
            "ceiling": dict(self.ceiling),
            "trials": list(self.trials),
            "fingerprints": dict(self.fingerprints),
            "study": dict(self.study),
            "data": dict(self.data),
            "model": dict(self.model),
            "audit": self.audit,
            "hardware": dict(self.hardware),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """Rebuild a plan from ``to_dict()`` output.

        Raises:
            PlanError: unknown schema version or missing required keys.
        """
        if not isinstance(data, dict):
            raise PlanError("a plan must be a JSON object; re-run 'autobatch tune'")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise PlanError(
                f"plan schema version {version!r} is not supported (this autobatch reads "
                f"version {SCHEMA_VERSION}); re-run 'autobatch tune --force'"
            )
        missing = [k for k in ("batch_size", "num_examples", "ceiling_batch_size") if k not in data]
        if missing:
            raise PlanError(f"plan is missing {', '.join(missing)}; re-run 'autobatch tune'")
        image_size = data.get("image_size")
        try:
            return cls(
                batch_size=int(data["batch_size"]),
                num_examples=int(data["num_examples"]),
                ceiling_batch_size=int(data["ceiling_batch_size"]),
                pipeline=PipelineSettings.from_dict(data.get("pipeline") or {}),
                per_replica_batch_size=data.get("per_replica_batch_size"),
                num_replicas=int(data.get("num_replicas") or 1),
                image_size=tuple(image_size) if image_size is not None else None,  # type: ignore[arg-type]
                channels=int(data.get("channels") or 3),
                jit_compile=bool(data.get("jit_compile", False)),
                measured=dict(data.get("measured") or {}),
                baseline=data.get("baseline"),
                learning_rate=LearningRateScaling.from_dict(data.get("learning_rate")),
                ceiling=dict(data.get("ceiling") or {}),
                trials=list(data.get("trials") or []),
                fingerprints=dict(data.get("fingerprints") or {}),
                study=dict(data.get("study") or {}),
                data=dict(data.get("data") or {}),
                model=dict(data.get("model") or {}),
                audit=data.get("audit"),
                hardware=dict(data.get("hardware") or {}),
                autobatch_version=str(data.get("autobatch_version") or ""),
                created_at=str(data.get("created_at") or ""),
                schema_version=int(version),
            )
        except (TypeError, ValueError) as exc:
            raise PlanError(f"plan has an invalid value ({exc}); re-run 'autobatch tune'") from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_json_default) + "\n"

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the plan as JSON atomically (temp file in the same folder, then replace)."""
        target = Path(path)
        atomic_write_text(target, self.to_json())
        self.path = str(target)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Plan:
        """Read a plan written by ``save``.

        Raises:
            PlanError: the file is missing, not JSON, or of an unknown schema.
        """
        source = Path(path)
        try:
            text = source.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PlanError(
                f"plan file {str(source)!r} not found; run 'autobatch tune' first"
            ) from None
        except OSError as exc:
            raise PlanError(f"cannot read plan file {str(source)!r}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanError(
                f"plan file {str(source)!r} is not valid JSON (line {exc.lineno}); "
                "re-run 'autobatch tune --force'"
            ) from None
        plan = cls.from_dict(data)
        plan.path = str(source)
        return plan


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        return to_dict() if callable(to_dict) else dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise


# ---------------------------------------------------------------- fingerprints


def _short_hash(text: str | bytes, size: int = 16) -> str:
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    return hashlib.blake2b(data, digest_size=size).hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=_json_default, separators=(",", ":"))


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """Hash of a file's bytes (a saved ``.keras`` model), streamed, without TensorFlow."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def keras_file_input_shape(path: str | os.PathLike[str]) -> tuple[int | None, ...] | None:
    """The per-example input shape a ``.keras`` file declares, read from its
    ``config.json`` without TensorFlow (so a cache hit stays TensorFlow-free); None when
    the file does not say (or is not a readable ``.keras`` zip, or has several inputs)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    if not isinstance(config, dict):
        return None
    shape = (config.get("build_config") or {}).get("input_shape")
    if not isinstance(shape, list) or not shape or isinstance(shape[0], list):
        inputs = [layer.get("config") or {} for layer in
                  (config.get("config") or {}).get("layers") or []
                  if isinstance(layer, dict) and layer.get("class_name") == "InputLayer"]
        if len(inputs) != 1:
            return None
        shape = inputs[0].get("batch_shape") or inputs[0].get("batch_input_shape")
    if not isinstance(shape, list) or len(shape) < 2:
        return None
    return tuple(None if d is None else int(d) for d in shape[1:])


def tune_geometry(model: Any, image_size: Any = None,
                  channels: int | None = None) -> tuple[tuple[int, int] | None, int]:
    """The image size and channels a tune runs at, the same way in ``tune`` and ``fit``
    (their plan-cache fingerprints must agree): what the caller gave, else the model's
    own input (a ``keras.Model``, or a ``.keras`` file read without TensorFlow); 3
    channels when nothing says. A built-in SPEC has no size of its own.

    Returns:
        ``((height, width) or None, channels)``.
    """
    from autobatch._pipeline import normalize_image_size

    size = normalize_image_size(image_size)
    if size is not None and channels is not None:
        return size, int(channels)
    shape: tuple[int | None, ...] | None = None
    if isinstance(model, (str, os.PathLike)):
        text = os.fspath(model)
        if text.endswith(".keras") and os.path.isfile(text):
            shape = keras_file_input_shape(text)
    elif callable(getattr(model, "to_json", None)):  # a keras.Model: TensorFlow is loaded
        from autobatch._models import model_input_shape

        shape = model_input_shape(model)
    if shape is not None and len(shape) == 3:
        if size is None and shape[0] and shape[1]:
            size = (int(shape[0]), int(shape[1]))
        if channels is None and shape[2]:
            channels = int(shape[2])
    return size, int(channels) if channels is not None else 3


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
            return _short_hash(_canonical({"file": file_fingerprint(text), **shape_args}))
        from autobatch._models import model_function_file

        source = model_function_file(text)  # "module:function": edits to it count
        if source is not None and os.path.isfile(source):
            return _short_hash(_canonical({"spec": text, "source": file_fingerprint(source),
                                           **shape_args}))
        return _short_hash(_canonical({"spec": text, **shape_args}))
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
        return _short_hash(_canonical({"arch": arch, **extra, **shape_args}))
    return _short_hash(_canonical({"object": f"{type(model).__module__}.{type(model).__qualname__}",
                                   **shape_args}))


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
    return _short_hash(_canonical(record))


def software_fingerprint() -> str:
    """TensorFlow and Keras versions read from package metadata (no import)."""
    from autobatch._env import package_version

    return f"tensorflow={package_version('tensorflow')};keras={package_version('keras')}"


def options_fingerprint(options: dict[str, Any]) -> str:
    """Hash of the tune options that change the answer (budget, image size, trials, ...)."""
    return _short_hash(_canonical(options))


def combined_key(fingerprints: dict[str, str], keys: tuple[str, ...] | None = None) -> str:
    """One hash over the named fingerprints (all of them by default), in a stable order."""
    chosen = sorted(fingerprints) if keys is None else list(keys)
    return _short_hash(_canonical([(k, fingerprints.get(k)) for k in chosen]), 12)


# ---------------------------------------------------------------- cache


def cache_root() -> Path:
    """The user cache folder: ``$AUTOBATCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/autobatch``,
    else ``~/.cache/autobatch``."""
    explicit = os.environ.get("AUTOBATCH_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "autobatch"


def plan_cache_path(fingerprints: dict[str, str]) -> Path:
    """Where the plan for these fingerprints is cached."""
    return cache_root() / "plans" / f"plan-{combined_key(fingerprints)}.json"


def load_cached_plan(fingerprints: dict[str, str]) -> Plan | None:
    """The cached plan for exactly these fingerprints, or None (a broken file is ignored)."""
    path = plan_cache_path(fingerprints)
    if not path.is_file():
        return None
    try:
        plan = Plan.load(path)
    except PlanError as exc:
        logger.warning("ignoring unreadable cached plan %s: %s", path, exc)
        return None
    if plan.fingerprints != fingerprints:
        logger.info("cached plan %s has other fingerprints; tuning again", path)
        return None
    plan.cache_hit = True
    return plan


def save_cached_plan(plan: Plan) -> Path:
    """Store ``plan`` in the cache under its own fingerprints (atomically)."""
    path = plan_cache_path(plan.fingerprints)
    atomic_write_text(path, plan.to_json())
    return path
