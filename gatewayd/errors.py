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

# JSON-RPC 2.0 codes. -32700..-32600 are the protocol's own; the rest are ours.
RPC_PARSE_ERROR = -32700
RPC_INVALID_REQUEST = -32600
RPC_METHOD_NOT_FOUND = -32601
RPC_INVALID_PARAMS = -32602
RPC_INTERNAL = -32603
RPC_NOT_FOUND = -32004
RPC_CONFLICT = -32009
RPC_UNAVAILABLE = -32010


class GatewaydError(Exception):
    """Base of every error gatewayd raises on purpose."""

    rpc_code: ClassVar[int] = RPC_INTERNAL
    exit_code: ClassVar[int] = EXIT_INTERNAL
    kind: ClassVar[str] = "internal"

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


class StateDirLocked(Conflict):
    """Another gatewayd process holds the lock of this state directory."""


class DaemonUnreachable(GatewaydError):
    """The CLI could not reach a daemon on the socket."""

    rpc_code = RPC_UNAVAILABLE
    exit_code = EXIT_UNREACHABLE
    kind = "unreachable"


class StoreError(GatewaydError):
    """The store cannot be opened or used."""

    kind = "store"


class StoreCorrupt(StoreError):
    """The store file is damaged or is not a gatewayd store."""


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
}


def error_from_rpc(code: int, message: str, data: dict[str, Any] | None = None) -> GatewaydError:
    """Rebuild, on the client side, the error a daemon answered with."""
    cls = _BY_RPC_CODE.get(code, GatewaydError)
    return cls(message, data=data)


class SpawnFailed(GatewaydError):
    """A run's process could not be started."""

    kind = "spawn"
