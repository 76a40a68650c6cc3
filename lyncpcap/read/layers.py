"""Link, network and tunnel layers: from (link type, frame bytes) to one IP packet's transport bytes.

`Decoder.decode` strips link headers (Ethernet with VLAN tags, Linux cooked v1/v2, BSD loopback,
raw IP), unwraps GRE and ERSPAN tunnels and the UDP tunnels that cloud traffic mirroring uses
(VXLAN: Azure virtual network TAP, AWS VPC traffic mirroring; Geneve), and reassembles IPv4/IPv6
fragments.  It never raises on bad bytes: every packet it drops is counted under
`skipped.<reason>` in the shared stats Counter.
"""

from __future__ import annotations

import functools
import socket
import struct
from collections import Counter
from typing import Any

__all__ = [
    "EARLIEST_TIME",
    "LATEST_TIME",
    "SKIP_REASONS",
    "Decoder",
    "IPPacket",
    "address_text",
]

#: (IP protocol, source address, destination address, buffer, transport start, captured end,
#:  bytes of the transport segment the capture did not keep (snaplen))
IPPacket = tuple[int, bytes, bytes, bytes, int, int, int]

# Link types (https://www.tcpdump.org/linktypes.html).  12 and 14 are DLT_RAW values that some
# writers put in files instead of LINKTYPE_RAW (101).
LINK_NULL = 0
LINK_ETHERNET = 1
LINK_LOOP = 108
LINK_RAW = frozenset({101, 12, 14})
LINK_SLL = 113
LINK_SLL2 = 276
LINK_IPV4 = 228
LINK_IPV6 = 229
#: Event Tracing for Windows records: what Wireshark keeps of an .etl besides its packets (which it
#: turns into Ethernet frames); events, not packets.
LINK_ETW = 290

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN = frozenset({0x8100, 0x88A8, 0x9100})

GRE_TEB = 0x6558  # transparent Ethernet bridging
GRE_ERSPAN2 = 0x88BE  # ERSPAN type II (type I when the GRE sequence bit is clear)
GRE_ERSPAN3 = 0x22EB
#: UDP destination ports of the tunnels that carry whole Ethernet frames (IANA's, Wireshark's)
VXLAN_PORT = 4789
GENEVE_PORT = 6081
UDP_TUNNEL_PORTS = frozenset({VXLAN_PORT, GENEVE_PORT})

# BSD address families in DLT_NULL / DLT_LOOP headers: IPv6 differs between the BSDs.
_AF_INET = 2
_AF_INET6 = frozenset({24, 28, 30})

# IPv6 extension headers that use the generic (length + 1) * 8 layout.
_IP6_EXT_GENERIC = frozenset({0, 43, 60, 135, 139, 140})
_IP6_FRAGMENT = 44
_IP6_AH = 51

MAX_TUNNEL_DEPTH = 4

#: Timestamps a capture can hold, in seconds since the epoch: from 1970 until pcap's 32-bit seconds
#: run out (2106-02-07 06:28:16 UTC), well inside what `datetime` and pandas' datetime64[ns] can
#: represent.  A record stamped outside them is damaged (a pcapng timestamp's high word, a corrupt
#: interface resolution or offset); its packet is skipped, not decoded at a time no report can show.
EARLIEST_TIME = 0.0
LATEST_TIME = float(1 << 32)

#: Why a packet was dropped -> how a warning describes it.  Keys are the `skipped.<reason>` stats.
SKIP_REASONS = {
    "unknown_linktype": "unknown link type",
    "etw_event": "Windows event (ETW) records, not packets (an .etl trace opened in Wireshark)",
    "non_ip": "not IP (ARP, LLDP, ...)",
    "truncated": "shorter than their own headers",
    "bad_ip_version": "IP version field is neither 4 nor 6",
    "bad_ip_header": "invalid IP header length",
    "bad_ip_length": "IP total length beyond the captured frame",
    "bad_fragment": "unusable IP fragment",
    "unsupported_tunnel": "tunnel type not supported (GRE version/flags, ERSPAN frame type)",
    "tunnel_depth": f"tunnels nested more than {MAX_TUNNEL_DEPTH} deep",
    "bad_tcp_header": "invalid TCP header",
    "bad_udp_header": "invalid UDP header",
    "truncated_udp": "UDP datagrams cut short by the capture's snapshot length",
    "bad_time": "timestamp before 1970 or after 2106 (a damaged record)",
}

