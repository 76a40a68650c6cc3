"""Decrypted TLS records and exported PDUs as connection byte streams for the engine.

Each PDU carries addresses, ports, a timestamp and the original frame number; this module groups
them per TCP connection and direction, asks the engine's `tcp_selector` (with `transport="tls"`
when the bytes were TLS-protected) for a `StreamSink`, and feeds it in frame order — so HTTP
framing and pairing, SIP framing and every classifier run exactly as for plaintext TCP.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from lyncpcap.flows.dispatch import SERVER_PORTS, Connection, StreamSink

__all__ = ["KnownConnection", "PduStreams", "Selector"]


class Selector(Protocol):
    def __call__(self, conn: Connection, direction: int, first: bytes, *, transport: str = ...) -> StreamSink | None: ...


@dataclass(frozen=True, slots=True)
class KnownConnection:
    """A connection the plaintext read already numbered (e.g. a TLS connection it saw the
    ClientHello of), so PDUs of the same 4-tuple reuse its index and orientation."""

    index: int
    client: str
    client_port: int
    server: str
    server_port: int
    first_frame: int
    first_ts: float


@dataclass(slots=True)
class _Stream:
    conn: Connection
    sink: StreamSink | None
    transport: str
    last_frame: int = 0
    last_ts: float = 0.0
    frames: int = 0
    octets: int = 0
    # per direction: the end of the stream so far, to drop re-deliveries (see PduStreams.redelivery)
    previous: list[bytearray] = field(default_factory=lambda: [bytearray(), bytearray()])


def _rank(port: int) -> int:
    return 2 if port in SERVER_PORTS else 1 if port < 1024 else 0


class PduStreams:
    """Routes PDUs to per-connection sinks.

    `known` connections (from the plaintext read) fix the index and which side is the client; a
    PDU whose 4-tuple is not known gets a new connection numbered from `next_index`, unless
    `only_known` is set (then it is counted in `unmatched` and dropped).

    `redelivery=True` is for exported-PDU files written by Wireshark with TLS application-data
    desegmentation on (its default): there the bytes the HTTP/SIP dissector could not use yet (an
    incomplete message) are exported again in front of the next record's bytes.  A PDU that starts
    with what ended the stream so far (at least REDELIVERY_MIN bytes, and not all of the PDU)
    carries only the rest as new bytes.
    """

    #: shortest repeat taken for a re-delivery (shorter ones are too likely to be chance)
    REDELIVERY_MIN = 8
    #: how much of each direction's stream is kept to recognise re-deliveries
    REDELIVERY_WINDOW = 1 << 20

    def __init__(
        self,
        selector: Selector,
        *,
        known: Iterable[KnownConnection] = (),
        next_index: int = 0,
        only_known: bool = False,
        redelivery: bool = False,
    ) -> None:
        self.selector = selector
        self.only_known = only_known
        self.redelivery = redelivery
        self.next_index = next_index
        self._known: dict[tuple[str, int, str, int], list[KnownConnection]] = {}
        for k in known:
            self._known.setdefault((k.client, k.client_port, k.server, k.server_port), []).append(k)
        for group in self._known.values():
            group.sort(key=lambda k: k.first_frame)
        self._streams: dict[tuple[str, int, str, int, int], _Stream] = {}
        self.unmatched = 0
        self.redelivered_bytes = 0
        self.streams_seen: dict[int, _Stream] = {}

    # -- input ----------------------------------------------------------------------------------

    def tcp(self, frame: int, ts: float, src: str, sport: int, dst: str, dport: int, data: bytes, *, transport: str) -> None:
        """One PDU of a TCP connection (bytes in order after the previous PDU of its direction)."""
        if not data:
            return
        found = self._stream(frame, ts, src, sport, dst, dport, data, transport)
        if found is None:
            return
        stream, direction = found
        if self.redelivery:
            repeat = self._repeat(stream.previous[direction], data)
            if repeat:
                self.redelivered_bytes += repeat
                data = data[repeat:]
            tail = stream.previous[direction]
            tail += data
            if len(tail) > 2 * self.REDELIVERY_WINDOW:
                del tail[: len(tail) - self.REDELIVERY_WINDOW]
        stream.last_frame, stream.last_ts = frame, ts
        stream.frames += 1
        stream.octets += len(data)
        sink = stream.sink
        if sink is None:
            return
        sink.on_data(direction, data, ts, frame)
        if getattr(sink, "done", False):
            stream.sink = None

    def _repeat(self, tail: bytearray, data: bytes) -> int:
        """How many leading bytes of `data` repeat the end of `tail` (0 when none do)."""
        least = self.REDELIVERY_MIN
        if len(data) <= least or len(tail) < least:
            return 0
        head = data[:least]
        pos = tail.find(head, max(0, len(tail) - len(data) + 1))
        while pos >= 0:  # the earliest start gives the longest repeat
            size = len(tail) - pos
            if data.startswith(tail[pos:]) and size < len(data):
                return size
            pos = tail.find(head, pos + 1)
        return 0

    def finish(self) -> None:
        """The end of the PDUs: every connection is closed (as at the end of a capture)."""
        for stream in sorted(self._streams.values(), key=lambda s: s.conn.index):
            if stream.sink is not None:
                stream.sink.on_close(stream.last_ts, stream.last_frame, "eof")
                stream.sink = None

    @property
    def connections(self) -> list[Connection]:
        return [s.conn for s in self._streams.values()]

    # -- connections ----------------------------------------------------------------------------

    def _stream(
        self, frame: int, ts: float, src: str, sport: int, dst: str, dport: int, data: bytes, transport: str
    ) -> tuple[_Stream, int] | None:
        known = self._match(frame, src, sport, dst, dport)
        if known is not None:
            direction = 0 if (src, sport) == (known.client, known.client_port) else 1
            key = (known.client, known.client_port, known.server, known.server_port, known.index)
            stream = self._streams.get(key)
            if stream is None:
                conn = Connection(known.index, known.client, known.client_port, known.server, known.server_port, True,
                                  known.first_frame, known.first_ts)
                stream = self._open(key, conn, direction, data, transport)
            return stream, direction
        if self.only_known:
            self.unmatched += 1
            return None
        for key, direction in (((src, sport, dst, dport, -1), 0), ((dst, dport, src, sport, -1), 1)):
            stream = self._streams.get(key)
            if stream is not None:
                return stream, direction
        # a new connection: the side on a well-known (or lower) port is the server
        if _rank(sport) > _rank(dport):
            client, cport, server, sport_, direction = dst, dport, src, sport, 1
        else:
            client, cport, server, sport_, direction = src, sport, dst, dport, 0
        conn = Connection(self.next_index, client, cport, server, sport_, False, frame, ts)
        self.next_index += 1
        key = (client, cport, server, sport_, -1)
        return self._open(key, conn, direction, data, transport), direction

    def _match(self, frame: int, src: str, sport: int, dst: str, dport: int) -> KnownConnection | None:
        group = self._known.get((src, sport, dst, dport)) or self._known.get((dst, dport, src, sport))
        if not group:
            return None
        best = group[0]
        for k in group:  # the latest connection on this 4-tuple that had started by this frame
            if k.first_frame <= frame:
                best = k
        return best

    def _open(self, key: tuple[str, int, str, int, int], conn: Connection, direction: int, first: bytes, transport: str) -> _Stream:
        sink = self.selector(conn, direction, first, transport=transport)
        stream = _Stream(conn, sink, transport)
        self._streams[key] = stream
        self.streams_seen[conn.index] = stream
        return stream

