"""``autobatch fit``: train with the tuned plan and prove every usable image was trained on."""

from __future__ import annotations

import argparse
import sys
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
    err_console,
    shown,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "fit",
        help="train with the tuned plan; print a coverage line per epoch",
        usage=("%(prog)s DATA_DIR --model SPEC [--image-size N] [--epochs N] [options]\n"
               "       %(prog)s DATA_DIR --plan PLAN.json [--epochs N] [options]\n"
               "       (--image-size N is required when SPEC is a built-in model; a plan "
               "gives the model and its size)"),
        description=(
            "Tune (or reuse the cached plan / --plan), train with Keras' progress bar, and "
            "count inside the training step the images trained on each epoch, compared with "
            "the usable images the audit found. With --plan, the model SPEC and image size "
            "come from the plan unless given."
        ),
    )
    add_data_arguments(parser)
    parser.add_argument("--model", metavar="SPEC",
                        help="a .keras file or a built-in: small_cnn, mobilenet_v2, resnet50, "
                             "efficientnet_b0 (default with --plan: the plan's model)")
    parser.add_argument("--epochs", type=int, default=1, metavar="N", help="epochs (default 1)")
    parser.add_argument("--plan", metavar="PATH",
                        help="use this plan JSON instead of tuning (it names the model and "
                             "image size)")
    parser.add_argument("--validation-split", type=float, metavar="F",
                        help="hold out this fraction (0..1) for validation, split by class")
    parser.add_argument("--save", metavar="PATH", help="save the trained model (.keras)")
    parser.add_argument("--reference-batch-size", type=int, metavar="N",
                        help="batch size the compiled learning rate was chosen for (default 32)")
    parser.add_argument("--scale-lr", action="store_true",
                        help="apply the suggested learning-rate factor (linear for SGD, square "
                             "root for Adam-family); otherwise it is only reported")
    parser.add_argument("--seed", type=int, help="seed of the validation split and shuffle")
    parser.add_argument("--image-size", type=int, metavar="N",
                        help="input size of a built-in model: required for one, unless --plan "
                             "gives it (a .keras model's own size is used)")
    parser.add_argument("--time-budget", type=float, metavar="SECONDS",
                        help="tuning time limit when no plan is given or cached")
    parser.add_argument("--memory-budget", metavar="SIZE",
                        help="peak memory for tuning: 3GiB, 800MB or a fraction such as 0.8")
    add_effective_batch_size(parser)
    parser.add_argument("--objective", choices=("throughput", "goodput"), default=None,
                        help="what the tune maximises (see 'autobatch tune --help'); default "
                             "goodput with --adapt, else throughput")
    parser.add_argument("--adapt", action="store_true",
                        help="re-estimate the gradient noise scale while training and move "
                             "the batch between epochs among the plan's verified batch sizes "
                             "by goodput (the learning rate moves with it by the plan's rule)")
    parser.add_argument("--pixels", choices=("auto", "float32", "uint8"),
                        help="pixel dtype when tuning (see 'autobatch tune --help')")
    add_max_pixels(parser)
    parser.add_argument("--label-mode", choices=("int", "categorical", "binary"),
                        help="how class indices are fed (default: as the model's loss takes "
                             "them: one-hot for categorical_crossentropy)")
    add_device_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import autobatch
    from autobatch import UsageError

    if args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {args.epochs}")
    if args.save and not str(args.save).endswith(".keras"):
        raise UsageError(f"--save {args.save!r}: the model file name must end in .keras")
    if args.validation_split is not None and not 0.0 < args.validation_split < 1.0:
        raise UsageError(f"--validation-split must be between 0 and 1, got {args.validation_split}")

    from autobatch._cli._tune import require_image_size, require_model

    chosen = chosen_data(args)
    model, image_size, plan = _model_and_size(args)
    require_model(model)  # before the audit and before TensorFlow starts
    require_image_size(model, image_size)
    from autobatch._framework import require_tensorflow

    require_tensorflow("training")
    from autobatch._distribute import apply_device_setup

    args.strategy_spec = chosen_strategy(args)
    apply_device_setup(args.strategy_spec)  # logical devices exist only if set before TF starts

    out = console()
    data = chosen.load()
    if chosen.is_folder:  # indexed once: the summary is that audit's, fit reuses the index
        out.print(f"audit: {data.audit.summary_sentence()}")

    lines: list[str] = []

    def on_epoch(entry: Any) -> None:
        line = entry.line("images" if chosen.is_folder else "examples")
        lines.append(line)
        style = "green" if entry.complete else "bold red"
        out.print(f"[{style}]{line}[/]")

    progress = _ProgressLine()
    try:
        history = _fit(autobatch, args, chosen, data, model, image_size, plan, on_epoch,
                       progress.callback())
    finally:
        progress.close()  # an error (or Ctrl-C) mid-epoch starts on a line of its own
    used = history.plan
    lr = history.learning_rate
    steps = history.steps_per_epoch
    out.print(
        f"plan: batch size {used.batch_size}"
        + (f" ({used.per_replica_batch_size} per replica x {used.num_replicas})"
           if used.num_replicas > 1 else "")
        + f", {steps if steps is not None else '?'} steps per "
        f"epoch" + (f" ({shown(used.path)})" if used.path else "")
    )
    for move in (getattr(history, "adapt", None) or {}).get("moves", []):
        noise = move["noise_scale"]
        out.print(f"adapt: epoch {move['epoch']} on, batch {move['from']} -> {move['to']} "
                  f"(B_simple {f'{noise:.0f}' if noise is not None else 'unresolved'})")
    if lr["factor"] != 1.0 or lr["applied"]:
        verb = "applied" if lr["applied"] else "suggested (pass --scale-lr to apply)"
        out.print(
            f"learning rate: x{lr['factor']:.3g} for batch {lr['batch_size']} vs reference "
            f"{lr['reference_batch_size']} ({lr['rule']} rule, {lr['optimizer']}) {verb}"
        )
    if args.save:
        _save(history.model, args.save)
        out.print(f"model saved to {shown(args.save)}")
    if not history.coverage.complete:
        err_console().print(
            "[bold red]coverage: some epochs did not train on every usable image[/]")
        return 1
    return 0


