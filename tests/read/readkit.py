"""Helpers for the reader and flow tests: the shared corpus, tshark's tools, and re-wrapping real
frames in other link layers and tunnels (SLL, SLL2, loopback, VLAN, GRE, ERSPAN) or containers
(big-endian pcap, big-endian pcapng sections).

tests/flows imports this module too (flowkit puts this folder on sys.path).  Like the rest of the
suite, a missing corpus or tshark is a failure, never a skip.
"""

from __future__ import annotations

import functools
import json
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS

from lyncpcap.lab.pcapwriter import write_pcap
from lyncpcap.read import open_capture

Frame = tuple[int, float, int, bytes, int]


@functools.cache
def expected() -> dict[str, Any]:
    """expected.json's per-file facts, keyed by corpus path (runs without a key log only)."""
    files = json.loads((CORPUS / "expected.json").read_text())["files"]
    return {name: facts for name, facts in files.items() if " (with " not in name}


def corpus_names() -> list[str]:
    """Every capture in the corpus."""
    return sorted(expected())


def run(*args: str | Path) -> str:
    """Run a tool, fail the test with its stderr if it fails, return stdout."""
    if shutil.which(str(args[0])) is None:
        pytest.fail(f"{args[0]} is not installed (scripts/test.sh installs it: apt-get install tshark)")
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{args[0]} failed: {done.stderr}"
    return done.stdout


def read_frames(path: str | Path) -> list[Frame]:
    with open_capture(path) as cap:
        return list(cap)


def tshark_epochs(path: str | Path) -> list[str]:
    return run("tshark", "-n", "-r", path, "-T", "fields", "-e", "frame.time_epoch").split()


# -- containers ----------------------------------------------------------------------------------


def big_endian_pcap(src: Path, dst: Path) -> None:
    """Rewrite a little-endian pcap file in big-endian byte order, record by record."""
    data = src.read_bytes()
    magic, major, minor, zone, sigfigs, snaplen, network = struct.unpack_from("<IHHiIII", data, 0)
    out = [struct.pack(">IHHiIII", magic, major, minor, zone, sigfigs, snaplen, network)]
    off = 24
    while off < len(data):
        sec, frac, caplen, wirelen = struct.unpack_from("<IIII", data, off)
        out.append(struct.pack(">IIII", sec, frac, caplen, wirelen))
        out.append(data[off + 16 : off + 16 + caplen])
        off += 16 + caplen
    dst.write_bytes(b"".join(out))


def _swap_options(body: bytes, start: int, numeric: dict[int, str]) -> bytes:
    """Options from little- to big-endian; `numeric` maps option codes to their struct format."""
    out = [body[:start]]
    p = start
    while p + 4 <= len(body):
        code, length = struct.unpack_from("<HH", body, p)
        value = body[p + 4 : p + 4 + length]
        if code in numeric:
            value = struct.pack(">" + numeric[code], *struct.unpack("<" + numeric[code], value))
        pad = -length % 4
        out.append(struct.pack(">HH", code, length) + value + body[p + 4 + length : p + 4 + length + pad])
        p += 4 + length + pad
        if code == 0:
            break
    out.append(body[p:])
    return b"".join(out)


def big_endian_pcapng(src: Path) -> bytes:
    """A little-endian pcapng file rewritten big-endian (SHB, IDB, EPB, DSB; other blocks dropped)."""
    data = src.read_bytes()
    out = []
    off = 0
    while off < len(data):
        btype, blen = struct.unpack_from("<II", data, off)
        body = data[off + 8 : off + blen - 4]
        if btype == 0x0A0D0D0A:
            magic, major, minor, section = struct.unpack_from("<IHHq", body)
            body = struct.pack(">IHHq", magic, major, minor, section) + _swap_options(body, 16, {})[16:]
        elif btype == 1:
            linktype, reserved, snaplen = struct.unpack_from("<HHI", body)
            body = (
                struct.pack(">HHI", linktype, reserved, snaplen)
                + _swap_options(body, 8, {14: "q", 8: "Q"})[8:]
            )
        elif btype == 6:
            fields = struct.unpack_from("<IIIII", body)
            caplen = fields[3]
            padded = caplen + (-caplen % 4)
            body = struct.pack(">IIIII", *fields) + _swap_options(body, 20 + padded, {})[20:]
        elif btype == 0x0A:
            stype, slen = struct.unpack_from("<II", body)
            body = struct.pack(">II", stype, slen) + body[8:]
        else:
            off += blen
            continue
        out.append(struct.pack(">II", btype, blen) + body + struct.pack(">I", blen))
        off += blen
    return b"".join(out)


