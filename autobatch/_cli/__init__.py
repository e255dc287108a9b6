"""The ``autobatch`` command line: argument parsing and presentation over the public API.

Each sub-command lives in its own module with ``register(subparsers)``; a module imports
what it needs (TensorFlow included) only inside its ``run`` function, so ``--help``,
``env`` and ``audit`` stay TensorFlow-free.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from autobatch import AutobatchError, __version__
from autobatch._cli._common import shown

_SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None
"""What ``signal.signal`` returns and takes back."""

# Sub-command modules, in the order --help lists them.
_COMMANDS = ("env", "audit", "probe", "tune", "fit", "report", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autobatch",
        description=(
            "Measure this machine's limits, audit an image folder, and tune the batch size "
            "and tf.data pipeline for a Keras model with isolated dry-run probes."
        ),
    )
    parser.add_argument("--version", action="version", version=f"autobatch {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    from importlib import import_module

    for name in _COMMANDS:
        try:
            module = import_module(f"autobatch._cli._{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"autobatch._cli._{name}":
                raise
            continue  # command not built yet
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 failure or finding, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose == 0:
        # TensorFlow's C++ start-up lines (CUDA stubs, absl) stay off the terminal; the
        # probe workers inherit the log level. --verbose shows them all.
        from autobatch._quiet import quiet_tensorflow

        quiet_tensorflow()
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    previous = _on_sigterm_raise()
    try:
        return int(args.func(args) or 0)
    except AutobatchError as exc:
        message = _cli_message(exc)
        print(f"autobatch {args.command}: error: {message}", file=sys.stderr)
        return exc.exit_code
    except Terminated:
        resumes = "; a rerun resumes" if args.command == "tune" else ""
        print(f"autobatch {args.command}: terminated (SIGTERM){resumes}", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"autobatch {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


# Python parameter -> CLI flag where the flag is not ``--`` + the name with dashes.
FLAG_FOR_PARAMETER: dict[str, str] = {
    "data": "DATA", "model": "--model",
    "custom_objects_module": "--custom-objects", "try_xla": "--no-xla", "try_levers": "--no-levers",
}


def flag_for(parameter: str) -> str:
    """The CLI flag a Python parameter is given by (``time_budget`` -> ``--time-budget``)."""
    return FLAG_FOR_PARAMETER.get(parameter, "--" + parameter.replace("_", "-"))


def _cli_message(exc: AutobatchError) -> str:
    """One line; a message about a parameter names the CLI flag instead (the CLI translates)."""
    text = exc.render(flag_for) if hasattr(exc, "template") else str(exc)
    text = text.strip()
    # A path or name quoted in the message cannot break the line or drive the terminal.
    return shown(text, markup=False) if text else type(exc).__name__


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every clean-up on the interrupt path runs (the
    running trial is told failed, workers and temporary folders are removed)."""


def _raise_terminated(signum: int, frame: object) -> None:
    # A second SIGTERM must not interrupt the clean-up this one starts.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


def _on_sigterm_raise() -> _SignalHandler:
    """Route SIGTERM to ``Terminated`` while a command runs (main thread only)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)
