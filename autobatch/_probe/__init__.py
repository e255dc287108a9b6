"""Dry-run probes: does this model train at batch B here, how fast, at what peak memory?

Parent side only (no TensorFlow import): ``ProbeRunner`` (the contract),
``SubprocessProbeRunner`` (a reused, watched worker process), ``InProcessProbeRunner`` (same
interface in this process, for tests of search logic; no memory enforcement) and ``probe``.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from typing import Any

from autobatch._errors import UsageError
from autobatch._probe._budgets import DEFAULT_SAFETY_FRACTION, default_budgets, resolve_budgets
from autobatch._probe._runner import ProbeRunner, SubprocessProbeRunner
from autobatch._probe._types import (
    MAX_STEPS_FACTOR,
    OUTCOMES,
    Outcome,
    ProbeRequest,
    ProbeResult,
)

__all__ = [
    "DEFAULT_SAFETY_FRACTION",
    "OUTCOMES",
    "InProcessProbeRunner",
    "MAX_STEPS_FACTOR",
    "Outcome",
    "ProbeRequest",
    "ProbeResult",
    "ProbeRunner",
    "SubprocessProbeRunner",
    "default_budgets",
    "probe",
    "resolve_budgets",
]


class InProcessProbeRunner(ProbeRunner):
    """Runs probes in this process with the worker's own code (imports TensorFlow).

    For tests of search logic: fast and deterministic, but an OOM or a hang hits the caller
    and the host budget is only compared after the fact, never enforced.
    """

    def __init__(self, model: Any, data: Any, *, image_size: int | tuple[int, int] | None = None,
                 channels: int | None = None, host_memory_budget_bytes: int | None = None,
                 device_memory_budget_bytes: int | None = None,
                 safety_fraction: float = DEFAULT_SAFETY_FRACTION,
                 custom_objects_module: str | None = None, seed: int = 0,
                 **_ignored: Any) -> None:
        from autobatch._models import model_input_shape, resolve_model
        from autobatch._pipeline import normalize_image_size
        from autobatch._probe._runner import _num_classes
        from autobatch._probe._worker import Worker
        from autobatch._sources import resolve_source

        if host_memory_budget_bytes is None or device_memory_budget_bytes is None:
            host_default, device_default = default_budgets(safety_fraction)
            host_memory_budget_bytes = host_memory_budget_bytes or host_default
            if device_memory_budget_bytes is None:
                device_memory_budget_bytes = device_default
        self.host_memory_budget_bytes = host_memory_budget_bytes
        self.device_memory_budget_bytes = device_memory_budget_bytes
        source = resolve_source(data)
        size = normalize_image_size(image_size)
        keras_model = resolve_model(model, num_classes=_num_classes(source) or 0,
                                    image_size=size, channels=channels or 3,
                                    custom_objects_module=custom_objects_module)
        shape = model_input_shape(keras_model) or ()
        worker = Worker.__new__(Worker)
        worker.config = {}
        worker.source = source
        worker.model = keras_model
        worker.image_size = size or ((shape[0], shape[1]) if len(shape) == 3 else None)
        worker.channels = channels or (shape[-1] if len(shape) == 3 else None)
        worker.seed = seed
        worker.cache_dir = None
        worker._steps = {}
        worker._built = False
        worker.probes_served = 0
        import tensorflow as tf

        worker.device = "GPU:0" if tf.config.list_physical_devices("GPU") else "cpu"
        self.device = worker.device
        self._worker = worker
        self._accepts_uint8: bool | None = None
        self.worker_starts = 1
        self.probes_run = 0

    @property
    def accepts_uint8(self) -> bool:
        if self._accepts_uint8 is None:
            self._accepts_uint8 = self._worker.accepts_uint8()
        return self._accepts_uint8

    def run(self, request: ProbeRequest) -> ProbeResult:
        start_s = time.perf_counter()
        result = ProbeResult.from_dict(self._worker.probe(request.to_dict()))
        self.probes_run += 1
        result = self._judge_budget(result)
        return dataclasses.replace(result, wall_time_s=time.perf_counter() - start_s,
                                   worker_started=self.probes_run == 1)


_REQUEST_FIELDS = {f.name for f in dataclasses.fields(ProbeRequest)}


def probe(model: Any, data: Any, *, batch_size: int, memory_budget: str | int | None = None,
          **options: Any) -> ProbeResult:
    """Run one isolated dry-run probe of ``model`` on ``data`` at ``batch_size``.

    Args:
        model: a compiled ``keras.Model``, a ``.keras`` path or a built-in name.
        data: an image folder, ``(x, y)`` arrays, a generator (see ``resolve_source``).
        batch_size: the batch size to try.
        memory_budget: what the probe may use, as the user gives it (``"4GiB"``, ``"0.8"``
            of the device, or bytes); resolved by ``resolve_budgets`` into the runner's
            host or device budget. None: the runner's defaults (or the explicit
            ``host_memory_budget_bytes`` / ``device_memory_budget_bytes`` options).
        **options: ``ProbeRequest`` fields (``settings``, ``steps``, ``warmup_steps``,
            ``jit_compile``, ``timeout_s``) and ``SubprocessProbeRunner`` keyword arguments
            (``image_size``, ``host_memory_budget_bytes``, ...).

    Returns:
        The ``ProbeResult``; a failing probe is a result (``oom``, ``timeout``, ``crash``),
        never an exception.

    Raises:
        UsageError: an unknown option, or a ``memory_budget`` that does not parse or is
            larger than the machine.
    """
    request_options = {k: v for k, v in options.items() if k in _REQUEST_FIELDS}
    runner_params = set(inspect.signature(SubprocessProbeRunner).parameters)
    runner_options = {k: v for k, v in options.items() if k in runner_params}
    unknown = set(options) - set(request_options) - set(runner_options)
    if unknown:
        raise UsageError(f"unknown probe option(s): {', '.join(sorted(unknown))}")
    if memory_budget is not None:
        from autobatch._env import environment

        host, device, _ = resolve_budgets(memory_budget, environment())
        runner_options.update(host_memory_budget_bytes=host, device_memory_budget_bytes=device)
    with SubprocessProbeRunner(model, data, **runner_options) as runner:
        return runner.run(ProbeRequest(batch_size=batch_size, **request_options))
