"""Presentation helpers shared by the sub-commands."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Any

from rich.console import Console

_stdout: Console | None = None
_stderr: Console | None = None


def console() -> Console:
    global _stdout
    if _stdout is None:
        _stdout = Console(highlight=False)
    return _stdout


def err_console() -> Console:
    global _stderr
    if _stderr is None:
        _stderr = Console(stderr=True, highlight=False)
    return _stderr


# C0 and C1 controls (newline, ESC, BEL, CR, backspace, DEL ...), the Unicode line and paragraph
# separators, and the bidirectional overrides/isolates (which reorder what follows them).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: object, *, markup: bool = True) -> str:
    """A user-supplied string (a path, a class name, a message quoting one) made safe for one
    terminal line: control characters become visible escapes (``\\n``, ``\\x1b``), so a file
    name can neither break the line nor colour or move the terminal; with ``markup`` (for
    rich's ``print``), ``[`` is escaped too, so a name is never read as rich markup. Every CLI
    line that prints a user path goes through it."""
    safe = _CONTROL.sub(_escape_one, str(text))
    if not markup:
        return safe
    from rich.markup import escape

    return escape(safe)


def add_data_arguments(parser: Any) -> None:
    """DATA_DIR, or ``--dataset MODULE:FUNCTION`` (a ``tf.data.Dataset``) instead of it."""
    parser.add_argument("data_dir", metavar="DATA_DIR", nargs="?",
                        help="image folder, one sub-folder per class")
    parser.add_argument("--dataset", metavar="MODULE:FUNCTION",
                        help="instead of DATA_DIR: a function returning a tf.data.Dataset of "
                             "unbatched (image, label) pairs (MODULE is imported from the "
                             "current folder or PYTHONPATH)")
    parser.add_argument("--parse", metavar="MODULE:FUNCTION",
                        help="with DATA_DIR a folder (or quoted glob) of TFRecord shards: the "
                             "function that turns one serialized record into (image, label)")
    parser.add_argument("--num-examples", type=int, metavar="N",
                        help="examples per epoch of a --dataset whose length is unknown or "
                             "infinite (or of --parse shards, to skip their count)")
    parser.add_argument("--augment", metavar="MODULE:FUNCTION",
                        help="augment each image after the cache with this function (of one "
                             "image, or of image and seed)")
    folder = parser.add_argument_group(
        "image folder options (as keras.utils.image_dataset_from_directory means them)")
    folder.add_argument("--class-names", metavar="A,B,...",
                        help="the classes to use, in label order (default: every sub-folder)")
    folder.add_argument("--color-mode", choices=("grayscale", "rgb", "rgba"),
                        help="the images' channels (default: the model's)")
    folder.add_argument("--interpolation", metavar="METHOD",
                        help="resize method: bilinear (default), nearest, bicubic, area, "
                             "lanczos3, lanczos5, gaussian, mitchellcubic")
    folder.add_argument("--crop-to-aspect-ratio", action="store_true",
                        help="crop the centre to the target aspect ratio before resizing")
    folder.add_argument("--pad-to-aspect-ratio", action="store_true",
                        help="pad to the target aspect ratio before resizing")


@dataclass(frozen=True)
class ChosenData:
    """What the command trains on, as the library takes it (checked, not read yet)."""

    data: Any
    """DATA_DIR (a folder, or TFRecord shards with ``parse``) or ``--dataset``'s spec."""
    parse: Any = None
    max_pixels: int | None = None
    """For the library to check (and refuse where no folder is given)."""
    augment: Any = None
    folder: dict[str, Any] | None = None
    """``image_folder``'s keyword arguments when ``data`` is an image folder."""

    @property
    def is_folder(self) -> bool:
        return self.folder is not None

    def load(self) -> Any:
        """The data to pass on: an image folder indexed (audited) once, here, so that the
        command and the library share that one pass; other data as given."""
        if self.folder is None:
            return self.data
        import autobatch

        return autobatch.image_folder(self.data, **self.folder)


def chosen_data(args: Any) -> ChosenData:
    """DATA_DIR (a folder, read with the folder options; with ``--parse``, a folder or glob
    of TFRecord shards) or ``--dataset``, exactly one; with ``--augment``'s function.

    The module ``--dataset``, ``--parse`` or ``--augment`` names is found in the current
    folder too: that folder joins the end of the import path (and so the probe worker's),
    where it can never shadow an installed package."""
    from autobatch._data._userland import import_function
    from autobatch._errors import UsageError

    if (args.data_dir is None) == (args.dataset is None):
        raise UsageError("give DATA_DIR or --dataset MODULE:FUNCTION (one of the two)")
    named = [flag for flag, value in (("--dataset", args.dataset), ("--parse", args.parse),
                                      ("--augment", args.augment)) if value is not None]
    if named:
        from autobatch._framework import require_tensorflow

        require_tensorflow(named[0])
    augment = None
    if args.augment is not None:
        _importable_spec(args.augment, "--augment")
        augment = import_function(args.augment, what="augment function")
    folder_flags = [flag for flag, value in _folder_options(args).items() if value]
    if args.dataset is not None or args.parse is not None:
        if folder_flags:
            raise UsageError(f"--{folder_flags[0].replace('_', '-')} applies to an image "
                             "folder; remove it")
    if args.dataset is not None:
        if args.parse is not None:
            raise UsageError("--parse applies to TFRecord shards given as DATA_DIR; remove it")
        _importable_spec(args.dataset, "--dataset")
        return ChosenData(str(args.dataset), augment=augment, max_pixels=args.max_pixels)
    if args.parse is not None:
        _importable_spec(args.parse, "--parse")
        return ChosenData(str(args.data_dir), import_function(args.parse, what="parse function"),
                          max_pixels=args.max_pixels, augment=augment)
    if args.num_examples is not None:
        raise UsageError("--num-examples applies to --dataset and --parse only; remove it")
    from autobatch._data._folder import check_folder

    check_folder(args.data_dir)
    options = _folder_options(args)
    folder = {**options, "max_pixels": args.max_pixels,
              "class_names": options["class_names"].split(",") if options["class_names"]
              else None, "interpolation": options["interpolation"] or "bilinear"}
    return ChosenData(str(args.data_dir), augment=augment, folder=folder)


def _folder_options(args: Any) -> dict[str, Any]:
    return {name: getattr(args, name, None) for name in (
        "class_names", "color_mode", "interpolation", "crop_to_aspect_ratio",
        "pad_to_aspect_ratio")}


def _importable_spec(spec: str, flag: str) -> None:
    import os

    from autobatch._data._userland import FACTORY_PATTERN
    from autobatch._errors import UsageError

    if not FACTORY_PATTERN.fullmatch(spec):
        raise UsageError(f"{flag} must be MODULE:FUNCTION, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # last: it can never shadow an installed package


def add_max_pixels(parser: Any) -> None:
    """``--max-pixels N``, the audit's pixel limit, for every command that indexes a folder."""
    parser.add_argument("--max-pixels", type=int, default=None, metavar="N",
                        help="skip images over N pixels (width x height, from the header) as "
                             "too_many_pixels, never decoding them (default 178956970, twice "
                             "Pillow's decompression-bomb limit)")


def add_effective_batch_size(parser: Any) -> None:
    """``--effective-batch-size N``, for tune and fit."""
    parser.add_argument("--effective-batch-size", type=int, metavar="N", default=None,
                        help="examples per weight update: where memory caps the batch below "
                             "N, gradients are accumulated over micro-batches (the learning "
                             "rate scaled to N); not under --strategy")


def print_json(data: Any) -> None:
    """Machine-readable output: plain JSON on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def describe_pipeline(settings: Any, jit_compile: bool = False) -> str:
    """One line of tf.data settings (a ``PipelineSettings``) and the XLA choice."""
    return (f"parallel calls {settings.num_parallel_calls}, prefetch {settings.prefetch}, "
            f"cache {settings.cache}, threads {settings.private_threadpool_size or 'shared'}, "
            f"intra-op {settings.max_intra_op_parallelism}, shuffle buffer "
            f"{settings.shuffle_buffer or 'full'}, "
            f"{'deterministic' if settings.deterministic else 'any order'}, "
            f"{settings.pixels} pixels{', XLA' if jit_compile else ''}")


def add_device_arguments(parser: Any) -> None:
    """``--strategy``, ``--logical-cpus`` and ``--data-service`` (tune and fit)."""
    from autobatch._distribute import STRATEGY_CHOICES

    group = parser.add_argument_group("several devices")
    group.add_argument("--strategy", choices=STRATEGY_CHOICES, default="none",
                       help="tf.distribute strategy: mirrored trains on every visible GPU "
                            "(without one, every logical CPU), auto does so where there are "
                            "several; the plan's batch is then global, split across them "
                            "(default none)")
    group.add_argument("--logical-cpus", type=int, metavar="N",
                       help="split the CPU into N logical devices first, to rehearse "
                            "data-parallel training on a machine without GPUs (as Keras' own "
                            "tests do); with --strategy mirrored or auto")
    group.add_argument("--data-service", metavar="grpc://HOST:PORT",
                       help="read, decode and resize on this tf.data service's workers "
                            "(distributed_epoch: each example once per epoch), for training "
                            "that waits on a saturated host; see the README for starting one")


def chosen_strategy(args: Any) -> Any:
    """The ``StrategySpec`` the flags ask for (None: one device); one-line errors."""
    from autobatch._distribute import resolve_strategy
    from autobatch._errors import UsageError

    if args.logical_cpus is not None and args.strategy == "none":
        raise UsageError("--logical-cpus N needs --strategy mirrored (or auto): logical CPUs "
                         "serve only as the replicas of a strategy")
    return resolve_strategy(args.strategy, logical_cpus=args.logical_cpus)
