"""Every sample capture's analysis matches its truth file: same sessions, fields and step order."""

from __future__ import annotations

import ipaddress
import itertools
import random
import re
import struct
from collections import Counter
from pathlib import Path

import pytest
from conftest import sample_captures, truth_path
from truth import differences, load

import lyncpcap
import lyncpcap.model
from lyncpcap.lab.pcapwriter import write_pcap
from lyncpcap.read import open_capture


@pytest.mark.parametrize("capture", sample_captures(), ids=lambda p: p.stem)
def test_analysis_matches_truth(capture: Path) -> None:
    analysis = lyncpcap.analyze(capture)
    problems = differences(analysis, load(truth_path(capture)))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("capture", sample_captures(), ids=lambda p: p.stem)
def test_failing_sessions_explain_why(capture: Path) -> None:
    """A failed session names its step, a reason in words, and the server's own evidence."""
    for s in lyncpcap.analyze(capture).session_list:
        if s.outcome == "failure":
            assert s.failure is not None
            assert s.failure["reason"] and len(s.failure["reason"]) > 10
            assert s.failure["evidence"]
        else:
            assert s.failure is None


def test_every_sample_has_a_truth_file() -> None:
    captures = sample_captures() + sample_captures(tls=True)
    assert len(captures) >= 19
    for c in captures:
        assert truth_path(c).exists(), c


# Header names, authentication schemes, content types and transfer codings are case-insensitive
# (RFC 9110 5.1, 11.1, 8.3.1, RFC 3261 7.3.1); clients and proxies write them in every case.
_CASE_INSENSITIVE = re.compile(
    rb"(?im)^(www-authenticate|authorization|proxy-authenticate|proxy-authorization|transfer-encoding"
    rb"|content-encoding|content-type|connection|host|user-agent|cseq|call-id|via)(: *)([^\r\n;, ]*)"
)


def _recased(match: re.Match[bytes]) -> bytes:
    name, colon, token = match.groups()
    if name.lower() in (b"host", b"user-agent", b"cseq", b"call-id", b"via"):
        return name.lower() + colon + token  # only the name: these values are not all case-insensitive
    return name.upper() + colon + token.swapcase()


@pytest.mark.parametrize("capture", sample_captures(), ids=lambda p: p.stem)
def test_the_case_of_case_insensitive_words_changes_nothing(capture: Path, tmp_path: Path) -> None:
    """`WWW-AUTHENTICATE: nEGOTIATE`, `content-type: TEXT/XML`, `TRANSFER-ENCODING: CHUNKED`: the
    same sessions, steps and findings as the capture as written (the bytes keep their lengths)."""
    raw = capture.read_bytes()
    recased = _CASE_INSENSITIVE.sub(_recased, raw)
    assert len(recased) == len(raw)
    path = tmp_path / capture.name
    path.write_bytes(recased)
    analysis = lyncpcap.analyze(path)
    problems = differences(analysis, load(truth_path(capture)))
    assert not problems, "\n".join(problems)
    original = lyncpcap.analyze(capture)
    assert [f.id for f in analysis.finding_list] == [f.id for f in original.finding_list]


#: Link types of the samples -> (length of the link header, offset of its EtherType)
_LINK = {1: (14, 12), 113: (16, 14), 276: (20, 0)}


def _resegmented(capture: Path, out: Path, how: str, rng: random.Random) -> Path:
    """`capture` with every TCP payload cut in 2-6 segments, the first of them 1-4 bytes long
    half the time; `how` "reorder" shuffles the middle ones, "duplicate" sends one twice.
    Written as a microsecond pcap, each piece a microsecond after the last."""
    frames: list[tuple[float, bytes]] = []
    with open_capture(capture) as cap:
        cap.read_head()
        (linktype,) = cap.linktypes
        for _frame, ts, _linktype, data, _wirelen in cap:
            pieces = _cut(bytes(data), *_LINK[linktype], how, rng)
            frames += [(ts + i * 1e-6, piece) for i, piece in enumerate(pieces)]
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)
    records = []
    for ts, data in frames:
        sec, us = divmod(round(ts * 1e6), 1_000_000)
        records.append(struct.pack("<IIII", sec, us, len(data), len(data)) + data)
    out.write_bytes(head + b"".join(records))
    return out


