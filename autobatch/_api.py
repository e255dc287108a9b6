"""``autobatch.probe``: the public probe, its options checked and resolved once, handed to
the probe package (imported lazily so that ``import autobatch`` stays TensorFlow-free).
``tune`` lives in ``autobatch._search``, ``fit`` and ``dataset`` in ``autobatch._fit``.

Every option is keyword-only after the model and data; the CLI's flags carry the same names
(``time_budget`` is ``--time-budget``), and an error about one names the parameter here, the
flag on the command line.
"""

from __future__ import annotations

from typing import Any


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
    mode: str = "fit",
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
        mode: ``"fit"`` (the default: epochs of ``model.fit`` on the freshly loaded model,
            so the peak is a training process's own, its heavier first step included) or
            ``"loop"`` (a bare loop over the traced train step: each step's time and the
            share spent waiting for input, but a peak that misses fit's first step).
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
        from autobatch._plan import load_plan

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
    from autobatch._framework import require_tensorflow

    require_tensorflow("a probe")
    options.update(
        steps=steps, warmup_steps=warmup_steps, min_time_s=float(min_time), mode=mode,
        jit_compile=bool(jit_compile), timeout_s=float(timeout), image_size=image_size,
        channels=channels, custom_objects_module=custom_objects_module,
    )
    if settings is not None:
        options["settings"] = settings
    return _probe(model, data, batch_size=int(batch_size), **options)
