"""Presentation helpers shared by the sub-commands."""

from __future__ import annotations

import json
import sys
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
