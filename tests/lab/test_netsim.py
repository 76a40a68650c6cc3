"""Tests for lyncpcap.lab.netsim: TCP behaviour, IP/UDP details, link framing, clock, determinism."""

from __future__ import annotations

import datetime
import itertools
import os
import struct
import subprocess
import sys
from pathlib import Path

import labkit
import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import Ether

from lyncpcap.lab.netsim import ACK, FIN, PSH, RST, SYN, Host, Network, checksum, seconds_to_ns

START = datetime.datetime(2024, 3, 5, 9, 0, 0, tzinfo=datetime.UTC)


def _net(seed: int = 1, link: str = "ethernet") -> tuple[Network, Host, Host]:
    net = Network(seed, START, link=link)
    client = net.host("client", "10.0.0.20", "fd00::20")
    server = net.host("server", "10.0.0.10", "fd00::10")
    return net, client, server


def _tcp_rows(net: Network) -> list[tuple[float, Ether]]:
    return [(t, Ether(f)) for t, f in net.packets() if TCP in Ether(f)]


def test_handshake_has_windows_options_and_random_isns() -> None:
    net, c, s = _net()
    t0 = net.now
    conn = net.tcp(c, s, 443, rtt=0.010)
    rows = _tcp_rows(net)
    assert [r[1][TCP].flags.value for r in rows] == [SYN, SYN | ACK, ACK]
    syn, synack, ack = (r[1][TCP] for r in rows)
    assert dict(syn.options)["MSS"] == 1460 and dict(syn.options)["WScale"] == 8
    assert "SAckOK" in dict(syn.options)
    assert synack.ack == (syn.seq + 1) & 0xFFFFFFFF and ack.ack == (synack.seq + 1) & 0xFFFFFFFF
    assert syn.window == 64240 and ack.window == 64000 >> 8
    assert syn.sport == conn.client_port and syn.dport == 443 == conn.server_port
    assert 49152 <= conn.client_port <= 65535
    # Captured at the client: the SYN-ACK arrives one round trip after the SYN.
    assert rows[0][0] == pytest.approx(t0) and rows[1][0] == pytest.approx(t0 + 0.010)
    assert net.now == pytest.approx(t0 + 0.010)
    assert rows[0][1][IP].flags.DF and rows[0][1][IP].ttl == 128


def test_capture_at_the_server() -> None:
    net, c, s = _net()
    t0 = net.now
    conn = net.tcp(c, s, 80, rtt=0.010, capture="server")
    conn.send(b"GET / HTTP/1.1\r\n\r\n")
    conn.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", think=0.004)
    rows = _tcp_rows(net)
    times = [t - t0 for t, _ in rows]
    # SYN arrives at `now`, the SYN-ACK leaves at once, the ACK arrives a round trip later.
    assert times[:3] == pytest.approx([0.0, 0.0, 0.010], abs=1e-5)
    request, response = rows[3], rows[4]
    assert response[1][IP].src == "10.0.0.10" and response[0] - request[0] == pytest.approx(0.004, abs=1e-5)
    with pytest.raises(ValueError):
        net.tcp(c, s, 80, capture="middle")


def test_send_segments_at_mss_with_psh_on_the_last() -> None:
    net, c, s = _net()
    conn = net.tcp(c, s, 80)
    n = len(net.packets())
    conn.send(b"x" * 5000)
    data = [p[TCP] for _, p in _tcp_rows(net)[n:] if p[IP].src == "10.0.0.20" and len(p[TCP].payload)]
    assert [len(p.payload) for p in data] == [1460, 1460, 1460, 620]
    assert [bool(p.flags.value & PSH) for p in data] == [False, False, False, True]
    seqs = [p.seq for p in data]
    assert all(b - a == 1460 for a, b in itertools.pairwise(seqs))


def test_delayed_ack_every_second_segment_or_40ms() -> None:
    net, c, s = _net()
    conn = net.tcp(c, s, 80, rtt=0.002)
    n = len(net.packets())
    conn.send(b"x" * 3000)  # 1460 + 1460 + 80
    rows = _tcp_rows(net)[n:]
    acks = [(t, p[TCP]) for t, p in rows if p[IP].src == "10.0.0.10" and not len(p[TCP].payload)]
    data = [(t, p[TCP]) for t, p in rows if p[IP].src == "10.0.0.20"]
    assert len(acks) == 2
    # The second full segment is acknowledged at once (arriving one RTT after it left)...
    assert acks[0][1].ack == (data[1][1].seq + 1460) & 0xFFFFFFFF
    assert acks[0][0] - data[1][0] == pytest.approx(0.002, abs=1e-6)
    # ...the short last one when the 40 ms timer runs out, since no reply came.
    assert acks[1][1].ack == (data[2][1].seq + 80) & 0xFFFFFFFF
    assert acks[1][0] - data[2][0] == pytest.approx(0.002 + 0.040, abs=1e-6)