def _cut(frame: bytes, ip: int, etype_at: int, how: str, rng: random.Random) -> list[bytes]:
    etype = struct.unpack_from("!H", frame, etype_at)[0]
    if etype == 0x0800 and frame[ip + 9] == 6:
        t, end = ip + (frame[ip] & 15) * 4, ip + struct.unpack_from("!H", frame, ip + 2)[0]
    elif etype == 0x86DD and frame[ip + 6] == 6:
        t, end = ip + 40, ip + 40 + struct.unpack_from("!H", frame, ip + 4)[0]
    else:
        return [frame]
    hlen = (frame[t + 12] >> 4) * 4
    payload = frame[t + hlen : end]
    if len(payload) < 8:
        return [frame]
    seq = struct.unpack_from("!I", frame, t + 4)[0]
    cuts = set(rng.sample(range(1, len(payload)), rng.randint(1, 5)))
    if rng.random() < 0.5:
        cuts.add(rng.randint(1, 4))
    bounds = [0, *sorted(cuts), len(payload)]
    pieces = []
    for a, b in itertools.pairwise(bounds):
        tcp = bytearray(frame[t : t + hlen])
        struct.pack_into("!I", tcp, 4, (seq + a) & 0xFFFFFFFF)
        if b < len(payload):
            tcp[13] &= 0xF6  # FIN and PSH only on the last piece
        header = bytearray(frame[ip:t])
        if etype == 0x0800:
            struct.pack_into("!H", header, 2, len(header) + hlen + b - a)
        else:
            struct.pack_into("!H", header, 4, hlen + b - a)
        pieces.append(frame[:ip] + bytes(header) + bytes(tcp) + payload[a:b])
    if how == "reorder" and len(pieces) > 3:
        middle = pieces[1:-1]
        rng.shuffle(middle)
        pieces = [pieces[0], *middle, pieces[-1]]
    elif how == "duplicate":
        i = rng.randrange(len(pieces))
        pieces.insert(i + 1, pieces[i])
    return pieces


@pytest.mark.parametrize("how", ["cut", "reorder", "duplicate"])
@pytest.mark.parametrize("capture", sample_captures(), ids=lambda p: p.stem)
def test_any_segmentation_gives_the_same_analysis(capture: Path, how: str, tmp_path: Path) -> None:
    """TCP may carry a message in segments of any size, out of order, some twice: a request line
    whose first segment holds one byte ("P", then "OST /WebTicket/oauthtoken ...") must still be
    told to be HTTP.  The same truth and findings as the capture as written."""
    path = _resegmented(capture, tmp_path / f"{capture.stem}-{how}.pcap", how, random.Random(capture.name + how))
    analysis = lyncpcap.analyze(path)
    problems = differences(analysis, load(truth_path(capture)))
    assert not problems, "\n".join(problems)
    original = lyncpcap.analyze(capture)
    assert [f.id for f in analysis.finding_list] == [f.id for f in original.finding_list]
    assert len(analysis.auth_list) == len(original.auth_list)


