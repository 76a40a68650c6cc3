"""The per-packet loop: decode each frame, reassemble the TCP streams that a selector wants, and
hand UDP datagrams on chosen ports to a handler.

This is the hot path of the tool.  A packet of an ignored connection (Ethernet/IPv4/TCP) costs one
struct unpack, one slice and one dict lookup keyed by its raw address and port bytes; addresses
become text only for connections offered to the selector and for UDP datagrams handed out.  When
`run` is given a `Capture`, those checks happen inside the reader's loop (`Capture.scan` with a
`Prefilter`), so such packets are never even turned into objects.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from lyncpcap.flows.partition import Partition
from lyncpcap.read.capture import Capture, Prefilter, Record
from lyncpcap.read.layers import (
    EARLIEST_TIME,
    LATEST_TIME,
    SKIP_REASONS,
    UDP_TUNNEL_PORTS,
    Decoder,
    address_text,
)

__all__ = [
    "SERVER_PORTS",
    "Connection",
    "Dispatcher",
    "StreamSink",
    "TcpSelector",
    "UdpHandler",
    "flow_warnings",
]

#: Ports that mark the server side of a connection whose SYN was not captured (besides any < 1024).
SERVER_PORTS = frozenset(
    {53, 80, 88, 389, 443, 444, 4443, 5060, 5061, 5062, 5063, 5086, 5087, 8080, 8443, 8400, 49443}
)

#: Out-of-order data buffered per direction before the hole in front of it is declared lost.
MAX_SEGMENTS = 1024
MAX_BUFFERED = 2 << 20
#: Housekeeping runs every HOUSEKEEPING_EVERY packets (a power of two); the connection table is
#: swept then if SWEEP_SECONDS of capture time have passed or it holds more than MAX_TABLE keys.
HOUSEKEEPING_EVERY = 65536
SWEEP_SECONDS = 60.0
MAX_TABLE = 2_000_000
#: An ignored connection idle for this many sweeps is forgotten; a closed one after one sweep.
IDLE_SWEEPS = 5
#: A connection that has carried no payload yet is forgotten after this long without packets.
PENDING_IDLE = 300.0
#: A connection being decoded that has been silent this long is over, its end not captured (a
#: firewall or NAT that forgot it, a FIN lost to the capture): its sink is closed as at the end of
#: the capture and the connection forgotten, so a day's capture holds only its live connections.
#: A Lync SIP connection's keep-alives come every 300 s at most (ms-keep-alive timeout=300).
ACTIVE_IDLE = 1800.0

_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10
_M = 0xFFFFFFFF
_HALF = 0x80000000

# Ignored and closed connections live in the table as one int per direction key:
_E_FIN = 1  # this direction sent a FIN
_E_CLOSED = 2  # the connection is over; the entry only absorbs late packets
_E_BASE = 4  # bits 3..34 hold the direction's first sequence number (to tell a new SYN)
_GEN_SHIFT = 35  # bits 35.. hold the sweep generation in which the entry was last refreshed
_GEN_MASK = (1 << _GEN_SHIFT) - 1

# _Flow states and what _Flow.segment asks the table to do
_PENDING, _ACTIVE, _DROPPED = 0, 1, 2
_KEEP, _IGNORE, _CLOSED = 0, 1, 2

_ETH_IP4 = struct.Struct("!12xHBxH2xHxB")  # ethertype, version/IHL, total length, flags/offset, protocol
_TCP = struct.Struct("!HHIIBB")  # ports, seq, ack, data offset, flags
_UDP = struct.Struct("!HHH")
_PORTS = struct.Struct("!HH")


@dataclass(slots=True)
class Connection:
    """One TCP connection as offered to the selector."""

    index: int  #: 0-based in order of first packet, like tshark's tcp.stream
    client: str
    client_port: int
    server: str
    server_port: int
    syn_seen: bool  #: the connection's SYN or SYN-ACK was captured
    first_frame: int
    first_ts: float


class StreamSink(Protocol):
    """Receives one connection's reassembled bytes.  Setting an attribute `done = True` stops
    delivery and frees the connection's buffers (the connection is then ignored).  A sink that has
    a `peer_acked` attribute gets it set, before each on_data, to the stream offset of the other
    direction that the sender had acknowledged (None when unknown)."""

    def on_data(self, direction: int, data: bytes, ts: float, frame: int) -> None:
        """In-order bytes; direction 0 = client->server; ts/frame of the packet that carried them."""

    def on_gap(self, direction: int, size: int, ts: float, frame: int) -> None:
        """`size` bytes of that direction were not captured; delivery continues after them."""

    def on_close(self, ts: float, frame: int, how: str) -> None:
        """The connection ended: "fin" or "rst" (ts/frame of that packet), or "eof" when the capture
        ended first or a new connection took over the 4-tuple (ts/frame of its last packet)."""


TcpSelector = Callable[[Connection, int, bytes], StreamSink | None]
ConnectFailed = Callable[[Connection, str, float, int, int], None]
UdpHandler = Callable[[float, int, str, int, str, int, bytes], None]


def _reverse(key: bytes) -> bytes:
    """The table key of the opposite direction (keys are src addr, dst addr, src port, dst port)."""
    if len(key) == 12:
        return key[4:8] + key[0:4] + key[10:12] + key[8:10]
    return key[16:32] + key[0:16] + key[34:36] + key[32:34]


def _server_rank(port: int) -> int:
    return 2 if port in SERVER_PORTS else 1 if port < 1024 else 0


def _offset(seq: int, base: int) -> int:
    """seq - base as a signed 32-bit distance (sequence numbers wrap)."""
    r = (seq - base) & _M
    return r - 0x100000000 if r & _HALF else r


class _Half:
    """Reassembly state of one direction."""

    __slots__ = ("acked", "base", "fin", "hole_frame", "hole_ts", "nxt", "origin", "seg_bytes", "segs")

    def __init__(self) -> None:
        self.base: int | None = None  # first sequence number seen (the ISN when the SYN was seen)
        self.nxt = 0  # next sequence number to deliver (valid once base is set)
        self.origin = 0  # sequence number of stream offset 0 (the first data byte)
        self.segs: list[tuple[int, bytes, int, float, int]] = []  # (seq, data, length, ts, frame)
        self.seg_bytes = 0
        self.hole_frame = 0  # first frame that showed the current hole (what tshark flags)
        self.hole_ts = 0.0
        self.acked: int | None = None  # highest ACK the other side sent for this direction
        self.fin: int | None = None  # sequence number of this direction's FIN


class _Flow:
    """A connection that is pending (no payload yet) or active (has a sink)."""

    __slots__ = (
        "caddr",
        "conn",
        "cport",
        "first_frame",
        "first_ts",
        "halves",
        "index",
        "k0",
        "k1",
        "last_frame",
        "last_ts",
        "payload_seen",
        "saddr",
        "sink",
        "sport",
        "state",
        "stats",
        "syn_seen",
        "synack_seen",
        "syns",
    )

    def __init__(
        self,
        index: int,
        k0: bytes,
        k1: bytes,
        caddr: bytes,
        cport: int,
        saddr: bytes,
        sport: int,
        syn_seen: bool,
        frame: int,
        ts: float,
        stats: Counter[str],
    ) -> None:
        self.index = index
        self.k0 = k0  # key of client -> server packets
        self.k1 = k1
        self.caddr = caddr
        self.cport = cport
        self.saddr = saddr
        self.sport = sport
        self.syn_seen = syn_seen
        self.first_frame = frame
        self.first_ts = ts
        self.last_ts = ts
        self.last_frame = frame
        self.conn: Connection | None = None
        self.sink: StreamSink | None = None
        self.state = _PENDING
        self.halves = (_Half(), _Half())
        self.stats = stats
        self.syns = 0  # SYNs the client sent (retransmissions included)
        self.synack_seen = False
        self.payload_seen = False

    def connection(self) -> Connection:
        if self.conn is None:
            self.conn = Connection(
                self.index,
                address_text(self.caddr),
                self.cport,
                address_text(self.saddr),
                self.sport,
                self.syn_seen,
                self.first_frame,
                self.first_ts,
            )
        return self.conn

    def entries(self, genfloor: int, closed: bool) -> tuple[int, int]:
        """The int table entries (for k0, k1) that replace this flow once it is ignored or closed."""
        out = []
        for h in self.halves:
            v = genfloor | (_E_CLOSED if closed else 0) | (_E_FIN if h.fin is not None else 0)
            if h.base is not None:
                v |= _E_BASE | (h.base << 3)
            out.append(v)
        return out[0], out[1]

    # -- per segment --------------------------------------------------------------------------

    def segment(
        self,
        d: int,
        seq: int,
        ack: int,
        flags: int,
        payload: bytes,
        paylen: int,
        ts: float,
        frame: int,
        selector: TcpSelector,
    ) -> int:
        """Process one segment of direction d; returns _KEEP, _IGNORE or _CLOSED."""
        halves = self.halves
        h = halves[d]
        self.last_ts = ts
        self.last_frame = frame
        if h.base is None:
            h.base = seq
            h.nxt = h.origin = (seq + 1) & _M if flags & _SYN else seq
        if flags & _RST:
            self.end(ts, frame, "rst")
            return _CLOSED
        if flags & _SYN:
            if flags & _ACK:
                self.synack_seen = True
            else:
                self.syns += 1
        dseq = (seq + 1) & _M if flags & _SYN else seq
        if paylen:
            self.payload_seen = True
            if self.state == _PENDING:
                sink = selector(self.connection(), d, payload)
                if sink is None:
                    return _IGNORE
                self.sink = sink
                self.state = _ACTIVE
            if self.state == _ACTIVE:
                self._data(h, d, dseq, payload, paylen, ts, frame)
        elif not flags & (_SYN | _FIN) and not h.hole_frame and _offset(seq, h.nxt) > 0:
            # An empty segment beyond what was delivered: bytes before it were not captured.
            h.hole_frame = frame
            h.hole_ts = ts
        if flags & _ACK:
            o = halves[d ^ 1]
            if o.base is not None:
                if o.acked is None or _offset(ack, o.acked) > 0:
                    o.acked = ack
                if o.segs and _offset(ack, o.nxt) > 0:
                    self._gap(o, d ^ 1, ack, ts, frame)
        if flags & _FIN:
            fin = (dseq + paylen) & _M
            if h.fin is None:
                h.fin = fin
            if self.state == _ACTIVE:
                self._flush(h, d, fin, ts, frame)
        if self.state == _DROPPED:
            return _IGNORE
        if halves[0].fin is not None and halves[1].fin is not None:
            self.end(ts, frame, "fin")
            return _CLOSED
        return _KEEP

    def end(self, ts: float, frame: int, how: str) -> None:
        """Deliver what is buffered (declaring the holes) and tell the sink the connection is over."""
        if self.state == _ACTIVE:
            for d, h in enumerate(self.halves):
                while h.segs:
                    self._gap(h, d, None, ts, frame)
            if self.sink is not None:
                self.sink.on_close(ts, frame, how)
        self.sink = None
        self.state = _DROPPED

    # -- reassembly ----------------------------------------------------------------------------

    def _data(self, h: _Half, d: int, seq: int, data: bytes, length: int, ts: float, frame: int) -> None:
        off = _offset(seq, h.nxt)
        if off < 0:
            if off + length <= 0:
                self.stats["tcp.retransmissions"] += 1
                return
            self.stats["tcp.overlaps"] += 1
            data = data[-off:]
            length += off
            seq = h.nxt
            off = 0
        if off == 0:
            self._deliver(d, data, length, ts, frame)
            h.nxt = (seq + length) & _M
            if h.segs:
                self._drain(h, d)
            return
        if not h.hole_frame:
            h.hole_frame = frame
            h.hole_ts = ts
        h.segs.append((seq, data, length, ts, frame))
        h.seg_bytes += len(data)
        if h.acked is not None and _offset(h.acked, h.nxt) > 0:
            # The receiver acknowledged bytes we never saw: they are lost to the capture.
            self._gap(h, d, h.acked, ts, frame)
        elif len(h.segs) > MAX_SEGMENTS or h.seg_bytes > MAX_BUFFERED:
            self.stats["tcp.buffer_overflows"] += 1
            self._gap(h, d, None, ts, frame)

    def _deliver(self, d: int, data: bytes, length: int, ts: float, frame: int) -> None:
        sink = self.sink
        if sink is None:
            return
        if data:
            if hasattr(sink, "peer_acked"):
                # how much of the other direction the sender had acknowledged: lets a sink tell, after
                # a capture gap, which request an answer belongs to
                o = self.halves[d ^ 1]
                sink.peer_acked = None if o.acked is None else _offset(o.acked, o.origin)
            sink.on_data(d, data, ts, frame)
        if length > len(data):
            # Payload beyond the snapshot length: on the wire, not in the file.
            self.stats["tcp.truncated_bytes"] += length - len(data)
            sink.on_gap(d, length - len(data), ts, frame)
        if getattr(sink, "done", False):
            self.sink = None
            self.state = _DROPPED

    def _gap(self, h: _Half, d: int, limit: int | None, ts: float, frame: int) -> None:
        """Declare the hole before the first buffered segment (or up to `limit`) lost, then drain."""
        nxt = h.nxt
        size = -1
        first: tuple[int, bytes, int, float, int] | None = None
        for seg in h.segs:
            r = _offset(seg[0], nxt)
            if size < 0 or r < size:
                size = r
                first = seg
        if limit is not None:
            lim = _offset(limit, nxt)
            if lim > 0 and (size < 0 or lim < size):
                size = lim
        if size > 0:
            if h.hole_frame:
                ts, frame = h.hole_ts, h.hole_frame
            elif first is not None:
                ts, frame = first[3], first[4]
            self.stats["tcp.lost_segments"] += 1
            self.stats["tcp.lost_bytes"] += size
            h.nxt = (nxt + size) & _M
            h.hole_frame = 0
            sink = self.sink
            if sink is not None:
                sink.on_gap(d, size, ts, frame)
                if getattr(sink, "done", False):
                    self.sink = None
                    self.state = _DROPPED
        self._drain(h, d)

    def _drain(self, h: _Half, d: int) -> None:
        """Deliver buffered segments that now continue the stream."""
        segs = h.segs
        if not segs:
            return
        start = h.nxt
        segs.sort(key=lambda s: (s[0] - start + _HALF) & _M)
        used = 0
        for seq, data, length, ts, frame in segs:
            off = _offset(seq, h.nxt)
            if off > 0:
                break
            used += 1
            h.seg_bytes -= len(data)
            if off + length <= 0:
                self.stats["tcp.retransmissions"] += 1
                continue
            if off:
                self.stats["tcp.overlaps"] += 1
            self._deliver(d, data[-off:] if off else data, length + off, ts, frame)
            h.nxt = (seq + length) & _M
        del segs[:used]
        if not segs:
            h.hole_frame = 0
            h.seg_bytes = 0

    def _flush(self, h: _Half, d: int, upto: int, ts: float, frame: int) -> None:
        """At a FIN: everything before `upto` is final, so declare its holes."""
        while h.segs and _offset(upto, h.nxt) > 0:
            self._gap(h, d, upto, ts, frame)
        if _offset(upto, h.nxt) > 0:
            self._gap(h, d, upto, ts, frame)
        if h.segs:  # data beyond the FIN: not part of the stream
            h.segs.clear()
            h.seg_bytes = 0


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"

def flow_warnings(counts: Counter[str], unknown_linktypes: Mapping[int, int]) -> list[str]:
    """What `Dispatcher.warnings` says about `counts` (its stats) and the frames of unknown link
    types: one line per kind of problem, with counts."""
    out = [
        f"{_plural(n, 'packet')} with an unknown link type {linktype} skipped"
        for linktype, n in sorted(unknown_linktypes.items())
    ]
    for reason, text in SKIP_REASONS.items():
        n = counts.get("skipped." + reason, 0)
        if n and reason not in ("unknown_linktype", "non_ip"):
            out.append(f"{_plural(n, 'packet')} skipped: {text}")
    lost = counts["ip.fragments_timed_out"] + counts["ip.fragments_evicted"] + counts["ip.fragments_incomplete"]
    if lost:
        out.append(f"{_plural(lost, 'fragmented IP datagram')} never completed")
    if counts["tcp.lost_segments"]:
        out.append(
            f"{_plural(counts['tcp.lost_segments'], 'gap')} in TCP streams "
            f"({counts['tcp.lost_bytes']} bytes not captured)"
        )
    if counts["tcp.truncated_bytes"]:
        out.append(f"{counts['tcp.truncated_bytes']} bytes of TCP payload cut by the snapshot length")
    if counts["tcp.buffer_overflows"]:
        out.append(
            f"{_plural(counts['tcp.buffer_overflows'], 'TCP hole')} given up because too much "
            "out-of-order data was waiting behind it"
        )
    return out



class Dispatcher:
    """Feeds every frame through the decoder, TCP reassembly and the UDP hand-off.

    `feed(frame, ts, linktype, data, wirelen)` processes one frame; `finish()` ends the capture;
    `run(capture)` does both for a whole `Capture`.  `stats` and `warnings` describe what was seen
    and skipped.  Exceptions raised by the selector, sinks or UDP handler propagate.
    """

    feed: Callable[[int, float, int, bytes, int], None]

    def __init__(
        self,
        tcp_selector: TcpSelector,
        udp_handler: UdpHandler,
        udp_ports: frozenset[int] | None = frozenset({53, 88, 5060}),
        tcp_ports: frozenset[int] | None = None,
        connect_failed: ConnectFailed | None = None,
        partition: Partition | None = None,
    ) -> None:
        """`connect_failed(conn, how, ts, frame, syns)` hears of connections that never carried a
        byte: "refused" (the server answered the SYN with RST), "reset" (RST right after the
        handshake), "no answer" (SYNs without reply: a dropping firewall, a host that is down).

        With `partition`, only the connections and datagrams whose client address it owns are
        decoded (the others are ignored, like connections on other ports), and its `position`
        follows the frame being processed."""
        self.udp_ports = udp_ports
        self.tcp_ports = tcp_ports
        self.partition = partition
        self._connect_failed = connect_failed
        self._counts: Counter[str] = Counter()
        self.decoder = Decoder(self._counts)
        self._selector = tcp_selector
        self._udp_handler = udp_handler
        self.feed, self._sync, self._finish, self._prefilter = self._engine()
        self._finished = False

    @property
    def stats(self) -> Counter[str]:
        """packets, bytes (on the wire), ipv4, ipv6, tcp, udp, tcp.connections, tcp.retransmissions,
        tcp.overlaps, tcp.lost_segments, tcp.lost_bytes, tcp.truncated_bytes, skipped.<reason>, ..."""
        self._sync()
        return self._counts

    @property
    def warnings(self) -> list[str]:
        """Human-readable, one line per kind of problem, with counts."""
        return flow_warnings(self.stats, self.decoder.unknown_linktypes)

    def finish(self) -> None:
        """End of capture: flush buffered data and close every open sink with how="eof"."""
        if not self._finished:
            self._finished = True
            self._finish()

    def run(self, capture: Capture | Iterable[Record], progress: Callable[[int], None] | None = None) -> None:
        """Feed every frame of `capture`, then finish(); progress(capture.position) every 65536 frames.

        A `Capture` (fresh, or after `read_head()`) is scanned with a prefilter: what `feed` would
        drop at once, the reader drops without making objects of it.  Any other iterable of
        records is fed record by record."""
        feed = self.feed
        part = self.partition
        if part is not None:
            inner = feed

            def feed(frame: int, ts: float, linktype: int, data: bytes, wirelen: int) -> None:
                part.position = frame
                inner(frame, ts, linktype, data, wirelen)

        if isinstance(capture, Capture):
            cap = capture
            capture.scan(feed, self._prefilter(None if progress is None else lambda: progress(cap.position)))
        elif progress is None:
            for frame, ts, linktype, data, wirelen in capture:
                feed(frame, ts, linktype, data, wirelen)
        else:
            for n, (frame, ts, linktype, data, wirelen) in enumerate(capture, 1):
                feed(frame, ts, linktype, data, wirelen)
                if not n & 0xFFFF:
                    progress(getattr(capture, "position", 0))
        if part is not None:
            part.position = math.inf
        self.finish()
        if progress is not None:
            progress(getattr(capture, "position", 0))

    def _engine(
        self,
    ) -> tuple[
        Callable[[int, float, int, bytes, int], None],
        Callable[[], None],
        Callable[[], None],
        Callable[[Callable[[], None] | None], Prefilter],
    ]:
        """Build feed() as a closure: its state lives in cells, which is faster than attributes."""
        counts = self._counts
        decoder = self.decoder
        decode = decoder.decode
        selector = self._selector
        udp_handler = self._udp_handler
        connect_failed = self._connect_failed
        udp_ports = self.udp_ports
        # what feed's fast path and the reader's prefilter pass on: the UDP decoded, and the UDP
        # tunnels (VXLAN, Geneve) whose frames the decoder takes out
        handed = None if udp_ports is None else udp_ports | UDP_TUNNEL_PORTS
        tcp_ports = self.tcp_ports
        partition = self.partition
        earliest, latest = EARLIEST_TIME, LATEST_TIME
        table: dict[bytes, _Flow | int] = {}
        eth_ip4 = _ETH_IP4.unpack_from
        tcp_head = _TCP.unpack_from
        udp_head = _UDP.unpack_from
        ports = _PORTS.unpack_from
        housekeeping_mask = HOUSEKEEPING_EVERY - 1
        n_packets = n_bytes = n_fast = n_fast_udp = n_ipv4 = n_ipv6 = n_tcp = n_udp = n_conn = 0
        gen = 1
        genfloor = gen << _GEN_SHIFT
        sweep_ts: float | None = None
        # set when a reader drops packets for feed (Capture.scan): it then counts them and calls
        # housekeeping itself, at the same packets as feed would
        pre: Prefilter | None = None

        def housekeeping(ts: float) -> None:
            nonlocal gen, genfloor, sweep_ts
            if sweep_ts is None:
                sweep_ts = ts
                return
            if ts - sweep_ts < SWEEP_SECONDS and len(table) < MAX_TABLE:
                return
            sweep_ts = ts
            stale_open = (gen - IDLE_SWEEPS + 1) << _GEN_SHIFT if gen >= IDLE_SWEEPS else 0
            stale_closed = gen << _GEN_SHIFT
            gen += 1
            genfloor = gen << _GEN_SHIFT

            def stale(entry: _Flow | int) -> bool:
                if isinstance(entry, int):
                    return entry < stale_open or (bool(entry & _E_CLOSED) and entry < stale_closed)
                return entry.last_ts < ts - (PENDING_IDLE if entry.state == _PENDING else ACTIVE_IDLE)

            doomed = [key for key, entry in table.items() if stale(entry)]
            for key in doomed:
                entry = table.pop(key)
                if isinstance(entry, _Flow) and key == entry.k0:
                    if entry.state == _PENDING:
                        unanswered(entry)
                    else:
                        entry.end(entry.last_ts, entry.last_frame, "eof")
            counts["tcp.table_evictions"] += len(doomed)  # keys: two per connection

        def unanswered(flow: _Flow) -> None:
            """A client's SYNs that got nothing back (reported once the flow is given up)."""
            if connect_failed is not None and flow.syns and not flow.synack_seen and flow.halves[1].base is None:
                connect_failed(flow.connection(), "no answer", flow.last_ts, flow.last_frame, flow.syns)

        def retire(flow: _Flow, closed: bool) -> None:
            v0, v1 = flow.entries(genfloor, closed)
            table[flow.k0] = v0
            table[flow.k1] = v1

        def ignored(key: bytes, v: int, seq: int, flags: int) -> bool:
            """A packet of an ignored or closed connection; True if it starts a new connection."""
            if flags & (_SYN | _ACK) == _SYN and v & _E_BASE and (v >> 3) & _M != seq:
                return True
            nv = (v & _GEN_MASK) | genfloor
            if not nv & _E_BASE:
                nv |= _E_BASE | (seq << 3)
            if flags & (_RST | _FIN):
                rkey = _reverse(key)
                other = table.get(rkey)
                if flags & _RST:
                    nv |= _E_CLOSED
                else:
                    nv |= _E_FIN
                    if isinstance(other, int) and other & _E_FIN:
                        nv |= _E_CLOSED
                if nv & _E_CLOSED and isinstance(other, int):
                    table[rkey] = other | _E_CLOSED
            table[key] = nv
            return False

        def tcp(
            frame: int,
            ts: float,
            key: bytes,
            entry: _Flow | int | None,
            src: bytes,
            dst: bytes,
            buf: bytes,
            t: int,
            stop: int,
            missing: int,
        ) -> None:
            nonlocal n_tcp, n_ipv4, n_ipv6, n_conn
            n_tcp += 1
            if len(src) == 4:
                n_ipv4 += 1
            else:
                n_ipv6 += 1
            if stop - t < 14:
                counts["skipped.truncated" if missing else "skipped.bad_tcp_header"] += 1
                return
            sport, dport, seq, ack, offx, flags = tcp_head(buf, t)
            hlen = (offx >> 4) * 4
            pstart = t + hlen
            paylen = stop + missing - pstart
            if hlen < 20 or paylen < 0:
                counts["skipped.bad_tcp_header"] += 1
                return
            payload = buf[pstart:stop] if paylen and stop > pstart else b""
            if isinstance(entry, int):
                if not ignored(key, entry, seq, flags):
                    return
            elif entry is not None:
                flow = entry
                d = 0 if key == flow.k0 else 1
                if flags & (_SYN | _ACK) == _SYN:
                    base = flow.halves[d].base
                    if base is not None and base != seq:
                        # The 4-tuple is reused by a new connection (its FIN/RST was not captured).
                        flow.end(flow.last_ts, flow.last_frame, "eof")
                        entry = None
                if entry is not None:
                    state = flow.segment(d, seq, ack, flags, payload, paylen, ts, frame, selector)
                    if state:
                        if flags & _RST and d == 1 and flow.syns and not flow.payload_seen and connect_failed is not None:
                            how = "reset" if flow.synack_seen else "refused"
                            connect_failed(flow.connection(), how, ts, frame, flow.syns)
                        retire(flow, state == _CLOSED)
                    return
            index = n_conn
            n_conn += 1
            rkey = _reverse(key)
            if flags & _SYN:
                sender_is_client = not flags & _ACK
            else:
                sender_is_client = _server_rank(sport) <= _server_rank(dport)
            if (tcp_ports is not None and sport not in tcp_ports and dport not in tcp_ports) or (
                partition is not None and not partition.owns(src if sender_is_client else dst)
            ):  # not ours to decode: an ignored connection from its first packet
                table[key] = genfloor | _E_BASE | (seq << 3) | (_E_CLOSED if flags & _RST else 0)
                table[rkey] = genfloor
                return
            syn = bool(flags & _SYN)
            if sender_is_client:
                flow = _Flow(index, key, rkey, src, sport, dst, dport, syn, frame, ts, counts)
            else:
                flow = _Flow(index, rkey, key, dst, dport, src, sport, syn, frame, ts, counts)
            table[key] = table[rkey] = flow
            state = flow.segment(
                0 if sender_is_client else 1, seq, ack, flags, payload, paylen, ts, frame, selector
            )
            if state:
                retire(flow, state == _CLOSED)

        def udp(
            frame: int, ts: float, src: bytes, dst: bytes, buf: bytes, u: int, stop: int, missing: int
        ) -> None:
            nonlocal n_udp, n_ipv4, n_ipv6
            n_udp += 1
            if len(src) == 4:
                n_ipv4 += 1
            else:
                n_ipv6 += 1
            if stop - u < 8:
                counts["skipped.truncated" if missing else "skipped.bad_udp_header"] += 1
                return
            sport, dport, ulen = udp_head(buf, u)
            if udp_ports is not None and sport not in udp_ports and dport not in udp_ports:
                return
            if partition is not None:
                rs, rd = _server_rank(sport), _server_rank(dport)
                client = src if rs < rd else dst if rs > rd else min(src, dst)
                if not partition.owns(client):
                    return
            end = u + ulen if ulen else stop + missing  # 0: IPv6 jumbogram
            if end > stop:
                counts["skipped.truncated_udp" if missing else "skipped.bad_udp_header"] += 1
                return
            if ulen and ulen < 8:
                counts["skipped.bad_udp_header"] += 1
                return
            udp_handler(ts, frame, address_text(src), sport, address_text(dst), dport, buf[u + 8 : end])

        def feed(frame: int, ts: float, linktype: int, data: bytes, wirelen: int) -> None:
            nonlocal n_packets, n_bytes, n_fast, n_fast_udp, n_ipv4, n_ipv6
            n_packets += 1
            n_bytes += wirelen
            if not earliest <= ts < latest:
                counts["skipped.bad_time"] += 1
                return
            if not n_packets & housekeeping_mask and pre is None:
                housekeeping(ts)
            if linktype == 1 and len(data) >= 54:
                # Fast path: untagged Ethernet, IPv4 without options, not a fragment.
                etype, vihl, total, fragword, proto = eth_ip4(data)
                if etype == 0x0800 and vihl == 0x45 and not fragword & 0x3FFF:
                    if proto == 6:
                        key = data[26:38]
                        entry = table.get(key)
                        if entry.__class__ is int and entry >= genfloor and not data[47] & 7:  # type: ignore[operator]
                            n_fast += 1  # ignored connection, no SYN/FIN/RST, fresh entry
                            return
                        if 40 <= total <= len(data) - 14:
                            tcp(frame, ts, key, entry, data[26:30], data[30:34], data, 34, 14 + total, 0)
                            return
                    elif proto == 17 and handed is not None:
                        sport, dport = ports(data, 34)
                        if sport not in handed and dport not in handed:
                            n_fast_udp += 1
                            return
            packet = decode(linktype, data, ts, len(data) < wirelen)
            if packet is None:
                return
            proto, src, dst, buf, start, stop, missing = packet
            if proto == 6:
                if stop - start < 4:
                    counts["skipped.truncated" if missing else "skipped.bad_tcp_header"] += 1
                    return
                key = src + dst + buf[start : start + 4]
                tcp(frame, ts, key, table.get(key), src, dst, buf, start, stop, missing)
            elif proto == 17:
                udp(frame, ts, src, dst, buf, start, stop, missing)
            else:
                if len(src) == 4:
                    n_ipv4 += 1
                else:
                    n_ipv6 += 1
                counts["ip.other_protocols"] += 1

        def sync() -> None:
            dropped_udp, dropped_tcp, dropped_bytes = (pre.udp, pre.tcp, pre.bytes) if pre is not None else (0, 0, 0)
            counts["packets"] = n_packets + dropped_udp + dropped_tcp
            counts["bytes"] = n_bytes + dropped_bytes
            counts["ipv4"] = n_ipv4 + n_fast + n_fast_udp + dropped_udp + dropped_tcp
            counts["ipv6"] = n_ipv6
            counts["tcp"] = n_tcp + n_fast + dropped_tcp
            counts["udp"] = n_udp + n_fast_udp + dropped_udp
            counts["tcp.connections"] = n_conn
            counts["tcp.table_entries"] = len(table)  # two per connection being tracked

        def prefilter(on_tick: Callable[[], None] | None) -> Prefilter:
            """What a reader may drop for feed: the packets feed's own fast path would drop.  From
            now on the reader keeps time for housekeeping."""
            nonlocal pre

            def tick(ts: float) -> None:
                if partition is not None:
                    partition.position = made.frame - 0.5  # before the frame the reader is at
                if earliest <= ts < latest:  # a damaged record's time would make every connection idle
                    housekeeping(ts)
                made.tcp_floor = genfloor
                if on_tick is not None:
                    on_tick()

            made = Prefilter(handed, table, genfloor, tick, HOUSEKEEPING_EVERY)  # type: ignore[arg-type]
            pre = made
            return made

        def finish() -> None:
            flows = {id(v): v for v in table.values() if isinstance(v, _Flow)}
            for flow in sorted(flows.values(), key=lambda f: f.index):
                if flow.state == _PENDING and flow.syns > 1:  # retried SYNs still unanswered at the end
                    unanswered(flow)
                flow.end(flow.last_ts, flow.last_frame, "eof")
            table.clear()
            decoder.finish()

        return feed, sync, finish, prefilter
