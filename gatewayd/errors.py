"""The one error hierarchy of gatewayd.

Every error carries the JSON-RPC code the daemon answers with and the exit code
the CLI ends with, so that a failure means the same thing on both sides of the
socket. Messages name the thing that is wrong and the state it is in.
"""

from __future__ import annotations

from typing import Any, ClassVar

# CLI exit codes (DESIGN.md, "Exit codes"; 6 is gatewayd's addition).
EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_FOUND = 4
EXIT_CONFLICT = 5
EXIT_INTERNAL = 6
# A store that cannot be used, by cause (at start, and for refused writes later).
EXIT_STORE_DAMAGED = 7
EXIT_STORE_TOO_NEW = 8
EXIT_NO_SPACE = 9
EXIT_PERMISSION = 10
EXIT_READ_ONLY = 11
EXIT_IO_ERROR = 12

# JSON-RPC 2.0 codes. -32700..-32600 are the protocol's own; the rest are ours.
RPC_PARSE_ERROR = -32700
RPC_INVALID_REQUEST = -32600
RPC_METHOD_NOT_FOUND = -32601
RPC_INVALID_PARAMS = -32602
RPC_INTERNAL = -32603
RPC_NOT_FOUND = -32004
RPC_CONFLICT = -32009
RPC_UNAVAILABLE = -32010
RPC_STORE_UNWRITABLE = -32011
RPC_FORBIDDEN = -32003
RPC_BUSY = -32029


_BY_KIND: dict[str, type[GatewaydError]] = {}


