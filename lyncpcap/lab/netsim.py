"""A small simulated network that the lab scenarios talk over: hosts, TCP and UDP conversations,
link-layer framing and a clock, all drawn from one seed so the same scenario gives the same bytes.

The capture point is the client side of a conversation unless `Network.tcp(capture="server")`
says otherwise: what the capturing end sends is stamped when it leaves, what the other end sends
when it arrives (half a round trip later).  Times are kept as integer nanoseconds; `Network.now`
shows them as float seconds since the epoch.
"""

from __future__ import annotations

import datetime
import heapq
import ipaddress
import os
import random
import socket
import struct
from dataclasses import dataclass
from decimal import Decimal

from lyncpcap.lab import pcapwriter

# Link types (tcpdump.org LINKTYPE_* values) for each framing the network can write.
LINKTYPES: dict[str, int] = {"ethernet": 1, "vlan": 1, "qinq": 1, "sll": 113, "sll2": 276, "raw": 101}

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_8021Q = 0x8100
ETH_8021AD = 0x88A8
ARPHRD_ETHER = 1
SLL_HOST, SLL_OTHERHOST, SLL_OUTGOING = 0, 3, 4

PROTO_TCP = 6
PROTO_UDP = 17
IPV6_FRAGMENT = 44

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

MTU = 1500
NS = 1_000_000_000
DELAYED_ACK_NS = 40_000_000  # the receiver ACKs at the latest this long after unacknowledged data
MIN_RTO_NS = 300_000_000  # Windows' minimum retransmission timeout
WINDOW_SCALE = 8  # what Windows offers in its SYN
EPHEMERAL = (49152, 65535)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def seconds_to_ns(seconds: float) -> int:
    """Seconds (float) to integer nanoseconds through the float's shortest decimal form, so that
    0.1 means exactly 100 000 000 ns on every platform."""
    return int((Decimal(repr(float(seconds))) * NS).to_integral_value())


