"""The wire format: framing with a size limit, and requests checked before they are served."""

from __future__ import annotations

import pytest
from gatewayd.errors import RPC_INVALID_PARAMS, RPC_INVALID_REQUEST, RPC_PARSE_ERROR
from gatewayd.rpc.protocol import FrameDecoder, Oversized, RequestError, parse_request


class TestFrameDecoder:
    """Frames end at newlines; an oversized frame is reported once and skipped."""

    def test_frames_split_across_reads(self) -> None:
        decoder = FrameDecoder(max_bytes=100)
        assert decoder.feed(b'{"a"') == []
        assert decoder.feed(b": 1}\n{}\n\n") == [b'{"a": 1}', b"{}"]
        assert decoder.pending == 0

    def test_oversized_frame_is_skipped_to_its_newline(self) -> None:
        decoder = FrameDecoder(max_bytes=10)
        out = decoder.feed(b"x" * 8)
        out += decoder.feed(b"y" * 8)
        assert out == []
        assert decoder.pending == 16
        out = decoder.feed(b"zz\nok\n")
        assert isinstance(out[0], Oversized) and out[0].size == 18
        assert out[1:] == [b"ok"]

    def test_oversized_in_one_read(self) -> None:
        decoder = FrameDecoder(max_bytes=4)
        out = decoder.feed(b"abcdefgh\nabc\n")
        assert isinstance(out[0], Oversized)
        assert out[1] == b"abc"


class TestParseRequest:
    """Each malformed request is named, with the id to answer to when one is readable."""

    def test_valid(self) -> None:
        req = parse_request(b'{"jsonrpc": "2.0", "id": 7, "method": "cron.list"}')
        assert (req.id, req.method, req.params, req.notification) == (7, "cron.list", {}, False)

    @pytest.mark.parametrize(
        ("frame", "code", "request_id", "words"),
        [
            (b"{nope", RPC_PARSE_ERROR, None, "not valid JSON"),
            (b"[]", RPC_INVALID_REQUEST, None, "batches"),
            (b"3", RPC_INVALID_REQUEST, None, "JSON object"),
            (b'{"id": 1, "method": "x"}', RPC_INVALID_REQUEST, 1, '"jsonrpc" must be "2.0"'),
            (b'{"jsonrpc": "2.0", "id": 2}', RPC_INVALID_REQUEST, 2, '"method"'),
            (b'{"jsonrpc": "2.0", "id": [1], "method": "m"}', RPC_INVALID_REQUEST, None, "id"),
            (
                b'{"jsonrpc": "2.0", "id": 3, "method": "m", "params": 5}',
                RPC_INVALID_PARAMS,
                3,
                "params as an object",
            ),
        ],
    )
    def test_invalid(self, frame: bytes, code: int, request_id: object, words: str) -> None:
        with pytest.raises(RequestError) as caught:
            parse_request(frame)
        assert caught.value.error.rpc_code == code
        assert caught.value.request_id == request_id
        assert words in caught.value.error.message


class TestEncode:
    def test_pre_encoded_results_make_the_same_frame(self) -> None:
        """A large result encoded off the loop gives the frame a plain result would."""
        import orjson
        from gatewayd.rpc.protocol import RawJson, encode_result

        value = [{"id": n, "name": f"j{n}"} for n in range(3)]
        assert orjson.loads(encode_result(7, RawJson(orjson.dumps(value)))) == orjson.loads(
            encode_result(7, value)
        )
