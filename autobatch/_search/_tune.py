"""``tune``: cache -> search (untuned default, ceiling, XLA, pixels, levers, study, verify).

Orchestration only: each phase is a function of its own module (``_ceiling_phase``,
``_model_checks``, ``_levers``, ``_study_phase``, ``_verify``), the plan is put together in
``_assemble``. TensorFlow lives in the probe worker; this module never imports it, so a cache hit
(fingerprint, look up, load) returns without it. Progress goes to ``logging`` and to an
optional ``on_event`` callback that the CLI draws; the library never prints.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

from autobatch._data._service import check_address
from autobatch._distribute import StrategySpec
from autobatch._framework import require_tensorflow
from autobatch._models import optimizer_name
from autobatch._models._files import check_model_file
from autobatch._plan import Plan
from autobatch._probe import ProbeRunner
from autobatch._probe._budgets import resolve_budgets
from autobatch._progress import Verbose
from autobatch._search._assemble import (
    build_plan,
    finish_plan,
)
from autobatch._search._ceiling import MAX_BATCH_SIZE
from autobatch._search._ceiling_phase import ceiling_phase, measure_default
from autobatch._search._config import TuneConfig, resolve_time_budget, validate_options
from autobatch._search._effective import effective_record, with_physical_batch
from autobatch._search._effort import (
    size_to_the_job,
)
from autobatch._search._events import Emitter, EventCallback, TuneEvent
from autobatch._search._finalists import (
    FINALIST_ROUNDS,
    MAX_FINALIST_ROUNDS,
    WIN_MARGIN,
    compare_with_default,
    default_record,
    pick_finalists,
    relative_scores,
    undecided,
)
from autobatch._search._goodput import noise_phase, objective_record, weight_for
from autobatch._search._job import open_source, prepare_job
from autobatch._search._keep import (
    annotate_or_warn,
    cached_plan,
    join_shared,
    keep_plan,
    open_tune_study,
    raise_storage_fault,
)
from autobatch._search._levers import levers_phase, plan_levers
from autobatch._search._model_checks import pixels_phase, xla_phase
from autobatch._search._run import SearchRun, training_batch_cap
from autobatch._search._shared import SharedStudy
from autobatch._search._stand_in import for_source, plan_without_tuning
from autobatch._search._storage import sole_user
from autobatch._search._study import default_storage_url
from autobatch._search._study_phase import study_phase
from autobatch._search._timing import FINALIST_MIN_TIME_S, TRIAL_MIN_TIME_S, PhaseClock
from autobatch._search._tracked import TrackedRunner, probe_runner_for
from autobatch._search._verify import verify_phase

__all__ = [
    "FINALIST_MIN_TIME_S",
    "FINALIST_ROUNDS",
    "MAX_FINALIST_ROUNDS",
    "TRIAL_MIN_TIME_S",
    "WIN_MARGIN",
    "TuneEvent",
    "compare_with_default",
    "optimizer_name_of",
    "pick_finalists",
    "relative_scores",
    "resolve_budgets",
    "resolve_time_budget",
    "training_batch_cap",
    "tune",
    "undecided",
    "validate_options",
]
"""``tune``, and the names callers import from this module (defined where they belong)."""

optimizer_name_of = optimizer_name
"""The optimizer's class name (``autobatch._models.optimizer_name``; the old name)."""


