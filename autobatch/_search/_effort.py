"""A tune sized to the job (issue #22, item 1): told how many epochs the plan will train
(``tune(epochs=...)``, which ``fit`` passes), the tune reads the untuned default's rate
from its first probe, estimates the untuned training time, and spends only what it can
expect to win back. An explicit ``time_budget`` (or ``trials``) always wins.

* untuned training ``T0 = N x epochs / rate`` (the default's rate over an epoch);
* a job too small to pay back even the quickest tune (a plan ``LIKELY_SPEEDUP`` times as
  fast would save less than ``QUICK_TUNE_S``) is not tuned: the plan is the measured untuned
  default (batch 32, AUTOTUNE, its peak read under the budget), with a one-line reason;
* otherwise the tune's budget is ``PAYBACK_SHARE x T0``, at least ``QUICK_TUNE_S`` and at
  most the default budget. The plan records the estimate, the budget and, once tuned, the
  saving it expects (``measured.effort``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from autobatch._plan import Plan
from autobatch._search._run import SearchRun
from autobatch._settings import PipelineSettings

PAYBACK_SHARE = 0.2
"""Share of the untuned training time a tune may spend: with the 1.5-3x plans measured on
input-bound jobs, a tune of a fifth of the job is won back several times over."""
QUICK_TUNE_S = 20.0
"""The shortest tune worth running: a ceiling and a handful of decisive trials."""
LIKELY_SPEEDUP = 2.0
"""The speed-up a job is assumed to get when judging whether any tune can pay."""


@dataclass(frozen=True)
class Effort:
    """What the job is worth tuning."""

    untuned_training_s: float
    budget_s: float | None
    """The tune's whole budget in seconds; None: not tuned."""
    reason: str

    def record(self, epochs: int) -> dict[str, Any]:
        return {"epochs": epochs, "untuned_training_s": round(self.untuned_training_s, 1),
                "budget_s": None if self.budget_s is None else round(self.budget_s, 1),
                "tuned": self.budget_s is not None, "reason": self.reason}


def size_effort(*, count: int, epochs: int, default_rate: float,
                default_budget_s: float) -> Effort:
    """The tune's budget for ``epochs`` epochs of ``count`` examples at the untuned
    default's ``default_rate`` (examples/s)."""
    untuned_s = count * epochs / max(default_rate, 1e-9)
    winnable_s = untuned_s * (1.0 - 1.0 / LIKELY_SPEEDUP)
    job = (f"{epochs} epoch(s) of {count} examples at the untuned default's "
           f"{default_rate:.0f}/s take about {untuned_s:.0f} s")
    if winnable_s < QUICK_TUNE_S:
        return Effort(untuned_s, None, (
            f"not tuned: {job}; a plan {LIKELY_SPEEDUP:g}x as fast would save {winnable_s:.0f} "
            f"s, less than the quickest tune ({QUICK_TUNE_S:.0f} s), so training starts at "
            "once with the measured default (pass time_budget= to tune anyway)"))
    budget = min(default_budget_s, max(QUICK_TUNE_S, PAYBACK_SHARE * untuned_s))
    return Effort(untuned_s, budget, (
        f"{job}: tuned for {budget:.0f} s, {PAYBACK_SHARE:.0%} of that"
        + (" (the default budget's limit)" if budget >= default_budget_s else "")))


def untuned_plan(*, baseline: dict[str, Any], count: int, replicas: int,
                 size: tuple[int, int] | None, channels: int, memory_budget_bytes: int | None,
                 reason: str) -> Plan:
    """The plan of a job not worth tuning: the untuned default as its first probe measured
    it (its batch fit under the budget, so it is the verified ceiling here)."""
    batch = int(baseline["batch_size"])
    return Plan(
        batch_size=batch,
        per_replica_batch_size=int(baseline.get("per_replica_batch_size") or batch),
        num_replicas=replicas, num_examples=count, ceiling_batch_size=batch,
        pipeline=PipelineSettings.keras_default(), image_size=size, channels=channels,
        measured={
            "examples_per_s": baseline.get("examples_per_s"),
            "full_batch_examples_per_s": baseline.get("full_batch_examples_per_s"),
            "peak_memory_bytes": baseline.get("peak_memory_bytes"),
            "memory_budget_bytes": memory_budget_bytes,
            "versus_default": {"decision": "default", "reason": reason, "rounds": 0},
        },
        baseline=baseline,
        ceiling={"batch_size": batch, "capped_by": "not tuned"},
    )


def expected_saving_s(effort: dict[str, Any], plan: Plan, tune_s: float) -> float | None:
    """The seconds the plan should save over the untuned job, its tune's cost taken off."""
    speedup = plan.speedup_over_baseline
    if not speedup or not effort.get("untuned_training_s"):
        return None
    untuned = float(effort["untuned_training_s"])
    return round(untuned - untuned / float(speedup) - tune_s, 1)


def size_to_the_job(run: SearchRun, baseline: dict[str, Any] | None
                    ) -> tuple[SearchRun, Plan | None, dict[str, Any] | None]:
    """The search with its deadline sized to the job, or the untuned plan of a job too
    small to tune, and the ``measured.effort`` record; the search as it is when the caller
    chose the budget, no epochs were given, or the default's probe failed."""
    config = run.config
    if config.epochs is None or config.budget_given or config.time_budget_s is None or \
            not baseline or baseline.get("outcome") != "ok" or \
            not baseline.get("examples_per_s"):
        return run, None, None
    effort = size_effort(count=run.count, epochs=int(config.epochs),
                         default_rate=float(baseline["examples_per_s"]),
                         default_budget_s=float(config.time_budget_s))
    run.emit("effort", effort.reason)
    record = effort.record(int(config.epochs))
    if effort.budget_s is None:
        plan = untuned_plan(baseline=baseline, count=run.count, replicas=run.replicas,
                            size=run.size, channels=run.channels,
                            memory_budget_bytes=run.runner.memory_budget_bytes,
                            reason=effort.reason)
        plan.measured["effort"] = record
        return run, plan, record
    deadline = run.deadline - float(config.time_budget_s) + effort.budget_s
    quick = effort.budget_s < float(config.time_budget_s)
    return dataclasses.replace(run, deadline=deadline, quick=quick), None, record


def cached_plan_fits_the_job(plan: Plan, config: Any, count: int) -> bool:
    """Whether a cached plan sized to an earlier job also serves this one: a plan tuned
    briefly (or not at all) for a small job is tuned again, resuming its study, when this
    job is worth clearly more (its default's rate, kept in the plan, sizes it)."""
    earlier = plan.measured.get("effort")
    rate = (plan.baseline or {}).get("examples_per_s")
    if not isinstance(earlier, dict) or config.epochs is None or config.budget_given \
            or not rate or config.time_budget_s is None:
        return True
    now = size_effort(count=count, epochs=int(config.epochs), default_rate=float(rate),
                      default_budget_s=float(config.time_budget_s))
    if now.budget_s is None:
        return True
    before = earlier.get("budget_s")
    return before is not None and now.budget_s <= 1.5 * float(before)
