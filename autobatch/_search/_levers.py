"""Memory levers, tried and never assumed: mixed precision and rematerialisation enter the
plan only where this machine's probes measured a gain.

Which apply is read without TensorFlow (``applicable_levers``): ``mixed_float16`` on GPUs
of compute capability 7.0 or more (NVML), ``mixed_bfloat16`` on a CPU that lists a bfloat16
flag (``/proc/cpuinfo``), ``keras.RematScope`` (``larger_than``) where Keras has it (3.9+).
Each then meets the model as given, once per study after the ceiling (``levers_phase``):

* speed: paired, interleaved bare-loop probes at the study's largest batch, with and
  without (order alternating), judged like the finalists (``compare_with_default``: above
  ``1 + WIN_MARGIN`` in every round, more rounds while undecided);
* memory, where the ceiling is memory-bound below the study's largest batch: the peak of a
  fresh ``model.fit`` at the ceiling batch with the lever beside the ceiling's own; a peak
  at least ``PEAK_MARGIN`` lower puts a larger batch on the memory line, which one more fresh
  probe must fit under the budget, at a speed not measurably lower (median ratio of at
  least ``1 - WIN_MARGIN``).

A lever that gained (``lever_decision``) stays on for every later probe but the untuned
default's (``TrackedRunner.levers``; a plan that keeps that default turns none on), and
the next lever is measured on top of it. The record (``measured.levers``) keeps every lever
tried, its readings and the reason.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any

from autobatch._env import cpu_bf16_flags, package_version
from autobatch._probe._types import ProbeRequest, ProbeResult
from autobatch._search._ceiling import probe_fits
from autobatch._search._ceiling_phase import Ceiling
from autobatch._search._finalists import (
    FINALIST_ROUNDS,
    MAX_FINALIST_ROUNDS,
    WIN_MARGIN,
    compare_with_default,
    undecided,
)
from autobatch._search._run import SearchRun, training_batch_cap
from autobatch._search._timing import TRIAL_MIN_TIME_S, XLA_TRY_FACTOR, probe_timeout, remaining
from autobatch._settings import PipelineSettings, PixelType

MIN_COMPUTE_CAPABILITY = (7, 0)
"""float16 tensor cores (Volta) and up: below it ``mixed_float16`` is slower than float32."""
REMAT_MODE = "larger_than"
"""Layers whose outputs exceed 1024 values recompute them in the backward pass: a CNN's
early, wide activations, not its small head."""
PEAK_MARGIN = 0.05
"""A lever's peak counts as lower only this share under the peak without it (one batch's
host peak varies by about +-5% between fresh processes: ``FULL_ENOUGH``'s readings)."""


def applicable_levers(env: Any, device: str, *, cpuinfo: str | None = None,
                      keras_version: str | None = None,
                      has_remat: bool | None = None) -> tuple[list[dict[str, str]],
                                                              list[dict[str, str]]]:
    """``(candidates, not_applicable)``: each ``{"lever", "value", "why"}`` /
    ``{"lever", "reason"}``. ``cpuinfo``, ``keras_version`` and ``has_remat`` stand in for
    this machine's (tests)."""
    candidates: list[dict[str, str]] = []
    skipped: list[dict[str, str]] = []
    if device != "cpu":
        capabilities = [g.compute_capability for g in env.gpus]
        if capabilities and all(c is not None and tuple(c) >= MIN_COMPUTE_CAPABILITY
                                for c in capabilities):
            lowest = min(tuple(c) for c in capabilities if c is not None)
            candidates.append({"lever": "mixed_precision", "value": "mixed_float16",
                               "why": f"GPU compute capability {lowest[0]}.{lowest[1]}"})
        else:
            skipped.append({"lever": "mixed_precision", "reason": (
                f"GPU compute capability {capabilities} (float16 needs 7.0 or more, read "
                "by NVML)")})
    else:
        flags = cpu_bf16_flags(cpuinfo)
        if flags:
            candidates.append({"lever": "mixed_precision", "value": "mixed_bfloat16",
                               "why": f"CPU flags {', '.join(flags)}"})
        else:
            skipped.append({"lever": "mixed_precision",
                            "reason": "the CPU lists no bfloat16 flag (avx512_bf16, amx_bf16)"})
    version = keras_version if keras_version is not None else package_version("keras")
    if has_remat is None:
        has_remat = _keras_at_least(version, (3, 9))  # (no version: keras is missing)
    if has_remat:
        candidates.append({"lever": "remat", "value": REMAT_MODE,
                           "why": f"keras {version} has RematScope"})
    else:
        skipped.append({"lever": "remat", "reason": f"keras {version} has no RematScope "
                                                    "(3.9 or later)"})
    return candidates, skipped


