"""The throughput search: an Optuna study over batch size and the tf.data settings.

Every trial is one short probe in the reused worker (throughput figures need no fresh
worker); a promising trial is measured twice and scored by the median, a poor one is pruned
after its first measurement. Storage is an Optuna storage URL (an embedded SQLite file in
the user cache by default), the study name comes from the fingerprints, so an interrupted
tune resumes from its stored trials. Optuna is imported lazily (it is not on the cache-hit
path).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from autobatch._probe._types import Mode, ProbeRequest, ProbeResult
from autobatch._settings import PipelineSettings

logger = logging.getLogger(__name__)

PRUNE_RATIO = 0.6
"""A first measurement below this share of the best so far ends the trial (noise is ~30%)."""
REPEAT_RATIO = 0.85
"""A first measurement above this share of the best is measured again (median of both)."""
MEMORY_CACHE_MARGIN = 1.25
"""The decoded data set must fit the host budget with this factor to spare for cache=memory."""

PARAM_NAMES = (
    "batch_size",
    "num_parallel_calls",
    "prefetch",
    "cache",
    "private_threadpool_size",
    "deterministic",
    "max_intra_op_parallelism",
    "jit_compile",
    "pixels",
)


# ---------------------------------------------------------------- the search space (pure)


def batch_candidates(ceiling: int, *, smallest: int = 8) -> tuple[int, ...]:
    """Powers of two from ``smallest`` up to the ceiling, plus the ceiling itself."""
    ceiling = max(1, int(ceiling))
    # Tiny ceilings still get a few candidates below them.
    smallest = max(1, min(smallest, ceiling // 4))
    values = {ceiling}
    power = 1
    while power <= ceiling:
        if power >= smallest:
            values.add(power)
        power *= 2
    return tuple(sorted(values))


def decoded_dataset_bytes(num_examples: int, image_size: Sequence[int] | None,
                          channels: int, *, pixels: str = "float32") -> int:
    """Bytes of the decoded, resized data set (what ``cache="memory"`` keeps): 4 per value
    as float32, 1 as uint8."""
    if not image_size:
        return 0
    height, width = int(image_size[0]), int(image_size[1])
    per_value = 1 if pixels == "uint8" else 4
    return int(num_examples) * height * width * int(channels) * per_value


def memory_cache_fits(dataset_bytes: int, host_budget_bytes: int | None,
                      model_peak_bytes: float) -> bool:
    """Whether ``cache="memory"`` may be tried: the cached data set (with margin) plus the
    model's peak at a small batch stay under the host budget."""
    if host_budget_bytes is None or dataset_bytes <= 0:
        return False
    return dataset_bytes * MEMORY_CACHE_MARGIN + max(0.0, model_peak_bytes) <= host_budget_bytes


@dataclass(frozen=True)
class SearchSpace:
    """The concrete values each parameter may take (every one a number, never AUTOTUNE)."""

    batch_sizes: tuple[int, ...]
    num_parallel_calls: tuple[int, ...] = (1, 2)
    prefetch: tuple[int, ...] = (0, 1, 2, 4)
    cache: tuple[str, ...] = ("none",)
    private_threadpool_size: tuple[int, ...] = (0,)
    deterministic: tuple[bool, ...] = (False, True)
    max_intra_op_parallelism: tuple[int, ...] = (1,)
    jit_compile: tuple[bool, ...] = (False,)
    pixels: tuple[str, ...] = ("float32",)

    def choices(self) -> dict[str, tuple[Any, ...]]:
        return {name: tuple(getattr(self, name if name != "batch_size" else "batch_sizes"))
                for name in PARAM_NAMES}

    def distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        return {name: CategoricalDistribution(list(values))
                for name, values in self.choices().items()}

    @property
    def size(self) -> int:
        return math.prod(len(v) for v in self.choices().values())

    def grid(self) -> Iterator[dict[str, Any]]:
        """Every point of the space as a params dict (for the exhaustive benchmark)."""
        names = list(PARAM_NAMES)
        for values in itertools.product(*(self.choices()[n] for n in names)):
            yield dict(zip(names, values, strict=True))

    def to_dict(self) -> dict[str, list[Any]]:
        return {name: list(values) for name, values in self.choices().items()}


