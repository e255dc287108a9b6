"""Moved to ``autobatch._data`` (the ``Source`` protocol); names kept here for old imports."""

from autobatch._data import (
    ArraySource,
    FileSource,
    GeneratorSource,
    Source,
    check_learnable,
    resolve_source,
)

DataSource = Source

__all__ = ["ArraySource", "DataSource", "FileSource", "GeneratorSource", "check_learnable",
           "resolve_source"]
