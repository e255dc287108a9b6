"""The exceptions autobatch raises, under one root.

    AutobatchError                 root; the CLI prints ``message`` on one line, exit 1
    ├── UsageError                 the caller asked for something invalid; exit 2
    │   ├── SizeParseError         a memory size that does not parse
    │   ├── DataError              a data path or data set that cannot be used
    │   └── ModelError             a model SPEC that cannot be resolved, saved or loaded
    ├── ProbeError                 the probe machinery itself failed (not the probed model)
    └── PlanError                  a plan file that cannot be read or does not match
"""

from __future__ import annotations

import re
from collections.abc import Callable

_NAMED = re.compile(r"\{p:([A-Za-z_][A-Za-z0-9_]*)\}")


class AutobatchError(Exception):
    """Root of every error autobatch raises on purpose.

    Its message is one line: what is wrong and how to fix it. A message about an argument
    names it as ``{param}`` (the one in ``parameter``) or ``{p:NAME}`` (any other): ``str()``
    reads the Python names (what an API caller typed), the CLI renders the flags instead
    (``error.render(flag_for)``), so each reader sees the names it can act on.
    """

    exit_code = 1

    def __init__(self, message: str = "", *, parameter: str | None = None) -> None:
        self.template = message
        self.parameter = parameter
        super().__init__(self.render(str))

    def render(self, name_of: Callable[[str], str]) -> str:
        """The message with every argument named by ``name_of(python_name)``."""
        text = self.template
        if self.parameter is not None:
            text = text.replace("{param}", name_of(self.parameter))
        return _NAMED.sub(lambda match: name_of(match.group(1)), text)

    def message_for(self, name: str | None) -> str:
        """The message with ``parameter`` called ``name`` (a parameter or a CLI flag)."""
        return self.render(lambda python_name: name if name is not None
                           and python_name == self.parameter else python_name)


class UsageError(AutobatchError, ValueError):
    """The caller passed something autobatch cannot use (exit code 2)."""

    exit_code = 2


class SizeParseError(UsageError):
    """A memory size string does not parse."""


class DataError(UsageError):
    """A data directory, array or generator cannot be used."""


class ModelError(UsageError):
    """A model SPEC cannot be resolved, serialised or loaded."""


class ProbeError(AutobatchError):
    """The probe machinery failed (for example the worker could not start)."""


class PlanError(AutobatchError):
    """A plan file is unreadable, of an unknown schema, or does not fit the data."""