def tune(
    model: Any,
    data: Any,
    *,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    memory_budget: str | int | None = None,
    time_budget: float | None = None,
    trials: int | None = None,
    pixels: str = "auto",
    try_xla: bool = True,
    try_levers: bool = True,
    seed: int = 0,
    num_examples: int | None = None,
    max_pixels: int | None = None,
    parse: Callable[[Any], Any] | None = None,
    augment: Any = None,
    output: str | os.PathLike[str] | None = None,
    storage: str | None = None,
    force: bool = False,
    verbose: Verbose = "auto",
    on_event: Callable[[Any], None] | None = None,
    measure_baseline: bool = True,
    trial_steps: int = 5,
    verify_steps: int = 15,
    max_batch_size: int | None = None,
    custom_objects_module: str | None = None,
    search_space: Any = None,
    use_cache: bool = True,
    runner: Any = None,
    strategy: Any = None,
    data_service: str | None = None,
    epochs: int | None = None,
    objective: str = "throughput",
    effective_batch_size: int | None = None,
    time_budget_s: float | None = None,
) -> Plan:
    """Find the fastest batch size and ``tf.data`` settings that fit; returns a ``Plan``.

    A memory ceiling from a few probes, an Optuna study over batch size and pipeline
    settings, then the finalists re-measured with ``model.fit`` and the winner verified.
    A repeat with the same model, data, machine, TensorFlow and options returns the cached
    plan at once (without importing TensorFlow for a SPEC).

    Args:
        model: a built-in name (``small_cnn``, ``mobilenet_v2``, ``resnet50``,
            ``efficientnet_b0``), a ``.keras`` path, or a compiled ``keras.Model``.
        data: an image folder, or ``(x, y)`` arrays.
        image_size: ``N`` or ``(height, width)`` images are resized to; default the model's
            input size (``--image-size``; required for a built-in). The plan records it.
        channels: image channels; default the model's input channels, else 3.
        memory_budget: ``"3GiB"``, ``"800MB"``, bytes, or a fraction such as ``"0.8"``
            (``--memory-budget``); bounds the GPU when there is one, the host otherwise.
        time_budget: wall-clock limit in seconds (``--time-budget``; default 120 unless
            ``trials`` is given), honoured within about 10%.
        trials: throughput trials in the study (``--trials``; stored trials count).
        pixels: ``"auto"``, ``"float32"`` or ``"uint8"``: the dtype images travel in.
        try_xla: include ``jit_compile`` in the search (``--no-xla`` turns it off).
        try_levers: try mixed precision and rematerialisation where they apply
            (``--no-levers`` turns them off); one enters the plan only on a measured gain.
            Only for a model given as a ``.keras`` file or a built-in name (``fit`` builds
            those under the plan's levers); a ``keras.Model`` is measured as it is.
        seed: seeds the sampler.
        num_examples: examples per epoch, where the data cannot say.
        max_pixels: an image folder's pixel limit (``--max-pixels``; width x height read
            from the header; default 178,956,970): a larger image is never decoded.
        parse: with ``data`` a folder or glob of TFRecord shards: the function of one
            serialized record that returns ``(x, y)`` (``--parse module:function``).
        augment: a function of one image or Keras preprocessing layers that training will
            apply after the cache: the trials measure the pipeline with it (see
            ``autobatch.fit``).
        output: also write the plan JSON here (atomically).
        storage: an Optuna storage URL; default SQLite in the user cache folder.
        force: ignore the cached plan and start a fresh study.
        verbose: Keras' meaning: ``"auto"`` (1 on a terminal, else 2), 0 silent, 1 a live
            progress display, 2 one line per phase and trial; on stderr. With ``on_event``
            given, ``"auto"`` draws nothing (the caller draws).
        on_event: called with each ``TuneEvent`` (phase, trial, best so far).
        measure_baseline: also measure the untuned default (batch 32, AUTOTUNE).
        trial_steps: timed steps per trial probe.
        verify_steps: timed steps of the winner's verify run.
        max_batch_size: the largest batch to consider.
        custom_objects_module: importable module that registers a ``.keras`` file's
            custom layers.
        search_space: restrict the study to a ``SearchSpace``.
        use_cache: look up and store plans in the plan cache.
        runner: a ``ProbeRunner`` to probe with instead of a fresh worker process.
        strategy: ``"none"``, ``"mirrored"`` (every visible GPU; without one, every logical
            CPU), ``"auto"`` (mirrored where several devices are visible) or a
            ``tf.distribute.MirroredStrategy`` (``--strategy``); None: the strategy the
            model was built under, if any. The probes run under it in the worker: the
            ceiling is the largest batch per replica that fits every device, throughput is
            global, and the plan records ``per_replica_batch_size``, ``num_replicas`` and
            the global ``batch_size``.
        data_service: ``grpc://HOST:PORT`` of a tf.data service dispatcher
            (``--data-service``): the probes read, decode and resize on its workers in
            ``distributed_epoch`` mode, as ``fit`` will train; a generator, arrays or a
            dataset that runs Python code are refused before any probe.
        epochs: the epochs the plan will train for (``fit`` passes its own): without a
            ``time_budget`` or ``trials``, the tune reads the untuned default's rate first
            and spends about a fifth of the untuned training time (20 s to the default
            120 s); a job too small to win back even that is not tuned, and the plan is the
            measured default with a one-line reason (``measured.effort``).
        objective: ``"throughput"`` (examples/s) or ``"goodput"`` (``--objective``):
            examples/s times the batch's statistical efficiency under the gradient noise
            scale measured once after the ceiling (Pollux's ``(B_noise + 32) / (B_noise +
            B)``), so a batch past the critical batch no longer wins on throughput alone;
            the plan's ``measured.objective`` holds the noise scale and every finalist on
            both objectives.
        effective_batch_size: examples per weight update (``--effective-batch-size``):
            the study tunes the pipeline at ``min(ceiling, E)`` split evenly, and where
            memory caps the batch below ``E`` the plan accumulates gradients
            (``plan.gradient_accumulation_steps``), its learning-rate rule scaled to the
            effective batch; refused under a strategy (keras-team/keras#20582).
        time_budget_s: deprecated name of ``time_budget`` (a ``DeprecationWarning``).

    Returns:
        The ``Plan``: batch size, pipeline settings, image size and channels, the
        measurements; ``plan.cache_hit`` says whether it came from the cache. Train with
        ``autobatch.fit(model, data, plan=plan)`` or
        ``model.fit(plan.dataset(data, repeat=True), epochs=N, **plan.fit_kwargs())``.

    Raises:
        UsageError: bad options, unknown model, unusable data (one class, one image), or
            no batch fits the budget.
    """
    from autobatch._distribute import resolve_strategy
    from autobatch._progress import tune_events

    started = time.perf_counter()
    spec = strategy if isinstance(strategy, StrategySpec) else resolve_strategy(strategy, model)
    config = TuneConfig.create(
        time_budget_s=resolve_time_budget(time_budget, time_budget_s, stacklevel=3),
        trials=trials, image_size=image_size, channels=channels,
        memory_budget=memory_budget, storage=storage, output=output, force=force, seed=seed,
        num_examples=num_examples, max_pixels=max_pixels, augment=augment, parse=parse,
        measure_baseline=measure_baseline,
        try_xla=try_xla,
        # A model passed built cannot be rebuilt under a policy or a remat scope, by fit or by
        # its user's own training: its plan is measured as it is.
        try_levers=try_levers and isinstance(model, (str, os.PathLike)),
        trial_steps=trial_steps, verify_steps=verify_steps,
        max_batch_size=MAX_BATCH_SIZE if max_batch_size is None else max_batch_size,
        custom_objects_module=custom_objects_module, use_cache=use_cache,
        search_space=search_space, pixels=pixels, strategy=spec,
        data_service=check_address(data_service), epochs=epochs, objective=objective,
        effective_batch_size=effective_batch_size,
    )
    with tune_events(verbose, on_event) as callback:
        return run_tune(model, data, config, runner=runner, on_event=callback, started=started)


