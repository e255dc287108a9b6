"""Keep TensorFlow's C++ start-up noise off the terminal (the CLI, unless ``--verbose``).

``TF_CPP_MIN_LOG_LEVEL=3`` silences TensorFlow's own C++ logging (the ``cuInit ... UNKNOWN
ERROR (303)`` line of a machine without a GPU driver), but a few lines are written while
the shared libraries load, before that variable is read: absl's "All log messages before
absl::InitializeLog() is called are written to STDERR" and the CUDA stub's "Could not find
cuda drivers". ``quiet_tensorflow()`` therefore also points file descriptor 2 at a
temporary file while ``tensorflow`` is first imported (wherever that happens, through an
import hook, so a command that never needs TensorFlow never pays for it) and writes back
whatever was not such a log line (a Python traceback, say).

The probe worker inherits the variable; its stderr goes to a log file anyway.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

# glog/absl lines: "I0000 00:00:1796230865.448927    5603 cudart_stub.cc:31] ...".
_CPP_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\]")
_ABSL_PREINIT = "All log messages before absl::InitializeLog() is called"


def is_startup_noise(line: str) -> bool:
    """True for a C++ log line TensorFlow writes while it loads."""
    return bool(_CPP_LOG_LINE.match(line)) or _ABSL_PREINIT in line


@contextlib.contextmanager
def _fd2_filtered() -> Iterator[None]:
    """Send fd 2 to a temporary file for the block; replay what is not start-up noise."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield  # no real fd 2 (embedded interpreter): nothing to filter
        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            kept = [ln for ln in text.splitlines() if not is_startup_noise(ln)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, finder: Any) -> None:
        self._loader = loader
        self._finder = finder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self._finder)  # imported now: the finder steps aside
        with _fd2_filtered():
            self._loader.exec_module(module)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self._loader, name)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Wraps the import of ``tensorflow`` in ``_fd2_filtered``. It stays in place until the
    import has run: a look-up without an import (``importlib.util.find_spec``, as the check
    that TensorFlow is installed makes) must not use it up."""

    def __init__(self) -> None:
        self._looking = False

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "tensorflow" or self._looking:
            return None
        self._looking = True  # the look-up below asks the finders again, this one included
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._looking = False
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _QuietLoader(spec.loader, self)
        return spec


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ logging in this process and the workers it starts.

    A ``TF_CPP_MIN_LOG_LEVEL`` already set is kept; the start-up lines go either way.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    if not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
