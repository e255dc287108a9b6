"""GPU check (run on a machine with an NVIDIA GPU): do autobatch's NVML readings match memory
allocated by hand?

    python benchmarks/check_gpu_nvml.py [--gib 8] [--other-gib 6] [--out gpu_nvml.json]

TensorFlow is not needed (nor imported): the allocations are made with PyTorch in this
process and CuPy (or PyTorch) in a child process. Checked:

1. ``autobatch env --json`` (the CLI, in a fresh process) reports the card's total memory as
   ``nvidia-smi`` does and its usable memory (total minus the driver's reserve) as CUDA's
   ``cudaMemGetInfo`` does, and never imports TensorFlow.
2. After this process allocates ``--gib`` GiB, NVML's figure for this process
   (``nvml_process_memory_bytes``, the probes' cross-check of TF's allocator) covers the
   allocation: at least the bytes PyTorch reserved, at most that plus a CUDA context.
3. With a child process holding ``--other-gib`` GiB, ``environment()`` charges it to
   ``memory_used_by_other_processes_bytes`` and the default device budget (free memory x the
   safety fraction) shrinks by about as much.
4. ``--memory-budget`` on a GPU: a size is a device budget; one larger than the card is a
   one-line usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GIB = 1 << 30

CHILD = r"""
import sys, time
n = int(sys.argv[1])
try:
    import cupy
    buf = cupy.ones((n,), dtype=cupy.uint8)
    cupy.cuda.Device().synchronize()
    lib = "cupy"
except Exception:
    import torch
    buf = torch.ones((n,), dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    lib = "torch"
print("READY", lib, flush=True)
time.sleep(120)
"""


def env_json() -> dict[str, Any]:
    code = ("import sys; from autobatch._cli import main; rc = main(['env', '--json']); "
            "assert 'tensorflow' not in sys.modules, 'env imported TensorFlow'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"autobatch env failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=8.0)
    parser.add_argument("--other-gib", type=float, default=6.0)
    parser.add_argument("--out", default="gpu_nvml.json")
    args = parser.parse_args(argv)

    import torch

    from autobatch import UsageError, environment
    from autobatch._for_benchmarks import (
        DEFAULT_SAFETY_FRACTION,
        default_budgets,
        nvml_process_memory_bytes,
        resolve_budgets,
    )

    report: dict[str, Any] = {"checks": {}}
    checks = report["checks"]

    # 1. env, as the CLI prints it, against CUDA's own figures.
    before = env_json()
    free, total = torch.cuda.mem_get_info()
    gpu = before["gpus"][0]
    report["env_gpu_before"] = gpu
    report["cuda_mem_get_info"] = {"free": free, "total": total}
    # NVML's total counts the driver's reserve; total - reserve is the total CUDA reports.
    checks["env_usable_equals_cuda_total"] = gpu["memory_usable_bytes"] == total
    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
        capture_output=True, text=True)
    if smi.returncode == 0 and smi.stdout.strip():
        report["nvidia_smi_total_mib"] = int(smi.stdout.split()[0])
        checks["env_total_equals_nvidia_smi"] = (
            gpu["memory_total_bytes"] // (1 << 20) == report["nvidia_smi_total_mib"])
    # Free memory moves with this process's own CUDA context (created by mem_get_info).
    checks["env_free_close_to_cuda_free"] = abs(gpu["memory_free_bytes"] - free) <= 1 * GIB

    # 2. This process's own allocation, seen through NVML.
    size = int(args.gib * GIB)
    held = torch.empty((size,), dtype=torch.uint8, device="cuda")
    held.fill_(1)
    torch.cuda.synchronize()
    reserved = torch.cuda.memory_reserved()
    own = nvml_process_memory_bytes(os.getpid())
    report["own"] = {"allocated_bytes": size, "torch_reserved_bytes": reserved,
                     "nvml_process_bytes": own}
    checks["nvml_sees_own_allocation"] = own is not None and reserved <= own <= reserved + 2 * GIB

    # 3. Another process's allocation: charged to others, and the default budget shrinks.
    env_before_other = environment()
    budget_before = default_budgets()[1]
    other_size = int(args.other_gib * GIB)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(other_size)],
                             stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline() if child.stdout else ""
        report["other_process"] = {"ready": line.strip(), "pid": child.pid,
                                   "allocated_bytes": other_size}
        time.sleep(1.0)
        env_with_other = environment()
        budget_with_other = default_budgets()[1]
        others = env_with_other.gpus[0].memory_used_by_other_processes_bytes
        others_before = env_before_other.gpus[0].memory_used_by_other_processes_bytes
        child_nvml = nvml_process_memory_bytes(child.pid)
        report["other_process"].update({
            "nvml_child_bytes": child_nvml,
            "others_before_bytes": others_before,
            "others_with_child_bytes": others,
            "default_device_budget_before": budget_before,
            "default_device_budget_with_child": budget_with_other,
            "safety_fraction": DEFAULT_SAFETY_FRACTION,
            "processes": env_with_other.gpus[0].processes,
        })
        checks["others_include_child"] = others - others_before >= other_size
        checks["default_budget_shrinks_by_child"] = (
            budget_before is not None and budget_with_other is not None
            and abs((budget_before - budget_with_other)
                    - other_size * DEFAULT_SAFETY_FRACTION) <= 1.5 * GIB)
    finally:
        child.kill()
        child.wait()

    # 4. --memory-budget on a GPU.
    env = environment()
    host, device, what = resolve_budgets("4GiB", env)
    checks["size_is_device_budget"] = (host, device, what) == (None, 4 * GIB, "device")
    try:
        resolve_budgets(f"{2 * total // GIB}GiB", env)
        checks["too_large_is_usage_error"] = False
    except UsageError as exc:
        report["too_large_message"] = str(exc)
        checks["too_large_is_usage_error"] = "\n" not in str(exc)
    del held

    report["passed"] = all(checks.values())
    Path(args.out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    print(json.dumps({k: report[k] for k in ("own", "cuda_mem_get_info")}, default=str))
    print(f"wrote {args.out}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
