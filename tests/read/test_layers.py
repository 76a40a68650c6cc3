"""lyncpcap.read.layers: link layers, tunnels and IP reassembly on real frames, checked against tshark."""

from __future__ import annotations

import random
import struct
from collections import Counter
from pathlib import Path

import pytest
from readkit import (
    CORPUS,
    corpus_names,
    erspan2,
    erspan3,
    gre,
    ipv4_fragments,
    ipv4_with_options,
    ipv6_fragments,
    ipv6_with_extensions,
    null_loopback,
    outer_ethernet,
    outer_ipv4,
    read_frames,
    run,
    sll,
    sll2,
    vlan,
    write_frames,
)

from lyncpcap.read.layers import Decoder, IPPacket, address_text

FIELDS = (
    "frame.protocols",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
)


def _summary(packet: IPPacket | None) -> tuple[int, str, str, bytes, int] | None:
    """What a packet decodes to: protocol, addresses, transport bytes, bytes missing."""
    if packet is None:
        return None
    proto, src, dst, buf, start, stop, missing = packet
    return proto, address_text(src), address_text(dst), bytes(buf[start:stop]), missing


def _decode_all(linktype: int, frames: list[bytes]) -> list[tuple[int, str, str, bytes, int] | None]:
    decoder = Decoder()
    return [_summary(decoder.decode(linktype, frame, 1.0)) for frame in frames]


def _tcp_frames(name: str) -> list[bytes]:
    return [f[3] for f in read_frames(CORPUS / name)]


@pytest.mark.parametrize("name", corpus_names())
def test_every_corpus_frame_decodes_like_tshark(name: str) -> None:
    """Innermost addresses and ports of every frame agree with tshark (tunnels and fragments included)."""
    args = ["tshark", "-n", "-r", CORPUS / name, "-T", "fields", "-E", "occurrence=l", "-E", "separator=/t"]
    for field in FIELDS:
        args += ["-e", field]
    rows = [line.split("\t") for line in run(*args).splitlines()]
    decoder = Decoder()
    frames = read_frames(CORPUS / name)
    assert len(rows) == len(frames)
    checked = 0
    for (_, ts, linktype, data, wirelen), row in zip(frames, rows, strict=True):
        protocols, ip_src, ip_dst, ip6_src, ip6_dst, tsport, tdport, usport, udport = row
        got = decoder.decode(linktype, data, ts, len(data) < wirelen)
        layers = protocols.split(":")
        if "icmp" in layers or "icmpv6" in layers:
            continue  # tshark also decodes the packet quoted inside an ICMP error
        if tsport or usport:
            assert got is not None, row
            proto, src, dst, buf, start, _stop, _missing = got
            src_text, dst_text = (
                (ip6_src, ip6_dst)
                if layers[layers.index("tcp" if tsport else "udp") - 1] == "ipv6"
                else (ip_src, ip_dst)
            )
            assert (address_text(src), address_text(dst)) == (src_text, dst_text)
            assert proto == (6 if tsport else 17)
            assert list(struct.unpack_from("!HH", buf, start)) == [
                int(tsport or usport),
                int(tdport or udport),
            ]
            checked += 1
        else:
            assert got is None or got[0] not in (6, 17), row
    assert checked > 0
    if name == "zeek/erspan.pcap":
        assert decoder.stats["ip.reassembled"] == 16 and decoder.stats["gre"] == 248


LINK_VARIANTS = {
    "sll": (113, sll),
    "sll2": (276, sll2),
    "null-le-inet": (0, lambda f: null_loopback(f, 2 if f[12:14] == b"\x08\x00" else 30, False)),
    "null-be-bsd6": (0, lambda f: null_loopback(f, 2 if f[12:14] == b"\x08\x00" else 24, True)),
    "loop-28": (108, lambda f: null_loopback(f, 2 if f[12:14] == b"\x08\x00" else 28, True)),
    "raw-101": (101, lambda f: f[14:]),
    "raw-12": (12, lambda f: f[14:]),
    "raw-14": (14, lambda f: f[14:]),
    "ipv4-options": (1, ipv4_with_options),
    "dot1q": (1, lambda f: vlan(f, 0x8100)),
    "qinq-88a8": (1, lambda f: vlan(f, 0x88A8, 0x8100)),
    "qinq-9100": (1, lambda f: vlan(f, 0x9100, 0x8100)),
    "erspan2": (1, lambda f: erspan2(f, 1)),
    "erspan3": (1, lambda f: erspan3(f, 1)),
    "erspan3-subheader": (1, lambda f: erspan3(f, 1, subheader=True)),
    "erspan3-ip": (1, lambda f: erspan3(f, 1, as_ip=True)),
    "erspan1": (1, lambda f: outer_ethernet(outer_ipv4(gre(f, 0x88BE), 47))),
    "gre-teb-key": (1, lambda f: outer_ethernet(outer_ipv4(gre(f, 0x6558, key=True), 47))),
    "gre-ip-all-flags": (
        1,
        lambda f: outer_ethernet(
            outer_ipv4(gre(f[14:], struct.unpack_from("!H", f, 12)[0], key=True, seq=9, checksum=True), 47)
        ),
    ),
}


