"""``tune``: ceiling -> untuned baseline -> throughput study -> verify -> Plan.

Orchestration only; the math is in ``_ceiling`` and ``_study``. TensorFlow lives in the probe
worker; this module never imports it, so a cache hit (fingerprint, look up, load) returns
without it. Progress goes to ``logging`` and to an optional ``on_event`` callback that the
CLI draws; the library never prints.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import statistics
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autobatch._errors import ModelError, UsageError
from autobatch._plan import (
    DEFAULT_REFERENCE_BATCH_SIZE,
    Plan,
    hardware_fingerprint,
    learning_rate_scaling,
    load_cached_plan,
    model_fingerprint,
    options_fingerprint,
    save_cached_plan,
    software_fingerprint,
)
from autobatch._probe._types import ProbeRequest, ProbeResult
from autobatch._search._ceiling import MAX_BATCH_SIZE, CeilingNotFound, CeilingResult, find_ceiling
from autobatch._search._study import (
    SearchSpace,
    TrialRecord,
    build_search_space,
    decoded_dataset_bytes,
    epoch_efficiency,
    epoch_rate,
    fail_stale_trials,
    memory_cache_fits,
    open_study,
    params_to_settings,
    record_from_frozen,
    robust_value,
    run_trial,
    seed_points,
    study_name_for,
)
from autobatch._settings import PipelineSettings

logger = logging.getLogger(__name__)

DEFAULT_TIME_BUDGET_S = 120.0
MAX_TRIALS = 200
TOP_K_VERIFY = 3
"""Finalists re-measured side by side before the winner's long verify run."""
FINALISTS_PER_BATCH = 2
"""At most this many finalists share a batch size, so that ``model.fit`` judges at least two
batch sizes when the trials measured two: the trials' bare step loop does not pay Keras'
per-step work, which favours small batches. It guarantees a second batch size, not a larger
one."""
FINALIST_ROUNDS = 3
"""Interleaved rounds of the finalists' ``model.fit`` re-measurement (at least; more while
the comparison with the untuned default is undecided, up to ``MAX_FINALIST_ROUNDS``)."""
MAX_FINALIST_ROUNDS = 7
"""Rounds at most: a busy machine gets more rounds rather than a guess."""
WIN_MARGIN = 0.02
"""A candidate replaces the untuned default only when its paired ratio against the default
exceeds ``1 + WIN_MARGIN`` in every round (one round may be lost from six rounds on)."""
TRIAL_MIN_TIME_S = 1.0
FINALIST_MIN_TIME_S = 1.5
VERIFY_MIN_TIME_S = 3.0
"""Timed seconds a trial / a finalist's re-measurement / the winner's long run takes at
least (more steps for a fast model). Five steps of a small model last a fraction of a
second, and on a shared machine one such window varied by +-30%: the strided CNN of the
input-heavy benchmark read 1604-2150 examples/s for one point, and prefetch 4 won the study
although in training prefetch 0 was 14% faster (1663 vs 1462 examples/s, interleaved,
timed per epoch)."""
VERIFY_ATTEMPTS = 5
"""Long verify runs tried before giving up (each failure rules out larger batches)."""


@dataclass
class TuneEvent:
    """A progress report for the display (the CLI draws it; the library only emits it)."""

    phase: str
    """"cache", "ceiling", "baseline", "xla", "search", "verify", "done"."""
    message: str
    trial: int | None = None
    trials_total: int | None = None
    best_examples_per_s: float | None = None
    best_params: dict[str, Any] | None = None
    elapsed_s: float = 0.0
    time_budget_s: float | None = None
    result: ProbeResult | None = field(default=None, repr=False)


EventCallback = Callable[[TuneEvent], None]


# ---------------------------------------------------------------- option checks (pure)


PIXEL_CHOICES = ("auto", "float32", "uint8")


def validate_options(*, trials: int | None, time_budget_s: float | None, seed: int,
                     pixels: str = "auto") -> None:
    """Reject impossible options before any work starts, one line each."""
    if pixels not in PIXEL_CHOICES:
        raise UsageError(f"--pixels must be one of {', '.join(PIXEL_CHOICES)}, got {pixels!r}")
    if trials is not None and (isinstance(trials, bool) or int(trials) < 1):
        raise UsageError(f"--trials must be a positive whole number, got {trials}")
    if trials is not None and int(trials) > MAX_TRIALS:
        raise UsageError(f"--trials must be at most {MAX_TRIALS}, got {trials}")
    if time_budget_s is not None and not (float(time_budget_s) > 0):
        raise UsageError(f"--time-budget must be a positive number of seconds, got {time_budget_s}")
    if int(seed) < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")


def resolve_time_budget(time_budget: float | None, time_budget_s: float | None, *,
                        stacklevel: int = 3) -> float | None:
    """``time_budget``, or its deprecated name ``time_budget_s`` with a warning (both: a
    usage error)."""
    if time_budget_s is None:
        return time_budget
    if time_budget is not None:
        raise UsageError("pass time_budget= only (time_budget_s= is its deprecated name)")
    import warnings

    warnings.warn("time_budget_s= is deprecated; pass time_budget= (seconds)",
                  DeprecationWarning, stacklevel=stacklevel)
    return time_budget_s


def resolve_budgets(memory_budget: Any, env: Any) -> tuple[int | None, int | None, str]:
    """The host and device budgets in bytes from what the user asked.

    ``memory_budget`` bounds the device when there is a GPU, the host otherwise; fractions
    refer to that device's (or the host's effective) memory. A budget larger than the
    machine is a usage error.

    Returns:
        ``(host_budget_bytes, device_budget_bytes, what)``; None means the runner's default.
    """
    from autobatch._sizes import format_bytes, parse_memory_size

    if memory_budget is None:
        return None, None, "default"
    if env.gpus:
        limit = int(min(g.memory_usable_bytes for g in env.gpus))
        where = "GPU memory"
    else:
        limit = int(env.host.memory_limit_bytes)
        where = "host memory"
    budget = (
        int(memory_budget)
        if isinstance(memory_budget, int) and not isinstance(memory_budget, bool)
        else parse_memory_size(memory_budget, limit_bytes=limit)
    )
    if budget > limit:
        raise UsageError(
            f"memory budget {format_bytes(budget)} is larger than this machine's "
            f"{format_bytes(limit)} of {where}; pass a smaller --memory-budget"
        )
    if env.gpus:
        return None, budget, "device"
    return budget, None, "host"


def optimizer_name_of(model: Any) -> str | None:
    """The optimizer class name, without TensorFlow where possible.

    Built-ins compile with Adam; a ``.keras`` file names its optimizer in the zip's
    ``config.json``; a live model has ``model.optimizer``.
    """
    from autobatch._models import is_builtin

    if is_builtin(model):
        return "Adam"
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if path.endswith(".keras") and os.path.isfile(path):
            try:
                with zipfile.ZipFile(path) as archive:
                    config = json.loads(archive.read("config.json"))
                optimizer = (config.get("compile_config") or {}).get("optimizer")
                if isinstance(optimizer, dict):
                    return optimizer.get("class_name")
                if isinstance(optimizer, str):
                    return optimizer
            except (OSError, KeyError, ValueError, zipfile.BadZipFile):
                return None
        return None
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    inner = getattr(optimizer, "inner_optimizer", None)  # LossScaleOptimizer wraps the real one
    return type(inner if inner is not None else optimizer).__name__


