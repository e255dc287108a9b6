"""``autobatch env``: what limits a training run on this machine."""

from __future__ import annotations

import argparse

from autobatch._cli._common import console, print_json
from autobatch._sizes import format_bytes


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "env",
        help="show host memory, CPUs, GPUs and TensorFlow version (no TensorFlow import)",
        description="Report the limits that bound a training run on this machine.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (keys in the README)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import autobatch

    env = autobatch.environment()
    if args.json:
        print_json(env.to_dict())
        return 0
    from rich.table import Table

    host, cpu = env.host, env.cpu
    table = Table(title="autobatch env", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("memory total", format_bytes(host.memory_total_bytes))
    table.add_row("memory available", format_bytes(host.memory_available_bytes))
    cg = host.cgroup_memory_limit_bytes
    table.add_row("cgroup memory limit", format_bytes(cg) if cg else "none")
    table.add_row("effective memory limit", format_bytes(host.memory_limit_bytes))
    table.add_row("swap", f"{format_bytes(host.swap_total_bytes)} "
                          f"({format_bytes(host.swap_free_bytes)} free)")
    quota = "none" if cpu.cgroup_quota_cores is None else f"{cpu.cgroup_quota_cores:g} cores"
    table.add_row("CPUs", f"{cpu.logical} logical, {cpu.usable} usable, quota {quota}")
    table.add_row("TensorFlow", env.tensorflow_version or "not installed")
    table.add_row("Keras", env.keras_version or "not installed")
    if env.gpus:
        table.add_row("driver / CUDA", f"{env.driver_version} / {env.cuda_driver_version}")
        for gpu in env.gpus:
            table.add_row(
                f"GPU {gpu.index}",
                f"{gpu.name}: {format_bytes(gpu.memory_free_bytes)} free of "
                f"{format_bytes(gpu.memory_usable_bytes)} usable "
                f"({format_bytes(gpu.memory_total_bytes)} total), "
                f"{format_bytes(gpu.memory_used_by_other_processes_bytes)} held by other processes",
            )
    else:
        table.add_row("GPUs", f"none ({env.gpu_status})")
    console().print(table)
    return 0