def run_tune(model: Any, data: Any, config: TuneConfig, *, runner: ProbeRunner | None = None,
             on_event: EventCallback | None = None, started: float | None = None) -> Plan:
    """``tune`` with its options made into a ``TuneConfig``: cache -> search -> Plan."""
    started = time.perf_counter() if started is None else started
    emit = Emitter(on_event, started, config.time_budget_s)
    check_model_file(model)  # a file that is no .keras model: one line, before the audit
    source = open_source(data, config)
    # What the worker tunes on: the source, or a stand-in of the same shapes (a sample of a
    # generator), or nothing (a batched or one-shot generator keeps its own batch size).
    stand_in = source.tuning_source()
    if stand_in is None:
        emit("done", "the generator's own batch size, not tuned")
        return plan_without_tuning(source, channels=config.channels)
    job = prepare_job(model, stand_in, config)
    if config.use_cache and not config.force:
        cached = cached_plan(job, config, emit)
        if cached is not None:
            return for_source(cached, source)

    require_tensorflow("tuning")  # (a cached plan above needs none)
    with sole_user(config.storage or default_storage_url(), job.study_name):
        study, in_memory = open_tune_study(job, config, emit)
        shared = join_shared(study, config, in_memory=in_memory, emit=emit)
        try:
            with probe_runner_for(runner, job, config) as probe_runner:
                tracked = TrackedRunner(probe_runner)
                replicas = tracked.num_replicas
                if replicas > 1 and config.try_xla:
                    # XLA under MirroredStrategy still crashes in places
                    # (keras-team/keras#21366): the plan is measured without it.
                    emit("xla", f"{replicas} replicas: XLA is not tried under a strategy")
                    config = dataclasses.replace(config, try_xla=False)
                plan = _search(SearchRun(
                    runner=tracked, study=study, stored=study.user_attrs,
                    config=config, emit=emit, deadline=config.deadline(started),
                    count=job.count, size=job.size, channels=job.channels, source=job.source,
                    env=job.env, replicas=replicas, shared=shared, model=job.model,
                ))
        except BaseException as exc:
            if shared is not None:
                shared.leave(failed=True)  # the next member leads
            if isinstance(exc, Exception):
                raise_storage_fault(exc, config, in_memory=in_memory)
            raise
        if shared is not None and "shared_plan" in plan.measured:
            return _leaders_plan(plan, shared, config, emit, source)
        finish_plan(plan, job, config, probe_runner, tracked, started, in_memory)
        annotate_or_warn(study, plan)
        if shared is not None:
            plan.measured["shared_study"] = {"leader": shared.member.number,
                                             **shared.identity}
            try:
                shared.store("shared_plan", plan.to_dict())
            except Exception as exc:  # the database went away after the search
                shared.leave(failed=True)
                raise_storage_fault(exc, config, in_memory=False)
                raise
            shared.leave()
    keep_plan(plan, config, None if in_memory else study._storage)
    emit("done", f"batch {plan.batch_size}: {plan.examples_per_s or 0:.1f} examples/s",
         best=plan.examples_per_s)
    return for_source(plan, source)