def test_reply_within_40ms_carries_the_ack() -> None:
    net, c, s = _net()
    conn = net.tcp(c, s, 80)
    n = len(net.packets())
    conn.send(b"GET / HTTP/1.1\r\n\r\n")
    conn.reply(b"HTTP/1.1 204 No Content\r\n\r\n", think=0.010)
    rows = _tcp_rows(net)[n:]
    # Request, response (carrying the ACK), and the client's delayed ACK of the response.
    assert [p[IP].src for _, p in rows] == ["10.0.0.20", "10.0.0.10", "10.0.0.20"]
    req, resp = rows[0][1][TCP], rows[1][1][TCP]
    assert len(resp.payload) and not len(rows[2][1][TCP].payload)
    assert resp.ack == (req.seq + len(req.payload)) & 0xFFFFFFFF
    assert rows[1][0] - rows[0][0] == pytest.approx(0.002 + 0.010, abs=1e-6)


def test_sender_never_overruns_the_window() -> None:
    net, c, s = _net()
    conn = net.tcp(c, s, 80, window=16 * 1460)
    conn.send(b"GET /big HTTP/1.1\r\n\r\n")
    conn.reply(b"y" * 200_000)
    conn.close()
    rows = _tcp_rows(net)
    isn = rows[1][1][TCP].seq
    acked = 1
    window = (16 * 1460 >> 8) << 8
    for _, p in rows:
        tcp = p[TCP]
        if p[IP].src == "10.0.0.20" and tcp.flags.value & ACK:
            acked = max(acked, (tcp.ack - isn) & 0xFFFFFFFF)
        if p[IP].src == "10.0.0.10" and len(tcp.payload):
            end = ((tcp.seq - isn) & 0xFFFFFFFF) + len(tcp.payload)
            assert end - acked < window
    assert sum(len(p[TCP].payload) for _, p in rows if p[IP].src == "10.0.0.10") == 200_000


def test_close_variants() -> None:
    net, c, s = _net()
    conn = net.tcp(c, s, 80)
    conn.send(b"hello")
    conn.close()
    flags = [p[TCP].flags.value for _, p in _tcp_rows(net)[-3:]]
    assert flags == [FIN | ACK, FIN | ACK, ACK]
    with pytest.raises(RuntimeError):
        conn.send(b"more")
    count = len(net.packets())
    conn.close()  # closing again is a no-op
    assert len(net.packets()) == count
    with pytest.raises(ValueError):
        conn.close(by="nobody")
    conn2 = net.tcp(c, s, 80)
    conn2.close(by="server", rst=True)
    last = _tcp_rows(net)[-1][1]
    assert last[TCP].flags.value == RST | ACK and last[IP].src == "10.0.0.10"


def test_mid_stream_connection_has_no_syn_and_no_window_scaling() -> None:
    net, c, s = _net()
    conn = net.tcp(c, s, 5061, handshake=False)
    conn.send(b"REGISTER sip:contoso.com SIP/2.0\r\n\r\n")
    rows = _tcp_rows(net)
    assert rows and not any(p[TCP].flags.value & SYN for _, p in rows)
    assert rows[0][1][TCP].window == 64240


def test_checksums_match_an_independent_implementation() -> None:
    demo = labkit.build_demo()
    count = 0
    for _, frame in demo.net.packets():
        pkt = Ether(frame)
        if IP in pkt:
            ip = pkt[IP]
            fresh = IP(bytes(ip))
            del fresh.chksum
            assert IP(bytes(fresh)).chksum == ip.chksum
            if ip.flags.MF or ip.frag:
                continue
        for layer in (TCP, UDP):
            if layer in pkt:
                original = pkt[layer].chksum
                copy = pkt.copy()
                del copy[layer].chksum
                assert Ether(bytes(copy))[layer].chksum == original
                count += 1
    assert count > 50


def test_internet_checksum_reference_vector() -> None:
    # RFC 1071 §3 example bytes sum to 0xddf2, so the checksum is its complement.
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0xFFFF - 0xDDF2


def test_ip_ids_increment_per_host_and_ipv6_flow_label_is_zero() -> None:
    net, c, s = _net()
    conn = net.tcp(c, s, 80)
    conn.send(b"a" * 4000)
    conn.reply(b"b" * 100)
    ids = [Ether(f)[IP].id for _, f in net.packets() if Ether(f)[IP].src == "10.0.0.20"]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(ids))
    conn6 = net.tcp(c, s, 80, family=6)
    conn6.send(b"GET / HTTP/1.1\r\n\r\n")
    v6 = [Ether(f) for _, f in net.packets() if IPv6 in Ether(f)]
    assert v6 and all(p[IPv6].fl == 0 and p[IPv6].tc == 0 and p[IPv6].hlim == 128 for p in v6)
    assert dict(v6[0][TCP].options)["MSS"] == 1440  # 1500 - 40 - 20


