"""The goodput objective: rank points by examples/s x statistical efficiency (Pollux,
OSDI 2021), so that a batch past the critical batch no longer wins on throughput alone.

The noise phase measures the simple gradient noise scale once per study (``_noise``; one
probe in the reused worker, after the ceiling, at the largest batch the study tries up to
256 and an eighth of it), and stores it on the study. Every score of the search is then
weighted by ``efficiency(B) = (B_noise + B0) / (B_noise + B)`` with ``B0`` Keras' default
batch, the untuned default's own (its weight is 1). A noise scale the draws could not
resolve (``|G|²`` not above the noise: every batch tried is far below it) weighs every
batch 1, and the plan says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autobatch._noise import NoiseScale
from autobatch._plan import DEFAULT_REFERENCE_BATCH_SIZE
from autobatch._probe._types import ProbeRequest
from autobatch._search._run import SearchRun, training_batch_cap
from autobatch._search._space import robust_value
from autobatch._search._timing import probe_timeout

OBJECTIVES = ("throughput", "goodput")
NOISE_LARGE_BATCH = 256
"""The noise probe's large batch at most (its small batch is an eighth of it)."""

Weight = Callable[[int], float]


def noise_phase(run: SearchRun, ceiling_batch: int) -> dict[str, Any] | None:
    """The study's noise scale record (measured once, stored on the study), or None when
    the objective is throughput or the probe failed."""
    if run.config.objective != "goodput" or run.replicas > 1:
        return None
    if "noise_scale" in run.stored:
        return dict(run.stored["noise_scale"])
    large = min(ceiling_batch, training_batch_cap(run.batch_cap), NOISE_LARGE_BATCH)
    small = max(1, large // 8)
    if small >= large:
        return None
    run.emit("noise", f"gradient noise scale from batches of {small} and {large}")
    result = run.runner.run(ProbeRequest(batch_size=large, steps=2, warmup_steps=1,
                                         noise_small_batch=small,
                                         timeout_s=probe_timeout(run.deadline)))
    if not result.ok or result.noise_scale is None:
        run.emit("noise", f"the noise probe failed ({result.outcome}): ranking by throughput")
        return None
    record = dict(result.noise_scale)
    scale = NoiseScale.from_dict(record)
    record["resolved"] = scale.resolved
    run.study.set_user_attr("noise_scale", record)
    run.emit("noise", f"B_simple {scale.b_simple:.0f} ({scale.low:.0f}-{scale.high:.0f})"
             if scale.resolved else f"B_simple far above batch {large}: every batch tried "
             "counts fully", result=result)
    return record


def weight_for(record: dict[str, Any] | None) -> Weight | None:
    """The efficiency weight of a batch under the noise scale ``record`` (None: throughput,
    every batch weighs 1)."""
    if record is None:
        return None
    scale = NoiseScale.from_dict(record)
    if not scale.resolved:
        return None

    def weight(batch_size: int) -> float:
        return scale.efficiency(batch_size, DEFAULT_REFERENCE_BATCH_SIZE)

    return weight


def objective_record(objective: str, noise: dict[str, Any] | None,
                     finalists: list[dict[str, Any]]) -> dict[str, Any]:
    """The plan's ``measured.objective``: which objective chose it, the noise scale, and
    each finalist on both objectives (examples/s and goodput)."""
    weight = weight_for(noise)
    rows = []
    for row in finalists:
        batch = int(row.get("batch_size") or 0)
        rates = row.get("fit_examples_per_s") or []
        rate = robust_value(rates) if rates else row.get("trial_examples_per_s")
        efficiency = weight(batch) if weight is not None and batch else 1.0
        rows.append({"batch_size": batch, "examples_per_s": rate, "efficiency": efficiency,
                     "goodput": rate * efficiency if rate is not None else None,
                     "is_default": bool(row.get("is_default"))})
    return {"name": objective, "reference_batch_size": DEFAULT_REFERENCE_BATCH_SIZE,
            "noise_scale": noise, "finalists": rows}