@pytest.mark.parametrize("capture", sample_captures(), ids=lambda p: p.stem)
def test_every_frame_captured_twice_gives_the_same_analysis(capture: Path, tmp_path: Path) -> None:
    """A SPAN port mirroring both directions of a switch port, or Windows' pktmon at two layers of
    the stack, records every frame twice, a few microseconds apart: DNS and Kerberos over UDP
    included.  The same steps, auth attempts and findings as the capture as written."""
    with open_capture(capture) as cap:
        cap.read_head()
        (linktype,) = cap.linktypes
        frames = [(ts, bytes(data)) for _n, ts, _lt, data, _w in cap]
    path = tmp_path / f"{capture.stem}-twice.pcap"
    write_pcap(path, [copy for ts, data in frames for copy in ((ts, data), (ts + 3e-6, data))], linktype)
    analysis = lyncpcap.analyze(path)
    problems = differences(analysis, load(truth_path(capture)))
    assert not problems, "\n".join(problems)
    original = lyncpcap.analyze(capture)
    assert [f.id for f in analysis.finding_list] == [f.id for f in original.finding_list]
    assert [(a.protocol, a.message, a.error_code) for a in analysis.auth_list] == [
        (a.protocol, a.message, a.error_code) for a in original.auth_list
    ]
    assert [len(s.steps) for s in analysis.session_list] == [len(s.steps) for s in original.session_list]


def _tcp_of(frame: bytes, ip: int, etype_at: int) -> tuple[tuple[bytes, ...], int] | None:
    """(the connection's addresses and ports, in an order both directions share; payload length)."""
    etype = struct.unpack_from("!H", frame, etype_at)[0]
    if etype == 0x0800 and frame[ip + 9] == 6:
        t, end, src, dst = ip + (frame[ip] & 15) * 4, ip + struct.unpack_from("!H", frame, ip + 2)[0], frame[ip + 12 : ip + 16], frame[ip + 16 : ip + 20]
    elif etype == 0x86DD and frame[ip + 6] == 6:
        t, end, src, dst = ip + 40, ip + 40 + struct.unpack_from("!H", frame, ip + 4)[0], frame[ip + 8 : ip + 24], frame[ip + 24 : ip + 40]
    else:
        return None
    ends = sorted([src + frame[t : t + 2], dst + frame[t + 2 : t + 4]])
    return (ends[0], ends[1]), end - t - (frame[t + 12] >> 4) * 4


@pytest.mark.parametrize("capture", sample_captures(), ids=lambda p: p.stem)
def test_connections_picked_up_in_their_middle_keep_their_later_steps(capture: Path, tmp_path: Path) -> None:
    """A capture that begins while connections are in use (or lost their first segments): each
    connection's packets up to its first data segment are gone, so its data starts in the middle
    of a message (a SOAP body, an answer).  Every step whose request began after that is still
    found: the message starts are looked for, as tshark does."""
    with open_capture(capture) as cap:
        cap.read_head()
        (linktype,) = cap.linktypes
        frames = [(ts, bytes(data)) for _frame, ts, _lt, data, _wirelen in cap]
    kept: list[tuple[float, bytes]] = []
    started: set[tuple[bytes, ...]] = set()
    cut_at: set[float] = set()  # when each connection's first data segment went by
    for ts, data in frames:
        tcp = _tcp_of(data, *_LINK[linktype])
        if tcp is None or tcp[0] in started:
            kept.append((ts, data))
        elif tcp[1]:
            started.add(tcp[0])
            cut_at.add(round(ts, 5))
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)
    records = [struct.pack("<IIII", *divmod(round(ts * 1e6), 1_000_000), len(d), len(d)) + d for ts, d in kept]
    path = tmp_path / f"{capture.stem}-midstream.pcap"
    path.write_bytes(head + b"".join(records))

    def key(s: lyncpcap.model.Step) -> tuple[object, ...]:
        return s.step, s.method, s.url, s.status, round(s.time, 5)

    expected = Counter(
        key(s)
        for s in lyncpcap.analyze(capture).step_list
        if s.step != "dns" and s.method not in ("TCP", "TLS") and round(s.time, 5) not in cut_at
    )
    found = Counter(key(s) for s in lyncpcap.analyze(path).step_list)
    assert not expected - found, sorted(expected - found)


def _v6(address: bytes) -> bytes:
    """An IPv4 address inside the unique local prefix fd00::/96."""
    return b"\xfd\x00" + bytes(10) + address


