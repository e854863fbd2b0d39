"""Small LanceDB helpers shared by the stores."""

from __future__ import annotations

import warnings
from datetime import timedelta
from pathlib import Path

import lancedb
import pyarrow as pa

from storage.objectstore import lance_storage_options


def connect(uri: str | Path, storage_options: dict | None = None):
    """A connection whose handles see other processes' writes at once."""
    uri = str(uri)
    if "://" not in uri:
        Path(uri).mkdir(parents=True, exist_ok=True)
    if storage_options is None:
        storage_options = lance_storage_options(uri)
    return lancedb.connect(uri, read_consistency_interval=timedelta(0), storage_options=storage_options)


def open_or_create(db, name: str, schema: pa.Schema, data_storage_version: str | None = None):
    """Open table ``name`` or create it empty with ``schema`` (and Lance file format version)."""
    try:
        return db.open_table(name)
    except (ValueError, FileNotFoundError):
        pass
    try:
        if data_storage_version is None:
            return db.create_table(name, schema=schema)
        with warnings.catch_warnings():  # lancedb 0.40 deprecates the argument; it still applies
            warnings.simplefilter("ignore", DeprecationWarning)
            return db.create_table(name, schema=schema, data_storage_version=data_storage_version)
    except (ValueError, OSError) as exc:  # created concurrently by another process
        if "already exists" in str(exc).lower():
            return db.open_table(name)
        raise


def sql_list(values) -> str:
    """``('a', 'b')`` for a SQL ``IN`` filter, quotes escaped."""
    items = []
    for v in values:
        if isinstance(v, str):
            items.append("'" + v.replace("'", "''") + "'")
        else:
            items.append(str(int(v)))
    return "(" + ", ".join(items) + ")"
