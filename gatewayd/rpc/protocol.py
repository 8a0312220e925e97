"""The wire format: newline-delimited JSON-RPC 2.0 frames of at most 1 MiB."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from gatewayd.errors import (
    FrameTooLarge,
    GatewaydError,
    InvalidInput,
    ParseError,
    ProtocolError,
)

MAX_FRAME_BYTES: Final = 1 << 20
RequestId = int | str | None


class Oversized:
    """Stands, in the decoded stream, for a frame that was longer than allowed."""

    def __init__(self, size: int) -> None:
        self.size = size


class FrameDecoder:
    """Splits bytes into newline-terminated frames.

    A frame longer than ``max_bytes`` is dropped up to its newline and reported
    once as :class:`Oversized`, so one bad frame does not end the connection.
    """

    def __init__(self, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self._max = max_bytes
        self._buffer = bytearray()
        self._discarding = 0

    def feed(self, data: bytes) -> list[bytes | Oversized]:
        frames: list[bytes | Oversized] = []
        start = 0
        while True:
            newline = data.find(b"\n", start)
            if newline < 0:
                break
            chunk = data[start:newline]
            start = newline + 1
            if self._discarding:
                frames.append(Oversized(self._discarding + len(chunk)))
                self._discarding = 0
                continue
            if len(self._buffer) + len(chunk) > self._max:
                frames.append(Oversized(len(self._buffer) + len(chunk)))
                self._buffer.clear()
                continue
            self._buffer += chunk
            frame = bytes(self._buffer).strip()
            self._buffer.clear()
            if frame:
                frames.append(frame)
        rest = data[start:]
        if self._discarding:
            self._discarding += len(rest)
        elif len(self._buffer) + len(rest) > self._max:
            self._discarding = len(self._buffer) + len(rest)
            self._buffer.clear()
        else:
            self._buffer += rest
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame."""
        return len(self._buffer) + self._discarding


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    id: RequestId
    method: str
    params: dict[str, Any]
    notification: bool


class RequestError(Exception):
    """A frame that cannot be served, with the id to answer to if one was readable."""

    def __init__(self, error: GatewaydError, request_id: RequestId = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.request_id = request_id


def parse_request(frame: bytes) -> Request:
    """A :class:`Request` from one frame, or :class:`RequestError` saying what is wrong."""
    try:
        body = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise RequestError(
            ParseError(f"parse error: the frame is not valid JSON ({exc})")
        ) from None
    if isinstance(body, list):
        raise RequestError(ProtocolError("invalid request: batches are not supported"))
    if not isinstance(body, dict):
        raise RequestError(ProtocolError("invalid request: expected a JSON object"))
    raw_id = body.get("id")
    request_id: RequestId = (
        raw_id if isinstance(raw_id, int | str) and not isinstance(raw_id, bool) else None
    )
    if body.get("jsonrpc") != "2.0":
        raise RequestError(ProtocolError('invalid request: "jsonrpc" must be "2.0"'), request_id)
    if "id" in body and raw_id is not None and request_id is None:
        raise RequestError(ProtocolError("invalid request: id must be a string or an integer"))
    method = body.get("method")
    if not isinstance(method, str) or not method:
        raise RequestError(ProtocolError('invalid request: "method" must be a string'), request_id)
    params = body.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RequestError(
            InvalidInput(f"invalid params: {method} takes its params as an object"), request_id
        )
    return Request(id=request_id, method=method, params=params, notification="id" not in body)


def encode_result(request_id: RequestId, result: Any) -> bytes:
    if isinstance(result, RawJson):
        head = orjson.dumps({"jsonrpc": "2.0", "id": request_id})[:-1]
        return head + b',"result":' + result.data + b"}\n"
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}) + b"\n"


@dataclass(frozen=True, slots=True)
class RawJson:
    """A result already encoded as JSON (a large one, encoded off the event loop)."""

    data: bytes


def encode_notification(method: str, params: Any) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "method": method, "params": params}) + b"\n"


def encode_error(request_id: RequestId, error: GatewaydError) -> bytes:
    body: dict[str, Any] = {"code": error.rpc_code, "message": error.message}
    data = {"kind": error.kind, **error.data}
    body["data"] = data
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "error": body}) + b"\n"


def oversized_error(size: int) -> FrameTooLarge:
    return FrameTooLarge(
        f"invalid request: a frame of {size} bytes exceeds the limit of {MAX_FRAME_BYTES} bytes"
    )


def encode_request(request_id: int, method: str, params: dict[str, Any]) -> bytes:
    body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    return orjson.dumps(body) + b"\n"
