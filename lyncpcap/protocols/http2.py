"""HTTP/2 over a reassembled TCP stream (RFC 9113), as the same `HttpExchange`s as HTTP/1.x.

A browser speaks HTTP/2 to IIS 10 and later (Skype for Business Server on Windows Server 2016 and
later) as soon as TLS offers it, so a Lync Web App or UCWA sign-in decrypted from the browser's key
log arrives in this form.  `Http2Stream` is a flows `StreamSink`: it reads the frames of each
direction, decodes header blocks with HPACK (the `hpack` package: one decoding context per
direction, as the protocol requires), gathers each stream's request and response (HEADERS and
CONTINUATION, DATA up to END_STREAM, padding and priority fields skipped) and emits one
`HttpExchange` per stream when its answer is complete, or when the stream is reset or the
connection ends.  Pseudo-headers become the request line (`:method`, `:path`, `:authority` as
Host) and the status; the version reads "HTTP/2".

A capture gap loses HPACK state for good, so the connection stops being decoded there (what was
complete is kept); so does a frame that breaks the protocol.  Memory stays bounded: a frame is
buffered up to 16 MiB (the largest SETTINGS_MAX_FRAME_SIZE), a body up to MAX_BODY_KEEP, a header
list up to MAX_HEADER_BYTES.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

import hpack

from lyncpcap.errors import MalformedError
from lyncpcap.protocols.http import (
    MAX_BODY_KEEP,
    MAX_HEADER_BYTES,
    Headers,
    HttpExchange,
    HttpRequest,
    HttpResponse,
    decode_body,
)

__all__ = ["PREFACE", "Http2Stream"]

#: The client's connection preface (RFC 9113 §3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_FRAME = 1 << 24  # 2^24 - 1 is the largest frame size a peer may allow

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20


@dataclass(slots=True)
class _Message:
    """One direction of one stream."""

    headers: list[tuple[str, str]] | None = None
    trailers: bool = False  # a second header block: trailers, read and not kept
    body: bytearray = field(default_factory=bytearray)
    body_size: int = 0
    first: tuple[int, float] | None = None  # frame and time of its first byte
    last: tuple[int, float] = (0, 0.0)
    ended: bool = False


@dataclass(slots=True)
class _Stream:
    number: int
    order: int  # the order requests began in: the exchange's index
    request: _Message = field(default_factory=_Message)
    response: _Message = field(default_factory=_Message)
    interim: list[int] = field(default_factory=list)
    reset: bool = False


#: (type, flags, stream, payload, (frame, time) of its first byte, of its last)
_Frame = tuple[int, int, int, bytes, tuple[int, float], tuple[int, float]]


class _Reader:
    """The frames of one direction: bytes in, (type, flags, stream, payload, first, last) out."""

    __slots__ = ("base", "buf", "need_preface", "offsets", "packets")

    def __init__(self, need_preface: bool) -> None:
        self.buf = bytearray()
        self.base = 0  # stream offset of buf[0]
        self.need_preface = need_preface
        self.offsets: list[int] = []  # stream offset where each delivery still buffered began
        self.packets: list[tuple[int, float]] = []  # its frame and time

    def add(self, data: bytes, ts: float, frame: int) -> None:
        self.offsets.append(self.base + len(self.buf))
        self.packets.append((frame, ts))
        self.buf += data

    def _at(self, offset: int) -> tuple[int, float]:
        """The frame and time of the delivery that carried stream byte `offset`."""
        return self.packets[max(0, bisect.bisect_right(self.offsets, offset) - 1)]

    def clear(self) -> None:
        self.buf.clear()
        self.offsets.clear()
        self.packets.clear()

    def frames(self) -> list[_Frame]:
        out: list[_Frame] = []
        buf = self.buf
        pos = 0
        if self.need_preface:
            if len(buf) < len(PREFACE):
                if not PREFACE.startswith(bytes(buf)):
                    raise MalformedError("not the HTTP/2 connection preface")
                return out
            if not buf.startswith(PREFACE):
                raise MalformedError("not the HTTP/2 connection preface")
            self.need_preface = False
            pos = len(PREFACE)
        while len(buf) - pos >= 9:
            length = int.from_bytes(buf[pos : pos + 3], "big")
            if length > MAX_FRAME:
                raise MalformedError(f"HTTP/2 frame of {length} bytes")
            if len(buf) - pos < 9 + length:
                break
            ftype, flags = buf[pos + 3], buf[pos + 4]
            stream = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFF_FFFF
            payload = bytes(buf[pos + 9 : pos + 9 + length])
            at = self.base + pos
            out.append((ftype, flags, stream, payload, self._at(at), self._at(at + 8 + length)))
            pos += 9 + length
        if pos:
            del buf[:pos]
            self.base += pos
            keep = max(0, bisect.bisect_right(self.offsets, self.base) - 1)  # deliveries still buffered
            del self.offsets[:keep], self.packets[:keep]
        return out


class Http2Stream:
    """A flows StreamSink for one HTTP/2 connection; emits `HttpExchange`s through `on_exchange`."""

    def __init__(self, on_exchange: Callable[[HttpExchange], None], on_problem: Callable[[str], None]) -> None:
        self.on_exchange = on_exchange
        self.on_problem = on_problem  # why the connection stopped being decoded
        self.readers = (_Reader(need_preface=True), _Reader(need_preface=False))
        self.decoders = (hpack.Decoder(), hpack.Decoder())  # requests' context, responses' context
        for d in self.decoders:
            d.max_header_list_size = MAX_HEADER_BYTES
        self.streams: dict[int, _Stream] = {}
        self.count = 0
        self.done = False
        self._blocks: list[tuple[int, int, bytearray, tuple[int, float]] | None] = [None, None]

    # StreamSink
    def on_data(self, direction: int, data: bytes, ts: float, frame: int) -> None:
        if self.done:
            return
        reader = self.readers[direction]
        reader.add(data, ts, frame)
        try:
            for ftype, flags, stream, payload, first, last in reader.frames():
                self._frame(direction, ftype, flags, stream, payload, first, last)
        except (MalformedError, hpack.HPACKError, ValueError, IndexError):
            self._stop("an HTTP/2 connection broke the protocol: it is decoded up to there only")

    def on_gap(self, direction: int, size: int, ts: float, frame: int) -> None:
        self._stop("an HTTP/2 connection lost bytes to a capture gap: it is decoded up to the gap only")

    def on_close(self, ts: float, frame: int, how: str) -> None:
        self._finish_all()
        self.done = True

    def _stop(self, why: str) -> None:
        if not self.done:
            self.on_problem(why)
            self._finish_all()
            self.done = True
            for r in self.readers:
                r.clear()

    # frames
    def _frame(
        self, direction: int, ftype: int, flags: int, number: int, payload: bytes, first: tuple[int, float], last: tuple[int, float]
    ) -> None:
        block = self._blocks[direction]
        if block is not None and ftype != CONTINUATION:
            raise MalformedError("a header block interrupted by another frame")
        if ftype in (HEADERS, CONTINUATION):
            if ftype == HEADERS:
                payload = _unpadded(payload, flags)
                if flags & PRIORITY_FLAG:
                    payload = payload[5:]
                block = (number, flags, bytearray(), first)
            elif block is None or block[0] != number:
                raise MalformedError("CONTINUATION without its HEADERS")
            block[2].extend(payload)
            if len(block[2]) > MAX_HEADER_BYTES:
                raise MalformedError("an HTTP/2 header block over 64 KiB")
            if not flags & END_HEADERS:
                self._blocks[direction] = block
                return
            self._blocks[direction] = None
            headers = [(str(k), str(v)) for k, v in self.decoders[direction].decode(bytes(block[2]), raw=False)]
            self._headers(direction, block[0], block[1], headers, block[3], last)
        elif ftype == DATA:
            stream = self.streams.get(number)
            if stream is None:
                return
            payload = _unpadded(payload, flags)
            msg = stream.request if direction == 0 else stream.response
            msg.body_size += len(payload)
            room = MAX_BODY_KEEP - len(msg.body)
            if room > 0:
                msg.body += payload[:room]
            msg.last = last
            if flags & END_STREAM:
                self._ended(direction, stream, msg)
        elif ftype == RST_STREAM:
            stream = self.streams.get(number)
            if stream is not None:
                stream.reset = True
                self._emit(stream)
        elif ftype == GOAWAY and len(payload) >= 4:
            last_stream = int.from_bytes(payload[:4], "big") & 0x7FFF_FFFF
            for n in sorted(self.streams):
                if n > last_stream and direction == 1:
                    self._emit(self.streams[n])  # refused: never processed

    def _headers(
        self, direction: int, number: int, flags: int, headers: list[tuple[str, str]], first: tuple[int, float], last: tuple[int, float]
    ) -> None:
        stream = self.streams.get(number)
        if stream is None:
            if direction == 1:
                return  # an answer to a stream we did not see open (or a pushed one)
            stream = self.streams[number] = _Stream(number, self.count)
            self.count += 1
        msg = stream.request if direction == 0 else stream.response
        status = next((v for k, v in headers if k == ":status"), None)
        if direction == 1 and status is not None and status.startswith("1") and status != "101":
            stream.interim.append(int(status))  # 100 Continue and friends: the answer is still to come
            return
        if msg.headers is None:
            msg.headers = headers
            msg.first = first
        else:
            msg.trailers = True
        msg.last = last
        if flags & END_STREAM:
            self._ended(direction, stream, msg)

    def _ended(self, direction: int, stream: _Stream, msg: _Message) -> None:
        msg.ended = True
        if direction == 1:
            self._emit(stream)

    def _finish_all(self) -> None:
        for number in sorted(self.streams):
            self._emit(self.streams[number])

    def _emit(self, stream: _Stream) -> None:
        if self.streams.pop(stream.number, None) is None or stream.request.headers is None:
            return
        self.on_exchange(HttpExchange(request=_request(stream.request), response=_response(stream), index=stream.order))


def _unpadded(payload: bytes, flags: int) -> bytes:
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise MalformedError("HTTP/2 padding longer than its frame")
    return payload[1 : len(payload) - payload[0]]


def _split(headers: list[tuple[str, str]]) -> tuple[dict[str, str], Headers]:
    pseudo = {k: v for k, v in headers if k.startswith(":")}
    return pseudo, Headers([(k, v) for k, v in headers if not k.startswith(":")])


def _request(msg: _Message) -> HttpRequest:
    assert msg.headers is not None
    pseudo, headers = _split(msg.headers)
    if ":authority" in pseudo and "host" not in headers:
        headers = Headers([("Host", pseudo[":authority"]), *headers])
    method = pseudo.get(":method", "GET")
    target = pseudo.get(":authority", "") if method == "CONNECT" else pseudo.get(":path", "/")
    first = msg.first or msg.last
    return HttpRequest(
        method=method,
        target=target,
        version="HTTP/2",
        headers=headers,
        body=decode_body(bytes(msg.body), headers),
        body_size=msg.body_size,
        first_frame=first[0],
        first_ts=first[1],
        frame=msg.last[0],
        ts=msg.last[1],
        truncated=not msg.ended,
    )


def _response(stream: _Stream) -> HttpResponse | None:
    """The stream's answer; None without one that has a valid :status."""
    msg = stream.response
    if msg.headers is None:
        return None
    pseudo, headers = _split(msg.headers)
    try:
        status = int(pseudo.get(":status", ""))
    except ValueError:
        return None
    first = msg.first or msg.last
    return HttpResponse(
        status=status,
        reason="",
        version="HTTP/2",
        headers=headers,
        body=decode_body(bytes(msg.body), headers),
        body_size=msg.body_size,
        first_frame=first[0],
        first_ts=first[1],
        frame=msg.last[0],
        ts=msg.last[1],
        truncated=not msg.ended,
        interim=stream.interim,
    )