class GatewaydError(Exception):
    """Base of every error gatewayd raises on purpose.

    ``kind`` names the error on the wire (``error.data.kind``): the client
    rebuilds the same class from it, so both sides exit with the same code.
    """

    rpc_code: ClassVar[int] = RPC_INTERNAL
    exit_code: ClassVar[int] = EXIT_INTERNAL
    kind: ClassVar[str] = "internal"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _BY_KIND.setdefault(cls.kind, cls)

    def __init__(self, message: str, *, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data or {}


class InvalidInput(GatewaydError):
    """A value given by a user or a script is not acceptable; nothing was changed."""

    rpc_code = RPC_INVALID_PARAMS
    exit_code = EXIT_USAGE
    kind = "invalid"


class ConfigError(InvalidInput):
    """The configuration file or an override is not acceptable."""

    kind = "config"


class ProtocolError(GatewaydError):
    """A frame on the socket is not a valid JSON-RPC 2.0 request."""

    rpc_code = RPC_INVALID_REQUEST
    exit_code = EXIT_USAGE
    kind = "protocol"


class ParseError(ProtocolError):
    """A frame is not valid JSON."""

    rpc_code = RPC_PARSE_ERROR


class FrameTooLarge(ProtocolError):
    """A frame is longer than the protocol allows."""


class MethodNotFound(ProtocolError):
    """The method named by a request does not exist."""

    rpc_code = RPC_METHOD_NOT_FOUND
    kind = "method"


class NotFound(GatewaydError):
    """A job, run or session that was named does not exist."""

    rpc_code = RPC_NOT_FOUND
    exit_code = EXIT_NOT_FOUND
    kind = "not_found"


class Conflict(GatewaydError):
    """The request clashes with the current state, such as a name that is taken."""

    rpc_code = RPC_CONFLICT
    exit_code = EXIT_CONFLICT
    kind = "conflict"


class NameTaken(Conflict):
    """Another job already has this name."""


class SlotTaken(Conflict):
    """A run already exists for this (job_id, scheduled_for) slot."""


class RunAlreadyEnded(Conflict):
    """The run has reached its terminal status and cannot change any more."""


class StaleDecision(Conflict):
    """A decision about a job's runs was made on state that has changed since.

    The store refuses the write (nothing of it is kept): the job's live runs or
    its next slot are not what the decision saw, because another instance (or
    task) decided first. The decider reads again and decides again.
    """


class LeaseLost(Conflict):
    """This instance's lease lapsed and another instance took over its runs.

    The store refuses every write such an instance makes about its runs (nothing
    of it is kept); the instance steps down.
    """


class ClaimLost(Conflict):
    """This instance's claim on a job's due slot lapsed, or another instance holds it.

    The store refuses the runs decided for the slot (nothing of them is kept):
    the slot is the claim holder's to fire. The timer looks at the job again.
    """


class LockBusy(Conflict):
    """Another instance held a lock shared by the store's instances (such as the one
    under which the config's jobs are reconciled) longer than this one waits."""

    @classmethod
    def waited(cls, lock: str, wait_s: float) -> LockBusy:
        return cls(
            f"another instance has held the lock {lock} for over {wait_s:g}s", data={"lock": lock}
        )


class StateDirLocked(Conflict):
    """Another gatewayd process holds the lock of this state directory."""


class SocketInUse(Conflict):
    """A daemon answers on the socket path this one was asked to listen on."""

    kind = "socket_in_use"


class DaemonUnreachable(GatewaydError):
    """The CLI could not reach a daemon on the socket."""

    rpc_code = RPC_UNAVAILABLE
    exit_code = EXIT_UNREACHABLE
    kind = "unreachable"


class TooManyConnections(DaemonUnreachable):
    """The daemon serves as many connections as it allows; this one was closed."""

    rpc_code = RPC_BUSY
    kind = "busy"


class PermissionDenied(GatewaydError):
    """The caller may not use this daemon (another user's socket)."""

    rpc_code = RPC_FORBIDDEN
    exit_code = EXIT_PERMISSION
    kind = "forbidden"


class StoreError(GatewaydError):
    """The store cannot be opened or used.

    ``passes``: whether the fault may end by itself (space freed, a disk back),
    so that held writes are worth waiting for; a damaged or replaced store's does not.
    """

    kind = "store"
    passes: ClassVar[bool] = False


class StoreCorrupt(StoreError):
    """The store file is damaged or is not a gatewayd store: it is never written to."""

    exit_code = EXIT_STORE_DAMAGED
    kind = "store_damaged"


class StoreTooNew(StoreError):
    """The store was written by a newer gatewayd, whose schema this one does not know."""

    exit_code = EXIT_STORE_TOO_NEW
    kind = "store_too_new"


class StoreUnwritable(StoreError):
    """The store takes no writes now; reads still work, and nothing was changed.

    Each subclass names a cause. While it lasts, new runs and job changes are
    refused with it, and the endings of live runs are kept until they can be written.
    """

    rpc_code = RPC_STORE_UNWRITABLE
    exit_code = EXIT_IO_ERROR
    kind = "store_unwritable"
    passes = True


class StoreFull(StoreUnwritable):
    """No space is left on the store's file system."""

    exit_code = EXIT_NO_SPACE
    kind = "no_space"


class StoreReadOnly(StoreUnwritable):
    """The store's file system is mounted read-only."""

    exit_code = EXIT_READ_ONLY
    kind = "read_only"


class StorePermission(StoreUnwritable):
    """The store's files or directory may not be read or written by this user."""

    exit_code = EXIT_PERMISSION
    kind = "store_permission"


class StoreIOError(StoreUnwritable):
    """The store's device failed a read or a write (an I/O error)."""

    kind = "io_error"


class StoreReplaced(StoreUnwritable):
    """A file of the store (its write-ahead log, or the store itself) was deleted or
    replaced while the daemon ran: writes stop until a restart, so nothing more is lost."""

    kind = "store_replaced"
    passes = False


class StoreUnreachable(StoreUnwritable):
    """The store's database server cannot be reached (down, restarting, or cut off):
    the writes that must not be lost are held until it answers again."""

    kind = "store_unreachable"


class StartupError(GatewaydError):
    """The daemon could not start; nothing was served."""

    kind = "startup"


_BY_RPC_CODE: dict[int, type[GatewaydError]] = {
    RPC_PARSE_ERROR: ParseError,
    RPC_INVALID_REQUEST: ProtocolError,
    RPC_METHOD_NOT_FOUND: MethodNotFound,
    RPC_INVALID_PARAMS: InvalidInput,
    RPC_INTERNAL: GatewaydError,
    RPC_NOT_FOUND: NotFound,
    RPC_CONFLICT: Conflict,
    RPC_UNAVAILABLE: DaemonUnreachable,
    RPC_STORE_UNWRITABLE: StoreUnwritable,
    RPC_FORBIDDEN: PermissionDenied,
    RPC_BUSY: TooManyConnections,
}


def error_from_rpc(code: int, message: str, data: dict[str, Any] | None = None) -> GatewaydError:
    """Rebuild, on the client side, the error a daemon answered with: by kind, else by code."""
    kind = (data or {}).get("kind")
    cls = _BY_KIND.get(kind) if isinstance(kind, str) else None
    if cls is None or cls.rpc_code != code:
        cls = _BY_RPC_CODE.get(code, GatewaydError)
    return cls(message, data=data)


class SpawnFailed(GatewaydError):
    """A run's process could not be started."""

    kind = "spawn"
