"""The plan's Optuna study: its storage URL and the optuna-dashboard command that opens it."""

from __future__ import annotations

import shlex
from typing import Any

from autobatch._report._format import lookup
from autobatch._report._markup import esc, none_note, num

DEFAULT_STORAGE_LABEL = "default (user cache SQLite)"
"""What plans written before the tune recorded its real URL hold for the default storage."""


def storage_url(storage: Any) -> str | None:
    """The Optuna storage URL a plan's ``study.storage`` stands for (None: no storage).

    The label of the default storage is this machine's default URL (the user cache's
    SQLite file); a journal (``journal:PATH``) is its file path, as optuna-dashboard takes
    one; another bare file path becomes an ``sqlite:///`` URL.
    """
    if not storage:
        return None
    text = str(storage).strip()
    if text.startswith("default"):
        from autobatch._search._study import default_storage_url

        return default_storage_url()
    from autobatch._search._storage import journal_path

    journal = journal_path(text)
    if journal is not None:
        # optuna-dashboard takes a file path as a journal file (and a URL as a database).
        return str(journal.expanduser().absolute())
    if "://" not in text:
        from pathlib import Path

        return f"sqlite:///{Path(text).expanduser().absolute()}"
    return text


def dashboard_command(storage: Any) -> str | None:
    """The shell command that opens the plan's study in optuna-dashboard, as it runs."""
    url = storage_url(storage)
    if url is None:
        return None
    # A password the tune redacted ("user:***@host") is for the reader to put back.
    url = url.replace(":***@", ":PASSWORD@")
    return f"optuna-dashboard {shlex.quote(url)}"


def study_section(plan: dict[str, Any]) -> str:
    storage = lookup(plan, "study.storage")
    command = dashboard_command(storage)
    if command is None:
        return none_note("The search kept no Optuna storage for this plan.")
    where = num(plan, "study.storage")
    if str(storage).startswith("default"):
        where = f"the default storage, {esc(storage_url(storage))} on this machine"
    note = ""
    if ":PASSWORD@" in command:
        note = " (put the database password in place of PASSWORD)"
    return (f"<p>Study {num(plan, 'study.study_name')} in {where}. "
            f"Browse every trial with{note}:</p>"
            f"<pre id=\"dashboard-command\">{esc(command)}</pre>"
            '<p class="sub">optuna-dashboard is a separate package: '
            "<code>pip install optuna-dashboard</code>.</p>")
