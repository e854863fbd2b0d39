"""What the CLI prints: tables on a terminal, CSV or JSON for programs; ids never read as markup."""

from __future__ import annotations

import csv
import io
import json
import sys
from decimal import Decimal

FORMATS = ("table", "csv", "json")


def console(stderr: bool = False):
    """A rich console; off a terminal it neither truncates nor wraps (a pipe gets whole lines)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(file=stream, highlight=False)
    return Console(file=stream, width=100_000, soft_wrap=True, highlight=False, color_system=None)


def say(message: str, stderr: bool = False) -> None:
    """A plain line (no markup: provider ids like ``acme[/]`` print as they are)."""
    console(stderr).print(message, markup=False, emoji=False)


def _json_value(v):
    if isinstance(v, Decimal):
        return str(v)  # exact: a decimal's text, never a binary float
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def print_rows(rows: list[dict], columns: list[str], fmt: str, title: str) -> None:
    """``rows`` in ``fmt``. JSON keeps one type per column: decimals (credits) as strings, counts
    as integers, scores as numbers, days as ISO strings."""
    if fmt not in FORMATS:
        from flows.errors import ConfigurationError

        raise ConfigurationError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if fmt == "json":
        print(json.dumps([{c: _json_value(r.get(c)) for c in columns} for r in rows], indent=2))
        return
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows({c: _json_value(r.get(c)) for c in columns} for r in rows)
        sys.stdout.write(buf.getvalue())
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title))
    numeric = {c for c in columns if rows and isinstance(rows[0].get(c), int | float | Decimal)}
    for c in columns:
        table.add_column(Text(c), justify="right" if c in numeric else "left", overflow="fold")
    for r in rows:
        table.add_row(*[Text(_cell(r.get(c))) for c in columns])
    console().print(table)


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(_json_value(v))