def _keras_at_least(version: str | None, wanted: tuple[int, int]) -> bool:
    try:
        parts = tuple(int(p) for p in (version or "").split(".")[:2])
    except ValueError:
        return False
    return len(parts) == 2 and parts >= wanted


def lever_decision(speed: dict[str, Any], *, peak_without: int | None,
                   peak_with: int | None, raised_ceiling: int | None,
                   ceiling_batch: int) -> tuple[bool, str]:
    """Whether a lever enters the plan, and why: faster beyond the noise (``speed`` is
    ``compare_with_default``'s verdict of with over without), or a larger batch verified to
    fit at a speed not measurably lower."""
    median = speed.get("median_ratio")
    if speed.get("beats_default"):
        return True, (f"faster: {speed['rounds']} paired rounds at "
                      f"{speed['low']:.2f}-{speed['high']:.2f}x (median {median:.2f}x)")
    lower_peak = (peak_with is not None and peak_without is not None
                  and peak_with <= (1 - PEAK_MARGIN) * peak_without)
    if raised_ceiling is not None and raised_ceiling > ceiling_batch and lower_peak and (
            median is not None and median >= 1 - WIN_MARGIN):
        return True, (f"higher ceiling: batch {raised_ceiling} fits where {ceiling_batch} "
                      f"did (peak {_ratio(peak_with, peak_without)}), at {median:.2f}x the "
                      "speed")
    if median is None:
        return False, "no paired reading: the probes with the lever failed"
    why = f"{median:.2f}x the speed (median of {speed['rounds']} rounds), not beyond the noise"
    if peak_with is not None and peak_without is not None:
        why += f"; peak {_ratio(peak_with, peak_without)}"
        if lower_peak and raised_ceiling is None:
            why += ", but no larger batch verified to fit"
    return False, why


def _ratio(value: int | None, base: int | None) -> str:
    return f"{value / base:.2f}x" if value and base else "?"


def levers_phase(run: SearchRun, ceiling: Ceiling,
                 pixels: PixelType) -> tuple[dict[str, Any] | None, Ceiling]:
    """The levers record (stored on the study) and the ceiling, raised where a lever
    verified a larger batch; ``(None, ceiling)`` when not tried (a fake runner, a quick
    tune, a strategy, too little time: not stored, so a later tune tries)."""
    record = run.stored.get("levers")
    if record is None:
        if not run.config.try_levers or not run.runner.applies_levers or run.quick or \
                run.replicas > 1:
            return None, ceiling
        record = _try_levers(run, ceiling, pixels)
        if record is None:
            return None, ceiling
        run.study.set_user_attr("levers", record)
    run.runner.levers = {k: record[k] for k in ("mixed_precision", "remat") if record.get(k)}
    raised = max([int(t.get("ceiling_batch_size_with") or 0) for t in record["tried"]
                  if t.get("decision") == "adopted"], default=0)
    if raised > ceiling.batch_size:
        ceiling = dataclasses.replace(ceiling, batch_size=raised, record={
            **ceiling.record, "batch_size": raised, "raised_by_levers_from": ceiling.batch_size})
    return dict(record), ceiling


