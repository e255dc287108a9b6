"""Dry-run probes: does this model train at batch B here, how fast, at what peak memory?

No TensorFlow at import: ``ProbeRunner`` (the seam the search talks to),
``SubprocessProbeRunner`` (a reused, watched worker process), ``InProcessProbeRunner`` (same
interface in this process, for tests of search logic; no memory enforcement), the budgets
(``default_budgets``, ``resolve_budgets``) and ``probe``, one isolated probe.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from autobatch._env import environment
from autobatch._errors import UsageError
from autobatch._probe._base import ProbeRunner
from autobatch._probe._budgets import DEFAULT_SAFETY_FRACTION, default_budgets, resolve_budgets
from autobatch._probe._inprocess import InProcessProbeRunner
from autobatch._probe._runner import SubprocessProbeRunner
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
        host, device, _ = resolve_budgets(memory_budget, environment())
        runner_options.update(host_memory_budget_bytes=host, device_memory_budget_bytes=device)
    with SubprocessProbeRunner(model, data, **runner_options) as runner:
        return runner.run(ProbeRequest(batch_size=batch_size, **request_options))
