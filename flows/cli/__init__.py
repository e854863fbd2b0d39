"""The ``dataworth`` command line: thin commands over the stages (:mod:`flows.pipeline`,
:mod:`flows.ingest`, :mod:`flows.checkpoint`, :mod:`ledger`).

Only typer is imported to parse: ``--help`` and usage errors never load torch or Prefect. An
expected failure (:class:`~valuation.errors.DataworthError`) prints one line and exits 2; a usage
error prints click's usage message and exits 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

from flows.cli.root import app


def main() -> None:
    from flows.cli.context import environment
    from flows.cli.output import say

    environment()
    try:
        app(prog_name="dataworth")
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        from valuation.errors import DataworthError

        if not isinstance(exc, DataworthError):
            raise
        say(f"error: {one_line(exc)}", stderr=True)
        sys.exit(2)


def one_line(exc: Exception) -> str:
    """The failure in one line: bad input names its first file/row/field and how many more there are."""
    issues = getattr(exc, "issues", None)
    if issues:
        more = f" (and {len(issues) - 1} more problem(s))" if len(issues) > 1 else ""
        return f"{issues[0]}{more}; nothing was stored"
    text = str(exc).strip()
    return " ".join(text.split()) if text else type(exc).__name__


__all__ = ["app", "main"]