def pcapng_block(block_type: int, body: bytes) -> bytes:
    """One little-endian pcapng block (body padded to 32 bits)."""
    body += b"\0" * (-len(body) % 4)
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def pcapng_header() -> bytes:
    return pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def pcapng_interface(
    linktype: int, *, tsresol: int | None = None, tsoffset: int | None = None, snaplen: int = 0
) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += struct.pack("<HHB3x", 9, 1, tsresol)
    if tsoffset is not None:
        opts += struct.pack("<HHq", 14, 8, tsoffset)
    if opts:
        opts += struct.pack("<HH", 0, 0)
    return pcapng_block(1, struct.pack("<HHI", linktype, 0, snaplen) + opts)


def pcapng_epb(interface: int, units: int, data: bytes, wirelen: int | None = None) -> bytes:
    wire = len(data) if wirelen is None else wirelen
    return pcapng_block(
        6, struct.pack("<IIIII", interface, units >> 32, units & 0xFFFFFFFF, len(data), wire) + data
    )


# -- link layers and tunnels around real frames -------------------------------------------------


def ethernet_payload(frame: bytes) -> tuple[int, bytes]:
    """(ethertype, payload) of an untagged Ethernet frame."""
    return struct.unpack_from("!H", frame, 12)[0], frame[14:]


def sll(frame: bytes) -> bytes:
    etype, payload = ethernet_payload(frame)
    return struct.pack("!HHH8sH", 0, 1, 6, frame[6:12] + b"\0\0", etype) + payload


def sll2(frame: bytes) -> bytes:
    etype, payload = ethernet_payload(frame)
    return struct.pack("!HHIHBB8s", etype, 0, 2, 1, 0, 6, frame[6:12] + b"\0\0") + payload


def null_loopback(frame: bytes, family: int, big_endian: bool) -> bytes:
    return struct.pack(">I" if big_endian else "<I", family) + ethernet_payload(frame)[1]


def vlan(frame: bytes, *tpids: int) -> bytes:
    """Insert one tag per TPID (outermost first), VLAN ids 100, 101, ..."""
    tags = b"".join(struct.pack("!HH", tpid, 100 + i) for i, tpid in enumerate(tpids))
    return frame[:12] + tags + frame[12:]


def outer_ipv4(payload: bytes, proto: int) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        0x1234,
        0x4000,
        64,
        proto,
        0,
        bytes([10, 200, 0, 3]),
        bytes([10, 200, 0, 224]),
    )
    return header + payload


def outer_ethernet(ip_packet: bytes) -> bytes:
    return b"\x00\x0c\x29\x40\xd0\xad\x00\x21\x1c\x2e\x41\x46\x08\x00" + ip_packet


def gre(
    inner: bytes, protocol: int, *, key: bool = False, seq: int | None = None, checksum: bool = False
) -> bytes:
    flags = (0x8000 if checksum else 0) | (0x2000 if key else 0) | (0x1000 if seq is not None else 0)
    header = struct.pack("!HH", flags, protocol)
    if checksum:
        header += b"\0\0\0\0"
    if key:
        header += struct.pack("!I", 7)
    if seq is not None:
        header += struct.pack("!I", seq)
    return header + inner


def erspan2(frame: bytes, seq: int) -> bytes:
    """Ethernet frame in ERSPAN type II in GRE in IPv4 in Ethernet."""
    header = struct.pack("!HHI", 0x1000 | 100, 1, 0)  # version 1, VLAN 100, session 1, index 0
    return outer_ethernet(outer_ipv4(gre(header + frame, 0x88BE, seq=seq), 47))


