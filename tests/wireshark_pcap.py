"""A small pcap writer for the plugin tests: Ethernet/IPv4 TCP conversations and UDP datagrams.

TCP conversations get a handshake, MSS-sized segments, pure ACKs and a FIN exchange, so both
tshark and lyncpcap's flow layer reassemble them as they would a real capture.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

MSS = 1400
_ETH_IPV4 = b"\x00\x15\x5d\x00\x00\x02" + b"\x00\x15\x5d\x00\x00\x01" + b"\x08\x00"
_FIN, _SYN, _PSH, _ACK = 0x01, 0x02, 0x08, 0x10


def _ip(addr: str) -> bytes:
    return bytes(int(part) for part in addr.split("."))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4(src: str, dst: str, proto: int, payload: bytes, ident: int) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000, 64, proto, 0, _ip(src), _ip(dst)
    )
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + payload


@dataclass
class PcapBuilder:
    """Frames in capture order; `write` produces a classic little-endian pcap (Ethernet)."""

    start: float = 1_400_000_000.0
    step: float = 0.001
    frames: list[tuple[float, bytes]] = field(default_factory=list)
    _ident: int = 1

    def _add(self, src: str, dst: str, proto: int, payload: bytes) -> int:
        ts = self.start + self.step * len(self.frames)
        self.frames.append((ts, _ETH_IPV4 + _ipv4(src, dst, proto, payload, self._ident)))
        self._ident += 1
        return len(self.frames)

    def udp(self, src: str, sport: int, dst: str, dport: int, payload: bytes) -> int:
        """One datagram; returns its frame number."""
        header = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
        return self._add(src, dst, 17, header + payload)

    def tcp(
        self, client: str, cport: int, server: str, sport: int, messages: Iterable[tuple[int, bytes]]
    ) -> list[int]:
        """A whole connection carrying `messages` ((0 = client→server | 1 = server→client), bytes).

        Returns the frame number of the last segment of each message (where tshark reports it)."""
        seq = [1000, 5000]
        ends = (client, cport, server, sport), (server, sport, client, cport)

        def segment(d: int, flags: int, data: bytes = b"") -> int:
            src, sp, dst, dp = ends[d]
            header = struct.pack(
                "!HHIIBBHHH", sp, dp, seq[d] & 0xFFFFFFFF, seq[1 - d] & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0
            )
            number = self._add(src, dst, 6, header + data)
            seq[d] += len(data) + (1 if flags & (_SYN | _FIN) else 0)
            return number

        segment(0, _SYN)
        segment(1, _SYN | _ACK)
        segment(0, _ACK)
        last_frames = []
        for d, data in messages:
            last = 0
            for off in range(0, len(data), MSS):
                last = segment(d, _PSH | _ACK, data[off : off + MSS])
            segment(1 - d, _ACK)
            last_frames.append(last)
        segment(0, _FIN | _ACK)
        segment(1, _FIN | _ACK)
        segment(0, _ACK)
        return last_frames

    def write(self, path: Path) -> Path:
        out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
        for ts, frame in self.frames:
            sec = int(ts)
            usec = round((ts - sec) * 1_000_000)
            out.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
        path.write_bytes(b"".join(out))
        return path