def plan_levers(plan: Any, record: dict[str, Any] | None) -> None:
    """The plan's ``mixed_precision``, ``remat`` and ``measured.levers`` from the record; a
    plan that keeps the untuned default (measured without levers) turns none on."""
    if record is None:
        return
    plan.measured["levers"] = record
    if not plan.keeps_default:
        plan.mixed_precision, plan.remat = record.get("mixed_precision"), record.get("remat")


def _try_levers(run: SearchRun, ceiling: Ceiling, pixels: PixelType) -> dict[str, Any] | None:
    candidates, skipped = applicable_levers(run.env, run.runner.device)
    record: dict[str, Any] = {"tried": [], "not_applicable": skipped,
                              "mixed_precision": None, "remat": None}
    for candidate in candidates:
        if remaining(run.deadline) <= XLA_TRY_FACTOR * ceiling.first_probe_s:
            run.emit("levers", f"{candidate['value']} not tried: too little time left")
            if not record["tried"]:
                return None
            skipped.append({"lever": candidate["lever"], "reason": "too little time left"})
            continue
        on: dict[str, str] = {k: record[k] for k in ("mixed_precision", "remat") if record[k]}
        tried = _measure(run, ceiling, pixels, on, candidate)
        record["tried"].append(tried)
        if tried["decision"] == "adopted":
            record[candidate["lever"]] = candidate["value"]
            if tried.get("ceiling_batch_size_with"):
                ceiling = dataclasses.replace(ceiling,
                                              batch_size=int(tried["ceiling_batch_size_with"]))
        run.emit("levers", f"{candidate['value']}: {tried['decision']}, {tried['reason']}")
    return record


def _measure(run: SearchRun, ceiling: Ceiling, pixels: PixelType, on: dict[str, str],
             candidate: dict[str, str]) -> dict[str, Any]:
    """One lever against the settings ``on`` (the levers adopted before it)."""
    lever = {candidate["lever"]: candidate["value"]}
    batch = min(ceiling.batch_size, training_batch_cap(run.batch_cap), run.max_batch_size)
    settings = PipelineSettings(num_parallel_calls=max(1, run.env.cpu.effective), prefetch=2,
                                cache="memory", pixels=pixels)
    run.emit("levers", f"trying {candidate['value']} ({candidate['why']}) at batch {batch}")
    readings: dict[int, dict[str, float]] = {}
    for index in range(MAX_FINALIST_ROUNDS):
        if index >= FINALIST_ROUNDS and not undecided(compare_with_default(
                readings, "with", "without")):
            break
        if index >= 1 and remaining(run.deadline) <= XLA_TRY_FACTOR * ceiling.first_probe_s / 2:
            break
        order = (("without", on), ("with", on | lever))
        for name, levers in order if index % 2 == 0 else reversed(order):
            result = run.runner.run(ProbeRequest(
                batch_size=batch, settings=settings, steps=run.config.trial_steps,
                warmup_steps=1, min_time_s=TRIAL_MIN_TIME_S, timeout_s=probe_timeout(
                    run.deadline), mixed_precision=levers.get("mixed_precision"),
                remat=levers.get("remat")))
            if result.ok and result.examples_per_s:
                readings.setdefault(index, {})[name] = float(result.examples_per_s)
            elif name == "with":
                readings.pop(index, None)
                return _record(candidate, batch, readings, result, None, None, None, ceiling)
    peak_without, peak_with, raised = _memory(run, ceiling, on, lever)
    return _record(candidate, batch, readings, None, peak_without, peak_with, raised, ceiling)