def datetime_to_ns(when: datetime.datetime) -> int:
    """A datetime (naive means UTC) as integer nanoseconds since the epoch."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    delta = when - _EPOCH
    return (delta.days * 86400 + delta.seconds) * NS + delta.microseconds * 1000


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _mac_bytes(mac: str) -> bytes:
    parts = mac.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return bytes(int(p, 16) for p in parts)


def _tx_ns(frame_len: int) -> int:
    """Time a stack needs to put one frame on a gigabit link, plus a microsecond of processing."""
    return 1000 + 8 * frame_len


@dataclass(frozen=True, slots=True)
class Host:
    """A machine on the simulated network."""

    name: str
    ipv4: str | None
    ipv6: str | None
    mac: str
    ttl: int = 128  # Windows' default TTL / hop limit


class Network:
    """The simulated network: hosts, conversations, and the frames they produced."""

    def __init__(
        self,
        seed: int,
        start: datetime.datetime,
        link: str = "ethernet",
        vlan_id: int = 100,
        snaplen: int = 262144,
        *,
        inner_vlan_id: int = 10,
    ) -> None:
        if link not in LINKTYPES:
            raise ValueError(f"unknown link type {link!r}; one of {sorted(LINKTYPES)}")
        if not 0 < vlan_id < 4095 or not 0 < inner_vlan_id < 4095:
            raise ValueError("VLAN ids are 1..4094")
        self.seed = seed
        self.rng = random.Random(seed)
        self.link = link
        self.vlan_id = vlan_id
        self.inner_vlan_id = inner_vlan_id
        self.snaplen = snaplen
        # The host the capture is taken on (first host created unless set); SLL packet types use it.
        self.capture_host: Host | None = None
        self._now_ns = datetime_to_ns(start)
        self._frames: list[tuple[int, int, bytes]] = []
        self._hosts: dict[str, Host] = {}
        self._ip_id: dict[str, int] = {}
        self._ip6_frag_id: dict[str, int] = {}
        self._ports: dict[str, set[int]] = {}
        self._conns: list[TcpConn] = []

    # -- clock ---------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        """The clock in seconds since the epoch (may be set back to interleave conversations)."""
        return self._now_ns / NS

    @now.setter
    def now(self, value: float) -> None:
        self._now_ns = seconds_to_ns(value)

    @property
    def now_ns(self) -> int:
        return self._now_ns

    @now_ns.setter
    def now_ns(self, value: int) -> None:
        self._now_ns = int(value)

    @property
    def now_datetime(self) -> datetime.datetime:
        """The clock as an aware UTC datetime (microsecond precision), e.g. for protocol timestamps."""
        return _EPOCH + datetime.timedelta(microseconds=self._now_ns // 1000)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("advance() goes forward only; set `now` to go back")
        self._now_ns += seconds_to_ns(seconds)

    @property
    def linktype(self) -> int:
        return LINKTYPES[self.link]

    # -- hosts ---------------------------------------------------------------------------------

    def host(
        self,
        name: str,
        ipv4: str | None = None,
        ipv6: str | None = None,
        mac: str | None = None,
        *,
        ttl: int = 128,
    ) -> Host:
        """Create (or fetch, when called again with the same or no addresses) a host.

        Without `mac` the host gets a Hyper-V style address (00:15:5d:…) drawn from the seed."""
        if name in self._hosts:
            old = self._hosts[name]
            for given, have in ((ipv4, old.ipv4), (ipv6, old.ipv6), (mac, old.mac)):
                if given is not None and given != have:
                    raise ValueError(f"host {name!r} already exists with other addresses")
            return old
        if ipv4 is None and ipv6 is None:
            raise ValueError(f"host {name!r} needs an IPv4 or an IPv6 address")
        if ipv4 is not None:
            ipv4 = str(ipaddress.IPv4Address(ipv4))
        if ipv6 is not None:
            ipv6 = str(ipaddress.IPv6Address(ipv6))
        if mac is None:
            tail = self.rng.getrandbits(24).to_bytes(3, "big")
            mac = "00:15:5d:" + ":".join(f"{b:02x}" for b in tail)
        else:
            mac = ":".join(f"{b:02x}" for b in _mac_bytes(mac))
        h = Host(name, ipv4, ipv6, mac, ttl)
        self._hosts[name] = h
        self._ip_id[name] = self.rng.randrange(0x10000)
        self._ip6_frag_id[name] = self.rng.getrandbits(32)
        self._ports[name] = set()
        if self.capture_host is None:
            self.capture_host = h
        return h

    def _ephemeral_port(self, host: Host) -> int:
        used = self._ports[host.name]
        if len(used) >= EPHEMERAL[1] - EPHEMERAL[0] + 1:
            raise RuntimeError(f"host {host.name!r} has no ephemeral ports left")
        while True:
            port = self.rng.randint(*EPHEMERAL)
            if port not in used:
                used.add(port)
                return port

    def _check_host(self, host: Host) -> None:
        if self._hosts.get(host.name) is not host:
            raise ValueError(f"host {host.name!r} does not belong to this network")

    # -- conversations -------------------------------------------------------------------------

    def tcp(
        self,
        client: Host,
        server: Host,
        port: int,
        *,
        family: int = 4,
        sport: int | None = None,
        rtt: float = 0.002,
        mss: int = 1460,
        window: int = 64240,
        handshake: bool = True,
        capture: str = "client",
    ) -> TcpConn:
        """Open a TCP connection at `now` (three-way handshake unless `handshake` is False, in
        which case the connection is taken as already open when the capture started).

        `capture` says where the capture is taken: "client" (the default) or "server"; packets
        sent from that end are stamped when sent, the others half a round trip later."""
        self._check_host(client)
        self._check_host(server)
        if sport is None:
            sport = self._ephemeral_port(client)
        else:
            self._ports[client.name].add(sport)
        conn = TcpConn(
            self,
            client,
            server,
            sport,
            port,
            family=family,
            rtt=rtt,
            mss=mss,
            window=window,
            index=len(self._conns),
            capture=capture,
        )
        self._conns.append(conn)
        if handshake:
            conn._handshake()
        return conn

    def udp(
        self, src: Host, dst: Host, dport: int, payload: bytes, *, sport: int | None = None, family: int = 4
    ) -> int:
        """One datagram at `now` (fragmented at the 1500-byte MTU if needed); returns the source port."""
        self._check_host(src)
        self._check_host(dst)
        if sport is None:
            sport = self._ephemeral_port(src)
        else:
            self._ports[src.name].add(sport)
        self._send_udp(self._now_ns, src, dst, sport, dport, payload, family)
        return sport

    def udp_reply(
        self,
        src: Host,
        dst: Host,
        sport: int,
        dport: int,
        payload: bytes,
        *,
        delay: float = 0.001,
        family: int = 4,
    ) -> None:
        """A datagram `delay` seconds after `now`; `now` moves to it."""
        self._check_host(src)
        self._check_host(dst)
        t = self._now_ns + seconds_to_ns(delay)
        self._send_udp(t, src, dst, sport, dport, payload, family)
        self._now_ns = t

    def _send_udp(
        self, t: int, src: Host, dst: Host, sport: int, dport: int, payload: bytes, family: int
    ) -> None:
        s_ip, d_ip = _addr(src, family), _addr(dst, family)
        length = 8 + len(payload)
        if length > 0xFFFF:
            raise ValueError("UDP payload too large")
        header = struct.pack("!HHHH", sport, dport, length, 0)
        csum = checksum(_pseudo_header(s_ip, d_ip, family, PROTO_UDP, length) + header + payload) or 0xFFFF
        datagram = header[:6] + struct.pack("!H", csum) + payload
        for packet in self._ip_packets(src, dst, family, PROTO_UDP, datagram, df=False):
            frame = self.link_frame(src, dst, packet)
            self._add(t, frame)
            t += _tx_ns(len(frame))

    def raw_frame(self, data: bytes) -> None:
        """Append an arbitrary link-layer frame at `now` (noise, damaged packets)."""
        self._add(self._now_ns, bytes(data))

    # -- IP and link layers --------------------------------------------------------------------

    def _ip_packets(
        self, src: Host, dst: Host, family: int, proto: int, payload: bytes, *, df: bool
    ) -> list[bytes]:
        """`payload` in one IP packet, or in fragments when it does not fit the MTU."""
        s_ip, d_ip = _addr(src, family), _addr(dst, family)
        if family == 4:
            ident = self._ip_id[src.name]
            self._ip_id[src.name] = (ident + 1) & 0xFFFF
            if 20 + len(payload) <= MTU:
                return [_ipv4(s_ip, d_ip, proto, payload, ident, src.ttl, df=df)]
            if df:
                raise ValueError("packet larger than the MTU with DF set")
            step = (MTU - 20) // 8 * 8
            out = []
            for off in range(0, len(payload), step):
                chunk = payload[off : off + step]
                more = off + step < len(payload)
                out.append(
                    _ipv4(s_ip, d_ip, proto, chunk, ident, src.ttl, df=False, more=more, offset=off // 8)
                )
            return out
        if 40 + len(payload) <= MTU:
            return [_ipv6(s_ip, d_ip, proto, payload, src.ttl)]
        ident = self._ip6_frag_id[src.name]
        self._ip6_frag_id[src.name] = (ident + 1) & 0xFFFFFFFF
        step = (MTU - 40 - 8) // 8 * 8
        out = []
        for off in range(0, len(payload), step):
            chunk = payload[off : off + step]
            more = off + step < len(payload)
            frag = struct.pack("!BBHI", proto, 0, off | int(more), ident) + chunk
            out.append(_ipv6(s_ip, d_ip, IPV6_FRAGMENT, frag, src.ttl))
        return out

    def link_frame(self, src: Host, dst: Host, ip_packet: bytes) -> bytes:
        """Wrap an IP packet in this network's link-layer framing (public for hand-made frames)."""
        ethertype = ETH_IPV6 if ip_packet[:1] and ip_packet[0] >> 4 == 6 else ETH_IPV4
        link = self.link
        if link == "raw":
            return ip_packet
        if link in ("sll", "sll2"):
            if self.capture_host is src:
                pkttype = SLL_OUTGOING
            elif self.capture_host is dst:
                pkttype = SLL_HOST
            else:
                pkttype = SLL_OTHERHOST
            addr = _mac_bytes(src.mac).ljust(8, b"\x00")
            if link == "sll":
                return struct.pack("!HHH8sH", pkttype, ARPHRD_ETHER, 6, addr, ethertype) + ip_packet
            return struct.pack("!HHIHBB8s", ethertype, 0, 1, ARPHRD_ETHER, pkttype, 6, addr) + ip_packet
        head = _mac_bytes(dst.mac) + _mac_bytes(src.mac)
        if link == "vlan":
            head += struct.pack("!HH", ETH_8021Q, self.vlan_id)
        elif link == "qinq":
            head += struct.pack("!HHHH", ETH_8021AD, self.vlan_id, ETH_8021Q, self.inner_vlan_id)
        return head + struct.pack("!H", ethertype) + ip_packet

    def _add(self, t_ns: int, frame: bytes) -> None:
        self._frames.append((t_ns, len(self._frames), frame))

    # -- output --------------------------------------------------------------------------------

    def _flush(self) -> None:
        for conn in self._conns:
            conn._flush_delayed_acks(None)

    def _sorted(self) -> list[tuple[int, int, bytes]]:
        self._flush()
        return sorted(self._frames)

    def packets(self) -> list[tuple[float, bytes]]:
        """Every frame as (seconds since the epoch, link-layer bytes), sorted by time (stable).

        Delayed ACKs still pending are sent first, as the stacks would have done."""
        return [(t / NS, frame) for t, _, frame in self._sorted()]

    def _exact_packets(self) -> list[tuple[Decimal, bytes]]:
        return [(Decimal(t).scaleb(-9), frame) for t, _, frame in self._sorted()]

    def write_pcap(
        self, path: str | os.PathLike[str], *, nanosecond: bool = False, big_endian: bool = False
    ) -> None:
        pcapwriter.write_pcap(
            path,
            self._exact_packets(),
            self.linktype,
            nanosecond=nanosecond,
            big_endian=big_endian,
            snaplen=self.snaplen,
        )

    def write_pcapng(
        self,
        path: str | os.PathLike[str],
        *,
        secrets: bytes | None = None,
        comment: str | None = None,
        nanosecond: bool = False,
    ) -> None:
        pcapwriter.write_pcapng(
            path,
            self._exact_packets(),
            self.linktype,
            secrets=secrets,
            comment=comment,
            tsresol_ns=nanosecond,
            snaplen=self.snaplen,
        )


