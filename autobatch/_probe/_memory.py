"""Kernel and GPU memory figures of a process, read by both sides of the probe: the worker
(its own peak) and the parent's watchdog (the worker's resident memory). No TensorFlow."""

from __future__ import annotations

import resource
from typing import Any


def read_status_bytes(field: str, pid: int | str = "self") -> int | None:
    """A ``kB`` field of ``/proc/PID/status`` (``VmHWM``, ``VmRSS``) in bytes."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (Linux ``clear_refs`` 5)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def release_free_heap() -> bool:
    """Hand the C heap's free pages back to the kernel (glibc ``malloc_trim``).

    A reused worker keeps the pages an earlier probe freed; without this they stay in its
    RSS, and a probe of a larger batch, unable to reuse them all, reads their sum.
    Returns False where there is no glibc.
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes

            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if not _MALLOC_TRIM:
        return False
    _MALLOC_TRIM(0)
    return True


_MALLOC_TRIM: Any = None


def peak_rss_bytes() -> int:
    """``VmHWM`` since the last reset, or ``ru_maxrss`` (since start) where it is missing."""
    hwm = read_status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def nvml_process_memory_bytes(pid: int) -> int | None:
    """GPU memory NVML charges to ``pid`` (the cross-check of TF's allocator peak)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        total = 0
        found = False
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle) or []:
                if int(proc.pid) == pid and proc.usedGpuMemory is not None:
                    total += int(proc.usedGpuMemory)
                    found = True
        return total if found else None
    except Exception:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