def _memory(run: SearchRun, ceiling: Ceiling, on: dict[str, str],
            lever: dict[str, str]) -> tuple[int | None, int | None, int | None]:
    """``(peak without, peak with, a larger batch verified to fit)`` at the ceiling batch,
    where the ceiling is memory-bound below the study's largest batch (else all None)."""
    cap = min(training_batch_cap(run.batch_cap), run.max_batch_size)
    record = ceiling.record
    budget = int(record.get("budget_bytes") or run.runner.search_budget_bytes)
    if record.get("capped_by") is not None or ceiling.batch_size >= cap:
        return None, None, None
    at = [ProbeResult.from_dict(p) for p in record.get("probes") or []
          if p.get("batch_size") == ceiling.batch_size]
    fresh = [p for p in at if p.ok and p.worker_started and p.peak_memory_bytes]

    def fresh_fit(batch: int, levers: dict[str, str]) -> ProbeResult:
        run.runner.restart()
        return run.runner.run(ProbeRequest(
            batch_size=batch, settings=fresh[-1].settings if fresh else PipelineSettings(
                num_parallel_calls=1, prefetch=1), steps=2, warmup_steps=1, mode="fit",
            timeout_s=probe_timeout(run.deadline), mixed_precision=levers.get("mixed_precision"),
            remat=levers.get("remat")), need_memory=True)

    without = fresh[-1] if fresh and not on else fresh_fit(ceiling.batch_size, on)
    with_lever = fresh_fit(ceiling.batch_size, on | lever)
    peak_without, peak_with = without.peak_memory_bytes, with_lever.peak_memory_bytes
    if not (without.ok and with_lever.ok and peak_without and peak_with) or (
            peak_with > (1 - PEAK_MARGIN) * peak_without):
        return peak_without, peak_with, None
    line = record.get("memory_model") or {}
    fixed = float(line.get("intercept_bytes") or 0.0)
    per_example = (peak_with - fixed) / ceiling.batch_size
    if per_example <= 0:
        return peak_without, peak_with, None
    estimate = min(cap, int((budget - fixed) / per_example))
    if estimate <= ceiling.batch_size:
        return peak_without, peak_with, None
    verified = fresh_fit(estimate, on | lever)
    run.runner.restart()  # later probes ascend from nothing
    raised = estimate if probe_fits(verified, budget) else None
    return peak_without, peak_with, raised


def _record(candidate: dict[str, str], batch: int, readings: dict[int, dict[str, float]],
            failed: ProbeResult | None, peak_without: int | None, peak_with: int | None,
            raised: int | None, ceiling: Ceiling) -> dict[str, Any]:
    speed = compare_with_default(readings, "with", "without")
    adopted, reason = lever_decision(speed, peak_without=peak_without, peak_with=peak_with,
                                     raised_ceiling=raised, ceiling_batch=ceiling.batch_size)
    if failed is not None:
        lines = [line.strip() for line in (failed.error or "").splitlines() if line.strip()]
        reason = f"the probe with it failed ({failed.outcome}" + (
            f": {lines[-1][:200]})" if lines else ")")
    # A round whose probe without the lever failed (a timeout near the deadline) has one
    # reading only: it is not a pair.
    rounds = sorted(r for r in readings if {"with", "without"} <= set(readings[r]))
    return {
        "lever": candidate["lever"], "value": candidate["value"], "why": candidate["why"],
        "batch_size": batch,
        "examples_per_s_without": [round(readings[r]["without"], 2) for r in rounds],
        "examples_per_s_with": [round(readings[r]["with"], 2) for r in rounds],
        "median_examples_per_s_without": _median([readings[r]["without"] for r in rounds]),
        "median_examples_per_s_with": _median([readings[r]["with"] for r in rounds]),
        "speed": speed,
        "ceiling_batch_size": ceiling.batch_size,
        "peak_memory_bytes_without": peak_without, "peak_memory_bytes_with": peak_with,
        "larger_batch_fits_with": raised,
        "ceiling_batch_size_with": raised if adopted else None,
        "decision": "adopted" if adopted else "rejected", "reason": reason,
    }


def _median(values: list[float]) -> float | None:
    return round(float(statistics.median(values)), 2) if values else None