def erspan3(frame: bytes, seq: int, *, subheader: bool = False, as_ip: bool = False) -> bytes:
    """Ethernet frame (or its IP packet) in ERSPAN type III in GRE in IPv4 in Ethernet."""
    frame_type = 2 if as_ip else 0
    word = (frame_type << 10) | (1 if subheader else 0)
    header = struct.pack("!HHII", 0x2000 | 100, 1, 0x12345678, word)
    if subheader:
        header += b"\0" * 8
    inner = ethernet_payload(frame)[1] if as_ip else frame
    return outer_ethernet(outer_ipv4(gre(header + inner, 0x22EB, seq=seq), 47))


def write_frames(path: Path, frames: list[tuple[float, bytes]], linktype: int) -> Path:
    write_pcap(path, frames, linktype)
    return path


def ipv4_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_fragments(frame: bytes, size: int, ident: int | None = None) -> list[bytes]:
    """Split the IPv4 packet of an Ethernet frame into fragments carrying `size` bytes (multiple of 8)."""
    ip = frame[14:]
    hlen = (ip[0] & 15) * 4
    total = struct.unpack_from("!H", ip, 2)[0]
    payload = ip[hlen:total]
    out = []
    for off in range(0, len(payload), size):
        part = payload[off : off + size]
        header = bytearray(ip[:hlen])
        more = off + size < len(payload)
        packet_id = ident if ident is not None else struct.unpack_from("!H", ip, 4)[0]
        struct.pack_into("!HHH", header, 2, hlen + len(part), packet_id, (0x2000 if more else 0) | off // 8)
        struct.pack_into("!H", header, 10, 0)
        struct.pack_into("!H", header, 10, ipv4_checksum(bytes(header)))
        out.append(frame[:14] + bytes(header) + part)
    return out


def ipv6_fragments(frame: bytes, size: int, ident: int = 0x1234) -> list[bytes]:
    """Split the IPv6 packet of an Ethernet frame (no extension headers) into fragments."""
    ip = frame[14:]
    plen, nh = struct.unpack_from("!HB", ip, 4)
    payload = ip[40 : 40 + plen]
    out = []
    for off in range(0, len(payload), size):
        part = payload[off : off + size]
        more = off + size < len(payload)
        header = ip[:4] + struct.pack("!HBB", 8 + len(part), 44, ip[7]) + ip[8:40]
        out.append(frame[:14] + header + struct.pack("!BBHI", nh, 0, off | more, ident) + part)
    return out


def ipv6_with_extensions(frame: bytes) -> bytes:
    """The frame's IPv6 packet with hop-by-hop, routing and destination-options headers inserted."""
    ip = frame[14:]
    plen, nh = struct.unpack_from("!HB", ip, 4)
    hop = bytes([43, 0, 1, 4, 0, 0, 0, 0])  # next: routing; PadN option
    routing = bytes([60, 0, 0, 0, 0, 0, 0, 0])  # next: destination options; type 0, no segments left
    dest = bytes([nh, 1, 1, 12]) + b"\0" * 12  # 16 bytes, PadN
    extra = hop + routing + dest
    header = ip[:4] + struct.pack("!HBB", plen + len(extra), 0, ip[7]) + ip[8:40]
    return frame[:14] + header + extra + ip[40:]


def ipv4_with_options(frame: bytes) -> bytes:
    """An Ethernet/IPv4 frame with 8 bytes of IP options (seven NOPs and an end-of-list) added."""
    if frame[12:14] != b"\x08\x00":
        return frame
    ip = frame[14:]
    hlen = (ip[0] & 15) * 4
    options = b"\x01\x01\x01\x01\x01\x01\x01\x00"
    header = bytearray(ip[:hlen] + options)
    header[0] = 0x40 | (hlen + len(options)) // 4
    struct.pack_into(
        "!HH",
        header,
        2,
        struct.unpack_from("!H", ip, 2)[0] + len(options),
        struct.unpack_from("!H", ip, 4)[0],
    )
    struct.pack_into("!H", header, 10, 0)
    struct.pack_into("!H", header, 10, ipv4_checksum(bytes(header)))
    return frame[:14] + bytes(header) + ip[hlen:]
