"""Where autobatch keeps its files: the user cache folder (plans, tf.data disk caches, studies)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The user cache folder: ``$AUTOBATCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/autobatch``,
    else ``~/.cache/autobatch``."""
    explicit = os.environ.get("AUTOBATCH_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "autobatch"
