"""The Plan: what ``tune`` decided, and the hand-off to training.

A Plan is the contract between the search and training: enough to rebuild the tuned
pipeline (``plan.dataset(data)``) and call ``model.fit`` (``plan.fit_kwargs()``) without
searching again. It is stored as plain versioned JSON (``_schema`` holds the rules); nothing
here imports TensorFlow at module level.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autobatch._atomic import atomic_write_text
from autobatch._errors import UsageError
from autobatch._plan import _dataset
from autobatch._plan._json import json_default
from autobatch._plan._learning_rate import LearningRateScaling
from autobatch._plan._schema import SCHEMA_VERSION, PlanFieldError, plan_fields, read_plan_json
from autobatch._settings import PipelineSettings

DEFAULT_PLAN_FILENAME = "autobatch-plan.json"


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Steps that use every example once per epoch: the last batch may be partial.

    Raises:
        UsageError: ``batch_size`` below 1.
    """
    if batch_size < 1:
        raise UsageError(f"{{param}} must be >= 1, got {batch_size}", parameter="batch_size")
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
    gradient_accumulation_steps: int = 1
    """Micro-batches of ``batch_size`` per weight update (Keras' optimizer
    ``gradient_accumulation_steps``): above 1 where memory caps the physical batch below
    the effective batch the user asked for (``effective_batch_size``)."""
    mixed_precision: str | None = None
    """The dtype policy the plan measured a gain with (``"mixed_bfloat16"``,
    ``"mixed_float16"``), None: float32; ``measured["levers"]`` holds the readings."""
    remat: str | None = None
    """The ``keras.RematScope`` mode the plan measured a gain with; None: none."""
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

    @property
    def effective_batch_size(self) -> int:
        """Examples per weight update: ``batch_size x gradient_accumulation_steps``."""
        return self.batch_size * max(1, self.gradient_accumulation_steps)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise PlanFieldError("batch_size", f"must be a positive integer, got "
                                 f"{self.batch_size!r}",
                                 message=f"plan batch_size must be >= 1, got {self.batch_size}")
        if self.per_replica_batch_size is None:
            self.per_replica_batch_size = self.batch_size // max(1, self.num_replicas)
        if self.image_size is not None:
            self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        if self.pipeline.uses_autotune and not self.keeps_default:
            # A plan states what it measured; AUTOTUNE would hide the real choice. The one
            # exception is the untuned default itself, kept because nothing beat it.
            raise PlanFieldError(
                "pipeline", "must hold concrete numbers, not AUTOTUNE",
                message="a plan's pipeline settings must be concrete numbers, not AUTOTUNE "
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

    def lever_hint(self) -> str | None:
        """How to build the model the way the plan measured it (its ``mixed_precision``
        policy, its ``remat`` scope), as one line; None when the plan uses neither."""
        steps = []
        if self.mixed_precision:
            steps.append(f"keras.mixed_precision.set_global_policy({self.mixed_precision!r})")
        if self.remat:
            steps.append(f"with keras.RematScope(mode={self.remat!r}):")
        if not steps:
            return None
        return ("the plan measured its gain with the model built under " + " and ".join(steps)
                + " (call it before building the model, then build and compile it there)")

    def compile_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``model.compile`` that the plan decided (``jit_compile``)."""
        return {"jit_compile": bool(self.jit_compile)}

    @property
    def learning_rate_factor(self) -> float:
        return float(self.learning_rate.factor)

    def dataset(self, data: Any, *, repeat: bool = False, shuffle: bool = True,
                seed: int | None = None, image_size: int | tuple[int, int] | None = None,
                cache_dir: str | os.PathLike[str] | None = None,
                label_mode: str | None = None, augment: Any = None,
                input_context: Any = None, data_service: str | None = None) -> Any:
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
            label_mode: class indices as ``"int"``, ``"categorical"`` (one-hot, for
                ``categorical_crossentropy``) or ``"binary"``, as Keras' loaders mean it;
                None: as the data gives them.
            augment: a function of one image or Keras preprocessing layers, applied after
                the cache (new pixels every epoch; seeded by ``seed``).
            input_context: the ``tf.distribute.InputContext`` that
                ``strategy.distribute_datasets_from_function`` passes: this worker's part of
                the data (every worker's disjoint; a folder or arrays by example, TFRecord
                shards by file where there are at least as many as workers) at the
                per-replica batch (the plan's batch is the global one).
            data_service: ``grpc://HOST:PORT`` of a tf.data service dispatcher: the
                examples are read, decoded and resized on its workers in
                ``distributed_epoch`` mode (each example once per epoch), then cached,
                shuffled and batched here. Folders, TFRecord shards and datasets without
                Python code only.
        """
        return _dataset.plan_dataset(self, data, repeat=repeat, shuffle=shuffle, seed=seed,
                                     image_size=image_size, cache_dir=cache_dir,
                                     label_mode=label_mode, augment=augment,
                                     input_context=input_context, data_service=data_service)

    def disk_cache_dir(self, source: Any) -> Path:
        """Where ``cache="disk"`` keeps ``source``'s examples by default: one folder per data
        set and per form of the cached examples (size, channels, pixel dtype). A cache file
        written for another form would be read back as the wrong shape or dtype (a float32
        cache read by a uint8 pipeline fails with "expected uint8 but got float")."""
        return _dataset.disk_cache_dir(self, source)

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
            # Only when accumulating: plans without it keep their bytes (schema 1).
            **({"gradient_accumulation_steps": self.gradient_accumulation_steps}
               if self.gradient_accumulation_steps != 1 else {}),
            # Only when a lever won: plans without one keep their bytes (schema 1).
            **({"mixed_precision": self.mixed_precision} if self.mixed_precision else {}),
            **({"remat": self.remat} if self.remat else {}),
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
        """Rebuild a plan from ``to_dict()`` output, every field checked (``_schema``).

        Raises:
            PlanError: not an object, or an unknown schema version.
            PlanFieldError: a missing required key or a field that breaks its rule (its
                ``field`` names it).
        """
        return cls(**plan_fields(data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=json_default) + "\n"

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
            PlanError: the file is missing or unreadable, not UTF-8 JSON, of an unknown
                schema, or a field breaks its rule (``PlanFieldError``).
        """
        source = Path(path)
        data = read_plan_json(source)
        try:
            plan = cls.from_dict(data)
        except PlanFieldError as exc:
            raise PlanFieldError(exc.field, exc.problem,
                                 message=f"plan file {str(source)!r}: {exc}") from None
        plan.path = str(source)
        return plan


def load_plan(plan: Plan | str | os.PathLike[str]) -> Plan:
    """A ``Plan`` as it is, or loaded (and validated) from its file."""
    if isinstance(plan, Plan):
        return plan
    if isinstance(plan, (str, os.PathLike)):
        return Plan.load(plan)
    raise UsageError("{param} must be a Plan or a plan file path, got " + type(plan).__name__,
                     parameter="plan")
