from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import psutil
import pytest

from autobatch import _env
from autobatch._cli import main


def _cgroup_v2(tmp_path: Path, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    leaf = root / "user.slice" / "job"
    leaf.mkdir(parents=True)
    for name, text in files.items():
        (leaf / name).write_text(text + "\n")
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/user.slice/job\n")
    return root, proc


def _cgroup_v1(tmp_path: Path, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        controller = "memory" if name.startswith("memory") else "cpu,cpuacct"
        folder = root / controller / "docker" / "abc"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text + "\n")
    proc = tmp_path / "proc_cgroup"
    proc.write_text("12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n")
    return root, proc


def test_cgroup_v2_memory_limit(tmp_path: Path) -> None:
    root, proc = _cgroup_v2(tmp_path, {"memory.max": "2147483648", "memory.current": "1000"})
    assert _env.read_cgroup_memory_limit(root, proc) == 2 * 1024**3
    assert _env.read_cgroup_memory_usage(root, proc) == 1000


def test_cgroup_v2_max_means_unlimited(tmp_path: Path) -> None:
    root, proc = _cgroup_v2(tmp_path, {"memory.max": "max", "cpu.max": "max 100000"})
    assert _env.read_cgroup_memory_limit(root, proc) is None
    assert _env.read_cgroup_cpu_quota(root, proc) is None


def test_cgroup_v2_parent_limit_is_tighter(tmp_path: Path) -> None:
    root, proc = _cgroup_v2(tmp_path, {"memory.max": "8000000000"})
    (root / "user.slice" / "memory.max").write_text("3000000000\n")
    assert _env.read_cgroup_memory_limit(root, proc) == 3_000_000_000


def test_cgroup_v2_cpu_quota(tmp_path: Path) -> None:
    root, proc = _cgroup_v2(tmp_path, {"cpu.max": "150000 100000"})
    assert _env.read_cgroup_cpu_quota(root, proc) == pytest.approx(1.5)


def test_cgroup_v1_limits(tmp_path: Path) -> None:
    root, proc = _cgroup_v1(
        tmp_path,
        {
            "memory.limit_in_bytes": "1073741824",
            "memory.usage_in_bytes": "5000",
            "cpu.cfs_quota_us": "200000",
            "cpu.cfs_period_us": "100000",
        },
    )
    assert _env.read_cgroup_memory_limit(root, proc) == 1024**3
    assert _env.read_cgroup_memory_usage(root, proc) == 5000
    assert _env.read_cgroup_cpu_quota(root, proc) == pytest.approx(2.0)


def test_cgroup_v1_unlimited(tmp_path: Path) -> None:
    root, proc = _cgroup_v1(
        tmp_path,
        {
            "memory.limit_in_bytes": str(9223372036854771712),
            "cpu.cfs_quota_us": "-1",
            "cpu.cfs_period_us": "100000",
        },
    )
    assert _env.read_cgroup_memory_limit(root, proc) is None
    assert _env.read_cgroup_cpu_quota(root, proc) is None


def test_no_cgroup_files(tmp_path: Path) -> None:
    proc = tmp_path / "missing"
    assert _env.read_cgroup_memory_limit(tmp_path / "nothing", proc) is None
    assert _env.read_cgroup_cpu_quota(tmp_path / "nothing", proc) is None


def test_effective_limit_uses_cgroup(monkeypatch: pytest.MonkeyPatch) -> None:
    total = psutil.virtual_memory().total
    monkeypatch.setattr(_env, "read_cgroup_memory_limit", lambda: total // 4)
    monkeypatch.setattr(_env, "read_cgroup_memory_usage", lambda: total // 8)
    host = _env.host_info()
    assert host.memory_limit_bytes == total // 4
    assert host.memory_headroom_bytes <= total // 4 - total // 8


def test_nvml_absent_gives_empty_list_and_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    gpus, status, driver, cuda = _env.gpu_info()
    assert gpus == []
    assert "nvidia-ml-py" in status and "\n" not in status
    assert driver is None and cuda is None


class _FakeNvmlError(Exception):
    pass


def _fake_pynvml(init_error: bool = False, v2: bool = False) -> types.ModuleType:
    """Stands in for an NVIDIA driver this machine does not have."""
    nvml = types.ModuleType("pynvml")
    gib = 1024**3

    def init() -> None:
        if init_error:
            raise _FakeNvmlError("Driver Not Loaded")

    mem = types.SimpleNamespace(total=16 * gib, free=10 * gib, used=6 * gib)
    procs = [types.SimpleNamespace(pid=4242, usedGpuMemory=5 * gib),
             types.SimpleNamespace(pid=os.getpid(), usedGpuMemory=1 * gib)]
    nvml.nvmlInit = init
    nvml.nvmlShutdown = lambda: None
    nvml.nvmlSystemGetDriverVersion = lambda: "550.54.15"
    nvml.nvmlSystemGetCudaDriverVersion_v2 = lambda: 12040
    nvml.nvmlDeviceGetCount = lambda: 1
    nvml.nvmlDeviceGetHandleByIndex = lambda i: ("handle", i)
    if v2:
        # NVML's v2 query: the driver's reserve is split out of "used".
        nvml.nvmlMemory_v2 = 0x02000028
        mem_v2 = types.SimpleNamespace(total=16 * gib, free=10 * gib, used=5 * gib,
                                       reserved=1 * gib)
        nvml.nvmlDeviceGetMemoryInfo = lambda h, version=None: mem_v2 if version else mem
    else:
        nvml.nvmlDeviceGetMemoryInfo = lambda h: mem
    nvml.nvmlDeviceGetName = lambda h: b"Tesla T4"
    nvml.nvmlDeviceGetUUID = lambda h: "GPU-1234"
    nvml.nvmlDeviceGetComputeRunningProcesses = lambda h: procs
    nvml.nvmlDeviceGetGraphicsRunningProcesses = lambda h: []
    return nvml


def test_nvml_fake_gpu_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml())
    gpus, status, driver, cuda = _env.gpu_info()
    assert status == "ok"
    assert driver == "550.54.15" and cuda == "12.4"
    (gpu,) = gpus
    assert gpu.name == "Tesla T4"
    assert gpu.memory_free_bytes == 10 * 1024**3
    assert gpu.memory_used_by_other_processes_bytes == 5 * 1024**3  # our own pid excluded


def test_nvml_v2_splits_out_the_driver_reserve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(v2=True))
    (gpu,) = _env.gpu_info()[0]
    assert gpu.memory_total_bytes == 16 * 1024**3
    assert gpu.memory_reserved_bytes == 1 * 1024**3
    assert gpu.memory_usable_bytes == 15 * 1024**3
    assert gpu.memory_used_bytes == 5 * 1024**3
    # Without v2 (an old binding) the reserve reads 0 and usable is the total.
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml())
    (gpu,) = _env.gpu_info()[0]
    assert gpu.memory_reserved_bytes == 0 and gpu.memory_usable_bytes == 16 * 1024**3


