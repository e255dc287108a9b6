"""The public functions: their signatures and docstrings are the one definition of each
option. Each passes what it was given, unchanged and collected once, to the module that owns
the work, imported lazily so that ``import autobatch`` stays cheap and TensorFlow-free.

Every option is keyword-only after the model and data; the CLI's flags carry the same names
(``time_budget`` is ``--time-budget``), and an error about one names the parameter here, the
flag on the command line.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

Verbose = int | str


def probe(
    model: Any,
    data: Any,
    *,
    batch_size: int | None = None,
    plan: Any = None,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    memory_budget: str | int | None = None,
    steps: int = 5,
    warmup_steps: int = 1,
    min_time: float = 0.0,
    mode: str = "loop",
    settings: Any = None,
    jit_compile: bool = False,
    timeout: float = 300.0,
    custom_objects_module: str | None = None,
) -> Any:
    """Run one isolated dry-run probe: a few real training steps in a worker process.

    Args:
        model: a compiled ``keras.Model``, a ``.keras`` path or a built-in name
            (``small_cnn``, ``mobilenet_v2``, ``resnet50``, ``efficientnet_b0``).
        data: an image folder, ``(x, y)`` arrays.
        batch_size: the batch size to try (required unless ``plan`` gives it).
        plan: a ``Plan`` or plan file: probe its batch size, pipeline settings, image size
            and XLA choice (each argument given here overrides the plan's).
        image_size: ``N`` or ``(height, width)`` to resize images to; default the model's
            own input size (required for a built-in).
        channels: image channels; default the model's.
        memory_budget: ``"3GiB"``, bytes, or a fraction such as ``"0.8"``; bounds the GPU
            when there is one, the host otherwise. Default 90% of what is free.
        steps: timed training steps.
        warmup_steps: untimed steps first (tracing, first allocations).
        min_time: keep taking timed steps until they add up to this many seconds.
        mode: ``"loop"`` (a bare loop over the traced train step) or ``"fit"``
            (epochs of ``model.fit``).
        settings: the ``PipelineSettings`` to probe with (default autobatch's, or the plan's).
        jit_compile: probe with XLA.
        timeout: wall-clock limit of the probe in seconds.
        custom_objects_module: importable module that registers a ``.keras`` file's
            custom layers.

    Returns:
        The ``ProbeResult``; a failing probe (``oom``, ``timeout``, ``crash``) is a result,
        never an exception.

    Raises:
        UsageError: no batch size, bad options, unknown model or unusable data.
    """
    from autobatch._errors import UsageError
    from autobatch._probe import probe as _probe
    from autobatch._probe import resolve_budgets

    if isinstance(steps, bool) or int(steps) < 1:
        raise UsageError(f"{{param}} must be >= 1, got {steps}", parameter="steps")
    if not float(min_time) >= 0:
        raise UsageError(f"{{param}} must be >= 0 seconds, got {min_time}", parameter="min_time")
    options: dict[str, Any] = {}
    if memory_budget is not None:  # resolved before the plan and the model are looked at
        from autobatch._env import environment

        host, device, _ = resolve_budgets(memory_budget, environment())
        options.update(host_memory_budget_bytes=host, device_memory_budget_bytes=device)
    if plan is not None:
        from autobatch._fit import load_plan

        plan = load_plan(plan)
        batch_size = batch_size if batch_size is not None else plan.batch_size
        image_size = image_size if image_size is not None else plan.image_size
        settings = settings if settings is not None else plan.pipeline
        jit_compile = jit_compile or plan.jit_compile
    if batch_size is None:
        raise UsageError("give {param} B, or a plan to probe its batch size",
                         parameter="batch_size")
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise UsageError(f"{{param}} must be >= 1, got {batch_size}", parameter="batch_size")
    from autobatch._models import builtin_image_size, is_builtin

    if is_builtin(model):
        builtin_image_size(model, image_size)
    options.update(
        steps=steps, warmup_steps=warmup_steps, min_time_s=float(min_time), mode=mode,
        jit_compile=bool(jit_compile), timeout_s=float(timeout), image_size=image_size,
        channels=channels, custom_objects_module=custom_objects_module,
    )
    if settings is not None:
        options["settings"] = settings
    return _probe(model, data, batch_size=int(batch_size), **options)


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
    seed: int = 0,
    num_examples: int | None = None,
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
    time_budget_s: float | None = None,
) -> Any:
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
        seed: seeds the sampler.
        num_examples: examples per epoch, where the data cannot say.
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
    options = dict(locals())  # the parameters above, each named once
    for name in ("model", "data", "verbose", "on_event", "time_budget_s"):
        del options[name]
    options["time_budget"] = _time_budget(time_budget, time_budget_s)
    if max_batch_size is None:
        del options["max_batch_size"]  # the search's own limit
    from autobatch._search import tune as _tune

    with tune_events(verbose, on_event) as callback:
        return _tune(model, data, on_event=callback, **options)


def fit(
    model: Any,
    data: Any,
    *,
    epochs: int = 1,
    plan: Any = None,
    validation_split: float | None = None,
    seed: int | None = None,
    callbacks: list[Any] | None = None,
    verbose: Verbose = "auto",
    image_size: int | tuple[int, int] | None = None,
    num_examples: int | None = None,
    batched: bool | None = None,
    time_budget: float | None = None,
    memory_budget: str | int | None = None,
    pixels: str | None = None,
    scale_lr: bool = False,
    reference_batch_size: int | None = None,
    tune_options: dict[str, Any] | None = None,
    on_epoch: Callable[[Any], None] | None = None,
    **fit_kwargs: Any,
) -> Any:
    """Tune (or reuse the cached plan) and train, counting the examples of every epoch.

    ``model.fit`` runs on the tuned pipeline with ``steps_per_epoch = ceil(N / batch)``,
    so every usable example is trained on exactly once per epoch; the count made inside
    the training step is checked against the usable count at the end of each epoch.

    Args:
        model: a compiled ``keras.Model``, a ``.keras`` path, or a built-in name.
        data: an image folder, ``(x, y)`` arrays, a generator function, a generator, or a
            ``keras.utils.PyDataset``.
        epochs: epochs to train.
        plan: a ``Plan`` or plan file path; None tunes first (``autobatch.tune`` with the
            same model and data returns its cached plan at once).
        validation_split: fraction held out for validation (folders, arrays), by class.
        seed: seed of the split and of the per-epoch shuffle.
        callbacks: Keras callbacks.
        verbose: Keras' meaning (``"auto"``, 0, 1, 2): for the tune's progress display
            (as in ``autobatch.tune``) and for ``model.fit``.
        image_size: input size of a built-in model SPEC (a built model's own is used).
        num_examples: examples in one epoch of a generator; required for a generator
            object and for an endless generator function (a generator function without it
            is counted in one extra pass, which an endless one fails).
        batched: a generator yields batches (True) or single examples (False); None
            detects it from the model's input rank.
        time_budget: tuning time limit in seconds (``--time-budget``).
        memory_budget: tuning memory budget (``--memory-budget``).
        pixels: tuning pixel dtype, ``"auto"``, ``"float32"`` or ``"uint8"`` (``--pixels``).
        scale_lr: apply the plan's learning-rate factor (else it is only reported).
        reference_batch_size: the batch size the compiled learning rate was chosen for.
        tune_options: further ``autobatch.tune`` keyword arguments (``trials``, ...).
        on_epoch: called with each epoch's coverage record.
        **fit_kwargs: passed to ``model.fit`` (``validation_data``, ``class_weight``, ...).

    Returns:
        The Keras ``History`` with ``history.plan``, ``history.coverage``,
        ``history.learning_rate``, ``history.steps_per_epoch``, ``history.tune_time_s``
        (seconds spent getting the plan) and ``history.history["examples_seen"]``.

    Raises:
        UsageError: a pre-flight check failed, an argument the plan owns was passed, or
            the data cannot be trained on as given (one class, an endless generator
            without ``num_examples``).
    """
    options = dict(locals())  # the parameters above, each named once
    for name in ("model", "data", "fit_kwargs", "time_budget", "memory_budget", "pixels",
                 "tune_options"):
        del options[name]
    # The tune's own options travel in tune_options (fit's implementation tunes with them).
    tuning = dict(tune_options or {})
    for name, value in (("time_budget", time_budget), ("memory_budget", memory_budget),
                        ("pixels", pixels)):
        if value is not None:
            tuning[name] = value
    from autobatch._fit import fit as _fit

    return _fit(model, data, tune_options=tuning, **options, **fit_kwargs)


def dataset(
    data: Any,
    plan: Any = None,
    *,
    model: Any = None,
    repeat: bool = False,
    shuffle: bool = True,
    seed: int | None = None,
    image_size: int | tuple[int, int] | None = None,
    tune_options: dict[str, Any] | None = None,
) -> Any:
    """The tuned, batched ``tf.data.Dataset`` for ``data`` (for custom training loops).

    Args:
        data: an image folder, ``(x, y)`` arrays, a generator, or a PyDataset.
        plan: a ``Plan`` or plan file path; None tunes ``model`` on ``data`` first.
        model: the model to tune for when no plan is given.
        repeat: endless whole epochs (``model.fit(..., **plan.fit_kwargs())``); else one
            pass is one epoch.
        shuffle: reshuffle every epoch.
        seed: shuffle seed.
        image_size: resize images to this instead of the plan's image size.
        tune_options: ``autobatch.tune`` keyword arguments when tuning.

    Returns:
        The dataset over every usable example.
    """
    from autobatch._fit import dataset as _dataset

    return _dataset(data, plan, model=model, repeat=repeat, shuffle=shuffle, seed=seed,
                    image_size=image_size, **(tune_options or {}))


# ---------------------------------------------------------------- shared helpers


def _time_budget(time_budget: float | None, time_budget_s: float | None) -> float | None:
    """``time_budget``, or its deprecated name ``time_budget_s`` with a warning."""
    from autobatch._search._config import resolve_time_budget

    return resolve_time_budget(time_budget, time_budget_s, stacklevel=4)


@contextlib.contextmanager
def tune_events(verbose: Verbose,
                on_event: Callable[[Any], None] | None = None) -> Iterator[Any]:
    """The ``on_event`` callback of a tune: the progress display ``verbose`` asks for, and
    the caller's own callback; ``"auto"`` with a callback given draws nothing."""
    if on_event is not None and verbose == "auto":
        verbose = 0
    from autobatch._progress import tune_display

    with tune_display(verbose) as display:
        if display is None or on_event is None:
            yield display or on_event
            return

        def both(event: Any) -> None:
            display(event)
            on_event(event)

        yield both
