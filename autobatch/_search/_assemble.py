"""Plan assembly: the ``Plan`` from what the phases found, and the records it carries (the
model, the ceiling, the hardware, the study's address, the learning-rate rule, what the
tune's time went on)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autobatch._models import optimizer_name
from autobatch._plan import (
    DEFAULT_REFERENCE_BATCH_SIZE,
    LearningRateScaling,
    Plan,
    learning_rate_scaling,
)
from autobatch._search._ceiling import CeilingResult
from autobatch._search._effort import expected_saving_s
from autobatch._search._space import epoch_efficiency, params_to_settings
from autobatch._search._storage import redact_url
from autobatch._search._study import TrialRecord, default_storage_url

if TYPE_CHECKING:
    from autobatch._probe import ProbeRunner
    from autobatch._search._config import TuneConfig
    from autobatch._search._job import TuneJob
    from autobatch._search._rounds import VerifyOutcome
    from autobatch._search._tracked import TrackedRunner


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


def hardware_record(env: Any) -> dict[str, Any]:
    """The plan's ``hardware`` record (also stored on the study)."""
    return {
        "cpus": env.cpu.effective,
        "memory_limit_bytes": env.host.memory_limit_bytes,
        "gpus": [g.name for g in env.gpus],
        "tensorflow": env.tensorflow_version,
    }


def ceiling_plan_dict(ceiling: CeilingResult) -> dict[str, Any]:
    """The plan's ``ceiling`` record (also stored on the study, for a resumed tune)."""
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


def study_record(storage: str | None, study_name: str) -> dict[str, str]:
    """The plan's ``study``: the real storage URL (so that the report's optuna-dashboard
    command runs as printed), without its password."""
    return {"storage": redact_url(storage) if storage else default_storage_url(),
            "study_name": study_name}


def learning_rate_record(optimizer: str | None, batch_size: int) -> LearningRateScaling:
    """The plan's learning-rate rule for ``optimizer`` at ``batch_size`` (against Keras'
    default batch)."""
    return learning_rate_scaling(optimizer, batch_size, DEFAULT_REFERENCE_BATCH_SIZE)


def build_plan(*, outcome: VerifyOutcome, count: int, ceiling_batch: int,
               ceiling: dict[str, Any], size: tuple[int, int] | None, channels: int,
               memory_budget_bytes: int | None, verify_steps: int, pixels: dict[str, Any],
               baseline: dict[str, Any] | None, records: list[TrialRecord],
               replicas: int = 1) -> Plan:
    """The plan of the verified winner, with what the search measured on the way.

    The search's batches are per replica: the plan's ``batch_size`` and
    ``ceiling_batch_size`` are global (times ``replicas``), ``per_replica_batch_size`` the
    searched one."""
    winner, result = outcome.winner, outcome.result
    per_replica = int(winner.params["batch_size"])
    batch_size = per_replica * replicas
    if replicas > 1:
        ceiling = {**ceiling, "per_replica_batch_size": ceiling_batch,
                   "num_replicas": replicas}
    return Plan(
        batch_size=batch_size,
        per_replica_batch_size=per_replica,
        num_replicas=replicas,
        num_examples=count,
        ceiling_batch_size=ceiling_batch * replicas,
        pipeline=params_to_settings(winner.params),
        image_size=size,
        channels=channels,
        jit_compile=bool(winner.params.get("jit_compile", False)),
        measured={
            "examples_per_s": outcome.examples_per_s,
            "full_batch_examples_per_s": result.examples_per_s,
            "epoch_efficiency": epoch_efficiency(count, batch_size),
            "step_time_s": result.step_time_s,
            "input_wait_fraction": (result.input_wait_fraction
                                    if result.input_wait_fraction is not None
                                    else outcome.input_wait_fraction),
            "peak_memory_bytes": result.peak_memory_bytes,
            "peak_host_memory_bytes": result.peak_host_memory_bytes,
            "peak_device_memory_bytes": result.peak_device_memory_bytes,
            "replica_peak_device_memory_bytes": result.replica_peak_device_memory_bytes,
            "memory_budget_bytes": memory_budget_bytes,
            "device": result.device,
            "verify_steps": verify_steps,
            "peak_memory_fresh_worker": outcome.fresh_worker,
            "finalists": outcome.finalists,
            "versus_default": outcome.versus_default,
            "pixels": pixels,
            "tune_wall_time_s": None,
        },
        baseline=baseline,
        ceiling=ceiling,
        trials=[r.to_plan_dict() for r in records],
    )


def finish_plan(plan: Plan, job: TuneJob, config: TuneConfig, probe_runner: ProbeRunner,
                 tracked: TrackedRunner, started: float, in_memory: bool) -> None:
    """The plan's records beyond the search's, and what the tune's time went on."""
    _complete_plan(plan, job, config, probe_runner)
    if in_memory:
        plan.study = {}  # nothing was kept: the report offers no dashboard command
    plan.measured["tune_wall_time_s"] = round(time.perf_counter() - started, 2)
    plan.measured["tune_time"] = {
        "total_s": plan.measured["tune_wall_time_s"],
        # Before the first phase: the cache look-up, the study, the runner (the model saved
        # for the worker); after the last: the plan put together, the worker stopped.
        "phases_s": tracked.phases_s,
        **tracked.time_spent(),
    }
    if "effort" in plan.measured:
        plan.measured["effort"]["expected_saving_s"] = expected_saving_s(
            plan.measured["effort"], plan, plan.measured["tune_wall_time_s"])


def _complete_plan(plan: Plan, job: TuneJob, config: TuneConfig, runner: ProbeRunner) -> None:
    """The records a plan carries beyond what the search measured."""
    if plan.image_size is None and runner.image_size and job.source.needs_image_size:
        # A model-building function declares no size before the worker builds it: the plan
        # records the size the worker trained at, so plan.dataset(folder) works.
        plan.image_size = (runner.image_size[0], runner.image_size[1])
        plan.channels = int(runner.channels or plan.channels)
    plan.fingerprints = job.fingerprints
    plan.study = study_record(config.storage, job.study_name)
    plan.data = job.source.summary()
    plan.model = model_summary(job.model, image_size=job.size, channels=job.channels,
                               num_classes=job.num_classes)
    plan.audit = job.source.audit_summary()
    # Scaled to the examples per weight update (accumulated micro-batches count together).
    plan.learning_rate = learning_rate_record(optimizer_name(job.model),
                                              plan.effective_batch_size)
    plan.hardware = hardware_record(job.env)
    if config.data_service is not None:
        plan.measured["data_service"] = config.data_service
    if config.strategy is not None:
        plan.hardware["strategy"] = {"kind": config.strategy.kind,
                                     "num_replicas": plan.num_replicas,
                                     "devices": list(config.strategy.devices or [])}
