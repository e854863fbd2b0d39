"""How a value from the views is shown: exact decimals at 6 places, ISO days, JSON for structures."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal


def cell(value) -> str | int:
    """The text (or integer) a table cell shows for ``value``."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value:.6f}"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value if isinstance(value, int) else str(value)