def build_search_space(
    *,
    ceiling: int,
    cpus: int,
    memory_cache_ok: bool,
    disk_cache_ok: bool = True,
    xla_ok: bool = False,
    smallest_batch: int = 8,
    pixels: str = "float32",
) -> SearchSpace:
    """The space for this machine: parallelism up to the usable CPUs, caches that fit.

    ``pixels`` is decided before the search, not searched: uint8 moves a quarter of the
    bytes for the same training, so where the data and the model allow it, it is never
    the slower choice, and a trial's noise (about 30% here) would decide it otherwise.
    """
    cpus = max(1, int(cpus))
    parallel = tuple(sorted({1, 2, cpus} & set(range(1, cpus + 1)) | {1}))
    if cpus >= 4:
        parallel = tuple(sorted({1, 2, cpus // 2, cpus}))
    cache = ("none",) + (("memory",) if memory_cache_ok else ())
    cache += ("disk",) if disk_cache_ok else ()
    return SearchSpace(
        batch_sizes=batch_candidates(ceiling, smallest=smallest_batch),
        num_parallel_calls=parallel,
        prefetch=(0, 1, 2, 4),
        cache=cache,
        private_threadpool_size=tuple(sorted({0, cpus})),
        deterministic=(False, True),
        max_intra_op_parallelism=tuple(sorted({1, cpus})),
        jit_compile=(False, True) if xla_ok else (False,),
        pixels=(pixels,),
    )


def seed_points(space: SearchSpace, *, limit: int = 6) -> list[dict[str, Any]]:
    """First trials: a batch-size sweep at well-known good tf.data defaults.

    Batch size moves throughput most, so the study starts by measuring Keras' default
    batch (32) and then the largest candidates (tiny batches are rarely the fastest), with
    the pipeline settings the tf.data guide recommends: as many parallel calls as cores, a
    small prefetch, the memory cache when it fits, no order guarantee. TPE then refines
    from there.
    """
    batches = list(space.batch_sizes)[-limit:]

    def pick(values: tuple[Any, ...], preferred: Any) -> Any:
        return preferred if preferred in values else values[-1]

    common = {
        "num_parallel_calls": max(space.num_parallel_calls),
        "prefetch": pick(space.prefetch, 1),
        "cache": pick(space.cache, "memory") if "memory" in space.cache else space.cache[0],
        "private_threadpool_size": space.private_threadpool_size[0],
        "deterministic": pick(space.deterministic, False),
        "max_intra_op_parallelism": space.max_intra_op_parallelism[0],
        "jit_compile": space.jit_compile[0],
        "pixels": pick(space.pixels, "uint8"),
    }
    # Keras' default batch first: it is the cheapest point to measure, and the plan then
    # always has a concrete-settings rival to the untuned default, even when the time
    # budget allows a single trial (large batches are often slower on a CPU).
    order = list(reversed(batches))
    reference = 32 if 32 in space.batch_sizes else None
    if reference is not None:
        order = [reference] + [b for b in order if b != reference]
    return [{"batch_size": batch, **common} for batch in order[:limit]]


def params_to_settings(params: dict[str, Any]) -> PipelineSettings:
    """The pipeline settings of one point of the space (Optuna params, plain values)."""
    return PipelineSettings(
        num_parallel_calls=int(params["num_parallel_calls"]),
        prefetch=int(params["prefetch"]),
        cache=params["cache"],
        private_threadpool_size=int(params["private_threadpool_size"]),
        deterministic=bool(params["deterministic"]),
        max_intra_op_parallelism=int(params["max_intra_op_parallelism"]),
        # Trials stored before pixels was a setting ran float32.
        pixels=params.get("pixels", "float32"),
    )


def params_to_request(params: dict[str, Any], *, steps: int, warmup_steps: int,
                      timeout_s: float, min_time_s: float = 0.0,
                      mode: Mode = "loop") -> ProbeRequest:
    """A probe request for one point of the space."""
    settings = params_to_settings(params)
    return ProbeRequest(
        batch_size=int(params["batch_size"]),
        settings=settings,
        steps=steps,
        warmup_steps=warmup_steps,
        jit_compile=bool(params.get("jit_compile", False)),
        timeout_s=timeout_s,
        min_time_s=min_time_s,
        mode=mode,
    )


def epoch_efficiency(num_examples: int | None, batch_size: int) -> float:
    """The share of an epoch's steps that carries examples: ``N / (ceil(N / B) * B)``.

    Probes time full batches, but an epoch of ``N`` examples takes ``ceil(N / B)`` steps and
    the last one is partial; such a step costs about as much as a full one (600 photos of the
    input-heavy benchmark at batch 128: the last step, 88 examples, took 93% of a full step,
    interleaved in-memory batches). So a point's examples/s over an epoch is its full-batch
    rate times this factor, and the search compares points by it: on 600 examples batch 150
    (4 full steps, factor 1.0) beats a batch 128 that reads up to 6% faster per full step
    (5 steps for 600, factor 0.94). 1.0 when ``N`` is unknown; negligible for large data.
    """
    from autobatch._plan import steps_per_epoch

    if not num_examples or num_examples < 1 or batch_size < 1:
        return 1.0
    return float(num_examples) / float(steps_per_epoch(num_examples, batch_size) * batch_size)


def epoch_rate(result: ProbeResult, num_examples: int | None) -> float | None:
    """A probe's examples/s over an epoch of ``num_examples`` (``epoch_efficiency``)."""
    if result.examples_per_s is None:
        return None
    return float(result.examples_per_s) * epoch_efficiency(num_examples, result.batch_size)


def robust_value(measurements: Sequence[float]) -> float:
    """The score of repeated measurements: their median (robust to one noisy run)."""
    return float(statistics.median(measurements)) if measurements else 0.0


def should_prune(first: float, best: float | None, ratio: float = PRUNE_RATIO) -> bool:
    """Stop a trial whose first measurement is far below the best median so far."""
    return best is not None and best > 0 and first < ratio * best


def should_repeat(first: float, best: float | None, ratio: float = REPEAT_RATIO) -> bool:
    """Measure again when the first run is close to (or above) the best: noise decides there."""
    return best is None or first >= ratio * best


# ---------------------------------------------------------------- storage and study


def default_storage_url() -> str:
    """An embedded SQLite file in the user cache folder."""
    from autobatch._plan import cache_root

    path = cache_root() / "optuna.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def study_name_for(fingerprints: dict[str, str]) -> str:
    """A stable study name from the fingerprints (the same tune resumes the same study)."""
    from autobatch._plan import combined_key

    return f"autobatch-{combined_key(fingerprints)}"


def open_study(storage: str | None, study_name: str, *, seed: int,
               n_startup_trials: int = 6) -> Any:
    """Create or load the study (``load_if_exists``), with a seeded TPE sampler."""
    import optuna

    from autobatch._errors import UsageError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials,
                                         multivariate=True)
    try:
        return optuna.create_study(
            storage=storage or default_storage_url(),
            study_name=study_name,
            direction="maximize",
            sampler=sampler,
            load_if_exists=True,
        )
    except (ValueError, ImportError, ModuleNotFoundError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"cannot open Optuna storage {storage!r}: {first}; pass a valid --storage URL "
            "such as sqlite:///study.db"
        ) from None


# ---------------------------------------------------------------- running trials


@dataclass
class TrialRecord:
    """One trial as the plan stores it."""

    number: int
    state: str
    params: dict[str, Any]
    measurements: list[float] = field(default_factory=list)
    peak_memory_bytes: int | None = None
    outcome: str = "ok"
    duration_s: float = 0.0

    @property
    def examples_per_s(self) -> float | None:
        return robust_value(self.measurements) if self.measurements else None

    def to_plan_dict(self) -> dict[str, Any]:
        settings = {k: v for k, v in self.params.items() if k not in ("batch_size", "jit_compile")}
        return {
            "number": self.number,
            "state": self.state,
            "batch_size": self.params.get("batch_size"),
            "settings": settings,
            "jit_compile": bool(self.params.get("jit_compile", False)),
            "examples_per_s": self.examples_per_s,
            "measurements": list(self.measurements),
            "peak_memory_bytes": self.peak_memory_bytes,
            "outcome": self.outcome,
        }


def record_from_frozen(trial: Any) -> TrialRecord:
    """Rebuild a record from a stored Optuna trial (resume)."""
    attrs = trial.user_attrs
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        params=dict(trial.params),
        measurements=list(attrs.get("measurements_examples_per_s", [])),
        peak_memory_bytes=attrs.get("peak_memory_bytes"),
        outcome=attrs.get("outcome", "ok"),
        duration_s=float(attrs.get("duration_s", 0.0)),
    )


def run_trial(
    study: Any,
    runner: Any,
    space: SearchSpace,
    *,
    best: float | None,
    steps: int,
    warmup_steps: int,
    timeout_s: float,
    on_result: Callable[[ProbeResult], None] | None = None,
    min_time_s: float = 0.0,
    num_examples: int | None = None,
) -> TrialRecord:
    """Ask the study for a point, measure it (once, twice when promising), tell the result.

    Its value is the epoch rate over ``num_examples`` (``epoch_efficiency``): the probe's
    full-batch examples/s times the share of the epoch's steps that carries examples.

    A KeyboardInterrupt marks the trial failed in the storage before it propagates, so a
    resumed study does not wait on a trial left RUNNING.
    """
    import optuna

    with _interrupts_deferred():
        # An interrupt inside ask (the trial row exists, its number is not ours yet) would
        # leave a trial RUNNING that nobody can tell: it waits until ask has returned.
        trial = study.ask(space.distributions())
    needs_fail = False
    try:
        return _run_asked_trial(study, trial, runner, best=best, steps=steps,
                                warmup_steps=warmup_steps, timeout_s=timeout_s,
                                on_result=on_result, min_time_s=min_time_s,
                                num_examples=num_examples)
    except BaseException:
        needs_fail = True
        raise
    finally:
        # An interrupt at any moment (inside a probe, or between the result and the tell)
        # leaves no trial RUNNING: whatever was not told is told as failed.
        if needs_fail and trial.number in _unfinished(study):
            try:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            except Exception:  # noqa: BLE001 - already told, or the storage is gone
                logger.debug("could not mark trial %d failed", trial.number)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the block and deliver them after it, to the handlers that
    were in place (main thread only; elsewhere signals do not arrive anyway)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    watched = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum))
                for sig in watched}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in pending[:1]:
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                if signum == signal.SIGINT:
                    raise KeyboardInterrupt
                signal.raise_signal(signum)  # the default action: end the process