def _dns_name_end(m: bytes, p: int) -> int:
    while m[p] and m[p] & 0xC0 != 0xC0:
        p += 1 + m[p]
    return p + (2 if m[p] else 1)


def _aaaa_answers(m: bytes) -> bytes:
    """A DNS message whose A records (answers, authority, additional) are AAAA records of `_v6`."""
    qd, an, ns, ar = struct.unpack_from("!4H", m, 4)
    p = 12
    for _ in range(qd):
        p = _dns_name_end(m, p) + 4
    out = bytearray(m[:p])
    for _ in range(an + ns + ar):
        q = _dns_name_end(m, p)
        rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", m, q)
        out += m[p:q]
        if rtype == 1 and rdlen == 4:
            out += struct.pack("!HHIH", 28, rclass, ttl, 16) + _v6(m[q + 10 : q + 14])
        else:
            out += m[q : q + 10 + rdlen]
        p = q + 10 + rdlen
    return bytes(out)


def _over_ipv6(capture: Path, out: Path) -> Path:
    """`capture` with every IPv4 packet carried by IPv6 instead: addresses mapped into fd00::/96,
    fragments as IPv6 fragment headers, DNS A answers as AAAA answers (what a dual-stack resolver
    gives a client that then connects over IPv6)."""
    frames: list[tuple[float, bytes]] = []
    with open_capture(capture) as cap:
        cap.read_head()
        (linktype,) = cap.linktypes
        for _n, ts, _lt, data, _w in cap:
            frame = bytes(data)
            link, etype_at = _LINK[linktype]
            while frame[etype_at : etype_at + 2] in (b"\x81\x00", b"\x88\xa8"):  # 802.1Q / 802.1ad tags
                link, etype_at = link + 4, etype_at + 4
            if frame[etype_at : etype_at + 2] == b"\x08\x00":
                ihl = (frame[link] & 15) * 4
                total, ident, fragword = struct.unpack_from("!HHH", frame, link + 2)
                ttl, proto = frame[link + 8], frame[link + 9]
                payload = frame[link + ihl : link + total]
                if proto == 17 and not fragword & 0x1FFF and 53 in struct.unpack_from("!HH", payload):
                    dns = _aaaa_answers(payload[8:])
                    payload = payload[:4] + struct.pack("!HH", 8 + len(dns), 0) + dns
                next_header = proto
                if fragword & 0x3FFF:  # more fragments, or an offset: an IPv6 fragment header
                    offset, more = fragword & 0x1FFF, (fragword >> 13) & 1
                    payload = struct.pack("!BBHI", proto, 0, offset << 3 | more, ident) + payload
                    next_header = 44
                ip6 = struct.pack("!IHBB", 0x6000_0000, len(payload), next_header, ttl)
                ip6 += _v6(frame[link + 12 : link + 16]) + _v6(frame[link + 16 : link + 20])
                frame = frame[:etype_at] + b"\x86\xdd" + frame[etype_at + 2 : link] + ip6 + payload
            frames.append((ts, frame))
    write_pcap(out, frames, linktype)
    return out


_ADDRESS = re.compile(r"\[?fd00::[0-9a-f:]+\]?|\b\d{1,3}(?:\.\d{1,3}){3}\b")


def _unaddressed(a: lyncpcap.Analysis) -> str:
    """What a user reads of the sessions, with every address (IPv4, or mapped) as ADDR."""
    facts = [
        (s.user, s.client_kind, s.location, s.location_evidence, s.auth_protocol, s.outcome, s.failure,
         [(st.step, st.method, st.url, st.status, st.result, st.frame, st.detail) for st in s.steps])
        for s in a.session_list
    ]  # fmt: skip
    return _ADDRESS.sub("ADDR", repr(facts))


def _mapped(address: str) -> str:
    ip = ipaddress.ip_address(address)
    return str(ipaddress.ip_address(_v6(ip.packed))) if ip.version == 4 else address


