"""Paginated tables: Dash ``DataTable`` with server-side pages (``page_action="custom"``).

A table is named by a loader in :data:`LOADERS`; its component id carries the loader's arguments.
The layout holds the first page; one pattern-matching callback reads whichever page the user opens
next with ``LIMIT/OFFSET``.
Cells are plain text (the table escapes them); links are markdown cells whose label is fixed and
whose URL is percent-encoded, so no id or text from the ledger is ever read as markup.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from urllib.parse import urlencode

from dash import MATCH, Input, Output, State, callback, dash_table
from sqlalchemy import Engine

from flows.dashboard import queries
from flows.dashboard.cells import cell

Loader = Callable[[Engine, dict, int, int], list[dict]]
LOADERS: dict[str, Loader] = {}
_ENGINE: dict[str, Engine] = {}


def bind(engine: Engine) -> None:
    """The ledger the tables of this process read."""
    _ENGINE["engine"] = engine


def engine() -> Engine:
    return _ENGINE["engine"]


def loader(name: str):
    def register(fn: Loader) -> Loader:
        LOADERS[name] = fn
        return fn

    return register


def link(label: str, path: str, **params: str) -> str:
    """A markdown link with a fixed label; the URL's query string is percent-encoded."""
    return f"[{label}]({path}?{urlencode(params)})"


def rows_of(rows: list[dict]) -> list[dict]:
    return [{k: cell(v) for k, v in r.items()} for r in rows]


def _columns(columns: list[str], links: tuple[str, ...]) -> list[dict]:
    return [{"name": c, "id": c, "presentation": "markdown"} if c in links else {"name": c, "id": c} for c in columns]


_STYLE = {
    "style_table": {"overflowX": "auto"},
    "style_cell": {
        "textAlign": "left",
        "fontFamily": "system-ui, sans-serif",
        "fontSize": "13px",
        "padding": "4px 8px",
        "whiteSpace": "normal",
        "height": "auto",
        "maxWidth": "480px",
    },
    "style_header": {"fontWeight": "600", "backgroundColor": "#f1f5f9"},
    "markdown_options": {"html": False, "link_target": "_self"},
}


def paged_table(
    name: str, args: dict, columns: list[str], total: int, links: tuple[str, ...] = (), first: list[dict] | None = None
):
    """A table whose pages the :data:`LOADERS` entry ``name`` reads on demand (``total`` rows in all).

    ``first``: its first page when the caller has read it already.
    """
    return dash_table.DataTable(
        id={"type": "paged", "name": name, "args": json.dumps(args, sort_keys=True)},
        columns=_columns(columns, links),
        data=rows_of(first if first is not None else LOADERS[name](engine(), args, 0, queries.PAGE_SIZE)),
        page_action="custom",
        page_current=0,
        page_size=queries.PAGE_SIZE,
        page_count=max(1, math.ceil(total / queries.PAGE_SIZE)),
        **_STYLE,
    )


def static_table(table_id: str, rows: list[dict], columns: list[str], links: tuple[str, ...] = ()):
    """A short table held in the page; the browser pages it (``page_action="native"``)."""
    return dash_table.DataTable(
        id=table_id,
        columns=_columns(columns, links),
        data=[{c: r.get(c, "") for c in columns} for r in rows_of(rows)],
        page_action="native",
        page_size=queries.PAGE_SIZE,
        **_STYLE,
    )


@callback(
    Output({"type": "paged", "name": MATCH, "args": MATCH}, "data"),
    Input({"type": "paged", "name": MATCH, "args": MATCH}, "page_current"),
    State({"type": "paged", "name": MATCH, "args": MATCH}, "id"),
    prevent_initial_call=True,
)
def _load_page(page: int | None, table_id: dict) -> list[dict]:
    size = queries.PAGE_SIZE
    rows = LOADERS[table_id["name"]](engine(), json.loads(table_id["args"]), (page or 0) * size, size)
    return rows_of(rows)
