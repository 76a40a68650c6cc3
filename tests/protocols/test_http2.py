"""lyncpcap.protocols.http2 on frames built as RFC 9113 and RFC 7541 define them (the `hpack`
encoder writes the header blocks): what browsers and IIS send beyond the lab's plain frames."""

from __future__ import annotations

import gzip
import struct

import hpack

from lyncpcap.protocols.http import HttpExchange
from lyncpcap.protocols.http2 import PREFACE, Http2Stream

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, GOAWAY, CONTINUATION = 0, 1, 2, 3, 4, 7, 9


def frame(ftype: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack("!I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack("!I", stream) + payload


class Run:
    def __init__(self) -> None:
        self.exchanges: list[HttpExchange] = []
        self.problems: list[str] = []
        self.sink = Http2Stream(self.exchanges.append, self.problems.append)
        self.frame = 0

    def send(self, direction: int, data: bytes, *, piece: int | None = None) -> None:
        """Deliver `data`, in pieces of `piece` bytes (one packet each) if given."""
        step = piece or len(data) or 1
        for i in range(0, len(data), step):
            self.frame += 1
            self.sink.on_data(direction, data[i : i + step], float(self.frame), self.frame)


def test_padding_priority_continuation_interim_answers_and_trailers() -> None:
    client, server = hpack.Encoder(), hpack.Encoder()
    run = Run()
    block = client.encode([(":method", "POST"), (":scheme", "https"), (":authority", "lyncweb.contoso.com"),
                           (":path", "/WebTicket/oauthtoken"), ("content-type", "application/x-www-form-urlencoded"),
                           ("user-agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0")])  # fmt: skip
    padded = bytes([4]) + struct.pack("!IB", 0, 15) + block[:10] + b"\x00" * 4  # pad length, priority, padding
    body = b"grant_type=password&username=kim%40contoso.com&password=secret"
    run.send(0, PREFACE + frame(SETTINGS, 0, 0))
    run.send(0, frame(HEADERS, 0x8 | 0x20, 1, padded) + frame(CONTINUATION, 0x4, 1, block[10:]))
    run.send(0, frame(DATA, 0x8 | 0x1, 1, bytes([3]) + body + b"\x00" * 3), piece=7)
    run.send(1, frame(SETTINGS, 0, 0) + frame(HEADERS, 0x4, 1, server.encode([(":status", "100")])))
    answer = gzip.compress(b'{"error":"invalid_grant"}')
    run.send(1, frame(HEADERS, 0x4, 1, server.encode([(":status", "400"), ("content-type", "application/json"),
                                                      ("content-encoding", "gzip")])))  # fmt: skip
    run.send(1, frame(DATA, 0, 1, answer) + frame(HEADERS, 0x4 | 0x1, 1, server.encode([("x-trailer", "1")])))
    assert run.problems == []
    (ex,) = run.exchanges
    assert (ex.request.method, ex.request.target, ex.request.host, ex.request.version) == (
        "POST", "/WebTicket/oauthtoken", "lyncweb.contoso.com", "HTTP/2")
    assert ex.request.body == body and ex.request.headers.get("User-Agent", "").startswith("Mozilla/5.0")
    assert (ex.request.first_frame, ex.request.frame) == (2, run.frame - 3)  # DATA came in 7-byte pieces
    assert ex.response is not None and ex.response.status == 400 and ex.response.interim == [100]
    assert ex.response.body == b'{"error":"invalid_grant"}' and not ex.response.truncated


def test_streams_answered_out_of_order_keep_their_request_order_and_a_reset_stream_has_no_answer() -> None:
    client, server = hpack.Encoder(), hpack.Encoder()
    run = Run()
    run.send(0, PREFACE + frame(SETTINGS, 0, 0))
    for n, path in ((1, "/a"), (3, "/b"), (5, "/c")):
        run.send(0, frame(HEADERS, 0x5, n, client.encode([(":method", "GET"), (":scheme", "https"),
                                                          (":authority", "pool"), (":path", path)])))  # fmt: skip
    run.send(1, frame(HEADERS, 0x5, 3, server.encode([(":status", "200")])))
    run.send(0, frame(RST_STREAM, 0, 5, struct.pack("!I", 8)))  # CANCEL
    run.send(1, frame(HEADERS, 0x5, 1, server.encode([(":status", "401"), ("www-authenticate", "Bearer")])))
    assert [(e.index, e.request.path, e.response.status if e.response else None) for e in run.exchanges] == [
        (1, "/b", 200), (2, "/c", None), (0, "/a", 401)]  # fmt: skip
    assert run.problems == []


def test_a_gap_or_a_broken_frame_stops_the_connection_with_a_note_keeping_what_was_complete() -> None:
    for damage in ("gap", "garbage", "not-a-preface"):
        client, server = hpack.Encoder(), hpack.Encoder()  # HPACK contexts live as long as a connection
        run = Run()
        if damage == "not-a-preface":
            run.send(0, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
            assert run.sink.done and run.problems and run.exchanges == []
            continue
        run.send(0, PREFACE + frame(HEADERS, 0x5, 1, client.encode([(":method", "GET"), (":path", "/x")])))
        run.send(0, frame(HEADERS, 0x5, 3, client.encode([(":method", "GET"), (":path", "/y")])))
        run.send(1, frame(HEADERS, 0x5, 1, server.encode([(":status", "200")])))
        if damage == "gap":
            run.sink.on_gap(1, 1460, 9.0, 9)
        else:
            run.send(1, frame(HEADERS, 0x4, 3, b"\xff\xff\xff\xff"))  # an index past any table
        assert run.sink.done and len(run.problems) == 1
        assert [(e.request.path, e.response.status if e.response else None) for e in run.exchanges] == [
            ("/x", 200), ("/y", None)]  # fmt: skip
        run.send(1, frame(HEADERS, 0x5, 3, b"\x88"))  # nothing more is read
        assert len(run.exchanges) == 2


def test_the_end_of_the_connection_flushes_unanswered_requests() -> None:
    client = hpack.Encoder()
    run = Run()
    run.send(0, PREFACE + frame(HEADERS, 0x4, 1, client.encode([(":method", "POST"), (":path", "/ucwa")])))
    run.send(0, frame(DATA, 0, 1, b"half a body"))
    run.sink.on_close(5.0, 5, "rst")
    (ex,) = run.exchanges
    assert ex.response is None and ex.request.truncated and ex.request.body == b"half a body"