@pytest.mark.parametrize("capture", sample_captures(), ids=lambda p: p.stem)
def test_every_sample_over_ipv6_gives_the_same_analysis(capture: Path, tmp_path: Path) -> None:
    """A client and servers that speak IPv6 (Lync 2013 supports it end to end): the same users,
    clients, locations, steps, outcomes, reasons and findings, at the mapped addresses."""
    path = _over_ipv6(capture, tmp_path / f"{capture.stem}-ipv6.pcap")
    original, over_ipv6 = lyncpcap.analyze(capture), lyncpcap.analyze(path)
    assert over_ipv6.captures[0].stats.get("ipv4", 0) == 0 < over_ipv6.captures[0].stats["ipv6"]
    assert _unaddressed(over_ipv6) == _unaddressed(original)
    # packet addresses are mapped; a client named by X-Forwarded-For keeps the header's address
    senders = {s.src for s in original.step_list}
    assert [s.client_address for s in over_ipv6.session_list] == [
        _mapped(c) if c in senders else c for c in (s.client_address for s in original.session_list)
    ]
    assert [f.id for f in over_ipv6.finding_list] == [f.id for f in original.finding_list]


def _in_udp_tunnel(capture: Path, out: Path, tunnel: str) -> Path | None:
    """`capture` as a cloud's traffic mirror delivers it: every Ethernet frame inside VXLAN (Azure
    virtual network TAP, AWS VPC traffic mirroring) or Geneve (with an 8-byte option), from the
    mirroring host to the collector.  None for a capture of another link type (its frames would
    first need an Ethernet header)."""
    frames: list[tuple[float, bytes]] = []
    with open_capture(capture) as cap:
        cap.read_head()
        if cap.linktypes != {1}:
            return None
        for n, ts, _lt, data, _w in cap:
            inner = bytes(data)
            if tunnel == "vxlan":
                port, head = 4789, struct.pack("!II", 0x0800_0000, 0x0012_3400)
            else:
                head = struct.pack("!BBHI", 2, 0, 0x6558, 0x0012_3400) + struct.pack("!HBBI", 0x0104, 0x01, 1, 0xDEADBEEF)
                port = 6081
            udp = struct.pack("!HHHH", 49152 + n % 16000, port, 8 + len(head) + len(inner), 0) + head + inner
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n & 0xFFFF, 0, 64, 17, 0,
                             bytes([10, 250, 0, 4]), bytes([10, 250, 0, 9])) + udp  # fmt: skip
            frames.append((ts, b"\x00\x0d\x3a\x00\x00\x09\x00\x0d\x3a\x00\x00\x04\x08\x00" + ip))
    write_pcap(out, frames, 1)
    return out


def _ethernet_samples() -> list[Path]:
    out = []
    for capture in sample_captures():
        with open_capture(capture) as cap:
            cap.read_head()
            if cap.linktypes == {1}:
                out.append(capture)
    return out


@pytest.mark.parametrize("tunnel", ["vxlan", "geneve"])
@pytest.mark.parametrize("capture", _ethernet_samples(), ids=lambda p: p.stem)
def test_every_sample_mirrored_through_a_udp_tunnel_gives_the_same_analysis(capture: Path, tunnel: str, tmp_path: Path) -> None:
    """A capture taken by a cloud's traffic mirroring holds the traffic inside UDP tunnels to the
    collector: the same sessions, steps, frames and findings as the traffic captured directly."""
    path = _in_udp_tunnel(capture, tmp_path / f"{capture.stem}-{tunnel}.pcap", tunnel)
    assert path is not None
    original, mirrored = lyncpcap.analyze(capture), lyncpcap.analyze(path)
    assert mirrored.captures[0].stats[tunnel] == original.captures[0].packets
    assert _unaddressed(mirrored) == _unaddressed(original)
    assert [s.client_address for s in mirrored.session_list] == [s.client_address for s in original.session_list]
    assert [f.id for f in mirrored.finding_list] == [f.id for f in original.finding_list]
    assert len(mirrored.auth_list) == len(original.auth_list)
