"""``InProcessProbeRunner``: the runner interface with the worker's own code in this process
(imports TensorFlow), for tests of search logic that want real probes without a process."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from autobatch._data import normalize_image_size
from autobatch._models import resolve_model
from autobatch._probe._base import ProbeRunner
from autobatch._probe._budgets import DEFAULT_SAFETY_FRACTION, default_budgets
from autobatch._probe._data_io import num_classes, probe_source
from autobatch._probe._types import ProbeRequest, ProbeResult
from autobatch._probe._worker import Worker, detect_device


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
        if host_memory_budget_bytes is None or device_memory_budget_bytes is None:
            host_default, device_default = default_budgets(safety_fraction)
            host_memory_budget_bytes = host_memory_budget_bytes or host_default
            if device_memory_budget_bytes is None:
                device_memory_budget_bytes = device_default
        self.host_memory_budget_bytes = host_memory_budget_bytes
        self.device_memory_budget_bytes = device_memory_budget_bytes
        source = probe_source(data)
        size = normalize_image_size(image_size)
        keras_model = resolve_model(model, num_classes=num_classes(source) or 0,
                                    image_size=size, channels=channels or 3,
                                    custom_objects_module=custom_objects_module)
        self.device = detect_device()
        self._worker = Worker(keras_model, source, image_size=size, channels=channels,
                              seed=seed, device=self.device)
        self._accepts_uint8: bool | None = None
        self.worker_starts = 1
        self.probes_run = 0

    @property
    def accepts_uint8(self) -> bool:
        if self._accepts_uint8 is None:
            self._accepts_uint8 = self._worker.accepts_uint8()
        return self._accepts_uint8

    @property
    def num_replicas(self) -> int:
        return int(self._worker.num_replicas)

    def run(self, request: ProbeRequest) -> ProbeResult:
        start_s = time.perf_counter()
        result = ProbeResult.from_dict(self._worker.probe(request.to_dict()))
        self.probes_run += 1
        result = self._judge_budget(result)
        return dataclasses.replace(result, wall_time_s=time.perf_counter() - start_s,
                                   worker_started=self.probes_run == 1)