def _unfinished(study: Any) -> set[int]:
    import optuna

    return {t.number for t in study.get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}


OWNER_ATTR = "owner"
"""Trial user attribute naming the process that runs it: ``{host, pid, started}``."""


def _process_identity(pid: int | None = None) -> dict[str, Any]:
    import socket

    import psutil

    process = psutil.Process(pid)
    return {"host": socket.gethostname(), "pid": process.pid,
            "started": round(process.create_time(), 2)}


def fail_stale_trials(study: Any) -> list[int]:
    """Fail the RUNNING trials whose process is gone (killed with SIGKILL, a lost session).

    Only trials owned by a process on this host can be checked; trials of live processes
    and of other hosts are left alone. Returns the trial numbers failed.
    """
    import socket

    import optuna
    import psutil

    host = socket.gethostname()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = trial.user_attrs.get(OWNER_ATTR) or {}
        if owner.get("host") != host:
            continue
        try:
            alive = _process_identity(int(owner["pid"]))["started"] == owner.get("started")
        except (psutil.Error, KeyError, TypeError, ValueError):
            alive = False
        if alive:
            continue
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        failed.append(trial.number)
        logger.warning("trial %d was left RUNNING by a process that is gone (pid %s); marked "
                       "failed", trial.number, owner.get("pid"))
    return failed


