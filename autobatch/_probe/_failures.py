"""What went wrong with a probe: an exception that is an out-of-memory error (worker side),
and the result of a probe whose worker did not answer (parent side: timeout, killed over
the budget, crashed), with how the process ended in words."""

from __future__ import annotations

import signal

from autobatch._probe._types import Outcome, ProbeRequest, ProbeResult
from autobatch._settings import PipelineSettings
from autobatch._sizes import format_bytes


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is the framework running out of memory (``oom``, not ``crash``)."""
    if isinstance(exc, MemoryError):
        return True
    try:
        import tensorflow as tf

        if isinstance(exc, tf.errors.ResourceExhaustedError):
            return True
    except ImportError:
        pass
    text = str(exc)
    return "ResourceExhausted" in text or "OOM when allocating" in text


def describe_exit(code: int | None) -> str:
    """How a worker process ended, from its exit code (negative: the signal)."""
    if code is None:
        return "the worker stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the worker was killed by {name}"
    return f"the worker exited with code {code}"


def timeout_result(request: ProbeRequest | None, *, starting: bool, limit_s: float,
                   device: str, pid: int | None) -> ProbeResult:
    """A worker that did not start, or whose probe did not finish, within ``limit_s``."""
    error = (f"the worker {'did not start' if starting else 'probe did not finish'} within "
             f"{limit_s:g} s and was stopped")
    return ProbeResult(
        outcome="timeout", batch_size=request.batch_size if request else 0,
        settings=request.settings if request else PipelineSettings(),
        jit_compile=request.jit_compile if request else False, error=error,
        device=device, worker_pid=pid)


def lost_worker_result(request: ProbeRequest | None, *, exit_code: int | None,
                       over_budget_bytes: int | None, peak_bytes: int | None,
                       host_budget_bytes: int | None, starting: bool, log_tail: str,
                       device: str, pid: int | None) -> ProbeResult:
    """A worker that ended without answering: ``oom`` when the watchdog stopped it over the
    host budget, ``crash`` otherwise (with how it ended and the last lines of its log)."""
    outcome: Outcome
    if over_budget_bytes is not None:
        outcome = "oom"
        error = (f"the worker's resident memory reached {format_bytes(over_budget_bytes)}, "
                 f"over the host budget {format_bytes(host_budget_bytes)}; stopped")
        if starting:
            error += (" while loading TensorFlow and the model: the budget is below the "
                      "worker's idle footprint; raise the memory budget")
    else:
        outcome = "crash"
        error = describe_exit(exit_code) + log_tail
    return ProbeResult(
        outcome=outcome, batch_size=request.batch_size if request else 0,
        settings=request.settings if request else PipelineSettings(),
        jit_compile=request.jit_compile if request else False, error=error,
        peak_host_memory_bytes=peak_bytes, device=device, worker_pid=pid)