def _addr(host: Host, family: int) -> bytes:
    if family == 4:
        if host.ipv4 is None:
            raise ValueError(f"host {host.name!r} has no IPv4 address")
        return socket.inet_pton(socket.AF_INET, host.ipv4)
    if family == 6:
        if host.ipv6 is None:
            raise ValueError(f"host {host.name!r} has no IPv6 address")
        return socket.inet_pton(socket.AF_INET6, host.ipv6)
    raise ValueError(f"family is 4 or 6, not {family!r}")


def _pseudo_header(src: bytes, dst: bytes, family: int, proto: int, length: int) -> bytes:
    if family == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!I3xB", length, proto)


def _ipv4(
    src: bytes,
    dst: bytes,
    proto: int,
    payload: bytes,
    ident: int,
    ttl: int,
    *,
    df: bool,
    more: bool = False,
    offset: int = 0,
) -> bytes:
    flags = (0x4000 if df else 0) | (0x2000 if more else 0) | offset
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, flags, ttl, proto, 0, src, dst)
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + payload


def _ipv6(src: bytes, dst: bytes, next_header: int, payload: bytes, hop_limit: int) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), next_header, hop_limit, src, dst) + payload


class _Side:
    """One end of a TCP connection, as its own stack sees it (times are absolute nanoseconds)."""

    def __init__(self, host: Host, port: int, isn: int, capture_delay: int, name: str) -> None:
        self.host = host
        self.port = port
        self.name = name  # "c2s" for the client (the direction it sends), "s2c" for the server
        self.isn = isn
        self.snd_nxt = isn  # unbounded counters; taken modulo 2**32 on the wire
        self.snd_una = isn
        self.rcv_nxt = 0
        self.rcv_wnd = 0  # bytes this side advertises
        self.wscale = 0  # shift applied to the window field (0 until both SYNs offered scaling)
        self.peer_wnd = 0  # bytes the peer advertises
        self.capture_delay = capture_delay  # capture time = local time + this
        self.last_tx = -1
        self.last_rx = -1  # arrival of the last data/SYN/FIN from the peer
        self.pending_ack: int | None = None  # deadline of a delayed ACK
        self.unacked_full = 0  # full-sized segments received since this side last ACKed
        self.acks_in: list[tuple[int, int]] = []  # heap of (arrival time here, ack value) from the peer
        self.lose_next = False
        self.retransmit_next = False

    def una_at(self, t: int) -> int:
        while self.acks_in and self.acks_in[0][0] <= t:
            _, value = heapq.heappop(self.acks_in)
            self.snd_una = max(self.snd_una, value)
        return self.snd_una

    def window_field(self) -> int:
        return min(self.rcv_wnd >> self.wscale, 0xFFFF)


