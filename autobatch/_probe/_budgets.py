"""Memory budgets of the probes, in one place: the defaults (measured headroom x a safety
fraction) and the translation of what the user asked (``memory_budget``) into bytes."""

from __future__ import annotations

from typing import Any

from autobatch._env import environment
from autobatch._errors import UsageError
from autobatch._sizes import format_bytes, parse_memory_size

DEFAULT_SAFETY_FRACTION = 0.9


def default_budgets(safety_fraction: float = DEFAULT_SAFETY_FRACTION,
                    env: Any = None) -> tuple[int, int | None]:
    """(host budget, device budget or None): headroom / free GPU memory x ``safety_fraction``.

    The host headroom is the effective limit (RAM or cgroup) minus what is in use now; the
    device figure is the free memory of GPU 0 as NVML reports it.
    """
    if env is None:
        env = environment()
    host = int(env.host.memory_headroom_bytes * safety_fraction)
    device = int(env.gpus[0].memory_free_bytes * safety_fraction) if env.gpus else None
    return host, device


def resolve_budgets(memory_budget: Any, env: Any) -> tuple[int | None, int | None, str]:
    """The host and device budgets in bytes from what the user asked.

    ``memory_budget`` bounds the device when there is a GPU, the host otherwise; fractions
    refer to that device's (or the host's effective) memory. A budget larger than the
    machine is a usage error.

    Returns:
        ``(host_budget_bytes, device_budget_bytes, what)``; None means the runner's default.
    """
    if memory_budget is None:
        return None, None, "default"
    if env.gpus:
        limit = int(min(g.memory_usable_bytes for g in env.gpus))
        where = "GPU memory"
    else:
        limit = int(env.host.memory_limit_bytes)
        where = "host memory"
    budget = (
        int(memory_budget)
        if isinstance(memory_budget, int) and not isinstance(memory_budget, bool)
        else parse_memory_size(memory_budget, limit_bytes=limit)
    )
    if budget > limit:
        raise UsageError(
            f"memory budget {format_bytes(budget)} is larger than this machine's "
            f"{format_bytes(limit)} of {where}; pass a smaller {{param}}",
            parameter="memory_budget",
        )
    if env.gpus:
        return None, budget, "device"
    return budget, None, "host"
