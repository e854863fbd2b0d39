"""Fixtures every package's tests share: a real PostgreSQL server on 127.0.0.1 for the session."""

from __future__ import annotations

import pytest

from infra.localpg import LocalPostgres


@pytest.fixture(scope="session")
def postgres():
    with LocalPostgres() as pg:
        yield pg