@pytest.mark.parametrize("variant", sorted(LINK_VARIANTS))
def test_link_layers_and_tunnels_decode_to_the_same_packets(variant: str) -> None:
    frames = _tcp_frames("arkime/ntlm_synthetic.pcap")  # IPv4 and IPv6, TCP
    linktype, wrap = LINK_VARIANTS[variant]
    original = _decode_all(1, frames)
    assert all(o is not None for o in original)
    assert _decode_all(linktype, [wrap(f) for f in frames]) == original


@pytest.mark.parametrize(
    "variant",
    ["sll", "sll2", "null-be-bsd6", "qinq-88a8", "erspan2", "erspan3", "erspan3-subheader", "ipv4-options"],
)
def test_crafted_link_layers_are_what_tshark_expects(variant: str, tmp_path: Path) -> None:
    """The frames built for these tests are real formats: tshark finds the same TCP segments in them."""
    frames = read_frames(CORPUS / "arkime/ntlm_synthetic.pcap")
    linktype, wrap = LINK_VARIANTS[variant]
    path = write_frames(tmp_path / "v.pcap", [(f[1], wrap(f[3])) for f in frames], linktype)
    seqs = run(
        "tshark", "-n", "-r", path, "-T", "fields", "-e", "tcp.stream", "-e", "tcp.seq_raw", "-e", "tcp.len"
    )
    assert seqs == run(
        "tshark",
        "-n",
        "-r",
        CORPUS / "arkime/ntlm_synthetic.pcap",
        "-T",
        "fields",
        "-e",
        "tcp.stream",
        "-e",
        "tcp.seq_raw",
        "-e",
        "tcp.len",
    )
    if variant.startswith("erspan"):
        assert run("tshark", "-n", "-r", path, "-Y", "erspan", "-T", "fields", "-e", "frame.number").split()


# -- IP reassembly --------------------------------------------------------------------------------


def _kerberos_as_rep() -> bytes:
    frame = read_frames(CORPUS / "bruteshark/kerberos-v5-udp-3.pcap")[14][3]  # frame 15, UDP 88
    assert len(frame) > 1000
    return frame


@pytest.mark.parametrize("order", ["in-order", "reversed", "shuffled-with-duplicates", "overlapping"])
def test_ipv4_fragments_reassemble(order: str) -> None:
    frame = _kerberos_as_rep()
    want = _decode_all(1, [frame])[0]
    if order == "overlapping":
        big = ipv4_fragments(frame, 400)
        small = ipv4_fragments(frame, 200)  # the same bytes, cut differently
        parts = [big[0], small[1], small[2], big[1], small[4], big[2], small[5], *big[3:]]
    else:
        parts = ipv4_fragments(frame, 256)
        if order == "reversed":
            parts.reverse()
        elif order == "shuffled-with-duplicates":
            parts = parts + parts[1:3]
            random.Random(3).shuffle(parts)
            parts.append(parts[-1])
    decoder = Decoder()
    results = [_summary(decoder.decode(1, p, 5.0)) for p in parts]
    done = [r for r in results if r is not None]
    assert done[0] == want
    assert decoder.stats["ip.reassembled"] == len(done)
    assert not decoder._fragments.pending or order == "shuffled-with-duplicates"
    if order == "overlapping":
        assert decoder.stats["ip.fragment_overlaps"] > 0


def test_crafted_fragments_reassemble_in_tshark_too(tmp_path: Path) -> None:
    frame = _kerberos_as_rep()
    path = write_frames(
        tmp_path / "frag.pcap", [(1.0 + i / 10, p) for i, p in enumerate(ipv4_fragments(frame, 256))], 1
    )
    assert run(
        "tshark", "-n", "-r", path, "-Y", "kerberos", "-T", "fields", "-e", "frame.number"
    ).split() == ["6"]


def test_incomplete_fragments_time_out_are_bounded_and_counted() -> None:
    frame = _kerberos_as_rep()
    decoder = Decoder(max_pending_fragments=3, fragment_timeout=30.0)
    for ident in range(5):  # five datagrams that never complete: two pushed out by the limit
        decoder.decode(1, ipv4_fragments(frame, 256, ident=ident)[0], 10.0)
    assert decoder.stats["ip.fragments_evicted"] == 2
    assert len(decoder._fragments.pending) == 3
    decoder.decode(1, ipv4_fragments(frame, 256, ident=99)[1], 41.0)  # 31 s later: the three time out
    assert decoder.stats["ip.fragments_timed_out"] == 3
    decoder.finish()
    assert decoder.stats["ip.fragments_incomplete"] == 1
    truncated = ipv4_fragments(frame, 256, ident=7)[0]
    assert decoder.decode(1, truncated[:100], 50.0, truncated=True) is None
    assert decoder.stats["skipped.bad_fragment"] == 1