def _fit(autobatch: Any, args: argparse.Namespace, chosen: ChosenData, data: Any,
         model: Any, image_size: Any, plan: Any, on_epoch: Any, progress: Any) -> Any:
    return autobatch.fit(
        model,
        data,
        parse=chosen.parse,
        augment=chosen.augment,
        label_mode=args.label_mode,
        num_examples=args.num_examples,
        callbacks=[progress],
        max_pixels=chosen.max_pixels,
        epochs=args.epochs,
        plan=plan,
        validation_split=args.validation_split,
        seed=args.seed,
        scale_lr=args.scale_lr,
        reference_batch_size=args.reference_batch_size,
        time_budget=args.time_budget,
        memory_budget=args.memory_budget,
        pixels=args.pixels,
        image_size=image_size,
        on_epoch=on_epoch,
        strategy=args.strategy_spec,
        data_service=args.data_service,
        effective_batch_size=args.effective_batch_size,
        objective=args.objective,
        adapt=args.adapt,
        verbose=1,
    )


def _model_and_size(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """``(model SPEC, image size, plan)``: the flags, else what ``--plan`` records."""
    from autobatch import Plan, UsageError

    if args.plan is None:
        if args.model is None:
            raise UsageError("give --model SPEC (or --plan PATH of a plan that names its model)")
        return args.model, args.image_size, None
    plan = Plan.load(args.plan)
    model = args.model
    if model is None:
        model = (plan.model or {}).get("spec")
        if not model:
            raise UsageError(
                f"the plan {args.plan} was tuned on a keras.Model in Python and names no model "
                "file; pass --model SPEC (a .keras file or a built-in)"
            )
    image_size = args.image_size
    if image_size is None and plan.image_size is not None:
        image_size = plan.image_size
    return model, image_size, plan


def _save(model: Any, path: str) -> None:
    from autobatch._atomic import atomic_target

    # Keras writes the zip in place: write beside the target and rename, so that a crash
    # never leaves a half-written model under the final name.
    with atomic_target(path, suffix=".keras") as tmp:
        model.save(tmp)


class _ProgressLine:
    """Whether Keras' progress bar has left the terminal mid-line (it rewrites one line with
    ``\r`` until the epoch ends), so that an error starts on a line of its own."""

    def __init__(self) -> None:
        self.open = False

    def callback(self) -> Any:
        import keras

        line = self

        class _Track(keras.callbacks.Callback):  # type: ignore[misc]
            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                line.open = True

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                line.open = False

        return _Track()

    def close(self) -> None:
        if self.open and sys.stdout.isatty():
            sys.stdout.write("\n")
            sys.stdout.flush()
        self.open = False