def model_summary(model: Any, *, image_size: tuple[int, int] | None, channels: int,
                  num_classes: int | None) -> dict[str, Any]:
    """The plan's ``model`` record, without TensorFlow for SPEC strings."""
    if isinstance(model, (str, os.PathLike)):
        spec = os.fspath(model)
        name = Path(spec).stem if os.path.sep in spec or spec.endswith(".keras") else spec
        shape = [image_size[0], image_size[1], channels] if image_size else None
        return {"spec": spec, "name": name, "input_shape": shape, "output_units": num_classes}
    input_shape = getattr(model, "input_shape", None)
    output_shape = getattr(model, "output_shape", None)
    return {
        "spec": None,
        "name": getattr(model, "name", type(model).__name__),
        "input_shape": list(input_shape[1:]) if isinstance(input_shape, tuple) else None,
        "output_units": output_shape[-1] if isinstance(output_shape, tuple) else num_classes,
    }


def data_summary(source: Any) -> dict[str, Any]:
    kind = getattr(source, "kind", "unknown")
    return {
        "kind": kind,
        "path": getattr(source, "root", None),
        "class_names": list(getattr(source, "class_names", ()) or ()),
    }


def audit_summary(source: Any) -> dict[str, Any] | None:
    report = getattr(source, "audit", None)
    if report is None:
        return None
    for name in ("summary", "to_dict"):
        fn = getattr(report, name, None)
        if callable(fn):
            try:
                value = fn()
                return value if isinstance(value, dict) else None
            except Exception:  # the audit summary is informative only
                return None
    return None


# ---------------------------------------------------------------- the runner wrapper


MIN_STEPS_PER_EPOCH = 4
"""The study's batches leave at least this many weight updates per epoch (above batch 32)."""


