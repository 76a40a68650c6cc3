"""Everyday traffic around a sign-in: web browsing, opaque TLS 1.3, DNS and an RTP-like stream.

Deterministic (seeded), and well-formed enough that tshark dissects it without complaint, so a
capture with noise tests that lyncpcap ignores what is not sign-in traffic.
"""

from __future__ import annotations

import struct

from lyncpcap.lab import dnsmsg, lync
from lyncpcap.lab.netsim import Host
from lyncpcap.lab.world import Capture

SITES = [("www.example.org", "93.184.216.34"), ("news.example.net", "198.18.10.20"), ("cdn.example.com", "198.18.30.40")]
TLS_SITES = [("outlook.example.com", "198.18.50.60"), ("updates.example.com", "198.18.70.80")]


def _tls13_client_hello(rng, sni: str) -> bytes:  # type: ignore[no-untyped-def]
    ext = b""
    name = sni.encode()
    sni_ext = struct.pack(">HB H", len(name) + 3, 0, len(name)) + name
    ext += struct.pack(">HH", 0, len(sni_ext)) + sni_ext
    ext += struct.pack(">HH", 43, 3) + b"\x02\x03\x04"  # supported_versions: TLS 1.3
    ext += struct.pack(">HH", 10, 4) + b"\x00\x02\x00\x1d"  # supported_groups: x25519
    ext += struct.pack(">HH", 13, 4) + b"\x00\x02\x04\x03"  # signature_algorithms
    ks = b"\x00\x1d\x00\x20" + rng.randbytes(32)
    ext += struct.pack(">HH", 51, len(ks) + 2) + struct.pack(">H", len(ks)) + ks
    body = b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32)
    body += b"\x00\x06\x13\x01\x13\x02\x13\x03" + b"\x01\x00" + struct.pack(">H", len(ext)) + ext
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def _tls13_server_hello(rng) -> bytes:  # type: ignore[no-untyped-def]
    ext = struct.pack(">HH", 43, 2) + b"\x03\x04"
    ks = b"\x00\x1d\x00\x20" + rng.randbytes(32)
    ext += struct.pack(">HH", 51, len(ks)) + ks
    body = b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32) + b"\x13\x01\x00" + struct.pack(">H", len(ext)) + ext
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + struct.pack(">H", len(hs)) + hs + b"\x14\x03\x03\x00\x01\x01"


def _app_data(rng, n: int) -> bytes:  # type: ignore[no-untyped-def]
    return b"\x17\x03\x03" + struct.pack(">H", n) + rng.randbytes(n)


def add_noise(cap: Capture, pc: Host, resolver: Host, *, start: float, end: float) -> None:
    net = cap.net
    rng = cap.rng
    saved = net.now
    hosts = {name: net.host(f"site-{i}", ip) for i, (name, ip) in enumerate(SITES + TLS_SITES)}
    qid = 4000
    # web browsing and opaque TLS, spread over the window
    t = start
    for round_ in range(3):
        for name, ip in SITES:
            net.now = t
            qid += 1
            q = dnsmsg.query(qid, name, "A")
            sport = net.udp(pc, resolver, 53, q)
            net.udp_reply(resolver, pc, 53, sport, dnsmsg.response(q, answers=[(name, "A", ip)]), delay=0.012)
            conn = net.tcp(pc, hosts[name], 80, rtt=0.03)
            for page in range(2):
                path = f"/articles/{round_}-{page}.html"
                conn.send(lync.request("GET", path, name, [("Accept", "text/html")], user_agent="Mozilla/5.0 (Windows NT 6.1; WOW64; rv:27.0) Gecko/20100101 Firefox/27.0"))
                html = b"<html><body>" + b"".join(b"<p>%d</p>" % rng.randrange(10**9) for _ in range(300)) + b"</body></html>"
                conn.reply(lync.response(200, body=html, content_type="text/html", ts=net.now, server="nginx/1.4.6", gzip_body=page == 1), think=0.04)
            conn.close(by="client")
            t += (end - start) / 12
        for name, _ip in TLS_SITES:
            net.now = t
            conn = net.tcp(pc, hosts[name], 443, rtt=0.02)
            conn.send(_tls13_client_hello(rng, name))
            conn.reply(_tls13_server_hello(rng) + _app_data(rng, 2800) + _app_data(rng, 80), think=0.01)
            conn.send(_app_data(rng, 74) + _app_data(rng, 420))
            conn.reply(_app_data(rng, 5200), think=0.08)
            conn.close(by="client")
            t += (end - start) / 12
    # an RTP-like media stream (G.711, 20 ms packets) both ways
    peer = net.host("media-peer", "198.18.90.100")
    ssrc_a, ssrc_b = rng.getrandbits(32), rng.getrandbits(32)
    seq_a, seq_b = rng.randrange(65536), rng.randrange(65536)
    ts_a, ts_b = rng.getrandbits(32), rng.getrandbits(32)
    t = start + 1.0
    n = int(min(end - start - 1.0, 8.0) / 0.02)
    for i in range(n):
        for src, dst, sport, dport, ssrc, seq, ts in (
            (pc, peer, 50020, 51230, ssrc_a, seq_a, ts_a),
            (peer, pc, 51230, 50020, ssrc_b, seq_b, ts_b),
        ):
            net.now = t + i * 0.02 + (0.003 if src is peer else 0.0)
            header = struct.pack(">BBHII", 0x80, 0, (seq + i) & 0xFFFF, (ts + 160 * i) & 0xFFFFFFFF, ssrc)
            net.udp(src, dst, dport, header + rng.randbytes(160), sport=sport)
    net.now = saved