def test_ipv6_extension_headers_and_fragments(tmp_path: Path) -> None:
    frames = [f for f in _tcp_frames("arkime/ntlm_synthetic.pcap") if f[12:14] == b"\x86\xdd"]
    big = max(frames, key=len)
    assert len(big) > 300
    want = _decode_all(1, [big])[0]
    assert _decode_all(1, [ipv6_with_extensions(big)]) == [want]
    parts = ipv6_fragments(big, 96)
    got = _decode_all(1, list(reversed(parts)))
    assert got[:-1] == [None] * (len(parts) - 1) and got[-1] == want
    assert _decode_all(1, [parts[0]]) == [None]  # the rest never comes
    assert _decode_all(1, [ipv6_fragments(big, 4096)[0]]) == [want]  # atomic fragment (offset 0, no more)
    path = write_frames(
        tmp_path / "v6.pcap", [(1.0, ipv6_with_extensions(big)), *((2.0, p) for p in parts)], 1
    )
    assert run("tshark", "-n", "-r", path, "-Y", "tcp", "-T", "fields", "-e", "frame.number").split() == [
        "1",
        str(1 + len(parts)),
    ]


# -- damage -----------------------------------------------------------------------------------------


def test_bad_headers_are_counted_never_raised() -> None:
    frames = _tcp_frames("suricata-verify/kerberoast.pcap")
    good = frames[3]
    arp = read_frames(CORPUS / "bruteshark/kerberos-v5-udp-3.pcap")
    arp_frame = next(f[3] for f in arp if f[3][12:14] == b"\x08\x06")

    def patched(offset: int, value: int) -> bytes:
        copy = bytearray(good)
        copy[offset] = value
        return bytes(copy)

    decoder = Decoder()
    cases = [
        (1, good[:10], False, "truncated"),
        (1, good[:30], False, "truncated"),
        (1, patched(14, 0x55), False, "bad_ip_version"),
        (1, patched(14, 0x43), False, "bad_ip_header"),
        (1, good[:-20], False, "bad_ip_length"),
        (1, arp_frame, False, "non_ip"),
        (147, good, False, "unknown_linktype"),
        (147, good, False, "unknown_linktype"),
        (101, b"\x70" + good[15:], False, "bad_ip_version"),
        (
            1,
            outer_ethernet(outer_ipv4(b"\x00\x01" + gre(good, 0x6558)[2:], 47)),
            False,
            "GRE version 1 (PPTP)",
        ),
        (1, outer_ethernet(outer_ipv4(gre(good, 0x0001), 47)), False, "GRE carrying an unknown protocol"),
    ]
    for linktype, data, truncated, reason in cases:
        assert decoder.decode(linktype, data, 1.0, truncated) is None, reason
    assert decoder.stats == Counter(
        {
            "skipped.truncated": 2,
            "skipped.bad_ip_version": 2,
            "skipped.bad_ip_header": 1,
            "skipped.bad_ip_length": 1,
            "skipped.non_ip": 1,
            "skipped.unknown_linktype": 2,
            "skipped.unsupported_tunnel": 2,
            "gre": 1,
        }
    )
    assert decoder.unknown_linktypes == Counter({147: 2})
    nested = good
    for _ in range(6):
        nested = outer_ethernet(outer_ipv4(gre(nested, 0x6558), 47))
    assert decoder.decode(1, nested, 1.0) is None
    assert decoder.stats["skipped.tunnel_depth"] == 1


def test_snaplen_truncated_packet_reports_missing_bytes() -> None:
    frame = max(_tcp_frames("suricata-verify/kerberoast.pcap"), key=len)
    full = _decode_all(1, [frame])[0]
    assert full is not None
    cut = _summary(Decoder().decode(1, frame[:60], 1.0, truncated=True))
    assert cut is not None
    assert cut[:3] == full[:3]
    assert cut[3] == full[3][:26] and cut[4] == len(full[3]) - 26


def test_random_damage_never_raises() -> None:
    rng = random.Random(20240501)
    frames = [
        f[3]
        for name in ("zeek/erspan.pcap", "arkime/ntlm_synthetic.pcap")
        for f in read_frames(CORPUS / name)
    ]
    decoder = Decoder()
    linktypes = [0, 1, 12, 101, 108, 113, 228, 229, 276]
    for _ in range(6000):
        data = bytearray(rng.choice(frames))
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data) + 1)]
        decoder.decode(rng.choice(linktypes), bytes(data), rng.random() * 100, rng.random() < 0.5)
    assert sum(v for k, v in decoder.stats.items() if k.startswith("skipped.")) > 0


def test_address_text() -> None:
    assert address_text(bytes([10, 0, 0, 1])) == "10.0.0.1"
    assert address_text(bytes.fromhex("20010db8000000000000000000000001")) == "2001:db8::1"
    assert address_text(bytes.fromhex("00000000000000000000ffff01020304")) == "::ffff:1.2.3.4"
    assert address_text(bytes.fromhex("20010db8000000000001000000000001")) == "2001:db8::1:0:0:1"
