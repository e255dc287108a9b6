"""``autobatch probe``: one isolated dry run at one batch size."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from autobatch._cli._common import console, describe_pipeline, print_json
from autobatch._settings import CACHE_MODES, PIXEL_TYPES
from autobatch._sizes import format_bytes

if TYPE_CHECKING:  # pragma: no cover
    from autobatch import ProbeResult


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "probe",
        help="dry-run a model at one batch size in an isolated worker (outcome, speed, memory)",
        usage=("%(prog)s DATA_DIR --model SPEC [--image-size N] --batch-size B [options]\n"
               "       %(prog)s DATA_DIR --model SPEC --plan PLAN.json [options]\n"
               "       (--image-size N is required when SPEC is a built-in model, unless "
               "--plan gives it)"),
        description=(
            "Train a few real steps of MODEL at --batch-size on DATA_DIR in a child process and "
            "report the outcome (ok, oom, timeout, crash), examples/s and peak memory. "
            "Exit 0 when the outcome is ok, 1 otherwise."
        ),
    )
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder of class sub-folders")
    parser.add_argument("--model", required=True, metavar="SPEC",
                        help="a .keras file or small_cnn, mobilenet_v2, resnet50, efficientnet_b0")
    parser.add_argument("--batch-size", type=int, metavar="B",
                        help="batch size to probe (required unless --plan gives it)")
    parser.add_argument("--image-size", type=int, metavar="N",
                        help="resize images to NxN: required for a built-in model unless --plan "
                             "gives it (default: a .keras model's input size)")
    parser.add_argument("--memory-budget", metavar="SIZE",
                        help="e.g. 3GiB or 0.5 (share of the effective limit); default: 90%% of "
                             "the free memory (GPU) or host headroom")
    parser.add_argument("--steps", type=int, default=5, metavar="N", help="timed steps (default 5)")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="S",
                        help="wall limit of the probe in seconds (default 300)")
    parser.add_argument("--min-time", type=float, default=0.0, metavar="S",
                        help="take more timed steps (fit: epochs) until they add up to S "
                             "seconds, at most 20x --steps (default 0)")
    parser.add_argument("--mode", choices=("fit", "loop"), default="fit",
                        help="fit (default): train with model.fit, one untimed epoch of "
                             "--steps steps, then timed epochs of --steps steps; the peak is "
                             "a training process's own; loop: time each step of a bare loop "
                             "over the traced train step (step times, input wait)")
    parser.add_argument("--jit-compile", action="store_true", help="probe with XLA on")
    parser.add_argument("--custom-objects", metavar="MODULE",
                        help="importable module that registers the model's custom layers")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    pipeline = parser.add_argument_group(
        "input pipeline", "the tf.data settings to probe with (default: autobatch's defaults, "
        "or those of --plan); each flag overrides one")
    pipeline.add_argument("--plan", metavar="PATH",
                          help="probe a plan's batch size, pipeline, image size and XLA choice")
    pipeline.add_argument("--parallel-calls", type=int, metavar="N",
                          help="parallel decode/resize calls (num_parallel_calls)")
    pipeline.add_argument("--prefetch", type=int, metavar="N", help="batches prefetched (0: none)")
    pipeline.add_argument("--cache", choices=CACHE_MODES, help="cache decoded examples")
    pipeline.add_argument("--threadpool", type=int, metavar="N",
                          help="private thread pool size (0: TF's shared pool)")
    pipeline.add_argument("--intra-op", type=int, metavar="N",
                          help="threads one tf.data op may use (max_intra_op_parallelism)")
    pipeline.add_argument("--shuffle-buffer", type=int, metavar="N",
                          help="shuffle buffer (0: a full shuffle)")
    pipeline.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=None,
                          help="keep element order under parallel map")
    pipeline.add_argument("--pixels", choices=PIXEL_TYPES,
                          help="dtype images travel in")
    parser.set_defaults(func=run)


_PIPELINE_FLAGS = {"parallel_calls": "num_parallel_calls", "prefetch": "prefetch",
                   "cache": "cache", "threadpool": "private_threadpool_size",
                   "intra_op": "max_intra_op_parallelism", "shuffle_buffer": "shuffle_buffer",
                   "deterministic": "deterministic", "pixels": "pixels"}
"""Probe flag (argparse dest) -> ``PipelineSettings`` field."""


def _settings_from(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(plan or None, PipelineSettings)``: the pipeline flags on top of ``--plan``'s
    settings (autobatch's defaults without a plan)."""
    from autobatch import PipelineSettings, Plan

    plan = Plan.load(args.plan) if args.plan is not None else None
    settings = plan.pipeline if plan is not None else PipelineSettings()
    changes = {field: getattr(args, flag) for flag, field in _PIPELINE_FLAGS.items()
               if getattr(args, flag) is not None}
    return plan, settings.replace(**changes)  # (a folder's images are 8-bit: uint8 is open)


def run(args: argparse.Namespace) -> int:
    import autobatch
    from autobatch._data._folder import check_folder

    check_folder(args.data_dir)
    plan, settings = _settings_from(args)
    result = autobatch.probe(
        args.model,
        args.data_dir,
        batch_size=args.batch_size,
        plan=plan,
        image_size=args.image_size,
        memory_budget=args.memory_budget,
        steps=args.steps,
        min_time=args.min_time,
        mode=args.mode,
        settings=settings,
        jit_compile=args.jit_compile,
        timeout=args.timeout,
        custom_objects_module=args.custom_objects,
    )
    if args.json:
        print_json(result.to_dict())
    else:
        _print_result(result)
    return 0 if result.ok else 1


def _print_result(result: ProbeResult) -> None:
    from rich.table import Table
    from rich.text import Text

    style = "green" if result.ok else "red"
    table = Table(title=f"autobatch probe: batch {result.batch_size}", show_header=False,
                  title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")

    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    table.add_row("outcome", Text(result.outcome, style=style))
    table.add_row("examples/s", num(result.examples_per_s, ".1f"))
    table.add_row("step time", f"{num(result.step_time_s, '.3f')} s "
                  f"(spread {num(result.step_time_spread_s, '.3f')} s)")
    table.add_row("timed with", "model.fit epochs" if result.mode == "fit" else "a step loop")
    table.add_row("pipeline", describe_pipeline(result.settings, result.jit_compile))
    table.add_row("input wait", num(result.input_wait_fraction, ".1%"))
    table.add_row("peak host memory", format_bytes(result.peak_host_memory_bytes))
    if result.peak_device_memory_bytes is not None:
        table.add_row("peak device memory", format_bytes(result.peak_device_memory_bytes))
    table.add_row("memory budget", format_bytes(result.memory_budget_bytes))
    table.add_row("device", result.device)
    table.add_row("wall time", f"{num(result.wall_time_s, '.1f')} s")
    console().print(table)
    if result.error:
        # The child's own error lines, shown as text (never parsed as rich markup).
        console().print(Text(result.error, style=style))