class TcpConn:
    """A TCP connection between a client and a server host.

    Data is segmented at the MSS with PSH on the last segment; the receiver ACKs every second
    full-sized segment at once and anything else after 40 ms, unless it has data of its own to
    send first (the ACK then rides on it).  Senders never overrun the peer's window."""

    def __init__(
        self,
        net: Network,
        client: Host,
        server: Host,
        sport: int,
        dport: int,
        *,
        family: int,
        rtt: float,
        mss: int,
        window: int,
        index: int,
        capture: str = "client",
    ) -> None:
        if capture not in ("client", "server"):
            raise ValueError(f"capture is 'client' or 'server', not {capture!r}")
        if family not in (4, 6):
            raise ValueError(f"family is 4 or 6, not {family!r}")
        _addr(client, family)
        _addr(server, family)
        if window < 2 * mss:
            raise ValueError("window must hold at least two segments")
        self.net = net
        self.client = client
        self.server = server
        self.client_port = sport
        self.server_port = dport
        self.family = family
        self.index = index
        # IPv6 headers are 20 bytes longer; keep segments inside the 1500-byte MTU.
        self.mss = min(mss, MTU - 60) if family == 6 else min(mss, MTU - 40)
        self.window = window
        self.rtt_ns = seconds_to_ns(rtt)
        self.one_way = self.rtt_ns // 2
        self.rto_ns = max(MIN_RTO_NS, 3 * self.rtt_ns)
        rng = net.rng
        at_client = capture == "client"
        self._c = _Side(client, sport, rng.getrandbits(32), 0 if at_client else self.one_way, "c2s")
        self._s = _Side(server, dport, rng.getrandbits(32), self.one_way if at_client else 0, "s2c")
        self._closed = False
        # A connection already open when the capture starts: no SYN, so no window scaling seen.
        for side, peer in ((self._c, self._s), (self._s, self._c)):
            side.snd_nxt = side.snd_una = side.isn + 1
            side.rcv_nxt = peer.isn + 1
            side.rcv_wnd = min(window, 0xFFFF)
        for side, peer in ((self._c, self._s), (self._s, self._c)):
            side.peer_wnd = peer.rcv_wnd

    def _peer(self, side: _Side) -> _Side:
        return self._s if side is self._c else self._c

    def _side(self, direction: str) -> _Side:
        if direction == "c2s":
            return self._c
        if direction == "s2c":
            return self._s
        raise ValueError(f"direction is 'c2s' or 's2c', not {direction!r}")

    # -- segments ------------------------------------------------------------------------------

    def _emit(
        self,
        side: _Side,
        t: int,
        flags: int,
        payload: bytes = b"",
        *,
        seq: int | None = None,
        options: bytes = b"",
        window: int | None = None,
        captured: bool = True,
    ) -> int:
        """Put one segment on the wire at local time `t` (never before this side's last one)."""
        t = max(t, side.last_tx)
        peer = self._peer(side)
        seq_v = side.snd_nxt if seq is None else seq
        ack_v = side.rcv_nxt if flags & ACK else 0
        win = side.window_field() if window is None else window
        s_ip, d_ip = _addr(side.host, self.family), _addr(peer.host, self.family)
        offset = (20 + len(options)) // 4
        header = (
            struct.pack(
                "!HHIIBBHHH",
                side.port,
                peer.port,
                seq_v & 0xFFFFFFFF,
                ack_v & 0xFFFFFFFF,
                offset << 4,
                flags,
                win,
                0,
                0,
            )
            + options
        )
        segment = header + payload
        csum = checksum(_pseudo_header(s_ip, d_ip, self.family, PROTO_TCP, len(segment)) + segment)
        segment = segment[:16] + struct.pack("!H", csum) + segment[18:]
        (packet,) = self.net._ip_packets(side.host, peer.host, self.family, PROTO_TCP, segment, df=True)
        frame = self.net.link_frame(side.host, peer.host, packet)
        if captured:
            self.net._add(t + side.capture_delay, frame)
        side.last_tx = t + _tx_ns(len(frame))
        if flags & ACK:
            side.pending_ack = None
            side.unacked_full = 0
            heapq.heappush(peer.acks_in, (t + self.one_way, ack_v))
        return t

    def _receive(self, side: _Side, t_arr: int, length: int, *, full: bool) -> None:
        """`side` receives `length` bytes of in-order data at `t_arr` and applies its ACK policy."""
        self._flush_delayed_acks(t_arr, side)
        side.rcv_nxt += length
        side.last_rx = max(side.last_rx, t_arr)
        if full:
            side.unacked_full += 1
        if side.unacked_full >= 2:
            self._emit(side, t_arr, ACK)
        elif side.pending_ack is None:
            side.pending_ack = t_arr + DELAYED_ACK_NS

    def _flush_delayed_acks(self, until: int | None, only: _Side | None = None) -> None:
        """Send the delayed ACKs whose timer expires by local time `until` (all if None)."""
        for side in (self._c, self._s) if only is None else (only,):
            if side.pending_ack is not None and (until is None or side.pending_ack <= until):
                self._emit(side, side.pending_ack, ACK)

    def _transfer(self, sender: _Side, data: bytes, t0: int) -> int:
        """Send `data` from `sender` starting at local time `t0`; returns the local time of the
        last data segment."""
        receiver = self._peer(sender)
        t = max(t0, sender.last_tx, sender.last_rx)
        self._flush_delayed_acks(t, sender)
        chunks = [data[i : i + self.mss] for i in range(0, len(data), self.mss)]
        last = t
        for i, chunk in enumerate(chunks):
            while sender.snd_nxt + len(chunk) - sender.una_at(t) >= sender.peer_wnd:
                if sender.acks_in:
                    t = max(t, sender.acks_in[0][0])
                elif receiver.pending_ack is not None:
                    self._emit(receiver, receiver.pending_ack, ACK)
                else:
                    raise RuntimeError("TCP sender blocked with nothing in flight")
            flags = ACK | (PSH if i == len(chunks) - 1 else 0)
            if sender.retransmit_next:
                # The first copy is captured but never reaches the receiver; after the RTO the
                # sender sends it again.
                sender.retransmit_next = False
                t = self._emit(sender, t, flags, chunk)
                t += self.rto_ns
            captured = not sender.lose_next
            sender.lose_next = False
            t = self._emit(sender, t, flags, chunk, captured=captured)
            last = t
            sender.snd_nxt += len(chunk)
            self._receive(receiver, t + self.one_way, len(chunk), full=len(chunk) == self.mss)
            t = sender.last_tx
        return last

    # -- public --------------------------------------------------------------------------------

    def _handshake(self) -> None:
        c, s = self._c, self._s
        c.snd_nxt = c.snd_una = c.isn
        s.snd_nxt = s.snd_una = s.isn
        c.rcv_nxt = s.rcv_nxt = 0
        options = struct.pack("!BBH", 2, 4, self.mss) + b"\x01" + struct.pack("!BBB", 3, 3, WINDOW_SCALE)
        options += b"\x01\x01" + struct.pack("!BB", 4, 2)
        syn_window = min(self.window, 0xFFFF)
        t = self.net._now_ns - c.capture_delay
        t = self._emit(c, t, SYN, options=options, window=syn_window)
        c.snd_nxt += 1
        s.rcv_nxt = c.isn + 1
        s.last_rx = t + self.one_way
        t = self._emit(s, t + self.one_way, SYN | ACK, options=options, window=syn_window)
        s.snd_nxt += 1
        c.rcv_nxt = s.isn + 1
        c.last_rx = t + self.one_way
        for side in (c, s):
            side.wscale = WINDOW_SCALE
            side.rcv_wnd = (self.window >> WINDOW_SCALE) << WINDOW_SCALE
        c.peer_wnd, s.peer_wnd = s.rcv_wnd, c.rcv_wnd
        t = self._emit(c, t + self.one_way, ACK)
        self.net._now_ns = t + c.capture_delay

    def refused(self) -> None:
        """Instead of a handshake: the SYN is answered with RST (nothing listens on the port)."""
        c, s = self._c, self._s
        c.snd_nxt = c.snd_una = c.isn
        options = struct.pack("!BBH", 2, 4, self.mss) + b"\x01" + struct.pack("!BBB", 3, 3, WINDOW_SCALE)
        options += b"\x01\x01" + struct.pack("!BB", 4, 2)
        t = self._emit(c, self.net._now_ns - c.capture_delay, SYN, options=options, window=min(self.window, 0xFFFF))
        c.snd_nxt += 1
        s.rcv_nxt = c.isn + 1
        t = self._emit(s, t + self.one_way, RST | ACK, seq=0, window=0)
        self.net._now_ns = t + self.one_way + c.capture_delay
        self._closed = True

    def unanswered(self, tries: int = 3) -> None:
        """Instead of a handshake: SYNs retransmitted 1 s, 2 s, 4 s … apart, never answered."""
        c = self._c
        c.snd_nxt = c.snd_una = c.isn
        options = struct.pack("!BBH", 2, 4, self.mss) + b"\x01" + struct.pack("!BBB", 3, 3, WINDOW_SCALE)
        options += b"\x01\x01" + struct.pack("!BB", 4, 2)
        t = self.net._now_ns - c.capture_delay
        for n in range(tries):
            t = self._emit(c, t, SYN, seq=c.isn, options=options, window=min(self.window, 0xFFFF))
            t += (1 << n) * 1_000_000_000
        self.net._now_ns = t + c.capture_delay
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("connection is closed")

    def send(self, data: bytes, *, gap: float = 0.0) -> None:
        """Client → server, starting `gap` seconds after `now`; `now` moves to the last segment."""
        self._check_open()
        if not data:
            return
        c = self._c
        t0 = max(self.net._now_ns - c.capture_delay + seconds_to_ns(gap), c.last_rx)
        last = self._transfer(c, bytes(data), t0)
        self.net._now_ns = last + c.capture_delay

    def reply(self, data: bytes, *, think: float = 0.02) -> None:
        """Server → client, `think` seconds of server time after the request (or after `now`,
        whichever is later); `now` moves to the last segment."""
        self._check_open()
        if not data:
            return
        s = self._s
        t0 = max(s.last_rx, self.net._now_ns - s.capture_delay) + seconds_to_ns(think)
        last = self._transfer(s, bytes(data), t0)
        self.net._now_ns = last + s.capture_delay

    def close(self, *, by: str = "client", rst: bool = False) -> None:
        """FIN/ACK from `by`, FIN/ACK back, final ACK — or a single RST/ACK from `by`.
        Closing a closed connection does nothing."""
        if by not in ("client", "server"):
            raise ValueError(f"by is 'client' or 'server', not {by!r}")
        if self._closed:
            return
        a = self._c if by == "client" else self._s
        b = self._peer(a)
        t = max(self.net._now_ns - a.capture_delay, a.last_rx, a.last_tx)
        self._flush_delayed_acks(t, a)
        self._closed = True
        if rst:
            t = self._emit(a, t, RST | ACK)
            self._flush_delayed_acks(t + self.one_way, b)
            b.pending_ack = None
            self.net._now_ns = t + a.capture_delay
            return
        t = self._emit(a, t, FIN | ACK)
        a.snd_nxt += 1
        t_b = t + self.one_way
        self._flush_delayed_acks(t_b, b)
        b.rcv_nxt += 1
        b.last_rx = t_b
        t_b = self._emit(b, t_b + 50_000, FIN | ACK)  # the application closes its end at once
        b.snd_nxt += 1
        t_a = t_b + self.one_way
        a.rcv_nxt += 1
        a.last_rx = t_a
        t_a = self._emit(a, t_a, ACK)
        self.net._now_ns = max(t_a + a.capture_delay, t_b + b.capture_delay)

    def lose_next_segment(self, direction: str) -> None:
        """The next data segment in `direction` ("c2s" | "s2c") reaches the peer but not the capture."""
        self._side(direction).lose_next = True

    def retransmit_next_segment(self, direction: str) -> None:
        """The next data segment in `direction` is captured but never taken by the receiver (lost
        past the capture point); the sender sends it again after the retransmission timeout, so it
        appears twice."""
        self._side(direction).retransmit_next = True

    @property
    def closed(self) -> bool:
        return self._closed