def _run_asked_trial(study: Any, trial: Any, runner: Any, *, best: float | None, steps: int,
                     warmup_steps: int, timeout_s: float,
                     on_result: Callable[[ProbeResult], None] | None, min_time_s: float,
                     num_examples: int | None) -> TrialRecord:
    import optuna

    trial.set_user_attr(OWNER_ATTR, _process_identity())
    params = dict(trial.params)
    started = time.perf_counter()
    record = TrialRecord(number=trial.number, state="RUNNING", params=params)
    try:
        for attempt in range(2):
            request = params_to_request(params, steps=steps, warmup_steps=warmup_steps,
                                        timeout_s=timeout_s, min_time_s=min_time_s)
            result = runner.run(request)
            if on_result is not None:
                on_result(result)
            record.outcome = result.outcome
            if result.peak_memory_bytes is not None:
                record.peak_memory_bytes = max(record.peak_memory_bytes or 0,
                                               int(result.peak_memory_bytes))
            if not result.ok or not result.examples_per_s:
                record.state = "FAIL"
                break
            record.measurements.append(float(epoch_rate(result, num_examples) or 0.0))
            trial.report(record.measurements[-1], attempt)
            if attempt == 0 and should_prune(record.measurements[0], best):
                record.state = "PRUNED"
                break
            if attempt == 0 and not should_repeat(record.measurements[0], best):
                break
        else:
            pass
        if record.state == "RUNNING":
            record.state = "COMPLETE"
    except BaseException:
        record.duration_s = time.perf_counter() - started
        _set_trial_attrs(trial, record)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    record.duration_s = time.perf_counter() - started
    _set_trial_attrs(trial, record)
    if record.state == "COMPLETE":
        study.tell(trial, record.examples_per_s)
    elif record.state == "PRUNED":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        # A point that does not run (over budget, crash) is told to Optuna as pruned at
        # zero examples/s: TPE ignores FAILED trials and would propose the point again,
        # each time costing a worker restart. The plan keeps the real outcome.
        trial.report(0.0, len(record.measurements))
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    logger.info("trial %d %s: %s examples/s %s", record.number, record.state, params,
                record.examples_per_s)
    return record


def _set_trial_attrs(trial: Any, record: TrialRecord) -> None:
    # Readable attributes for optuna-dashboard.
    trial.set_user_attr("batch_size", record.params.get("batch_size"))
    trial.set_user_attr("examples_per_s", record.examples_per_s)
    trial.set_user_attr("measurements_examples_per_s", record.measurements)
    trial.set_user_attr("peak_memory_bytes", record.peak_memory_bytes)
    trial.set_user_attr("outcome", record.outcome)
    trial.set_user_attr("duration_s", round(record.duration_s, 3))
    trial.set_user_attr("settings", {k: v for k, v in record.params.items() if k != "batch_size"})