def test_gpu_budget_refers_to_usable_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from autobatch._errors import UsageError
    from autobatch._search._tune import resolve_budgets

    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(v2=True))
    env = _env.environment()
    assert env.to_dict()["gpus"][0]["memory_usable_bytes"] == 15 * 1024**3
    assert resolve_budgets("0.5", env) == (None, int(7.5 * 1024**3), "device")
    with pytest.raises(UsageError, match="larger than this machine's 15.00 GiB of GPU memory"):
        resolve_budgets("16GiB", env)


def test_nvml_init_failure_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(init_error=True))
    gpus, status, _, _ = _env.gpu_info()
    assert gpus == [] and status == "NVML unavailable: Driver Not Loaded"


def test_env_json_keys_match_the_os(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["host"]["memory_total_bytes"] == psutil.virtual_memory().total
    assert data["cpu"]["logical"] == os.cpu_count()
    assert data["cpu"]["usable"] == len(os.sched_getaffinity(0))
    for key in ("memory_available_bytes", "memory_limit_bytes"):
        assert isinstance(data["host"][key], int)
    assert isinstance(data["gpus"], list)
    assert "tensorflow_version" in data


def test_env_human_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert "memory total" in out and "CPUs" in out


@pytest.mark.gpu
def test_real_gpu_is_listed() -> None:
    gpus, status, _, _ = _env.gpu_info()
    if not gpus:
        pytest.skip(f"no GPU visible to NVML: {status}")
    assert gpus[0].memory_total_bytes > 0
    assert gpus[0].memory_free_bytes <= gpus[0].memory_total_bytes


def test_env_subprocess_does_not_import_tensorflow() -> None:
    code = (
        "import sys; from autobatch._cli import main; rc = main(['env', '--json']); "
        "assert 'tensorflow' not in sys.modules, 'env imported TF'; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["cpu"]["logical"] >= 1
