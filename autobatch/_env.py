"""What limits a training run on this machine: host memory, CPUs, GPUs, TensorFlow.

Everything here is read from the kernel, cgroups, NVML and package metadata; TensorFlow is
never imported (it grabs GPU memory and takes seconds to load).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
# cgroup v1 reports "no limit" as a huge page-aligned number rather than "max".
_CGROUP_V1_UNLIMITED = 1 << 60


@dataclass(frozen=True)
class HostInfo:
    memory_total_bytes: int
    memory_available_bytes: int
    memory_used_bytes: int
    swap_total_bytes: int
    swap_free_bytes: int
    cgroup_memory_limit_bytes: int | None
    cgroup_memory_usage_bytes: int | None
    memory_limit_bytes: int
    """min(physical memory, the cgroup limit)."""
    memory_headroom_bytes: int
    """What a new process may still take: the effective limit minus what is in use."""


@dataclass(frozen=True)
class CpuInfo:
    logical: int
    usable: int
    """CPUs this process may run on (``os.sched_getaffinity``)."""
    cgroup_quota_cores: float | None
    """The cgroup CPU quota (``cpu.max``) as a core count; None when unlimited."""
    effective: int
    """min(usable, ceil(quota)): the parallelism worth asking for."""


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    uuid: str
    memory_total_bytes: int
    """The card's memory as ``nvidia-smi`` shows it."""
    memory_free_bytes: int
    memory_used_bytes: int
    memory_used_by_other_processes_bytes: int
    processes: list[dict[str, int]] = field(default_factory=list)
    memory_reserved_bytes: int = 0
    """Held by the driver, never allocatable (NVML's v2 memory query; 0 where it is missing)."""
    compute_capability: tuple[int, int] | None = None
    """CUDA compute capability ``(major, minor)`` (None where NVML does not say): float16
    tensor cores, hence ``mixed_float16``, need 7.0 or more."""

    @property
    def memory_usable_bytes(self) -> int:
        """Total minus the driver's reserve: the total CUDA (and TensorFlow) report, and what
        budgets and fractions refer to. On an H200 here 645 MB below ``nvidia-smi``'s."""
        return self.memory_total_bytes - self.memory_reserved_bytes


@dataclass(frozen=True)
class Environment:
    host: HostInfo
    cpu: CpuInfo
    gpus: list[GpuInfo]
    gpu_status: str
    """"ok", or one line saying why no GPU is listed."""
    driver_version: str | None
    cuda_driver_version: str | None
    tensorflow_version: str | None
    keras_version: str | None
    python_version: str

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for gpu, info in zip(data["gpus"], self.gpus, strict=True):
            gpu["memory_usable_bytes"] = info.memory_usable_bytes
        return data


# ---------------------------------------------------------------- cgroups (pure readers)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _own_cgroup_dirs(root: Path, proc_cgroup: Path) -> list[Path]:
    """The cgroup folders of this process, deepest first, then the root itself."""
    text = _read_text(proc_cgroup) or ""
    candidates: list[Path] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, rel = parts[1], parts[2].lstrip("/")
        bases = [root] if controllers == "" else [root / c for c in controllers.split(",")] + [
            root / controllers
        ]
        for base in bases:
            current = base / rel if rel else base
            while True:
                candidates.append(current)
                if current == base:
                    break
                current = current.parent
    candidates.append(root)
    seen: set[Path] = set()
    ordered = []
    for c in candidates:
        if c not in seen:
            seen.add(c)
            ordered.append(c)
    return ordered


def read_cgroup_memory_limit(
    root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")
) -> int | None:
    """The tightest cgroup memory limit on this process (v2 ``memory.max`` or v1
    ``memory.limit_in_bytes``), or None when there is none ("max" means unlimited)."""
    limits = []
    for folder in _own_cgroup_dirs(root, proc_cgroup):
        for name in ("memory.max", "memory.limit_in_bytes"):
            text = _read_text(folder / name)
            if text is None or text == "max":
                continue
            try:
                value = int(text)
            except ValueError:
                continue
            if 0 < value < _CGROUP_V1_UNLIMITED:
                limits.append(value)
    return min(limits) if limits else None