def training_batch_cap(num_examples: int | None) -> int:
    """The largest batch the study tries: ``num_examples // 4``, but never below 32."""
    if not num_examples:
        return MAX_BATCH_SIZE
    return max(32, int(num_examples) // MIN_STEPS_PER_EPOCH)


FIT_ALLOWANCE_FRACTION = 0.065
"""Share of a memory budget kept free for what ``model.fit``'s first step adds to a probe's
peak (see ``_TrackedRunner.fit_allowance_bytes``)."""


class _TrackedRunner:
    """A ``ProbeRunner`` with the search's memory rules.

    A worker never gives memory back, so a memory figure is only honest for a batch at or
    above everything the worker ran before: ``run(..., need_memory=True)`` (or a request
    with ``own_peak``) has the runner start a fresh worker when that does not hold;
    throughput probes reuse the worker whatever it ran. The search also keeps part of the
    budget free for ``model.fit``'s own first step (``fit_allowance_bytes``).
    """

    def __init__(self, runner: Any) -> None:
        self.runner = runner

    @property
    def worker_max_batch(self) -> int:
        """Largest batch the current worker ran (0: the next probe starts a worker)."""
        return int(getattr(self.runner, "worker_largest_batch", 0) or 0)

    @property
    def memory_budget_bytes(self) -> int:
        return int(self.runner.memory_budget_bytes)

    @property
    def fit_allowance_bytes(self) -> int:
        """Memory that a plain ``model.fit`` needs beyond a probe of the same batch.

        A freshly compiled model creates its optimizer's variables inside the first traced
        train step, and that first step runs a graph (variable initialisation folded into a
        conditional) whose peak is higher than every later step's. Measured here with
        MobileNetV2 at 96 px, batch 182, three steps each in a fresh process: plain
        ``model.fit`` 3.365 GB; the same with the model built before ``fit`` 3.104 GB;
        Keras' own train function driven by hand, built lazily 3.360 GB, built first
        3.145 GB; the probe 3.197 GB. Other batches: +5% at 128 (2.62 vs 2.49 GB), +7% at
        174 (3.26 vs 3.05 GB). A worker can show the lazy first step only once, on its
        first probe, so the search keeps this share of the budget free instead: a batch
        counts as fitting only below budget minus this allowance. It applies to a device
        budget as well (the first step's graph runs there).
        """
        return int(FIT_ALLOWANCE_FRACTION * self.memory_budget_bytes)

    @property
    def search_budget_bytes(self) -> int:
        """What a probe's peak must stay under to count as fitting."""
        return self.memory_budget_bytes - self.fit_allowance_bytes

    @property
    def accepts_uint8(self) -> bool:
        """Whether the model takes uint8 images unchanged (the runner says; a runner
        without the answer counts as no)."""
        return bool(getattr(self.runner, "accepts_uint8", False))

    def restart(self) -> None:
        self.runner.restart()

    def run(self, request: ProbeRequest, *, need_memory: bool | None = None) -> ProbeResult:
        own_peak = bool(request.own_peak) if need_memory is None else need_memory
        return self.runner.run(dataclasses.replace(request, own_peak=own_peak))


# ---------------------------------------------------------------- tune


def tune(
    model: Any,
    data: Any,
    *,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    memory_budget: str | int | None = None,
    time_budget: float | None = None,
    trials: int | None = None,
    storage: str | None = None,
    output: str | os.PathLike[str] | None = None,
    force: bool = False,
    seed: int = 0,
    num_examples: int | None = None,
    measure_baseline: bool = True,
    try_xla: bool = True,
    trial_steps: int = 5,
    verify_steps: int = 15,
    max_batch_size: int = MAX_BATCH_SIZE,
    custom_objects_module: str | None = None,
    runner: Any = None,
    on_event: EventCallback | None = None,
    use_cache: bool = True,
    search_space: SearchSpace | None = None,
    pixels: str = "auto",
    time_budget_s: float | None = None,
) -> Plan:
    """Find the fastest batch size and tf.data settings that fit the memory budget.

    Args:
        model: a built-in name (``small_cnn``, ``mobilenet_v2``, ...), a ``.keras`` path,
            or a ``keras.Model``.
        data: an image folder, ``(x, y)`` arrays, or a generator (with ``num_examples``).
        image_size: ``N`` or ``(height, width)``: images are resized to it; default the
            model's own input size (required for a built-in SPEC).
        channels: image channels; default the model's input channels, else 3.
        memory_budget: ``"3GiB"``, bytes, or a fraction such as ``"0.8"``; bounds the GPU
            when there is one, the host otherwise. None: the probe runner's default.
        time_budget: wall-clock limit for the whole tune in seconds (default 120 s unless
            ``trials`` is given). Honoured within about 10%.
        trials: number of throughput trials in the study (resumed trials count).
        storage: an Optuna storage URL; default an SQLite file in the user cache folder.
        output: write the plan JSON here too (atomically).
        force: ignore the cached plan and start a fresh study.
        seed: seeds the TPE sampler.
        num_examples: examples per epoch, needed for generators.
        measure_baseline: also measure the untuned default (batch 32, AUTOTUNE).
        try_xla: include ``jit_compile`` in the search when the model compiles with XLA.
        trial_steps / verify_steps: timed steps per trial probe / in the final verify run.
        runner: a ``ProbeRunner`` to use instead of starting a ``SubprocessProbeRunner``
            (it is not closed here).
        on_event: called with a ``TuneEvent`` at each step (progress display).
        use_cache: look up and store plans in the plan cache.
        search_space: restrict the study to these values (benchmarks compare against an
            exhaustive grid over the same space); batch sizes above the ceiling are dropped.
            Its ``pixels`` are replaced by the tune's decision.
        pixels: the dtype images travel in (``PipelineSettings.pixels``). ``"auto"``:
            uint8 where the data are 8-bit images and the model gives the same output for
            uint8 as for float32 input (checked in the probe worker), else float32.
            ``"uint8"`` insists (an error where it cannot apply); ``"float32"`` keeps
            Keras' own pixel values exactly.
        time_budget_s: deprecated name of ``time_budget`` (a ``DeprecationWarning``).

    Returns:
        The verified ``Plan`` (``plan.cache_hit`` tells whether it came from the cache).

    Raises:
        UsageError: bad options, unknown model, unusable data, or no batch fits the budget.
    """
    started = time.perf_counter()
    time_budget_s = resolve_time_budget(time_budget, time_budget_s)
    validate_options(trials=trials, time_budget_s=time_budget_s, seed=seed, pixels=pixels)
    if time_budget_s is None and trials is None:
        time_budget_s = DEFAULT_TIME_BUDGET_S
    deadline = started + float(time_budget_s) if time_budget_s is not None else math.inf
    emit = _Emitter(on_event, started, time_budget_s)

    from autobatch._env import environment
    from autobatch._models import BUILTIN_MODELS, is_builtin, model_function_spec
    from autobatch._plan import tune_geometry
    from autobatch._sources import check_learnable, resolve_source

    # A model-building function travels (and fingerprints) as "module:function".
    model = model_function_spec(model) or model
    if isinstance(model, str) and not is_builtin(model) and not os.path.exists(model) \
            and model_function_spec(model) is None:
        raise ModelError(
            f"unknown model {model!r}: pass a .keras file or one of {', '.join(BUILTIN_MODELS)}"
        )
    if isinstance(model, (str, os.PathLike)) and not is_builtin(model) and os.path.isfile(model):
        model = os.path.abspath(model)  # the plan names a file that any folder can find
    # The data first: a missing folder is the first thing to say, and one class (or one
    # image) has nothing to tune for.
    source = resolve_source(data)
    check_learnable(source)
    # The size and channels from the model when not given, as fit computes them: the two
    # must fingerprint alike for fit to find tune's plan in the cache.
    size, channels = tune_geometry(model, image_size, channels)
    if is_builtin(model) and size is None:
        raise ModelError(f"built-in model {model!r} needs an image size; pass --image-size N")
    env = environment()
    host_budget, device_budget, _ = resolve_budgets(memory_budget, env)
    count = source.num_examples if source.num_examples is not None else num_examples
    if not count:
        raise UsageError("the number of examples per epoch is unknown; pass num_examples=N")
    count = int(count)
    num_classes = getattr(source, "num_classes", None)
    from autobatch._pipeline import has_8bit_pixels

    if pixels == "uint8" and not has_8bit_pixels(source):
        raise UsageError("--pixels uint8 needs 8-bit images (an image folder or uint8 arrays); "
                         "use --pixels float32")

    options = {
        "image_size": list(size) if size else None,
        "channels": channels,
        "memory_budget": memory_budget if memory_budget is None else str(memory_budget),
        "seed": seed,
        "measure_baseline": measure_baseline,
        "try_xla": try_xla,
        "max_batch_size": max_batch_size,
        "trial_steps": trial_steps,
        "search_space": search_space.to_dict() if search_space is not None else None,
        "pixels": pixels,
    }
    fingerprints = {
        "model": model_fingerprint(model, num_classes=num_classes, image_size=size,
                                   channels=channels),
        "data": source.fingerprint(),
        "hardware": hardware_fingerprint(env),
        "tensorflow": software_fingerprint(),
        "options": options_fingerprint(
            {**options, "time_budget_s": time_budget_s, "trials": trials}
        ),
    }
    if use_cache and not force:
        cached = load_cached_plan(fingerprints)
        if cached is not None:
            emit("cache", f"cached plan {cached.path}")
            if output is not None:
                cached.save(output)
            cached.cache_hit = True
            return cached

    study_keys = {**fingerprints, "options": options_fingerprint(options)}
    study_name = study_name_for(study_keys)
    study = _open(storage, study_name, seed=seed, force=force)
    stale = fail_stale_trials(study)
    if stale:
        emit("search", f"marked {len(stale)} trial(s) failed that a killed tune left running")
    study.set_user_attr("model", model_summary(model, image_size=size, channels=channels,
                                               num_classes=num_classes))
    study.set_user_attr("data", {**data_summary(source), "num_examples": count})
    hardware = {
        "cpus": env.cpu.effective,
        "memory_limit_bytes": env.host.memory_limit_bytes,
        "gpus": [g.name for g in env.gpus],
        "tensorflow": env.tensorflow_version,
    }
    study.set_user_attr("hardware", hardware)

    own_runner = runner is None
    if own_runner:
        from autobatch._probe import SubprocessProbeRunner

        work_dir = tempfile.mkdtemp(prefix="autobatch-tune-")
        try:
            runner = SubprocessProbeRunner(
                model, source, image_size=size, channels=channels,
                host_memory_budget_bytes=host_budget, device_memory_budget_bytes=device_budget,
                custom_objects_module=custom_objects_module, work_dir=work_dir,
                # The search decides when a memory figure needs a fresh worker; throughput
                # trials at smaller batches do not.
                fresh_worker_for_smaller_batch=False,
            )
        except BaseException:
            # A model the worker cannot take (a Lambda layer, a __main__ class): the runner
            # does not own this folder, so it is removed here.
            shutil.rmtree(work_dir, ignore_errors=True)
            raise
    tracked = _TrackedRunner(runner)
    try:
        plan = _search(
            tracked, study, source=source, count=count, size=size, channels=channels,
            env=env, deadline=deadline, trials=trials, seed=seed,
            measure_baseline=measure_baseline, try_xla=try_xla, trial_steps=trial_steps,
            verify_steps=verify_steps, max_batch_size=max_batch_size, emit=emit,
            search_space=search_space, pixels=pixels,
        )
    finally:
        if own_runner:
            runner.close()
            # The worker's config, model file, logs and probe caches: nothing is left behind,
            # whether the tune finished, failed or was interrupted.
            shutil.rmtree(work_dir, ignore_errors=True)

    if plan.image_size is None and getattr(runner, "image_size", None) and source_is_folder(
            source):
        # A model-building function declares no size before the worker builds it: the plan
        # records the size the worker trained at, so plan.dataset(folder) works.
        plan.image_size = tuple(runner.image_size)
        plan.channels = int(getattr(runner, "channels", None) or plan.channels)
    plan.fingerprints = fingerprints
    from autobatch._search._study import default_storage_url

    # The real URL, so that the report's optuna-dashboard command runs as printed.
    plan.study = {"storage": _redact(storage) if storage else default_storage_url(),
                  "study_name": study_name}
    plan.data = data_summary(source)
    plan.model = model_summary(model, image_size=size, channels=channels, num_classes=num_classes)
    plan.audit = audit_summary(source)
    plan.learning_rate = learning_rate_scaling(optimizer_name_of(model), plan.batch_size,
                                               DEFAULT_REFERENCE_BATCH_SIZE)
    plan.hardware = hardware
    plan.measured["tune_wall_time_s"] = round(time.perf_counter() - started, 2)
    from autobatch._report._study import annotate_study

    annotate_study(study, plan)
    if use_cache:
        save_cached_plan(plan)
    if output is not None:
        plan.save(output)
    emit("done", f"batch {plan.batch_size}: {plan.examples_per_s or 0:.1f} examples/s",
         best=plan.examples_per_s)
    return plan


def source_is_folder(source: Any) -> bool:
    return getattr(source, "kind", None) == "directory"


def _redact(url: str) -> str:
    """Drop a password from a storage URL before it goes into a plan file."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def _open(storage: str | None, name: str, *, seed: int, force: bool) -> Any:
    if force:
        import optuna

        from autobatch._search._study import default_storage_url

        try:
            optuna.delete_study(study_name=name, storage=storage or default_storage_url())
        except KeyError:
            pass  # no such study yet
        except Exception as exc:  # storage problems surface in open_study with a clear message
            logger.debug("could not delete study %s: %s", name, exc)
    return open_study(storage, name, seed=seed)


class _Emitter:
    def __init__(self, callback: EventCallback | None, started: float,
                 time_budget_s: float | None) -> None:
        self.callback = callback
        self.started = started
        self.time_budget_s = time_budget_s

    def __call__(self, phase: str, message: str, *, trial: int | None = None,
                 trials_total: int | None = None, best: float | None = None,
                 best_params: dict[str, Any] | None = None,
                 result: ProbeResult | None = None) -> None:
        logger.info("%s: %s", phase, message)
        if self.callback is None:
            return
        self.callback(TuneEvent(
            phase=phase, message=message, trial=trial, trials_total=trials_total,
            best_examples_per_s=best, best_params=best_params,
            elapsed_s=time.perf_counter() - self.started, time_budget_s=self.time_budget_s,
            result=result,
        ))


def _remaining(deadline: float) -> float:
    return deadline - time.perf_counter()


def _search(
    runner: _TrackedRunner,
    study: Any,
    *,
    source: Any,
    count: int,
    size: tuple[int, int] | None,
    channels: int,
    env: Any,
    deadline: float,
    trials: int | None,
    seed: int,
    measure_baseline: bool,
    try_xla: bool,
    trial_steps: int,
    verify_steps: int,
    max_batch_size: int,
    emit: _Emitter,
    search_space: SearchSpace | None = None,
    pixels: str = "auto",
) -> Plan:
    attrs = study.user_attrs

    # Phase 1: the untuned default (batch 32, AUTOTUNE), first in a fresh worker so that
    # its memory reading is its own; it also serves as the first point of the memory line.
    baseline = attrs.get("baseline")
    prior: list[ProbeResult] = []
    if measure_baseline and baseline is None:
        batch = min(DEFAULT_REFERENCE_BATCH_SIZE, count, max_batch_size)
        emit("baseline", f"untuned default: batch {batch}, AUTOTUNE")
        request = ProbeRequest(batch_size=batch, settings=PipelineSettings.keras_default(),
                               steps=trial_steps, warmup_steps=1,
                               timeout_s=_probe_timeout(deadline))
        result = runner.run(request, need_memory=True)
        if result.outcome == "crash":
            # Killed from outside or crashed at start-up: no verdict on speed or memory.
            # Measured again in a fresh worker; a second failure is not stored, so that a
            # resumed tune measures it again rather than trusting a broken reading.
            logger.warning("the untuned default's probe crashed; retrying in a fresh worker")
            emit("baseline", "the worker died during the untuned default; measuring again")
            runner.restart()
            result = runner.run(request, need_memory=True)
        baseline = {
            "batch_size": batch,
            # Over an epoch, as the trials are scored (the last batch is partial).
            "examples_per_s": epoch_rate(result, count),
            "full_batch_examples_per_s": result.examples_per_s,
            "peak_memory_bytes": result.peak_memory_bytes,
            "outcome": result.outcome,
            "settings": "keras default (AUTOTUNE)",
        }
        if result.ok:
            study.set_user_attr("baseline", baseline)
        if result.ok and result.worker_started:
            prior.append(result)
        elif result.outcome in ("oom", "timeout"):
            prior.append(result)  # a memory verdict: batch 32 does not fit (or swaps)
        elif not result.ok:
            logger.warning("the untuned default failed (%s); it is not stored and the "
                           "plan cannot be compared with it", result.outcome)
            runner.restart()
        emit("baseline", f"untuned default: {result.examples_per_s or 0:.1f} examples/s, "
             f"peak {_mib(result.peak_memory_bytes)}", result=result)

    # Phase 2: the memory ceiling (stored on the study so that a resumed tune skips it).
    if "ceiling" in attrs and _crash_bound(attrs["ceiling"]):
        emit("ceiling", "the stored ceiling was bounded by a crashed probe; measuring again")
    if "ceiling" in attrs and not _crash_bound(attrs["ceiling"]):
        ceiling_dict = attrs["ceiling"]
        ceiling_batch = int(ceiling_dict["batch_size"])
        emit("ceiling", f"resumed: ceiling batch {ceiling_batch}")
    else:
        emit("ceiling", "fitting peak memory against batch size")
        if not prior and runner.worker_max_batch > 0:
            runner.restart()  # ascending probes need a worker that has run nothing larger
        try:
            ceiling = find_ceiling(
                runner, num_examples=count, max_batch_size=max_batch_size,
                timeout_s=_probe_timeout(deadline), prior=prior,
                # Leave at least half of what is left for the throughput search.
                deadline_s=time.perf_counter() + max(0.0, _remaining(deadline)) / 2,
                on_probe=lambda r: emit(
                    "ceiling", f"batch {r.batch_size}: {r.outcome}, peak "
                    f"{_mib(r.peak_memory_bytes)} of {_mib(runner.memory_budget_bytes)}",
                    result=r),
            )
        except CeilingNotFound as exc:
            from autobatch._sizes import format_bytes

            raise UsageError(
                f"even batch {exc.result.batch_size} does not fit the memory budget "
                f"{format_bytes(runner.memory_budget_bytes)} ({exc.result.outcome}); "
                "raise --memory-budget or use a smaller model or image size"
            ) from None
        ceiling_dict = _ceiling_plan_dict(ceiling)
        ceiling_dict["fit_allowance_bytes"] = runner.fit_allowance_bytes
        ceiling_batch = ceiling.batch_size
        study.set_user_attr("ceiling", ceiling_dict)
        if _crash_bound(ceiling_dict):
            logger.warning("the ceiling batch %d is bounded by a probe that crashed twice (not "
                           "a memory verdict); a later tune measures it again", ceiling_batch)
        emit("ceiling", f"ceiling batch {ceiling_batch} ({len(ceiling.probes)} probes)")
    first_probe_s = _first_probe_wall_s(ceiling_dict)
    retrace_s = _retrace_wall_s(ceiling_dict, first_probe_s)

    # Phase 2b: does the model compile with XLA? Tried once; dropped if it fails.
    xla_ok = bool(attrs.get("xla_ok", False))
    # Skipped (and not recorded, so a later run tries) when the time left is short.
    # XLA compiles the whole train step again (minutes for a large model on a CPU): try it
    # only when that leaves the study most of its time.
    if try_xla and "xla_ok" not in attrs and _remaining(deadline) > 8 * first_probe_s:
        batch = min(ceiling_batch, DEFAULT_REFERENCE_BATCH_SIZE)
        emit("xla", f"trying jit_compile at batch {batch}")
        result = runner.run(ProbeRequest(batch_size=batch, steps=2, warmup_steps=1,
                                         jit_compile=True, timeout_s=_probe_timeout(deadline)))
        xla_ok = result.ok
        study.set_user_attr("xla_ok", xla_ok)
        emit("xla", "XLA works" if xla_ok else f"XLA dropped ({result.outcome})", result=result)

    # Phase 2c: the pixels' dtype (decided once; a resumed tune keeps it).
    if "pixels" not in attrs:
        dtype, why = _decide_pixels(pixels, runner, source)
        study.set_user_attr("pixels", {"dtype": dtype, "reason": why})
        emit("pixels", f"pixels {dtype}: {why}")
    pixel_choice = dict(study.user_attrs["pixels"])

    # Phase 3: the throughput study.
    model_line = ceiling_dict.get("memory_model") or {}
    small_peak = float(model_line.get("intercept_bytes", 0)) + 8 * float(
        model_line.get("slope_bytes_per_example", 0))
    host_budget = getattr(runner.runner, "host_memory_budget_bytes", None)
    # The study searches batches that still leave a few weight updates per epoch: a batch
    # of the whole data set may be fast per example but trains poorly, and costs the most
    # to probe. The ceiling itself is still reported as measured.
    batch_cap = min(ceiling_batch, training_batch_cap(count))
    space = build_search_space(
        ceiling=batch_cap,
        cpus=env.cpu.effective,
        memory_cache_ok=memory_cache_fits(
            decoded_dataset_bytes(count, size, channels, pixels=pixel_choice["dtype"]),
            host_budget, small_peak),
        xla_ok=xla_ok,
        pixels=pixel_choice["dtype"],
    )
    if search_space is not None:
        fitting = tuple(b for b in search_space.batch_sizes if b <= ceiling_batch)
        space = dataclasses.replace(search_space, batch_sizes=fitting or (ceiling_batch,),
                                    pixels=(pixel_choice["dtype"],))
    ceiling_dict["search_batch_cap"] = max(space.batch_sizes)
    study.set_user_attr("search_space", space.to_dict())
    records = [record_from_frozen(t) for t in study.get_trials(deepcopy=False)
               if t.state.name in ("COMPLETE", "PRUNED", "FAIL") and _in_space(t.params, space)]
    resumed = len(records)
    target = trials if trials is not None else MAX_TRIALS
    best = _best_value(records)
    if resumed:
        emit("search", f"resumed {resumed} stored trials", trial=resumed, trials_total=target,
             best=best)
    if not study.trials:
        for params in seed_points(space, limit=max(2, min(6, target // 3))):
            study.enqueue_trial(params, skip_if_exists=True)
    # The verify phase adapts to the time it gets (fewer finalists, rounds that stop at the
    # deadline), but its rounds against the untuned default decide whether the tune ships
    # anything at all, so they may take up to 70% of what the study has.
    reserve_cap_s = 0.7 * max(0.0, _remaining(deadline))
    default = _default_record(baseline if measure_baseline else None, ceiling_batch)
    fit_traces = 1 if pixel_choice["dtype"] == "float32" or default is None else 2
    verify_reserve_s = min(reserve_cap_s, _verify_reserve(records, first_probe_s, verify_steps,
                                                          trial_steps, fit_traces,
                                                          retrace_s, default is not None))
    while len(records) < target:
        typical_s = _typical_trial_s(records, first_probe_s)
        if time.perf_counter() + typical_s + verify_reserve_s > deadline:
            break
        record = run_trial(
            study, runner, space, best=best, steps=trial_steps, warmup_steps=1,
            timeout_s=_probe_timeout(deadline), min_time_s=TRIAL_MIN_TIME_S,
            num_examples=count,
        )
        records.append(record)
        best = _best_value(records)
        verify_reserve_s = min(reserve_cap_s, _verify_reserve(records, first_probe_s,
                                                              verify_steps, trial_steps,
                                                              fit_traces, retrace_s,
                                                              default is not None))
        emit("search", f"trial {record.number}: {record.state.lower()} "
             f"{record.examples_per_s or 0:.1f} examples/s", trial=len(records),
             trials_total=target, best=best, best_params=_best_params(records))

    # Phase 4: verify the finalists side by side with the untuned default, then the winner
    # for a longer window.
    winner, measured, verify_result, fresh, finalist_table, versus = _verify(
        runner, records, space, ceiling_batch, deadline=deadline, trial_steps=trial_steps,
        verify_steps=verify_steps, first_probe_s=first_probe_s, retrace_s=retrace_s,
        emit=emit, num_examples=count, default=default,
    )
    if versus is not None:
        emit("verify", ("kept the untuned default: " if versus["decision"] == "default"
                        else "the tuned pick ") + versus["reason"])
    settings = params_to_settings(winner.params)
    return Plan(
        batch_size=int(winner.params["batch_size"]),
        num_examples=count,
        ceiling_batch_size=ceiling_batch,
        pipeline=settings,
        image_size=size,
        channels=channels,
        jit_compile=bool(winner.params.get("jit_compile", False)),
        measured={
            "examples_per_s": measured,
            "full_batch_examples_per_s": verify_result.examples_per_s,
            "epoch_efficiency": epoch_efficiency(count, int(winner.params["batch_size"])),
            "step_time_s": verify_result.step_time_s,
            "input_wait_fraction": verify_result.input_wait_fraction,
            "peak_memory_bytes": verify_result.peak_memory_bytes,
            "peak_host_memory_bytes": verify_result.peak_host_memory_bytes,
            "peak_device_memory_bytes": verify_result.peak_device_memory_bytes,
            "memory_budget_bytes": runner.memory_budget_bytes,
            "device": verify_result.device,
            "verify_steps": verify_steps,
            "peak_memory_fresh_worker": fresh,
            "finalists": finalist_table,
            "versus_default": versus,
            "pixels": pixel_choice,
            "tune_wall_time_s": None,
        },
        baseline=baseline if measure_baseline else None,
        ceiling=ceiling_dict,
        trials=[r.to_plan_dict() for r in records],
    )


def _crash_bound(ceiling_dict: dict[str, Any]) -> bool:
    """Whether the ceiling's first failing batch failed by crashing (a killed or broken
    worker), not by memory: such a ceiling is not a measurement to resume from."""
    failing = ceiling_dict.get("first_failing_batch_size")
    if failing is None:
        return False
    at_failing = [p for p in ceiling_dict.get("probes") or [] if p.get("batch_size") == failing]
    return bool(at_failing) and at_failing[-1].get("outcome") == "crash"


def _default_record(baseline: dict[str, Any] | None, ceiling_batch: int) -> TrialRecord | None:
    """The untuned default as a finalist: Keras' batch 32 with tf.data's AUTOTUNE, when its
    baseline probe ran and fit (a baseline that failed or lies above the ceiling cannot be
    the plan)."""
    if not baseline or baseline.get("outcome") != "ok" or not baseline.get("examples_per_s"):
        return None
    batch = int(baseline["batch_size"])
    if batch > ceiling_batch:
        return None
    params = {"batch_size": batch, **_settings_params(PipelineSettings.keras_default()),
              "jit_compile": False}
    return TrialRecord(number=-1, state="COMPLETE", params=params,
                       measurements=[float(baseline["examples_per_s"])])


def _decide_pixels(requested: str, runner: _TrackedRunner, source: Any) -> tuple[str, str]:
    """The pixels' dtype for the study and why (see ``tune``'s ``pixels``)."""
    from autobatch._pipeline import has_8bit_pixels

    if requested == "float32":
        return "float32", "asked for (--pixels float32)"
    if not has_8bit_pixels(source):  # (asked-for uint8 on such data was refused up front)
        return "float32", "the data are not 8-bit images"
    if not runner.accepts_uint8:
        if requested == "uint8":
            raise UsageError("the model's output changes when given uint8 images (its first "
                             "operation does not cast them); use --pixels float32")
        return "float32", "the model's output changes when given uint8 images"
    return "uint8", ("8-bit images and a model that casts its input: a quarter of the bytes "
                     "through cache, shuffle, batch and prefetch")


def _mib(value: int | float | None) -> str:
    from autobatch._sizes import format_bytes

    return format_bytes(value)


def _ceiling_plan_dict(ceiling: CeilingResult) -> dict[str, Any]:
    data = ceiling.to_dict()
    return {
        "batch_size": ceiling.batch_size,
        "probes": data["probes"],
        "memory_model": data["memory_model"],
        "predicted_batch_size": ceiling.predicted_batch_size,
        "first_failing_batch_size": ceiling.first_failing_batch_size,
        "budget_bytes": ceiling.budget_bytes,
        "capped_by": ceiling.capped_by,
    }


def _first_probe_wall_s(ceiling_dict: dict[str, Any]) -> float:
    """Cost of a probe that starts a worker (process start + model load + tracing)."""
    probes = ceiling_dict.get("probes") or []
    starts = [p.get("wall_time_s") or 0.0 for p in probes if p.get("worker_started")]
    if starts:
        return float(max(starts))
    walls = [p.get("wall_time_s") or 0.0 for p in probes]
    return float(max(walls)) if walls else 10.0


def _retrace_wall_s(ceiling_dict: dict[str, Any], first_probe_s: float) -> float:
    """Cost of tracing a train step again in a running worker (a new batch shape, or
    Keras' own train function in ``model.fit``): the longest ceiling probe that reused its
    worker, at most half a worker start (its share of tracing when nothing was read)."""
    probes = ceiling_dict.get("probes") or []
    reused = [p.get("wall_time_s") or 0.0 for p in probes
              if not p.get("worker_started") and p.get("outcome") == "ok"]
    if reused:
        return float(min(max(reused), first_probe_s / 2))
    return first_probe_s / 2


def _typical_trial_s(records: list[TrialRecord], first_probe_s: float) -> float:
    recent = [r.duration_s for r in records[-5:] if r.duration_s > 0]
    if recent:
        return float(statistics.median(recent))
    return max(1.0, first_probe_s / 4)


def _verify_reserve(records: list[TrialRecord], first_probe_s: float, verify_steps: int,
                    trial_steps: int, fit_traces: int = 1,
                    retrace_s: float | None = None, with_default: bool = True) -> float:
    """Time kept for phase 4: finalists and the default re-measured, the long run.

    ``fit_traces``: how many input dtypes the rounds train (Keras traces its train function
    once for each: the untuned default reads float32 where the study's points read uint8).
    """
    typical = _typical_trial_s(records, first_probe_s)
    one_probe = typical / 1.5  # a trial is 1-2 probes
    long_run = one_probe * max(1.0, verify_steps / max(1, trial_steps))
    # The finalists and the untuned default, measured side by side (no rounds for a lone
    # finalist without a default).
    entrants = max(1, min(TOP_K_VERIFY, len(records))) + (1 if with_default else 0)
    rounds = FINALIST_ROUNDS * entrants if entrants > 1 else 0
    # Finalist probes run model.fit: an untimed epoch each, and Keras traces its own train
    # function once (about half a worker start); then a fresh worker for the long run.
    retrace_s = first_probe_s / 2 if retrace_s is None else retrace_s
    fit_trace_s = fit_traces * retrace_s if rounds else 0.0
    # The long run's fresh worker is not reserved: it runs when time is left, and without
    # it the peak read is an upper bound; the rounds against the default come first.
    return rounds * (one_probe + 1.5) + fit_trace_s + long_run


def _probe_cost_s(record: TrialRecord, steps: int, min_time_s: float = 0.0, *,
                  fit: bool = False) -> float:
    """Expected wall time of one more probe of ``record``'s point: its timed steps (at least
    ``min_time_s``) plus a warm-up at the measured rate (``fit`` mode: a whole untimed
    epoch), a cached point's untimed cache fill, and a second of overhead."""
    rate = record.examples_per_s or 0.0
    if rate <= 0:
        return 10.0 + min_time_s
    batch = int(record.params.get("batch_size", 1))
    step_s = batch / rate
    if fit:
        return max(steps * step_s, min_time_s) + steps * step_s + 1.5
    fill = steps if record.params.get("cache", "none") != "none" else 0
    return max(steps * step_s, min_time_s) + (1 + fill) * step_s + 1.0


def pick_finalists(ranked: list[TrialRecord], k: int = TOP_K_VERIFY,
                   per_batch: int = FINALISTS_PER_BATCH) -> list[TrialRecord]:
    """The best ``k`` of ``ranked`` (best first), at most ``per_batch`` of one batch size
    while other batch sizes are left; the trials' order is kept."""
    seen: dict[int, int] = {}
    within, beyond = [], []  # positions in ``ranked``, under and over the per-batch cap
    for position, record in enumerate(ranked):
        batch = int(record.params["batch_size"])
        seen[batch] = seen.get(batch, 0) + 1
        (within if seen[batch] <= per_batch else beyond).append(position)
    return [ranked[i] for i in sorted((within + beyond)[:k])]


def relative_scores(rounds: dict[int, dict[Any, float]]) -> dict[Any, float]:
    """Each point's median over the rounds of its reading divided by the round's geometric
    mean.

    A shared machine drifts by more than the finalists differ (the input-heavy benchmark's
    strided CNN: one point read 2136 then 1666 examples/s two rounds apart); within one
    interleaved round the finalists run back to back, so scoring each against its round
    cancels the drift between rounds. The geometric mean, not the median: against the
    median the middle reading of three scores exactly 1.0, and two finalists that were each
    the middle of one round tied (the benchmark's plan of 2026-11-26 ranked two points 1.0
    and 1.0). Rounds with a single reading carry no comparison and are skipped; a point seen
    only there scores 1.0.
    """
    per_point: dict[Any, list[float]] = {}
    for readings in rounds.values():
        if len(readings) < 2:
            continue
        # Only positive readings set the centre: a zero would zero the whole round.
        values = [v for v in readings.values() if v > 0]
        centre = statistics.geometric_mean(values) if values else 0.0
        for key, value in readings.items():
            per_point.setdefault(key, []).append(value / centre if centre > 0 else 0.0)
    scores = {key: float(statistics.median(values)) for key, values in per_point.items()}
    for readings in rounds.values():
        for key in readings:
            scores.setdefault(key, 1.0)
    return scores


def compare_with_default(rounds: dict[int, dict[Any, float]], key: Any,
                         default_key: Any) -> dict[str, Any]:
    """A candidate against the untuned default from the rounds both read in.

    Each round holds both, measured back to back, so the ratio of the two readings cancels
    the drift of a shared machine between rounds (the same run varies by +-30% here). The
    candidate beats the default only when the paired ratios lie above ``1 + WIN_MARGIN``
    all the way down: in every round for up to five rounds, in all but one from six on (a
    sign-test reading: by chance alone three straight wins come one time in eight, six of
    seven one time in sixteen). ``low``/``high`` are those trimmed extremes and ``noise`` the
    half-width of that spread as a fraction.
    """
    ratios = []
    for index in sorted(rounds):
        readings = rounds[index]
        value, base = readings.get(key), readings.get(default_key)
        if value and base and value > 0 and base > 0:
            ratios.append(float(value) / float(base))
    if not ratios:
        return {"rounds": 0, "paired_ratios": [], "median_ratio": None, "low": None,
                "high": None, "noise": None, "beats_default": False}
    ordered = sorted(ratios)
    trim = (len(ordered) - 1) // 5
    low, high = ordered[trim], ordered[-1 - trim]
    noise = math.exp((math.log(high) - math.log(low)) / 2) - 1
    return {
        "rounds": len(ratios),
        "paired_ratios": [round(r, 4) for r in ratios],
        "median_ratio": round(float(statistics.median(ratios)), 4),
        "low": round(low, 4),
        "high": round(high, 4),
        "noise": round(noise, 4),
        "beats_default": len(ratios) >= FINALIST_ROUNDS and low > 1 + WIN_MARGIN,
    }


def undecided(comparison: dict[str, Any]) -> bool:
    """More rounds could change the verdict: the median says faster, the spread does not."""
    median = comparison.get("median_ratio")
    return (not comparison["beats_default"] and median is not None
            and median > 1 + WIN_MARGIN)


def _probe_timeout(deadline: float) -> float:
    return float(max(30.0, min(300.0, _remaining(deadline) + 30.0)))


def _best_value(records: list[TrialRecord]) -> float | None:
    values = [r.examples_per_s for r in records if r.state == "COMPLETE" and r.examples_per_s]
    return max(values) if values else None


def _best_params(records: list[TrialRecord]) -> dict[str, Any] | None:
    done = [r for r in records if r.state == "COMPLETE" and r.examples_per_s]
    return max(done, key=lambda r: r.examples_per_s or 0).params if done else None


def _in_space(params: dict[str, Any], space: SearchSpace) -> bool:
    choices = space.choices()
    return all(name in params and params[name] in values for name, values in choices.items())


def _key(params: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted(params.items()))


def _verify(
    runner: _TrackedRunner,
    records: list[TrialRecord],
    space: SearchSpace,
    ceiling_batch: int,
    *,
    deadline: float,
    trial_steps: int,
    verify_steps: int,
    first_probe_s: float,
    emit: _Emitter,
    num_examples: int | None = None,
    default: TrialRecord | None = None,
    retrace_s: float | None = None,
) -> tuple[TrialRecord, float, ProbeResult, bool, list[dict[str, Any]], dict[str, Any] | None]:
    """Pick the winner: the trials' best few re-measured side by side with ``model.fit``
    (interleaved rounds) together with the untuned ``default`` when given, then run it
    longer in a fresh worker so its peak memory is its own; fall back to the next on a miss.

    With a ``default``, a candidate wins only if it beat the default in the paired rounds
    beyond their noise (``compare_with_default``); while the median says faster but the
    spread does not, more rounds are measured (up to ``MAX_FINALIST_ROUNDS``); when no
    candidate wins, the default is the plan. Also returns the finalists' readings and the
    comparison with the default (None without one)."""
    from autobatch._search._study import params_to_request

    # Pool the measurements of identical points (TPE may revisit one).
    pooled: dict[tuple[Any, ...], TrialRecord] = {}
    for record in records:
        if record.state != "COMPLETE" or not record.measurements:
            continue
        key = _key(record.params)
        if key in pooled:
            pooled[key].measurements.extend(record.measurements)
        else:
            pooled[key] = TrialRecord(number=record.number, state="COMPLETE",
                                      params=dict(record.params),
                                      measurements=list(record.measurements))
    finalists = sorted(pooled.values(), key=lambda r: r.examples_per_s or 0, reverse=True)
    if not finalists and default is None:
        # No trial finished (tiny budget) and no default to fall back on: the ceiling's own
        # lean settings at Keras' default batch (or the ceiling below it), measured by the
        # long run below; never the ceiling batch itself, which no trial judged.
        lean_default = PipelineSettings(num_parallel_calls=1, prefetch=1)
        params = {"batch_size": min(ceiling_batch, DEFAULT_REFERENCE_BATCH_SIZE),
                  **_settings_params(lean_default), "jit_compile": False}
        finalists = [TrialRecord(number=-1, state="COMPLETE", params=params)]
    finalists = pick_finalists(finalists)
    default_key = _key(default.params) if default is not None else None
    retrace_s = first_probe_s / 2 if retrace_s is None else retrace_s
    long_run_reserve_s = _probe_cost_s(finalists[0] if finalists else default, verify_steps,
                                       VERIFY_MIN_TIME_S)

    def rounds_cost_s(entrants: list[TrialRecord]) -> float:
        """``FINALIST_ROUNDS`` rounds of ``entrants``, with one trace per input dtype."""
        traces = len({r.params.get("pixels", "float32") for r in entrants})
        return traces * retrace_s + FINALIST_ROUNDS * sum(
            _probe_cost_s(r, trial_steps, FINALIST_MIN_TIME_S, fit=True) for r in entrants)

    if default is not None:
        # Fewer finalists rather than fewer rounds: a candidate needs its rounds against the
        # default to replace it at all.
        while len(finalists) > 1 and (rounds_cost_s(finalists + [default]) + long_run_reserve_s
                                      > _remaining(deadline)):
            finalists = finalists[:-1]
    entrants = finalists + ([default] if default is not None else [])
    # The finalists are judged the way the plan will train: epochs of ``model.fit``, not the
    # trials' bare step loop (Keras' per-step work competes with the input pipeline's
    # threads, which the loop cannot see). Their readings are kept apart from the trials':
    # the two scales differ (fit ran ~10% below the loop for the strided CNN).
    round_readings: dict[int, dict[tuple[Any, ...], float]] = {}
    failed_fit: set[tuple[Any, ...]] = set()
    scores: dict[tuple[Any, ...], float] = {}
    comparisons: dict[tuple[Any, ...], dict[str, Any]] = {}

    def compare_all() -> None:
        if default_key is None:
            return
        for record in finalists:
            comparisons[_key(record.params)] = compare_with_default(
                round_readings, _key(record.params), default_key)

    if len(entrants) > 1 and _remaining(deadline) > 0:
        emit("verify", f"re-measuring {len(finalists)} finalists"
             f"{' and the untuned default' if default is not None else ''} side by side "
             "with model.fit")
        # The long run must fit after the re-measurements: they stop where one more would
        # leave it too little time. Keras traces its own train function on the first probe
        # of each input dtype.
        traced: set[str] = set()
        out_of_time = False
        max_rounds = MAX_FINALIST_ROUNDS if default is not None else FINALIST_ROUNDS
        for round_index in range(max_rounds):
            if round_index >= FINALIST_ROUNDS:
                compare_all()
                live = [comparisons[_key(r.params)] for r in finalists
                        if _key(r.params) not in failed_fit]
                # No pair can be added once the default itself failed under fit.
                if default_key in failed_fit or not any(undecided(c) for c in live):
                    break
                emit("verify", f"round {round_index + 1}: the rounds so far do not settle "
                     "the comparison with the default; measuring another")
            # Alternate the order so a slow phase of a shared machine hits all alike.
            order = entrants if round_index % 2 == 0 else entrants[::-1]
            for record in order:
                if _key(record.params) in failed_fit:
                    continue
                dtype = record.params.get("pixels", "float32")
                cost_s = _probe_cost_s(record, trial_steps, FINALIST_MIN_TIME_S, fit=True) + (
                    0.0 if dtype in traced else retrace_s)
                if _remaining(deadline) - cost_s < long_run_reserve_s:
                    out_of_time = True
                    break
                request = params_to_request(record.params, steps=trial_steps,
                                            warmup_steps=1, timeout_s=_probe_timeout(deadline),
                                            min_time_s=FINALIST_MIN_TIME_S, mode="fit")
                result = runner.run(request)
                traced.add(dtype)
                if result.ok and result.examples_per_s:
                    round_readings.setdefault(round_index, {})[_key(record.params)] = float(
                        epoch_rate(result, num_examples) or 0.0)
                else:
                    failed_fit.add(_key(record.params))
                    logger.warning("finalist batch %s failed under model.fit (%s): %s",
                                   record.params["batch_size"], result.outcome,
                                   (result.error or "").strip().splitlines()[-1:])
            if round_index in round_readings:
                emit("verify", f"finalist round {round_index + 1}: " + ", ".join(
                    f"batch {r.params['batch_size']}"
                    f"{' (default)' if r is default else ''} "
                    f"{round_readings[round_index][_key(r.params)]:.1f}/s"
                    for r in entrants if _key(r.params) in round_readings[round_index]))
            if out_of_time:
                break
        scores = relative_scores(round_readings)
        compare_all()
        # A finalist that failed under fit (over the budget, most often: fit holds more than
        # the bare loop) goes last. The rest rank by their paired ratio against the default,
        # else by their fit scores, or by the trials' medians when the deadline cut the
        # rounds before each had a fit reading.
        fine = [r for r in finalists if _key(r.params) not in failed_fit]
        if comparisons:
            fine.sort(key=lambda r: (comparisons[_key(r.params)]["beats_default"],
                                     comparisons[_key(r.params)]["median_ratio"] or 0.0),
                      reverse=True)
        elif all(_key(r.params) in scores for r in fine):
            fine.sort(key=lambda r: scores[_key(r.params)], reverse=True)
        else:
            logger.info("finalist rounds incomplete; ranking by the trials' medians")
        finalists = fine + [r for r in finalists if _key(r.params) in failed_fit]
    elif default is not None:
        compare_all()

    def table_row(record: TrialRecord) -> dict[str, Any]:
        key = _key(record.params)
        row = {**record.params,
               "trial_examples_per_s": record.examples_per_s,
               "fit_examples_per_s": [round(readings[key], 2)
                                      for readings in round_readings.values() if key in readings],
               "relative_score": round(scores[key], 4) if key in scores else None,
               "failed_under_fit": key in failed_fit,
               "is_default": record is default}
        if key in comparisons:
            row["versus_default"] = comparisons[key]
        return row

    finalist_table = [table_row(r) for r in finalists]
    if default is not None:
        finalist_table.append(table_row(default))

    last: ProbeResult | None = None
    lean = {**_settings_params(PipelineSettings(num_parallel_calls=1, prefetch=1)),
            "jit_compile": False}
    if default is not None:
        # Only candidates that beat the default in the paired rounds may replace it; the
        # default itself is the fallback (its batch was measured to fit at the baseline).
        # A finalist that failed under fit is out, even after earlier wins.
        candidates = [r for r in finalists if comparisons[_key(r.params)]["beats_default"]
                      and _key(r.params) not in failed_fit]
        candidates.append(default)
    else:
        # After the finalists, the other measured points (best first), then the lean ceiling
        # settings a step below: a long run can need more memory than a short probe (a
        # memory cache fills, buffers grow), and a batch that failed rules out every larger.
        backups = [r for r in sorted(pooled.values(), key=lambda r: r.examples_per_s or 0,
                                     reverse=True) if r not in finalists]
        candidates = list(finalists) + backups
    failed_batch = math.inf
    attempts = 0
    while candidates and attempts < VERIFY_ATTEMPTS:
        record = candidates.pop(0)
        batch = int(record.params["batch_size"])
        # The default's batch fit at the baseline: a candidate's failure (its cache, its
        # threads) does not rule it out.
        if batch >= failed_batch and record is not default:
            continue
        attempts += 1
        long_run_s = verify_steps * batch / max(1e-9, record.examples_per_s or 1.0) + 2.0
        # A fresh worker makes the peak memory the winner's own. Without one (no time left)
        # the reading still bounds it from above, since a worker only grows.
        fresh = runner.worker_max_batch > 0 and (
            _remaining(deadline) >= first_probe_s + long_run_s)
        if fresh:
            runner.restart()
        fresh = fresh or runner.worker_max_batch == 0
        what = "the untuned default" if record is default else f"batch {batch}"
        emit("verify", f"long run of batch {batch}"
             f"{' (the untuned default)' if record is default else ''}"
             f"{' in a fresh worker' if fresh else ' (peak is an upper bound)'}")
        # The long run's limit follows its own expected length (a worker start, tracing, a
        # cache fill and the steps at the trial's speed), not the time left: the winner must
        # be verified even when the study used its whole budget.
        expected_s = (first_probe_s if fresh else 0.0) + 3.0 * long_run_s + 30.0
        request = params_to_request(record.params, steps=verify_steps, warmup_steps=1,
                                    timeout_s=max(_probe_timeout(deadline) * 2, expected_s),
                                    min_time_s=VERIFY_MIN_TIME_S)
        result = runner.run(request)
        last = result
        peak = result.peak_memory_bytes
        if result.ok and (peak is None or peak <= runner.search_budget_bytes):
            rate = float(epoch_rate(result, num_examples) or 0.0)
            value = robust_value(record.measurements + [rate])
            emit("verify", f"verified batch {record.params['batch_size']}: "
                 f"{rate:.1f} examples/s, peak {_mib(peak)}",
                 best=value, result=result)
            versus = None
            if default is not None:
                versus = _decision(record, default, comparisons, finalists, round_readings)
            return record, float(rate or value), result, fresh, finalist_table, versus
        logger.warning("%s failed verification (%s); trying the next", what,
                       result.outcome if not result.ok else
                       f"peak {_mib(peak)} over the search budget "
                       f"{_mib(runner.search_budget_bytes)}")
        if result.outcome == "oom":
            failed_batch = min(failed_batch, batch)
            if not any(int(c.params["batch_size"]) < failed_batch for c in candidates):
                step_down = max(1, int(batch * 0.9))
                if step_down < batch:
                    candidates.append(TrialRecord(number=-1, state="COMPLETE",
                                                  params={"batch_size": step_down, **lean}))
    from autobatch._errors import ProbeError

    raise ProbeError(
        f"no finalist passed the verify run (last: {last.outcome if last else 'none'}); "
        "re-run with a larger --memory-budget or --force"
    )


def _decision(winner: TrialRecord, default: TrialRecord,
              comparisons: dict[tuple[Any, ...], dict[str, Any]],
              finalists: list[TrialRecord],
              round_readings: dict[int, dict[tuple[Any, ...], float]]) -> dict[str, Any]:
    """The plan's ``measured.versus_default``: which won and how sure the win is."""
    rounds = len(round_readings)
    if winner is not default and _key(winner.params) not in comparisons:
        # A step below at lean settings, after the default itself failed its long run.
        return {"decision": "tuned", **compare_with_default({}, None, None),
                "reason": "replaced the untuned default, which failed its long run: a "
                          "smaller batch at lean settings passed"}
    if winner is not default:
        comparison = comparisons[_key(winner.params)]
        return {"decision": "tuned", **comparison,
                "reason": (f"beat the untuned default in {comparison['rounds']} interleaved "
                           f"model.fit rounds by {comparison['low']:.2f}-"
                           f"{comparison['high']:.2f}x (median {comparison['median_ratio']:.2f}x)")}
    # The default is the plan: report the best candidate's comparison as what it lost.
    best = next((comparisons[_key(r.params)] for r in finalists
                 if comparisons.get(_key(r.params), {}).get("median_ratio")), None)
    if best is None:
        reason = ("no candidate was measured side by side with the default "
                  f"({rounds} rounds fit the time budget)" if rounds
                  else "no candidate was measured side by side with the default")
        best = compare_with_default({}, None, None)
    elif best["beats_default"]:
        reason = ("the candidates that beat the default failed later, under model.fit or "
                  f"in their long run (best median {best['median_ratio']:.2f}x)")
    elif best["rounds"] < FINALIST_ROUNDS:
        reason = (f"only {best['rounds']} paired rounds fit the time budget; "
                  f"{FINALIST_ROUNDS} are needed to replace the default")
    elif best["median_ratio"] > 1 + WIN_MARGIN:
        reason = (f"the best candidate read {best['median_ratio']:.2f}x the default (median) "
                  f"but {best['low']:.2f}x in its worst round: not beyond the noise")
    else:
        reason = f"no candidate beat the default (best median {best['median_ratio']:.2f}x)"
    return {"decision": "default", **best, "beats_default": False, "reason": reason}


def _settings_params(settings: PipelineSettings) -> dict[str, Any]:
    return {
        "num_parallel_calls": settings.num_parallel_calls,
        "prefetch": settings.prefetch,
        "cache": settings.cache,
        "private_threadpool_size": settings.private_threadpool_size,
        "deterministic": settings.deterministic,
        "max_intra_op_parallelism": settings.max_intra_op_parallelism,
        "pixels": settings.pixels,
    }