_ip4_fields = struct.Struct("!BxHHHxB").unpack_from  # version/IHL, total length, id, flags/offset, protocol
_ip6_fields = struct.Struct("!4xHB").unpack_from  # payload length, next header
_u16 = struct.Struct("!H").unpack_from
_u32 = struct.Struct("!I").unpack_from
_gre_fields = struct.Struct("!HH").unpack_from


@functools.lru_cache(maxsize=1 << 16)
def address_text(raw: bytes) -> str:
    """'10.0.0.1' or compressed IPv6 ('2001:db8::1') for 4- or 16-byte addresses; cached."""
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


class _Fragments:
    """Bounded reassembly of IPv4 and IPv6 fragments (first-arrived bytes win on overlap)."""

    def __init__(self, stats: Counter[str], max_pending: int, timeout: float, max_parts: int) -> None:
        self.stats = stats
        self.max_pending = max_pending
        self.timeout = timeout
        self.max_parts = max_parts
        # key -> [first ts, total length or -1, protocol or -1, [(offset, bytes), ...]]; insertion
        # order is arrival order, so the oldest datagram is first.
        self.pending: dict[tuple[object, ...], list[Any]] = {}

    def add(
        self, key: tuple[object, ...], offset: int, more: bool, data: bytes, ts: float, proto: int
    ) -> tuple[int, bytes] | None:
        stats = self.stats
        pending = self.pending
        stats["ip.fragments"] += 1
        while pending:
            oldest = next(iter(pending))
            if pending[oldest][0] >= ts - self.timeout:
                break
            del pending[oldest]
            stats["ip.fragments_timed_out"] += 1
        end = offset + len(data)
        if end > 65535:
            stats["skipped.bad_fragment"] += 1
            return None
        entry = pending.get(key)
        if entry is None:
            if len(pending) >= self.max_pending:
                del pending[next(iter(pending))]
                stats["ip.fragments_evicted"] += 1
            entry = [ts, -1, -1, []]
            pending[key] = entry
        parts: list[tuple[int, bytes]] = entry[3]
        if len(parts) >= self.max_parts:
            del pending[key]
            stats["skipped.bad_fragment"] += 1
            return None
        for o, d in parts:
            if o < end and offset < o + len(d):
                stats["ip.fragment_overlaps"] += 1
                break
        parts.append((offset, data))
        if not more and entry[1] < 0:
            entry[1] = end
        if offset == 0 and proto >= 0:
            entry[2] = proto
        total = entry[1]
        if total < 0 or entry[2] < 0:
            return None
        covered = 0
        for o, d in sorted(parts):
            if o > covered:
                return None
            covered = max(covered, o + len(d))
        if covered < total:
            return None
        out = bytearray(total)
        for o, d in reversed(parts):  # later arrivals first, so earlier bytes overwrite them
            if o < total:
                out[o : o + len(d)] = d[: total - o]
        del pending[key]
        stats["ip.reassembled"] += 1
        return entry[2], bytes(out)

    def finish(self) -> None:
        if self.pending:
            self.stats["ip.fragments_incomplete"] += len(self.pending)
            self.pending.clear()


