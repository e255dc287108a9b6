"""The search space: the values batch size and each tf.data setting may take, the seed
points, a point's settings and probe request, and how its readings are scored (epoch rate,
median, prune and repeat rules). No TensorFlow; Optuna only for
the space's distributions."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from autobatch._plan import steps_per_epoch
from autobatch._probe._types import Mode, ProbeRequest, ProbeResult
from autobatch._settings import PipelineSettings

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


def seed_points(space: SearchSpace, *, limit: int = 6,
                largest_first: bool = False) -> list[dict[str, Any]]:
    """First trials: a batch-size sweep at well-known good tf.data defaults.

    Batch size moves throughput most, so the study starts by measuring Keras' default
    batch (32) and then the largest candidates (tiny batches are rarely the fastest), with
    the pipeline settings the tf.data guide recommends: as many parallel calls as cores, a
    small prefetch, the memory cache when it fits, no order guarantee. TPE then refines
    from there. A quick tune (``largest_first``) has time for a trial or two: it starts
    with the largest candidate, the likeliest winner on a CPU that decodes its input, then
    Keras' default batch.
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
        rest = [b for b in order if b != reference]
        order = rest[:1] + [reference] + rest[1:] if largest_first else [reference] + rest
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


def settings_params(settings: PipelineSettings) -> dict[str, Any]:
    """The params of ``settings`` (the inverse of ``params_to_settings``; no batch size)."""
    return {
        "num_parallel_calls": settings.num_parallel_calls,
        "prefetch": settings.prefetch,
        "cache": settings.cache,
        "private_threadpool_size": settings.private_threadpool_size,
        "deterministic": settings.deterministic,
        "max_intra_op_parallelism": settings.max_intra_op_parallelism,
        "pixels": settings.pixels,
    }


def point_key(params: dict[str, Any]) -> tuple[Any, ...]:
    """A hashable key for one point of the space (identical points pool their readings)."""
    return tuple(sorted(params.items()))


def in_space(params: dict[str, Any], space: SearchSpace) -> bool:
    """Whether a stored trial's point lies in ``space`` (a resumed study keeps only those)."""
    choices = space.choices()
    return all(name in params and params[name] in values for name, values in choices.items())


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
    the last one is partial; such a step costs about as much as a full one (docs/tune.md,
    "Measurements behind the constants"). So a point's examples/s over an epoch is its full-batch
    rate times this factor, and the search compares points by it: on 600 examples batch 150
    (4 full steps, factor 1.0) beats a batch 128 that reads up to 6% faster per full step
    (5 steps for 600, factor 0.94). 1.0 when ``N`` is unknown; negligible for large data.
    """
    if not num_examples or num_examples < 1 or batch_size < 1:
        return 1.0
    return float(num_examples) / float(steps_per_epoch(num_examples, batch_size) * batch_size)


def epoch_rate(result: ProbeResult, num_examples: int | None) -> float | None:
    """A probe's examples/s over an epoch of ``num_examples`` (``epoch_efficiency``)."""
    if result.examples_per_s is None:
        return None
    return float(result.examples_per_s) * epoch_efficiency(num_examples,
                                                           result.global_batch_size)


def robust_value(measurements: Sequence[float]) -> float:
    """The score of repeated measurements: their median (robust to one noisy run)."""
    return float(statistics.median(measurements)) if measurements else 0.0


def should_prune(first: float, best: float | None, ratio: float = PRUNE_RATIO) -> bool:
    """Stop a trial whose first measurement is far below the best median so far."""
    return best is not None and best > 0 and first < ratio * best


def should_repeat(first: float, best: float | None, ratio: float = REPEAT_RATIO) -> bool:
    """Measure again when the first run is close to (or above) the best: noise decides there."""
    return best is None or first >= ratio * best

