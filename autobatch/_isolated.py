"""Python child processes that never import from the caller's current folder.

``python -m MODULE`` puts the current folder first on the child's ``sys.path``: a ``numpy.py``
lying there would run inside the probe worker and the ``audit --deep`` decoders. So children
start as ``python -I -c BOOTSTRAP`` (isolated: no current folder, no ``PYTHON*`` variables,
no user site), and the bootstrap sets ``sys.path`` to the caller's import path before it runs
the module with ``runpy``:

* the caller's ``sys.path`` entries, absolute, except those that mean "the current folder"
  (``''`` as ``python -c`` or a REPL put it, or a relative ``.``). The folder of the user's
  script (``python train.py`` puts it first, absolute) is kept, so a ``mylayers.py`` beside
  ``train.py`` stays importable;
* then, last, the folder that makes each named module importable (``extra_modules``) when the
  path above does not find it: the user's own module imported through ``''`` (a notebook, a
  REPL) or named on the command line from the current folder. Last, so it can never shadow an
  installed package.

The venv's site-packages and the ``.pth`` files there (an editable install) are processed by
``site`` as usual under ``-I``; the user site folder (off under ``-I``) is added back when the
caller had it. No TensorFlow here.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from importlib.machinery import PathFinder
from pathlib import Path

BOOTSTRAP = (
    "import json, runpy, site, sys\n"
    "spec = json.loads(sys.argv[1])\n"
    "for folder in spec['site_dirs']:\n"
    "    site.addsitedir(folder)\n"
    "sys.path[:] = spec['path']\n"
    "sys.argv = [spec['module'], *sys.argv[2:]]\n"
    "runpy.run_module(spec['module'], run_name='__main__', alter_sys=True)\n"
)


def import_path(extra_modules: Iterable[str] = (), *, cwd: str | None = None) -> list[str]:
    """The ``sys.path`` a child gets: the caller's, without the current-folder entries, and
    the folders of ``extra_modules`` it would not find otherwise, appended."""
    here = os.path.abspath(cwd or os.getcwd())
    path: list[str] = []
    for entry in sys.path:
        if not isinstance(entry, str) or not entry:
            continue
        if not os.path.isabs(entry):
            absolute = os.path.abspath(os.path.join(here, entry))
            if absolute == here:
                continue  # "." and the like: the current folder by another name
            entry = absolute
        if entry not in path:
            path.append(entry)
    for name in extra_modules:
        root = module_root(name, path, cwd=here)
        if root is not None and root not in path:
            path.append(root)
    return path


def module_root(name: str, path: list[str], *, cwd: str) -> str | None:
    """The folder to add to ``path`` so that ``import name`` works in a child, or None when
    ``path`` finds it already (or nothing does: the child then says it cannot import it).

    Looked up without importing anything: the loaded module's file, else the current folder
    (a module named on the command line, as ``python -m`` would find it there).
    """
    top = name.split(".")[0]
    if not top or top in sys.builtin_module_names:
        return None
    if PathFinder.find_spec(top, path) is not None:
        return None
    module = sys.modules.get(name)
    file = getattr(module, "__file__", None)
    if file:
        folder = Path(file).resolve().parent
        levels = name.count(".") + (1 if Path(file).stem == "__init__" else 0)
        for _ in range(levels):
            folder = folder.parent
        return str(folder)
    if PathFinder.find_spec(top, [cwd]) is not None:
        return cwd
    return None


def python_command(module: str, args: Iterable[str] = (), *,
                   extra_modules: Iterable[str] = ()) -> list[str]:
    """``[python, -I, -c, BOOTSTRAP, SPEC, *args]``: runs ``module`` as ``__main__`` with
    the caller's import path (see the module docstring) and ``sys.argv[1:] == args``."""
    import site

    site_dirs: list[str] = []
    user_site = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if user_site and user_site in sys.path and os.path.isdir(user_site):
        site_dirs.append(user_site)
    spec = {"module": module, "path": import_path(extra_modules), "site_dirs": site_dirs}
    return [sys.executable, "-I", "-c", BOOTSTRAP, json.dumps(spec), *args]
