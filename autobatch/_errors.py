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


class AutobatchError(Exception):
    """Root of every error autobatch raises on purpose.

    Its message is one line: what is wrong and how to fix it.
    """

    exit_code = 1


class UsageError(AutobatchError, ValueError):
    """The caller passed something autobatch cannot use (exit code 2).

    A message about one argument names it as ``{param}``; ``parameter`` is the Python name.
    ``str(error)`` reads ``{param}`` as the Python name (what an API caller typed); the CLI
    renders it with the flag instead (``error.message_for("--time-budget")``).
    """

    exit_code = 2

    def __init__(self, message: str = "", *, parameter: str | None = None) -> None:
        self.template = message
        self.parameter = parameter
        super().__init__(self.message_for(parameter))

    def message_for(self, name: str | None) -> str:
        """The message with the argument called ``name`` (a parameter or a CLI flag)."""
        if self.parameter is None or "{param}" not in self.template:
            return self.template
        return self.template.replace("{param}", name or self.parameter)


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
