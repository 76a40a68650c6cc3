"""HTTP/2 for the lab: a connection that carries the scenario's HTTP/1.1 messages as a browser and
IIS 10 would over HTTP/2 (RFC 9113): the client's preface and SETTINGS, the server's SETTINGS, one
stream per request (odd numbers, in order), HEADERS with HPACK-encoded fields (pseudo-headers
first, names in lowercase, connection-specific fields dropped), DATA frames of at most 16 KiB with
END_STREAM on the last, WINDOW_UPDATEs and a SETTINGS acknowledgement on the way.

`Http2Conn` wraps any lab connection (plain TCP or TLS) and converts each whole HTTP/1.1 message
it is given; the analysis must read the same requests and answers from either form.
"""

from __future__ import annotations

import struct

import hpack

from lyncpcap.lab.world import Conn

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_DATA = 16384
DATA, HEADERS, SETTINGS, WINDOW_UPDATE = 0x0, 0x1, 0x4, 0x8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
#: fields HTTP/2 forbids (RFC 9113 §8.2.2), and Host (it becomes :authority)
_DROPPED = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host"})


def frame(ftype: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack("!I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack("!I", stream) + payload


def _parse(message: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    """(start line, header fields, body with chunked coding undone) of one HTTP/1.1 message."""
    head, _, body = message.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = [(n.strip(), v.strip()) for n, _, v in (line.partition(":") for line in lines[1:])]
    if any(n.lower() == "transfer-encoding" and "chunked" in v.lower() for n, v in fields):
        out = bytearray()
        rest = body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out += rest[:size]
            rest = rest[size + 2 :]
        body = bytes(out)
        fields = [(n, v) for n, v in fields if n.lower() != "transfer-encoding"] + [("content-length", str(len(body)))]
    return lines[0], fields, body


def _message_frames(stream: int, block: bytes, body: bytes) -> bytes:
    if not body:
        return frame(HEADERS, END_HEADERS | END_STREAM, stream, block)
    out = [frame(HEADERS, END_HEADERS, stream, block)]
    for i in range(0, len(body), MAX_DATA):
        piece = body[i : i + MAX_DATA]
        out.append(frame(DATA, END_STREAM if i + MAX_DATA >= len(body) else 0, stream, piece))
    return b"".join(out)


class Http2Conn:
    """A lab connection speaking HTTP/2 in place of the HTTP/1.1 it is handed."""

    def __init__(self, inner: Conn, *, scheme: str = "https") -> None:
        self.inner = inner
        self.scheme = scheme
        self.stream = -1
        self.started = False
        self.answered = False
        self.requests = hpack.Encoder()  # the client's encoding context
        self.responses = hpack.Encoder()  # the server's

    def send(self, data: bytes, *, gap: float = 0.0) -> None:
        start, fields, body = _parse(data)
        method, target, _version = start.split(" ", 2)
        host = next((v for n, v in fields if n.lower() == "host"), "")
        self.stream += 2
        pseudo = [(":method", method), (":scheme", self.scheme), (":authority", host), (":path", target)]
        block = self.requests.encode(pseudo + [(n.lower(), v) for n, v in fields if n.lower() not in _DROPPED])
        out = b""
        if not self.started:
            out = PREFACE + frame(SETTINGS, 0, 0, struct.pack("!HI", 0x4, 6291456))  # INITIAL_WINDOW_SIZE
            self.started = True
        self.inner.send(out + _message_frames(self.stream, block, body), gap=gap)

    def reply(self, data: bytes, *, think: float = 0.02) -> None:
        start, fields, body = _parse(data)
        status = start.split(" ", 2)[1]
        block = self.responses.encode([(":status", status)] + [(n.lower(), v) for n, v in fields if n.lower() not in _DROPPED])
        out = b""
        if not self.answered:  # the server's SETTINGS, its ACK of the client's, a window update
            out = frame(SETTINGS, 0, 0, struct.pack("!HI", 0x3, 100)) + frame(SETTINGS, ACK, 0)
            out += frame(WINDOW_UPDATE, 0, 0, struct.pack("!I", 1 << 20))
            self.answered = True
        self.inner.reply(out + _message_frames(self.stream, block, body), think=think)

    def close(self, *, by: str = "client", rst: bool = False) -> None:
        self.inner.close(by=by, rst=rst)

    @property
    def tcp(self) -> object:
        return getattr(self.inner, "tcp", self.inner)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)  # the TCP connection's details (tcp, index, ...) for the logs