class Decoder:
    """Turns frames into IP packets; stateful because of fragment reassembly.

    `stats` counts skips (`skipped.<reason>`), tunnels (`vlan`, `gre`, `erspan`, `vxlan`, `geneve`) and fragment
    handling (`ip.fragments`, `ip.reassembled`, `ip.fragments_timed_out`, ...).
    `unknown_linktypes` counts frames per unknown link type.
    """

    def __init__(
        self,
        stats: Counter[str] | None = None,
        *,
        max_pending_fragments: int = 256,
        fragment_timeout: float = 30.0,
        max_fragments_per_datagram: int = 512,
    ) -> None:
        self.stats: Counter[str] = stats if stats is not None else Counter()
        self.unknown_linktypes: Counter[int] = Counter()
        self._fragments = _Fragments(
            self.stats, max_pending_fragments, fragment_timeout, max_fragments_per_datagram
        )

    def finish(self) -> None:
        """End of capture: count datagrams whose fragments never all arrived."""
        self._fragments.finish()

    def _skip(self, reason: str) -> None:
        self.stats["skipped." + reason] += 1

    def decode(self, linktype: int, data: bytes, ts: float, truncated: bool = False) -> IPPacket | None:
        """The innermost IP packet of a frame, or None (counted) when there is none to analyse.

        `truncated` says the frame was cut by the snapshot length, so IP lengths beyond the
        captured bytes are expected rather than a sign of damage.
        """
        n = len(data)
        if linktype == LINK_ETHERNET:
            return self._ether(data, 0, n, ts, truncated, 0)
        if linktype in LINK_RAW:
            return self._ip(data, 0, n, ts, truncated, 0)
        if linktype == LINK_SLL:
            if n < 16:
                self._skip("truncated")
                return None
            return self._ethertype(_u16(data, 14)[0], data, 16, n, ts, truncated, 0)
        if linktype == LINK_SLL2:
            if n < 20:
                self._skip("truncated")
                return None
            return self._ethertype(_u16(data, 0)[0], data, 20, n, ts, truncated, 0)
        if linktype in (LINK_NULL, LINK_LOOP):
            if n < 4:
                self._skip("truncated")
                return None
            # Host byte order for DLT_NULL, network order for DLT_LOOP, and writers disagree:
            # the family is small, so it sits in the first byte or the last.
            family = data[0] or data[3]
            if family == _AF_INET:
                return self._ip4(data, 4, n, ts, truncated, 0)
            if family in _AF_INET6:
                return self._ip6(data, 4, n, ts, truncated, 0)
            self._skip("non_ip")
            return None
        if linktype == LINK_IPV4:
            return self._ip4(data, 0, n, ts, truncated, 0)
        if linktype == LINK_IPV6:
            return self._ip6(data, 0, n, ts, truncated, 0)
        if linktype == LINK_ETW:
            self._skip("etw_event")
            return None
        self.unknown_linktypes[linktype] += 1
        self._skip("unknown_linktype")
        return None

    # -- link layers ------------------------------------------------------------------------

    def _ether(self, buf: bytes, off: int, end: int, ts: float, trunc: bool, depth: int) -> IPPacket | None:
        if end - off < 14:
            self._skip("truncated")
            return None
        return self._ethertype(_u16(buf, off + 12)[0], buf, off + 14, end, ts, trunc, depth)

    def _ethertype(
        self, etype: int, buf: bytes, off: int, end: int, ts: float, trunc: bool, depth: int
    ) -> IPPacket | None:
        if etype in ETH_VLAN:
            self.stats["vlan"] += 1
            while etype in ETH_VLAN:
                if end - off < 4:
                    self._skip("truncated")
                    return None
                etype = _u16(buf, off + 2)[0]
                off += 4
        if etype == ETH_IPV4:
            return self._ip4(buf, off, end, ts, trunc, depth)
        if etype == ETH_IPV6:
            return self._ip6(buf, off, end, ts, trunc, depth)
        self._skip("non_ip")
        return None

    # -- network layers ---------------------------------------------------------------------

    def _ip(self, buf: bytes, off: int, end: int, ts: float, trunc: bool, depth: int) -> IPPacket | None:
        if end <= off:
            self._skip("truncated")
            return None
        version = buf[off] >> 4
        if version == 4:
            return self._ip4(buf, off, end, ts, trunc, depth)
        if version == 6:
            return self._ip6(buf, off, end, ts, trunc, depth)
        self._skip("bad_ip_version")
        return None

    def _ip4(self, buf: bytes, off: int, end: int, ts: float, trunc: bool, depth: int) -> IPPacket | None:
        if end - off < 20:
            self._skip("truncated")
            return None
        vihl, total, ident, fragword, proto = _ip4_fields(buf, off)
        if vihl >> 4 != 4:
            self._skip("bad_ip_version")
            return None
        hlen = (vihl & 15) * 4
        if hlen < 20:
            self._skip("bad_ip_header")
            return None
        if end - off < hlen:
            self._skip("truncated")
            return None
        if total == 0:
            total = end - off  # segmentation offload: the NIC fills the length in later
        elif total < hlen:
            self._skip("bad_ip_header")
            return None
        stop = off + total
        missing = 0
        if stop > end:
            if not trunc:
                self._skip("bad_ip_length")
                return None
            missing = stop - end
            stop = end
        src = buf[off + 12 : off + 16]
        dst = buf[off + 16 : off + 20]
        start = off + hlen
        if fragword & 0x3FFF:
            if missing:
                self._skip("bad_fragment")
                return None
            done = self._fragments.add(
                (src, dst, ident, proto),
                (fragword & 0x1FFF) * 8,
                bool(fragword & 0x2000),
                buf[start:stop],
                ts,
                proto,
            )
            if done is None:
                return None
            buf = done[1]
            start = 0
            stop = len(buf)
        return self._transport(proto, src, dst, buf, start, stop, missing, ts, trunc, depth)

    def _ip6(self, buf: bytes, off: int, end: int, ts: float, trunc: bool, depth: int) -> IPPacket | None:
        if end - off < 40:
            self._skip("truncated")
            return None
        if buf[off] >> 4 != 6:
            self._skip("bad_ip_version")
            return None
        plen, nh = _ip6_fields(buf, off)
        src = buf[off + 8 : off + 24]
        dst = buf[off + 24 : off + 40]
        p = off + 40
        stop = end if plen == 0 else p + plen  # 0: jumbogram or segmentation offload
        missing = 0
        if stop > end:
            if not trunc:
                self._skip("bad_ip_length")
                return None
            missing = stop - end
            stop = end
        while True:
            if nh in _IP6_EXT_GENERIC or nh == _IP6_AH:
                if stop - p < 8:
                    self._skip("truncated" if missing else "bad_ip_header")
                    return None
                size = (buf[p + 1] + 2) * 4 if nh == _IP6_AH else (buf[p + 1] + 1) * 8
                nh = buf[p]
                p += size
                if p > stop:
                    self._skip("truncated" if missing else "bad_ip_header")
                    return None
            elif nh == _IP6_FRAGMENT:
                if stop - p < 8:
                    self._skip("truncated" if missing else "bad_ip_header")
                    return None
                inner = buf[p]
                offword = _u16(buf, p + 2)[0]
                offset = offword & 0xFFF8
                more = bool(offword & 1)
                if offset == 0 and not more:  # atomic fragment
                    nh = inner
                    p += 8
                    continue
                if missing:
                    self._skip("bad_fragment")
                    return None
                ident = _u32(buf, p + 4)[0]
                done = self._fragments.add((src, dst, ident), offset, more, buf[p + 8 : stop], ts, inner)
                if done is None:
                    return None
                nh, buf = done
                p = 0
                stop = len(buf)
            else:
                break
        return self._transport(nh, src, dst, buf, p, stop, missing, ts, trunc, depth)

    def _transport(
        self,
        proto: int,
        src: bytes,
        dst: bytes,
        buf: bytes,
        start: int,
        stop: int,
        missing: int,
        ts: float,
        trunc: bool,
        depth: int,
    ) -> IPPacket | None:
        if proto == 47:
            if depth >= MAX_TUNNEL_DEPTH:
                self._skip("tunnel_depth")
                return None
            return self._gre(buf, start, stop, ts, trunc or missing > 0, depth + 1)
        if proto == 17 and stop - start >= 16 and _u16(buf, start + 2)[0] in UDP_TUNNEL_PORTS:
            if depth >= MAX_TUNNEL_DEPTH:
                self._skip("tunnel_depth")
                return None
            inner = self._udp_tunnel(buf, start, stop, ts, trunc or missing > 0, depth + 1)
            if inner is not None:
                return inner if inner else None
        return proto, src, dst, buf, start, stop, missing

    # -- tunnels ----------------------------------------------------------------------------

    def _udp_tunnel(self, buf: bytes, off: int, end: int, ts: float, trunc: bool, depth: int) -> IPPacket | tuple[()] | None:
        """The frame a VXLAN or Geneve datagram (UDP header at `off`) carries: its IP packet, () when
        it carries none to analyse (counted), None when the datagram is not such a tunnel after all
        (a client that happened to pick the port): it is then analysed as the UDP it is."""
        p = off + 8
        if _u16(buf, off + 2)[0] == VXLAN_PORT:
            # flags (the I bit: a valid VNI), 24 reserved bits, VNI, 8 reserved bits; Ethernet follows
            if buf[p] & 0x08 != 0x08 or end - p < 8 + 14:
                return None
            self.stats["vxlan"] += 1
            return self._ether(buf, p + 8, end, ts, trunc, depth) or ()
        # Geneve: version (0) and option length in 4-byte words, flags, protocol type, VNI, options
        version, words = buf[p] >> 6, buf[p] & 0x3F
        ptype = _u16(buf, p + 2)[0]
        inner = p + 8 + 4 * words
        if version != 0 or inner > end or ptype not in (GRE_TEB, ETH_IPV4, ETH_IPV6):
            return None
        self.stats["geneve"] += 1
        if ptype == GRE_TEB:
            return self._ether(buf, inner, end, ts, trunc, depth) or ()
        return self._ethertype(ptype, buf, inner, end, ts, trunc, depth) or ()

    def _gre(self, buf: bytes, off: int, end: int, ts: float, trunc: bool, depth: int) -> IPPacket | None:
        if end - off < 4:
            self._skip("truncated")
            return None
        flags, ptype = _gre_fields(buf, off)
        if flags & 0x4007:  # routing present, or version 1 (PPTP)
            self._skip("unsupported_tunnel")
            return None
        self.stats["gre"] += 1
        seq_present = bool(flags & 0x1000)
        p = off + 4 + 4 * (bool(flags & 0x8000) + bool(flags & 0x2000) + seq_present)
        if ptype == GRE_TEB:
            return self._ether(buf, p, end, ts, trunc, depth)
        if ptype in (ETH_IPV4, ETH_IPV6):
            return self._ethertype(ptype, buf, p, end, ts, trunc, depth)
        if ptype == GRE_ERSPAN2:
            self.stats["erspan"] += 1
            # Type II has an 8-byte header and sets the GRE sequence bit; type I has neither.
            return self._ether(buf, p + 8 if seq_present else p, end, ts, trunc, depth)
        if ptype == GRE_ERSPAN3:
            if end - p < 12:
                self._skip("truncated")
                return None
            self.stats["erspan"] += 1
            word = _u32(buf, p + 8)[0]
            frame_type = (word >> 10) & 0x1F
            p += 20 if word & 1 else 12  # O bit: an 8-byte platform-specific subheader follows
            if frame_type == 0:
                return self._ether(buf, p, end, ts, trunc, depth)
            if frame_type == 2:
                return self._ip(buf, p, end, ts, trunc, depth)
        self._skip("unsupported_tunnel")
        return None
