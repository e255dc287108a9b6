"""Probe requests and results: plain data, no TensorFlow, JSON-serialisable."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from autobatch._errors import UsageError
from autobatch._settings import PipelineSettings

Outcome = Literal["ok", "oom", "timeout", "crash"]
Mode = Literal["loop", "fit"]
MODES: tuple[str, ...] = ("loop", "fit")
MAX_STEPS_FACTOR = 20
"""A probe with ``min_time_s`` takes at most this many times its ``steps``."""
OUTCOMES: tuple[str, ...] = ("ok", "oom", "timeout", "crash")
_LEVER_KEYS = ("mixed_precision", "remat", "compute_dtype")


@dataclass(frozen=True)
class ProbeRequest:
    """One dry run: train ``steps`` timed steps at ``batch_size`` after ``warmup_steps``.

    Attributes:
        batch_size: batch size of the probe, per replica: under a ``tf.distribute``
            strategy the worker's pipeline batches ``batch_size x replicas`` (the global
            batch); without one the two are the same.
        settings: the input pipeline settings, built by the same builder ``fit`` uses.
        steps: timed training steps (forward, backward, optimizer update).
        warmup_steps: untimed steps first (tracing, first allocations).
        jit_compile: passed to ``model.compile`` exactly as ``fit`` will.
        timeout_s: wall-clock limit for this probe, tracing included.
        own_peak: the probe's memory reading must be its own: a runner whose worker already
            ran a larger batch starts a fresh one first (a worker does not give memory
            back). None: the runner's default. Throughput-only probes pass False.
        min_time_s: keep taking timed steps past ``steps`` until they add up to this many
            seconds (at most ``MAX_STEPS_FACTOR`` x ``steps``): five steps of a fast model
            last half a second, within one burst of a shared machine's noise.
        mode: ``"loop"`` times each step of a bare ``tf.function`` loop (the step time, the
            input-wait share, one trace for every batch size); ``"fit"`` trains with
            ``model.fit`` exactly as ``autobatch.fit`` does, epochs of ``steps`` steps after
            one untimed epoch, and times whole epochs. Keras' own per-step work runs
            beside the input pipeline's threads there, which the bare loop does not see,
            so the tune judges its finalists in this mode.
        mixed_precision: ``"mixed_float16"`` / ``"mixed_bfloat16"``: the model is rebuilt
            under that dtype policy (``autobatch._models._levers``); None: as given.
        remat: a ``keras.RematScope`` mode the model is rebuilt under; None: none.
    """

    batch_size: int
    settings: PipelineSettings = field(default_factory=PipelineSettings)
    steps: int = 5
    warmup_steps: int = 1
    jit_compile: bool = False
    timeout_s: float = 300.0
    own_peak: bool | None = None
    min_time_s: float = 0.0
    mode: Mode = "loop"
    noise_small_batch: int = 0
    """Above 0: before timing, estimate the gradient noise scale at the model's weights
    from draws of this batch (the large one) and their first ``noise_small_batch``
    examples (``autobatch._noise``; one replica only)."""
    mixed_precision: str | None = None
    remat: str | None = None

    def __post_init__(self) -> None:
        if self.noise_small_batch and not 0 < self.noise_small_batch < self.batch_size:
            raise UsageError(f"probe noise_small_batch ({self.noise_small_batch}) must lie "
                             f"between 0 and the batch size ({self.batch_size})")
        if self.mode not in MODES:
            raise UsageError(f"probe {{param}} must be one of {MODES}, got {self.mode!r}",
                             parameter="mode")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["settings"] = self.settings.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeRequest:
        data = dict(data)
        data["settings"] = PipelineSettings.from_dict(data.get("settings", {}))
        return cls(**data)


@dataclass(frozen=True)
class ProbeResult:
    """What one probe measured.

    ``peak_memory_bytes`` is the figure the budget is checked against: device peak on GPU,
    host peak otherwise.
    """

    outcome: Outcome
    batch_size: int
    settings: PipelineSettings
    jit_compile: bool = False
    mode: Mode = "loop"
    """How it was timed (``ProbeRequest.mode``)."""
    examples_per_s: float | None = None
    step_time_s: float | None = None
    """Median wall time of one timed step (``fit`` mode: of an epoch, per step)."""
    step_time_spread_s: float | None = None
    """Interquartile range of the timed steps."""
    step_times_s: list[float] = field(default_factory=list)
    """Each timed step (``fit`` mode: each timed epoch's time per step)."""
    input_wait_fraction: float | None = None
    """Share of step time spent waiting for the next batch from the pipeline (None in
    ``fit`` mode, where Keras fetches the batches)."""
    peak_host_memory_bytes: int | None = None
    baseline_host_memory_bytes: int | None = None
    """The worker's resident memory just before the probe (after freeing what it could)."""
    peak_device_memory_bytes: int | None = None
    """The largest peak of the replicas' GPUs (the tightest device decides)."""
    replica_peak_device_memory_bytes: list[int] | None = None
    """Each replica GPU's peak, under a strategy on several GPUs."""
    nvml_device_memory_bytes: int | None = None
    memory_budget_bytes: int | None = None
    host_memory_budget_bytes: int | None = None
    device: str = "cpu"
    num_replicas: int = 1
    """Replicas the probe trained on: ``batch_size`` is per replica, ``examples_per_s`` is
    global (every replica's examples)."""
    error: str | None = None
    """For crash/oom/timeout: the child's final error lines, or why it was stopped."""
    wall_time_s: float | None = None
    """Parent-side wall time of the whole probe, worker start-up included when it happened."""
    setup_s: float | None = None
    """Worker-side time before the timed steps: building the pipeline, tracing the step (or
    ``fit``'s untimed first epoch), filling a cache, the warm-up steps."""
    timed_s: float | None = None
    """Worker-side time of the timed steps (or epochs)."""
    worker_pid: int | None = None
    worker_started: bool = False
    """True when this probe had to start (or restart) the worker process."""
    worker_probe_number: int | None = None
    """How many probes this worker process has served, this one included (1 = fresh)."""
    worker_trace_count: int | None = None
    """Times the worker has traced its train step so far (stays 1 across batch sizes)."""
    noise_scale: dict[str, Any] | None = None
    """The gradient noise scale at the model's initial weights (``autobatch._noise``),
    where the request asked for it (``noise_small_batch``)."""
    mixed_precision: str | None = None
    """The dtype policy the request asked for (None: the model as given)."""
    remat: str | None = None
    """The ``keras.RematScope`` mode the request asked for."""
    compute_dtype: str | None = None
    """What most of the model's layers computed in, read in the worker (``float32``,
    ``bfloat16``, ``float16``): the policy in effect, not the one asked for."""

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def global_batch_size(self) -> int:
        """The batch all replicas train on together (``batch_size x num_replicas``)."""
        return self.batch_size * max(1, self.num_replicas)

    @property
    def peak_memory_bytes(self) -> int | None:
        if self.peak_device_memory_bytes is not None:
            return self.peak_device_memory_bytes
        return self.peak_host_memory_bytes

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["settings"] = self.settings.to_dict()
        data["peak_memory_bytes"] = self.peak_memory_bytes
        if self.mixed_precision is None and self.remat is None:
            for key in _LEVER_KEYS:  # a lever-free probe's record keeps its keys
                data.pop(key, None)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeResult:
        data = dict(data)
        data.pop("peak_memory_bytes", None)
        data["settings"] = PipelineSettings.from_dict(data.get("settings", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
