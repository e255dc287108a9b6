"""``autobatch tune``: find the fastest batch size and tf.data settings that fit, write a plan."""

from __future__ import annotations

import argparse
from typing import Any

from autobatch._cli._common import (
    ChosenData,
    add_data_arguments,
    add_device_arguments,
    add_effective_batch_size,
    add_max_pixels,
    chosen_data,
    chosen_strategy,
    console,
    describe_pipeline,
    print_json,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "tune",
        help="tune batch size and tf.data settings with isolated probes; write a plan JSON",
        usage=("%(prog)s (DATA_DIR | --dataset MODULE:FUNCTION) --model SPEC [--image-size N] "
               "[--memory-budget SIZE] "
               "[--time-budget S] [--trials N] [options]\n"
               "       (--image-size N is required when SPEC is a built-in model; a .keras "
               "model's own input size is the default)"),
        description=(
            "Find the largest batch that fits the memory budget (verified by a probe), then "
            "search batch size and tf.data settings jointly for the most examples/s with an "
            "Optuna study, verify the winner, and write the plan. A repeated run with the "
            "same model, data, machine and options returns the cached plan at once."
        ),
    )
    add_data_arguments(parser)
    parser.add_argument("--model", required=True, metavar="SPEC",
                        help="a .keras file or a built-in: small_cnn, mobilenet_v2, resnet50, "
                             "efficientnet_b0")
    parser.add_argument("--image-size", type=int, metavar="N",
                        help="resize images to N x N: required for a built-in model (default "
                             "for a .keras file: its input size)")
    parser.add_argument("--channels", type=int,
                        help="image channels (default: the model's input channels, else 3)")
    parser.add_argument("--memory-budget", metavar="SIZE",
                        help="peak memory the training may use: 3GiB, 800MB or a fraction such "
                             "as 0.8 (GPU memory when there is a GPU, host memory otherwise)")
    parser.add_argument("--time-budget", type=float, metavar="SECONDS",
                        help="wall-clock limit for the whole tune (default 120 unless --trials "
                             "is given)")
    parser.add_argument("--trials", type=int, metavar="N",
                        help="throughput trials in the study (stored trials of a resumed study "
                             "count)")
    parser.add_argument("--storage", metavar="URL",
                        help="Optuna storage: an SQLite URL (one process; default: a file in "
                             "the user cache folder), journal:PATH (several processes on one "
                             "host) or postgresql://USER:PASSWORD@HOST/DB (many machines: "
                             "pip install 'autobatch[postgres]'); processes started with "
                             "the same storage, model, data and options share one study")
    parser.add_argument("--objective", choices=("throughput", "goodput"), default="throughput",
                        help="rank by examples/s, or by examples/s times the batch's "
                             "statistical efficiency under the measured gradient noise scale "
                             "(goodput: fastest to a given accuracy, not only per step)")
    parser.add_argument("--output", "-o", default="autobatch-plan.json", metavar="PATH",
                        help="plan JSON to write (default autobatch-plan.json)")
    parser.add_argument("--force", action="store_true",
                        help="ignore the cached plan and tune again from a fresh study")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    parser.add_argument("--no-xla", action="store_true", help="do not try jit_compile")
    parser.add_argument("--no-levers", action="store_true",
                        help="do not try mixed precision or rematerialisation")
    add_effective_batch_size(parser)
    parser.add_argument("--pixels", choices=("auto", "float32", "uint8"), default="auto",
                        help="dtype of the images in the pipeline: auto (default) uses uint8, "
                             "a quarter of the bytes, where the model casts its input itself; "
                             "float32 keeps Keras' exact pixel values")
    add_max_pixels(parser)
    add_device_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the plan JSON")
    parser.add_argument("--report", metavar="PATH",
                        help="also write the HTML report (and its PNG plots) here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import autobatch

    # Cheap checks first so that a typo costs no probe: the folder, then what the model
    # needs of it; autobatch.tune checks the options before any work.
    chosen = chosen_data(args)
    require_model(args.model)
    require_image_size(args.model, args.image_size)
    args.strategy_spec = chosen_strategy(args)
    from autobatch._plan._output import PlanOutputError

    try:
        plan = _tune(autobatch, args, chosen)
    except PlanOutputError as exc:
        if exc.kept_at is None:
            # Kept nowhere else: the tune's result goes to stdout before the one-line error.
            print_json(exc.plan.to_dict())
        raise
    report_files = None
    if args.report:
        from autobatch._report import write_report

        report_files = write_report(plan, args.report)
    if args.json:
        print_json(plan.to_dict())
        return 0
    console().print(summary_table(plan))
    if report_files is not None:
        console().print(f"report: {report_files.html}")
    return 0


def _tune(autobatch: Any, args: argparse.Namespace, chosen: ChosenData) -> Any:
    return autobatch.tune(
        args.model,
        chosen.load(),
        parse=chosen.parse,
        augment=chosen.augment,
        num_examples=args.num_examples,
        image_size=args.image_size,
        channels=args.channels,
        memory_budget=args.memory_budget,
        time_budget=args.time_budget,
        trials=args.trials,
        storage=args.storage,
        output=args.output,
        force=args.force,
        seed=args.seed,
        try_xla=not args.no_xla,
        try_levers=not args.no_levers,
        pixels=args.pixels,
        max_pixels=chosen.max_pixels,
        strategy=args.strategy_spec,
        data_service=args.data_service,
        objective=args.objective,
        effective_batch_size=args.effective_batch_size,
        verbose=0 if args.json else "auto",
    )


def require_model(model: str) -> None:
    """A model file that is no ``.keras`` model (missing, a folder, a text file, another
    extension): the library's one check (``check_model_file``), before TensorFlow starts."""
    from autobatch._models._files import check_model_file

    check_model_file(model)


def require_image_size(model: Any, image_size: Any) -> None:
    """A built-in model SPEC has no input size of its own: ``--image-size`` is required.

    The library's own check (the one that tune, fit and probe make later), made before
    anything is imported or read.
    """
    from autobatch._models import builtin_image_size, is_builtin

    if is_builtin(model):
        builtin_image_size(model, image_size)


def summary_table(plan: Any) -> Any:
    """The closing table: the choice, its speed, its memory, and the untuned default."""
    from rich.table import Table

    from autobatch._sizes import format_bytes

    title = "autobatch tune" + (" (cached plan)" if plan.cache_hit else "")
    table = Table(title=title, title_justify="left", show_header=True)
    table.add_column("")
    table.add_column("tuned", justify="right")
    table.add_column("untuned default", justify="right")
    base = plan.baseline or {}
    measured = plan.measured
    settings = plan.pipeline
    table.add_row("batch size", str(plan.batch_size), str(base.get("batch_size", "-")))
    if plan.num_replicas > 1:
        table.add_row("per replica", f"{plan.per_replica_batch_size} x {plan.num_replicas} "
                      "replicas", str(base.get("per_replica_batch_size", "-")))
    table.add_row("steps per epoch", f"{plan.steps_per_epoch} ({plan.num_examples} examples)", "")
    table.add_row(
        "pipeline",
        describe_pipeline(settings, plan.jit_compile),
        "AUTOTUNE",
    )
    speed = measured.get("examples_per_s")
    base_speed = base.get("examples_per_s")
    table.add_row("examples/s", f"{speed:.1f}" if speed else "-",
                  f"{base_speed:.1f}" if base_speed else "-")
    budget = measured.get("memory_budget_bytes")
    peak = measured.get("peak_memory_bytes")
    table.add_row("peak memory", f"{format_bytes(peak)} of {format_bytes(budget)}",
                  format_bytes(base.get("peak_memory_bytes")))
    table.add_row("ceiling batch (verified)", str(plan.ceiling_batch_size) + (
        f" ({plan.ceiling_batch_size // plan.num_replicas} per replica)"
        if plan.num_replicas > 1 else ""), "")
    versus = plan.versus_default
    if versus is not None and versus.get("decision") == "default":
        # Never a slowdown as the result: the plan is the default itself.
        table.add_row("speed-up", "kept the default", "1.00x")
    elif versus is not None and versus.get("median_ratio"):
        table.add_row("speed-up", f"{versus['median_ratio']:.2f}x "
                      f"({versus['low']:.2f}-{versus['high']:.2f}x, {versus['rounds']} rounds)",
                      "1.00x")
    elif plan.speedup_over_baseline:
        table.add_row("speed-up", f"{plan.speedup_over_baseline:.2f}x", "1.00x")
    notes = [f"plan: {plan.path}"] if plan.path else []
    if versus is not None and versus.get("reason"):
        notes.append(("kept the untuned default: " if versus.get("decision") == "default"
                      else "") + str(versus["reason"]))
    if notes:
        table.caption = "\n".join(notes)
    return table