def read_cgroup_memory_usage(
    root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")
) -> int | None:
    """Memory charged to this process's cgroup (v2 ``memory.current``, v1 ``usage_in_bytes``)."""
    for folder in _own_cgroup_dirs(root, proc_cgroup):
        for name in ("memory.current", "memory.usage_in_bytes"):
            text = _read_text(folder / name)
            if text and text.isdigit():
                return int(text)
    return None


def read_cgroup_cpu_quota(
    root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """The CPU quota as cores: v2 ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD") or v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1 means unlimited)."""
    quotas = []
    for folder in _own_cgroup_dirs(root, proc_cgroup):
        text = _read_text(folder / "cpu.max")
        if text:
            parts = text.split()
            if len(parts) == 2 and parts[0] != "max":
                try:
                    quotas.append(int(parts[0]) / int(parts[1]))
                except (ValueError, ZeroDivisionError):
                    pass
            continue
        quota_text = _read_text(folder / "cpu.cfs_quota_us")
        period_text = _read_text(folder / "cpu.cfs_period_us")
        if quota_text and period_text:
            try:
                quota, period = int(quota_text), int(period_text)
            except ValueError:
                continue
            if quota > 0 and period > 0:
                quotas.append(quota / period)
    return min(quotas) if quotas else None


# ---------------------------------------------------------------- host and CPU


def host_info() -> HostInfo:
    vm = psutil.virtual_memory()
    swap = psutil.swap_memory()
    cg_limit = read_cgroup_memory_limit()
    cg_usage = read_cgroup_memory_usage() if cg_limit is not None else None
    limit = min(vm.total, cg_limit) if cg_limit is not None else vm.total
    headroom = vm.available
    if cg_limit is not None and cg_usage is not None:
        headroom = min(headroom, max(0, cg_limit - cg_usage))
    return HostInfo(
        memory_total_bytes=int(vm.total),
        memory_available_bytes=int(vm.available),
        memory_used_bytes=int(vm.total - vm.available),
        swap_total_bytes=int(swap.total),
        swap_free_bytes=int(swap.free),
        cgroup_memory_limit_bytes=cg_limit,
        cgroup_memory_usage_bytes=cg_usage,
        memory_limit_bytes=int(limit),
        memory_headroom_bytes=int(min(headroom, limit)),
    )


def cpu_info() -> CpuInfo:
    logical = os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = logical
    quota = read_cgroup_cpu_quota()
    effective = usable
    if quota is not None:
        effective = max(1, min(usable, int(-(-quota // 1))))
    return CpuInfo(logical=logical, usable=usable, cgroup_quota_cores=quota, effective=effective)


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
"""``/proc/cpuinfo`` flags of bfloat16 arithmetic: x86's AVX-512 BF16 and AMX-BF16 (used by
oneDNN, TensorFlow's CPU kernels), Arm's BF16 (its ``Features`` line)."""


def cpu_bf16_flags(cpuinfo: str | None = None) -> list[str]:
    """The bfloat16 flags this CPU lists (``/proc/cpuinfo``; ``cpuinfo`` stands in for its
    text); [] off Linux, where the file is missing, or on a CPU without them."""
    if cpuinfo is None:
        cpuinfo = _read_text(Path("/proc/cpuinfo")) or ""
    found: set[str] = set()
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() in ("flags", "features"):
            found.update(flag for flag in value.split() if flag in BF16_CPU_FLAGS)
    return sorted(found)


# ---------------------------------------------------------------- GPUs via NVML


def gpu_info() -> tuple[list[GpuInfo], str, str | None, str | None]:
    """GPUs seen by NVML, with a one-line status; never raises."""
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed (pip install nvidia-ml-py)", None, None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return [], f"NVML unavailable: {_nvml_reason(exc)}", None, None
    try:
        driver = _decode(_safe(pynvml.nvmlSystemGetDriverVersion))
        cuda = _safe(pynvml.nvmlSystemGetCudaDriverVersion_v2) or _safe(
            pynvml.nvmlSystemGetCudaDriverVersion
        )
        cuda_version = f"{cuda // 1000}.{(cuda % 1000) // 10}" if isinstance(cuda, int) else None
        count = pynvml.nvmlDeviceGetCount()
        gpus = [_one_gpu(pynvml, i) for i in range(count)]
        status = "ok" if gpus else "NVML found no GPU"
        return gpus, status, driver, cuda_version
    except Exception as exc:
        return [], f"NVML query failed: {_nvml_reason(exc)}", None, None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _one_gpu(pynvml: Any, index: int) -> GpuInfo:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    mem, reserved = _memory_info(pynvml, handle)
    own_pid = os.getpid()
    processes = []
    for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        for proc in _safe(getattr(pynvml, getter), handle) or []:
            used = getattr(proc, "usedGpuMemory", None)
            processes.append({"pid": int(proc.pid), "used_memory_bytes": int(used or 0)})
    others = sum(p["used_memory_bytes"] for p in processes if p["pid"] != own_pid)
    return GpuInfo(
        index=index,
        name=_decode(pynvml.nvmlDeviceGetName(handle)) or f"GPU {index}",
        uuid=_decode(_safe(pynvml.nvmlDeviceGetUUID, handle)) or "",
        memory_total_bytes=int(mem.total),
        memory_free_bytes=int(mem.free),
        memory_used_bytes=int(mem.used),
        memory_used_by_other_processes_bytes=int(others),
        processes=processes,
        memory_reserved_bytes=reserved,
        compute_capability=_compute_capability(pynvml, handle),
    )


def _compute_capability(pynvml: Any, handle: Any) -> tuple[int, int] | None:
    value = _safe(getattr(pynvml, "nvmlDeviceGetCudaComputeCapability", None), handle)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return None
    return int(value[0]), int(value[1])


def _memory_info(pynvml: Any, handle: Any) -> tuple[Any, int]:
    """NVML's memory figures and the driver's reserve.

    The v2 query splits the driver's reserve out of "used" (v1 counts it as used, so an idle
    card reads 645 MB used with no process on it); where the driver or binding lacks v2,
    v1 stands and the reserve reads 0.
    """
    version = getattr(pynvml, "nvmlMemory_v2", None)
    if version is not None:
        try:
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle, version=version)
            return mem, int(getattr(mem, "reserved", 0) or 0)
        except Exception:  # noqa: BLE001 - an old driver: fall back to v1
            pass
    return pynvml.nvmlDeviceGetMemoryInfo(handle), 0


def _safe(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:
        return None


def _decode(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _nvml_reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# ---------------------------------------------------------------- versions


def package_version(name: str) -> str | None:
    """A distribution's version from its metadata, without importing it."""
    candidates = [name, f"{name}-cpu", f"{name}-macos", f"{name}-intel"]
    if name == "tensorflow":
        candidates += ["tf-nightly", "tf-nightly-cpu"]
    for candidate in candidates:
        try:
            return metadata.version(candidate)
        except metadata.PackageNotFoundError:
            continue
    return None


def environment() -> Environment:
    """Read this machine's limits. Never imports TensorFlow, never raises for missing GPUs."""
    import platform

    gpus, status, driver, cuda = gpu_info()
    return Environment(
        host=host_info(),
        cpu=cpu_info(),
        gpus=gpus,
        gpu_status=status,
        driver_version=driver,
        cuda_driver_version=cuda,
        tensorflow_version=package_version("tensorflow"),
        keras_version=package_version("keras"),
        python_version=platform.python_version(),
    )
