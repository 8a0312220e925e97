"""Connecting to the PostgreSQL store: its pool, its adapters, its schema's migrations.

Every connection's ``search_path`` is the cluster's schema, so that the SQL
names tables unqualified. JSON documents travel as the bytes orjson writes
(every ``bytes`` value the tables write is one), and ``jsonb`` is read back as
bytes, for orjson to read: the records decode exactly as the SQLite store's.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.adapt import Buffer, Dumper, Loader
from psycopg.pq import Format
from psycopg_pool import AsyncConnectionPool

from gatewayd.errors import StoreError, StoreTooNew, StoreUnreachable
from gatewayd.store.location import StoreLocation
from gatewayd.store.pgschema import MIGRATIONS, SCHEMA_VERSION

_JSONB = psycopg.postgres.types["jsonb"].oid
# The most connections one instance holds: its reads and writes at once.
POOL_MAX = 8
CONNECT_TIMEOUT_S = 10.0


class _JsonText(Dumper):
    oid = _JSONB

    def dump(self, obj: bytes) -> Buffer:
        return obj


class _JsonBinary(Dumper):
    oid = _JSONB
    format = Format.BINARY

    def dump(self, obj: bytes) -> Buffer:
        return b"\x01" + obj  # jsonb's binary format: its version, then the text


class _JsonBytes(Loader):
    def load(self, data: Buffer) -> bytes:
        return bytes(data)


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    conn.adapters.register_dumper(bytes, _JsonText)
    conn.adapters.register_dumper(bytes, _JsonBinary)
    conn.adapters.register_loader("jsonb", _JsonBytes)


def unreachable(location: StoreLocation, exc: BaseException, doing: str) -> StoreUnreachable:
    """The fault of a store that does not answer, named without its password."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StoreUnreachable(
        f"the store {location.shown} cannot be reached ({doing}): {detail}. Runs in progress "
        "go on; their endings are kept until it answers",
        data={"store": location.shown},
    )


def new_pool(
    location: StoreLocation, *, read_only: bool = False, max_size: int = POOL_MAX, name: str = ""
) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
    options = f"-c search_path={location.schema}"
    if read_only:
        options += " -c default_transaction_read_only=on"
    return AsyncConnectionPool(
        location.conninfo,
        min_size=1,
        max_size=max_size,
        open=False,
        kwargs={"options": options, "connect_timeout": int(CONNECT_TIMEOUT_S)},
        configure=_configure,
        name=f"gatewayd-{location.schema}{name}",
        # A failed reconnection is not retried in the background: the store's own
        # prober (pgaccess) asks for connections until the server answers.
        reconnect_timeout=0,
    )


async def check_version(conn: psycopg.AsyncConnection[Any], location: StoreLocation) -> None:
    """Raise unless the schema exists at this gatewayd's version (for a read-only store)."""
    name = f"{location.schema}.schema_version"
    cursor = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
    row = await cursor.fetchone()
    found = 0
    if row is not None and row[0]:
        cursor = await conn.execute(
            sql.SQL("SELECT version FROM {}.schema_version").format(sql.Identifier(location.schema))
        )
        got = await cursor.fetchone()
        found = 0 if got is None else int(got[0])
    await conn.rollback()
    if found != SCHEMA_VERSION:
        raise StoreError(
            f"the store {location.shown} (schema {location.schema}) has schema version {found}; "
            f"this gatewayd reads version {SCHEMA_VERSION}: start gatewayd on it once to "
            "create or migrate it",
            data={"store": location.shown, "version": found},
        )


async def migrate(conn: psycopg.AsyncConnection[Any], location: StoreLocation) -> int:
    """Create the schema if missing and bring it to ``SCHEMA_VERSION``; the version found.

    Each version's steps all happen, or none; instances starting together take
    turns by an advisory lock. :class:`StoreTooNew` if a newer gatewayd wrote it.
    """
    schema = sql.Identifier(location.schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (location.schema,))
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.schema_version (version integer NOT NULL)"
            ).format(schema)
        )
        cursor = await conn.execute(sql.SQL("SELECT version FROM {}.schema_version").format(schema))
        row = await cursor.fetchone()
        found = 0 if row is None else int(row[0])
        if found > SCHEMA_VERSION:
            raise StoreTooNew(
                f"the store {location.shown} (schema {location.schema}) has schema version "
                f"{found}, newer than this gatewayd knows ({SCHEMA_VERSION}): it was written "
                "by a newer gatewayd. Nothing was changed; upgrade gatewayd to use it",
                data={"store": location.shown, "version": found},
            )
        await conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(schema))
        for target in range(found + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target - 1]:
                await conn.execute(statement)
        if found == 0:
            await conn.execute(
                "INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,)
            )
        elif found < SCHEMA_VERSION:
            await conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION,))
    return found