def test_ephemeral_ports_are_unique_per_client() -> None:
    net, c, s = _net()
    ports = [net.tcp(c, s, 80).client_port for _ in range(40)]
    ports += [net.udp(c, s, 53, b"q") for _ in range(40)]
    assert len(set(ports)) == len(ports)
    assert all(49152 <= p <= 65535 for p in ports)


@pytest.mark.parametrize("family", [4, 6])
def test_udp_fragments_reassemble_to_the_datagram(family: int) -> None:
    net, c, s = _net()
    payload = bytes(range(256)) * 16  # 4096 bytes
    sport = net.udp(c, s, 88, payload, family=family)
    frames = [Ether(f) for _, f in net.packets()]
    assert len(frames) == 3
    if family == 4:
        assert [p[IP].flags.MF for p in frames] == [1, 1, 0]
        assert len({p[IP].id for p in frames}) == 1
        data = b"".join(bytes(p[IP].payload) for p in sorted(frames, key=lambda p: p[IP].frag))
        assert all(len(p) <= 1514 for p in (bytes(f) for f in frames))
    else:
        assert all(IPv6ExtHdrFragment in p for p in frames)
        data = b"".join(bytes(p[IPv6ExtHdrFragment].payload) for p in frames)
    udp = UDP(data)
    assert udp.sport == sport and udp.dport == 88 and bytes(udp.payload) == payload


def test_udp_reply_moves_the_clock() -> None:
    net, c, s = _net()
    t0 = net.now
    sport = net.udp(c, s, 53, b"query")
    assert net.now == t0
    net.udp_reply(s, c, 53, sport, b"answer", delay=0.0015)
    assert net.now == pytest.approx(t0 + 0.0015)
    times = [t for t, _ in net.packets()]
    assert times == pytest.approx([t0, t0 + 0.0015])


def test_packets_are_sorted_when_the_clock_goes_back() -> None:
    net, c, s = _net()
    t0 = net.now
    a = net.tcp(c, s, 80)
    a.send(b"first")
    a.reply(b"first answer")
    net.now = t0 + 0.001  # interleave a second conversation
    b = net.tcp(c, s, 443)
    b.send(b"second")
    times = [t for t, _ in net.packets()]
    assert times == sorted(times)
    # Each connection stays causal on its own, even when `now` is set before its last packet.
    net.now = t0
    a.send(b"again")
    a_rows = [(t, p) for t, p in _tcp_rows(net) if p[TCP].dport == 80 or p[TCP].sport == 80]
    assert [t for t, _ in a_rows] == sorted(t for t, _ in a_rows)


def test_advance_and_now_setter() -> None:
    net, _, _ = _net()
    t0 = net.now_ns
    net.advance(0.25)
    assert net.now_ns - t0 == 250_000_000
    net.now = net.now - 1.5
    assert net.now_ns - t0 == pytest.approx(-1_250_000_000, abs=200)
    with pytest.raises(ValueError):
        net.advance(-1)
    assert seconds_to_ns(0.1) == 100_000_000


def test_raw_frame_is_kept_verbatim() -> None:
    net, _, _ = _net()
    net.advance(1)
    net.raw_frame(b"\xff" * 20)
    ((t, frame),) = net.packets()
    assert frame == b"\xff" * 20 and t == pytest.approx(START.timestamp() + 1)


def test_hosts() -> None:
    net, c, _ = _net()
    assert net.host("client") is c
    assert c.mac.startswith("00:15:5d:")
    with pytest.raises(ValueError):
        net.host("client", "10.9.9.9")
    with pytest.raises(ValueError):
        net.host("nothing")
    other = Network(1, START).host("client", "10.0.0.20")
    with pytest.raises(ValueError):
        net.tcp(other, c, 80)
    v4only = net.host("v4", "10.0.0.99", mac="AA-BB-CC-DD-EE-FF")
    assert v4only.mac == "aa:bb:cc:dd:ee:ff"
    with pytest.raises(ValueError):
        net.tcp(v4only, c, 80, family=6)


def _write(net: Network, tmp_path, name: str = "cap.pcap") -> str:  # type: ignore[no-untyped-def]
    path = str(tmp_path / name)
    net.write_pcap(path)
    return path


