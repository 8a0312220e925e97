"""The PostgreSQL server the tests use: ``$GATEWAYD_TEST_POSTGRES`` (default ``postgresql:///test``).

Each store a test opens gets a fresh schema in that database; every schema a
session made is dropped at its end. Without a server, the PostgreSQL cases are
skipped, and the run's last lines say so; with ``CI`` set, a missing server
fails the run.
"""

from __future__ import annotations

import functools
import itertools
import os

import psycopg
from gatewayd.store.location import StoreLocation, parse_location
from psycopg import sql

URL = os.environ.get("GATEWAYD_TEST_POSTGRES", "postgresql:///test")
HOW = (
    "start PostgreSQL (see DEVELOPERS.md: pg_ctlcluster --skip-systemctl-redirect "
    "$(ls /etc/postgresql) main start), or point GATEWAYD_TEST_POSTGRES at a database"
)
_made: list[str] = []
_names = itertools.count(1)


@functools.cache
def missing() -> str | None:
    """Why the server cannot be used, or ``None`` if it can."""
    try:
        with psycopg.connect(URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"{parse_location(URL).shown} does not answer ({str(exc).strip().splitlines()[0]})"
    return None


def fresh_location() -> StoreLocation:
    """A schema no test has used, in the test database (created when a store opens it)."""
    schema = f"gwtest_{os.getpid()}_{next(_names)}"
    _made.append(schema)
    return parse_location(URL, schema=schema)


def drop_schemas() -> None:
    """Drop every schema this session made."""
    if not _made or missing() is not None:
        return
    with psycopg.connect(URL, autocommit=True) as conn:
        for schema in _made:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    _made.clear()
