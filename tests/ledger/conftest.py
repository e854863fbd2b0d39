"""Ledgers on a real SQLite file and on a real PostgreSQL server started here on 127.0.0.1."""

from __future__ import annotations

import itertools

import pytest

from ledger import open_ledger

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    pg = request.getfixturevalue("postgres")
    return pg.create_database(f"t{next(_names)}")


@pytest.fixture
def engine(db_url):
    engine = open_ledger(db_url)
    yield engine
    engine.dispose()