def test_lost_segment_shows_as_tshark_expects(tmp_path) -> None:  # type: ignore[no-untyped-def]
    net, c, s = _net()
    conn = net.tcp(c, s, 80)
    conn.send(b"GET /file HTTP/1.1\r\nHost: server\r\n\r\n")
    conn.lose_next_segment("s2c")
    conn.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 6000\r\n\r\n" + b"z" * 6000)
    conn.close()
    path = _write(net, tmp_path)
    found = labkit.problems(path)
    messages = [m for msgs in found.values() for m in msgs]
    assert any(m.startswith("Previous segment(s) not captured") for m in messages)
    assert any(m.startswith("ACKed segment that wasn't captured") for m in messages)
    assert all("checksum" not in m.lower() and m != "malformed" for m in messages)


def test_retransmission_appears_twice_after_the_rto(tmp_path) -> None:  # type: ignore[no-untyped-def]
    net, c, s = _net()
    conn = net.tcp(c, s, 80)
    conn.retransmit_next_segment("c2s")
    conn.send(b"POST /x HTTP/1.1\r\nHost: server\r\nContent-Length: 3\r\n\r\nabc")
    conn.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    conn.close()
    data = [(t, p[TCP]) for t, p in _tcp_rows(net) if p[IP].src == "10.0.0.20" and len(p[TCP].payload)]
    assert len(data) == 2 and bytes(data[0][1].payload) == bytes(data[1][1].payload)
    assert data[1][0] - data[0][0] == pytest.approx(0.300, abs=1e-4)
    path = _write(net, tmp_path)
    rows = labkit.frames_with(path, "tcp.analysis.retransmission", ["tcp.seq"])
    assert len(rows) == 1
    assert labkit.problems(path) == {}  # a retransmission is a note, nothing worse


@pytest.mark.parametrize(
    ("link", "encapsulation"),
    [
        ("ethernet", "ether"),
        ("vlan", "ether"),
        ("qinq", "ether"),
        ("sll", "linux-sll"),
        ("sll2", "linux-sll2"),
        ("raw", "rawip"),
    ],
)
def test_every_link_type_dissects_cleanly(tmp_path, link: str, encapsulation: str) -> None:  # type: ignore[no-untyped-def]
    demo = labkit.build_demo(link=link)
    path = _write(demo.net, tmp_path, f"{link}.pcap")
    assert labkit.capinfos_encapsulation(path) == encapsulation
    assert labkit.problems(path) == {}
    dns = labkit.frames_with(path, "dns.flags.response == 1", ["dns.qry.name", "dns.flags.rcode"])
    assert [r["dns.flags.rcode"][0] for r in dns] == ["0", "0", "0", "3"]
    if link == "vlan":
        ids = labkit.frames_with(path, "vlan", ["vlan.id"])
        assert ids and all(r["vlan.id"] == ["100"] for r in ids)
    if link == "qinq":
        ids = labkit.frames_with(path, "vlan", ["ieee8021ad.id", "vlan.id"])
        assert ids and all(r["ieee8021ad.id"] == ["100"] and r["vlan.id"] == ["10"] for r in ids)
    if link in ("sll", "sll2"):
        field = "sll.pkttype"
        rows = labkit.frames_with(path, "ip.src == 10.0.1.20", [field])
        assert {r[field][0] for r in rows} == {"4"}  # sent by the capture host
        rows = labkit.frames_with(path, "ip.dst == 10.0.1.20", [field])
        assert {r[field][0] for r in rows} == {"0"}  # addressed to it


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    one = _write(labkit.build_demo(seed=11).net, tmp_path, "one.pcap")
    two = _write(labkit.build_demo(seed=11).net, tmp_path, "two.pcap")
    three = _write(labkit.build_demo(seed=12).net, tmp_path, "three.pcap")
    with open(one, "rb") as a, open(two, "rb") as b, open(three, "rb") as c:
        first, second, third = a.read(), b.read(), c.read()
    assert first == second
    assert first != third


def test_window_scale_shift_survives_big_windows() -> None:
    net, c, s = _net()
    conn = net.tcp(c, s, 80, window=262144)
    conn.send(b"x")
    syn = _tcp_rows(net)[0][1][TCP]
    assert syn.window == 0xFFFF
    data = _tcp_rows(net)[-1][1][TCP]
    assert data.window == 262144 >> 8
    assert struct.pack("!H", data.window)  # fits the 16-bit field


def test_bytes_do_not_depend_on_the_process(tmp_path: Path) -> None:
    """Hash randomisation (set/dict order) must not leak into the capture."""
    import lyncpcap

    code = (
        "import hashlib, sys, labkit\n"
        "labkit.build_demo(seed=42).net.write_pcap(sys.argv[1], nanosecond=True)\n"
        "print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())\n"
    )
    paths = [str(Path(lyncpcap.__file__).parent.parent), str(Path(__file__).parent)]
    digests = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=os.pathsep.join(paths))
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / f"{hash_seed}.pcap")],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1
