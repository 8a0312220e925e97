"""The SQLite store's file: checked before any write, opened private, watched, backed up.

:func:`check_file` reads the file without writing to it: its header, its
schema version and ``PRAGMA quick_check``. Only a file that fails them is
called damaged; a full disk, a read-only file system or a permission is named
as such (:mod:`gatewayd.store.faults`). :func:`open_file` then opens it for
writing, in WAL mode with ``synchronous=FULL``, and migrates its schema.

:class:`FileWatch` notices, at each sweep, that the store file or its WAL was
deleted or replaced under the running daemon: SQLite would then lose what it
writes next, so writes stop (the caller halts its writer after a rescue).
:func:`backup` makes a consistent copy of a store in use, through SQLite's
backup API.

Everything here blocks: call it from a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.request import pathname2url

from gatewayd.errors import Conflict, StoreCorrupt, StoreError, StoreReplaced, StoreTooNew
from gatewayd.store.faults import as_store_error, damaged
from gatewayd.store.schema import MIGRATIONS, SCHEMA_VERSION

HEADER = b"SQLite format 3\x00"
# The most problems of a damaged file named in its message.
PROBLEMS_NAMED = 3
BUSY_TIMEOUT_MS = 5000


def wal_path(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def shm_path(path: Path) -> Path:
    return path.with_name(path.name + "-shm")


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that can never write to the store (SQLite may make its -shm)."""
    return sqlite3.connect(
        f"file:{pathname2url(str(path))}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class FileReport:
    """What :func:`check_file` found in a store that passed."""

    path: Path
    exists: bool
    version: int
    size: int


def check_file(path: Path) -> FileReport:
    """Check the store at ``path`` without writing to it; raise what is wrong with it.

    :class:`StoreCorrupt` for a file that is damaged or not a gatewayd store,
    :class:`StoreTooNew` for one written by a newer gatewayd, and the fault of
    the disk or the files (:func:`gatewayd.store.faults.fault_of`) if it cannot be read.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        exists = path.exists()
        size = path.stat().st_size if exists else 0
        if exists and size:
            with path.open("rb") as handle:
                header = handle.read(len(HEADER))
            if header != HEADER:
                raise damaged(path, "it does not start with SQLite's header", maybe_foreign=True)
    except OSError as exc:
        raise as_store_error(exc, path, "checking it") from None
    if not exists or not size:
        return FileReport(path=path, exists=exists, version=0, size=0)
    try:
        conn = connect_read_only(path)
    except sqlite3.Error as exc:
        raise as_store_error(exc, path, "opening it to check it") from None
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreTooNew(
                f"the store {path} has schema version {version}, newer than this gatewayd "
                f"knows ({SCHEMA_VERSION}): it was written by a newer gatewayd. Nothing was "
                "changed; upgrade gatewayd to use it",
                data={"path": str(path), "version": version},
            )
        if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise StoreCorrupt(
                f"the file {path} is an SQLite database but not a gatewayd store; nothing "
                "was changed. Give gatewayd another --state-dir",
                data={"path": str(path)},
            )
        problems = [row[0] for row in conn.execute(f"PRAGMA quick_check({PROBLEMS_NAMED})")]
        if problems != ["ok"]:
            raise damaged(path, "quick_check: " + "; ".join(problems))
    except sqlite3.Error as exc:
        raise as_store_error(exc, path, "checking it") from None
    finally:
        conn.close()
    return FileReport(path=path, exists=True, version=version, size=size)


def make_private(path: Path) -> None:
    """Create the store file (0600) if missing; take others' access to its files away."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.close(fd)
    for file in (path, wal_path(path), shm_path(path)):
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(file.stat().st_mode)
            if mode & 0o077:
                file.chmod(mode & 0o700)


def connect(path: Path) -> sqlite3.Connection:
    """A connection that has opened the store's WAL already.

    SQLite opens a connection's WAL at its first read: one that first read after
    the WAL was deleted would make a new, empty one beside the WAL the others
    use. Reading at once binds every connection to the WAL the daemon opened.
    """
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return conn


def open_file(path: Path) -> sqlite3.Connection:
    """The writer's connection to a store that passed :func:`check_file`: WAL, migrated."""
    try:
        make_private(path)
        conn = connect(path)
    except (OSError, sqlite3.Error) as exc:
        raise as_store_error(exc, path, "opening it") from None
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"the store {path} cannot use WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        migrate(conn, path)
        make_private(path)
    except (OSError, sqlite3.Error) as exc:
        conn.close()
        raise as_store_error(exc, path, "opening it") from None
    except BaseException:
        conn.close()
        raise
    return conn


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to ``SCHEMA_VERSION``, one version per transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise StoreCorrupt(f"the file {path} is an SQLite database but not a gatewayd store")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")  # each version's steps all happen, or none
        try:
            for statement in MIGRATIONS[target - 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return (info.st_dev, info.st_ino)


class FileWatch:
    """The identities of the store file and its WAL, as this daemon opened them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._store = _identity(path)
        self._wal = _identity(wal_path(path))

    def replaced(self) -> StoreReplaced | None:
        """The fault if the store file or its WAL is not the one opened any more."""
        if _identity(self.path) != self._store:
            return StoreReplaced(
                f"the store file {self.path} was deleted or replaced while gatewayd ran; "
                "writes are stopped so that nothing more is lost",
                data={"path": str(self.path), "file": "store"},
            )
        wal = _identity(wal_path(self.path))
        if self._wal is None:
            self._wal = wal  # SQLite made it after the daemon opened the store
            return None
        if wal != self._wal:
            return StoreReplaced(
                f"the store's write-ahead log {wal_path(self.path)} was "
                f"{'deleted' if wal is None else 'replaced'} while gatewayd ran; writes are "
                "stopped so that nothing more is lost",
                data={"path": str(self.path), "file": "wal"},
            )
        return None


def rescue(conn: sqlite3.Connection, fault: StoreReplaced, path: Path) -> str:
    """Save what ``conn`` has written where a restart finds it; say what was done.

    A WAL that was deleted or replaced: its content, still open here, is copied
    into the store file (a checkpoint), and a file now at the WAL's path is moved
    aside so that the next start does not read it. A store file that was deleted
    or replaced: a complete copy of the store as this daemon sees it is written
    beside it.
    """
    if fault.data.get("file") == "wal":
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        foreign = wal_path(path)
        moved = ""
        if foreign.exists():
            aside = _unused(foreign.with_name(foreign.name + ".foreign"))
            foreign.rename(aside)
            moved = f"; the file found at its place was moved to {aside}"
        return (
            f"every record up to now is saved in {path}{moved}. Restart gatewayd to go on "
            "writing (runs still going are re-adopted)"
        )
    target = _unused(path.with_name(path.name + ".rescued"))
    conn.execute("VACUUM INTO ?", (str(target),))
    return (
        f"every record up to now is saved in {target}. Stop gatewayd, put that file in place "
        f"of {path} (and remove {path}-wal and {path}-shm), then start gatewayd again"
    )


def _unused(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate


def backup(source: Path, dest: Path) -> FileReport:
    """A consistent copy of the store ``source`` at ``dest``, made while it may be in use.

    The copy is written beside ``dest`` and moved into place once it is complete
    and checked; ``dest`` must not exist.
    """
    check_file(source)
    if dest.exists():
        raise Conflict(f"{dest} exists; give a new file to back up into", data={"path": str(dest)})
    partial = dest.with_name(dest.name + ".partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        os.close(fd)
        src = connect_read_only(source)
        try:
            out = sqlite3.connect(partial)
            try:
                src.backup(out)
                out.execute("PRAGMA journal_mode = DELETE")
            finally:
                out.close()
        finally:
            src.close()
        report = check_file(partial)
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        partial.rename(dest)
    except (OSError, sqlite3.Error) as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise as_store_error(exc, dest, "writing the backup") from None
    return FileReport(path=dest, exists=True, version=report.version, size=report.size)