def _leaders_plan(plan: Plan, shared: SharedStudy, config: TuneConfig, emit: Emitter,
                  source: Any) -> Plan:
    """A member's end: the plan the leader verified and stored on the shared study."""
    shared.leave()
    del plan.measured["shared_plan"]
    keep_plan(plan, config, shared.study._storage)
    leader = plan.measured.get("shared_study", {})
    emit("done", f"batch {plan.batch_size}: the plan verified by member {leader.get('leader')} "
         f"(pid {leader.get('pid')} on {leader.get('host')})", best=plan.examples_per_s)
    return for_source(plan, source)


def _search(run: SearchRun) -> Plan:
    """The phases in order; each stores what a resumed tune may skip on the study. On a
    shared study, the leader runs the phases before the trials and the verify phase; the
    other members wait for what it stores, and end with its plan."""
    clock = PhaseClock()
    if run.shared is not None and not run.shared.lead_or_wait(
            "prepared", run.deadline, on_wait=lambda: run.emit(
                "ceiling", "another process of the shared study leads: waiting for its "
                "ceiling")):
        run = dataclasses.replace(run, stored=run.study.user_attrs)
    baseline, prior = measure_default(run)
    clock.lap("untuned_default")  # the first worker's start-up included
    run, untuned, effort = size_to_the_job(run, baseline)
    if untuned is not None:
        run.runner.phases_s = clock.phases_s
        return untuned
    ceiling = ceiling_phase(run, prior)
    clock.lap("ceiling")
    xla_ok = xla_phase(run, ceiling.batch_size, ceiling.first_probe_s)
    clock.lap("xla")
    pixels = pixels_phase(run)
    clock.lap("pixels")
    levers, ceiling = levers_phase(run, ceiling, pixels["dtype"])
    clock.lap("levers")
    noise = noise_phase(run, ceiling.batch_size)
    run = with_physical_batch(dataclasses.replace(run, weight=weight_for(noise)),
                              ceiling.batch_size)
    default = default_record(baseline if run.config.measure_baseline else None,
                             ceiling.batch_size, weight=run.weight) if (
        run.physical_batch is None) else None  # batch 32 cannot keep the contract
    # TRIAL_MIN_TIME_S is read here, at call time (a test lengthens the trials through it).
    study = study_phase(run, ceiling, xla_ok=xla_ok, pixels=pixels["dtype"], default=default,
                        trial_min_time_s=TRIAL_MIN_TIME_S)
    clock.lap("study")
    if run.shared is not None and not run.shared.lead_or_wait(
            "shared_plan", run.deadline, on_wait=lambda: run.emit(
                "verify", "trials done: waiting for the leader's verified plan")):
        plan = Plan.from_dict(run.study.user_attrs["shared_plan"])
        plan.measured["shared_plan"] = True  # (run_tune's mark: not this process's own)
        return plan
    outcome = verify_phase(run, study.records, ceiling.batch_size, default=default,
                           first_probe_s=ceiling.first_probe_s, retrace_s=ceiling.retrace_s,
                           quick_candidates=study.quick_candidates)
    clock.lap("finalists_and_verify")
    run.runner.phases_s = clock.phases_s
    plan = build_plan(
        outcome=outcome, count=run.count, ceiling_batch=ceiling.batch_size,
        ceiling=ceiling.record, size=run.size, channels=run.channels,
        memory_budget_bytes=run.runner.memory_budget_bytes,
        verify_steps=run.config.verify_steps, pixels=pixels,
        baseline=baseline if run.config.measure_baseline else None, records=study.records,
        replicas=run.replicas,
    )
    if effort is not None:
        plan.measured["effort"] = effort
    plan_levers(plan, levers)
    effective = effective_record(run, ceiling.batch_size, run.model)
    if effective is not None:
        plan.gradient_accumulation_steps = int(effective["gradient_accumulation_steps"])
        plan.measured["effective_batch"] = effective
    if run.config.objective != "throughput":
        plan.measured["objective"] = objective_record(run.config.objective, noise,
                                                      outcome.finalists)
    return plan
