"""The page's building blocks: escaping, tables, figures and the tagged plan number.

Every plan number on the page is written by ``num``: the formatted text for people, and
``data-key`` (its dotted path in the plan) plus ``data-value`` (the raw JSON value) for the
test that checks the page against the plan. Derived numbers (the speed-up) carry
``data-derived`` instead.
"""

from __future__ import annotations

import base64
import html
import json
from typing import Any

from autobatch._report._format import FORMATTERS, is_number, lookup


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def num(plan: dict[str, Any], key: str, kind: str = "value") -> str:
    """A plan number as shown, tagged with where it came from."""
    value = lookup(plan, key)
    text = FORMATTERS[kind](value)
    return (f'<span class="num" data-key="{esc(key)}" data-kind="{kind}" '
            f"data-value='{esc(json.dumps(value))}'>{esc(text)}</span>")


def table_rows(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{esc(label)}</th><td>{cell}</td></tr>" for label, cell in rows)
    return f"<table>{body}</table>"


def none_note(text: str) -> str:
    return f'<p class="none">{esc(text)}</p>'


def figure(png: bytes, alt: str, caption: str, plot_id: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img id="{plot_id}" alt="{esc(alt)}" '
            f'src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>")


def derived(name: str, value: float, text: str) -> str:
    return (f'<span class="num" data-derived="{esc(name)}" '
            f"data-value='{esc(json.dumps(value))}'>{esc(text)}</span>")


def budget_key(plan: dict[str, Any]) -> str:
    """The plan key of the one memory budget the page names (see ``memory_budget``)."""
    if is_number(lookup(plan, "measured.memory_budget_bytes")):
        return "measured.memory_budget_bytes"
    return "ceiling.budget_bytes"


def default_reference(plan: dict[str, Any]) -> str:
    if not is_number(lookup(plan, "baseline.batch_size")):
        return "the untuned default (AUTOTUNE)"
    return (f"the untuned default (batch {num(plan, 'baseline.batch_size', 'count')}, "
            "AUTOTUNE)")
