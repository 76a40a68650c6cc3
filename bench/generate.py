"""Large plaintext benchmark captures: thousands of lab sign-ins buried in media, opaque TLS and web traffic.

Every sign-in is a catalogue scenario of `lyncpcap.lab` (real NTLM, Kerberos, SOAP, OAuth and SIP bytes)
built at its own start time and seed, with its client addresses rewritten so that each one is a
distinct sign-in.  Around them: RTP-like media bursts (most of the packets), TLS connections whose
handshake is in the clear but whose data is not, web browsing and DNS.  Output is deterministic for
a seed and written while it is produced (units are merged by time), so memory stays small.

    python -m bench.generate --signins 5000 --seed 1 --output bench/out/bench-5000.pcapng
"""

from __future__ import annotations

import argparse
import datetime
import heapq
import ipaddress
import json
import random
import re
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import BinaryIO

from lyncpcap.lab import dnsmsg, lync, pcapwriter
from lyncpcap.lab.netsim import Network
from lyncpcap.lab.scenarios import CATALOGUE, Spec
from lyncpcap.lab.world import Capture

#: Relative frequency of each catalogue scenario among the sign-ins (TLS twins are left out: their
#: bytes differ on every run).  Successful desktop and mobile sign-ins dominate, as on a real pool.
WEIGHTS: dict[str, float] = {
    "01-desktop-internal-kerberos": 14,
    "02-desktop-external-ntlm": 12,
    "03-windows-phone-ntlm": 4,
    "04-android-ntlm-and-soap": 6,
    "05-lwa-domain-user-soap": 4,
    "06-lwa-guests-anonymous": 3,
    "07-passive-adfs-2fa": 4,
    "08-ucwa-mobile-oauth": 8,
    "09a-wrong-password": 3,
    "09b-locked-account": 2,
    "09c-lyncdiscover-nxdomain": 2,
    "09d-mex-404": 2,
    "09e-webticket-fault-28020": 2,
    "09f-oauth-invalid-grant": 2,
    "09g-sip-register-4004": 2,
    "09h-adfs-errors": 2,
    "10-password-spray": 0.3,
    "11-background-noise": 2,
    "12-internal-spn-missing": 6,
}

#: The reverse proxy's internal address: every scenario captured behind it connects from there, so
#: it is rewritten per sign-in too (two sign-ins must never share a TCP 4-tuple).
RP_INTERNAL = "10.0.1.5"
#: It never appears as text, so its replacements may be longer: shaped like this, there are plenty.
RP_SHAPE = "10.1.100.100"
#: Addresses of the Contoso deployment that every sign-in talks to: never handed out as clients.
DEPLOYMENT = frozenset(
    {"10.0.0.5", "10.0.0.21", "10.0.0.30", "203.0.113.10", "10.0.1.5", "203.0.113.20", "10.0.1.20", "198.51.100.53"}
)

#: Noise per sign-in (packets or connections), chosen so that a 5,000-sign-in capture has about
#: 900,000 packets and 370 MB, with media the bulk of the packets as at a busy edge.
RTP_PACKETS_PER_SIGNIN = 84
TLS_CONNS_PER_SIGNIN = 0.5
HTTP_CONNS_PER_SIGNIN = 0.3
DNS_LOOKUPS_PER_SIGNIN = 1.0
#: Seconds of capture per sign-in (5,000 sign-ins: one hour), at least MIN_SPAN.
SECONDS_PER_SIGNIN = 0.72
MIN_SPAN = 600.0
START = datetime.datetime(2014, 3, 3, 7, 30, 0, tzinfo=datetime.UTC)

WEB_SITES = [
    "www.fabrikam.com", "news.fabrikam.net", "cdn.wingtiptoys.com", "intranet.contoso.com",
    "www.northwindtraders.com", "static.adventure-works.com", "blog.tailspintoys.com", "www.litwareinc.com",
]
TLS_SITES = [
    "outlook.fabrikam.com", "login.fabrikam.com", "portal.wingtiptoys.com", "mail.northwindtraders.com",
    "api.adventure-works.com", "sharepoint.contoso.com", "lyncweb.contoso.com", "updates.litwareinc.com",
    "files.tailspintoys.com", "teams.fabrikam.net", "search.wingtiptoys.com", "crm.contoso.com",
]
BROWSER_UAS = [
    "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
    "Mozilla/5.0 (Windows NT 6.3; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/33.0.1750.146 Safari/537.36",
    "Mozilla/5.0 (Windows NT 6.1; WOW64; rv:27.0) Gecko/20100101 Firefox/27.0",
]
DNS_NAMES = WEB_SITES + TLS_SITES + ["time.windows.com", "wpad.contoso.com", "fileserver01.contoso.com", "printer-3f.contoso.com"]

Packet = tuple[int, bytes]  # (microseconds since the epoch, Ethernet frame)


# -- addresses ------------------------------------------------------------------------------------


class AddressPool:
    """Hands out fresh addresses shaped like a template address (same first octet or group, same
    text length), so the template's address can be replaced in headers and in text alike."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set(DEPLOYMENT)

    def like(self, template: str) -> str:
        for _ in range(10_000):
            new = self._draw(template)
            if new not in self.used:
                self.used.add(new)
                return new
        raise RuntimeError(f"no unused address left shaped like {template}")

    def _draw(self, template: str) -> str:
        rng = self.rng
        if ":" not in template:
            octets = template.split(".")
            out = [octets[0]]
            for o in octets[1:]:
                lo, hi = {1: (0, 9), 2: (10, 99), 3: (100, 255)}[len(o)]
                out.append(str(rng.randint(lo, hi)))
            return ".".join(out)
        groups = template.split(":")
        drawn = [groups[0]] + [
            "".join([rng.choice("123456789abcdef")] + [rng.choice("0123456789abcdef") for _ in g[1:]]) if g else ""
            for g in groups[1:]
        ]
        new = ":".join(drawn)
        # nonzero groups keep the text in canonical form, as address_text prints it
        return new if ipaddress.ip_address(new).compressed == new else self._draw(template)


def _fold(value: int) -> int:
    """The Internet checksum of data read as one big-endian integer (RFC 1071: the ones'-complement
    sum of 16-bit words is the value modulo 0xFFFF)."""
    return (-value) % 0xFFFF


def _checksum(data: bytes) -> int:
    return _fold(int.from_bytes(data + b"\x00" if len(data) & 1 else data, "big"))


_WHOLE, _FIRST, _LATER = 0, 1, 2  # an IP packet that is not fragmented, or which fragment it is


class Rewriter:
    """Replaces addresses in IPv4/IPv6 headers and, as text, in TCP/UDP payloads (X-Forwarded-For,
    SIP Via), fixing the checksums.  Replacements have the same length, so no length field moves."""

    def __init__(self, mapping: dict[str, str]) -> None:
        self.raw: dict[bytes, bytes] = {}
        for old, new in mapping.items():
            family = socket.AF_INET6 if ":" in old else socket.AF_INET
            self.raw[socket.inet_pton(family, old)] = socket.inet_pton(family, new)
        self.text = {old.encode(): new.encode() for old, new in mapping.items()}
        alternatives = b"|".join(re.escape(o) for o in sorted(self.text, key=len, reverse=True))
        self.pattern = re.compile(rb"(?<![\w.:])(" + alternatives + rb")(?![\w:]|\.\d)")

    def _text(self, match: re.Match[bytes]) -> bytes:
        new = self.text[match.group(1)]
        if len(new) != len(match.group(1)):
            raise ValueError(f"{match.group(1)!r} appears as text but its replacement has another length")
        return new

    def frame(self, frame: bytes) -> bytes:
        ethertype = frame[12:14]
        if ethertype == b"\x08\x00":
            return self._ipv4(frame)
        if ethertype == b"\x86\xdd":
            return self._ipv6(frame)
        return frame

    def _ipv4(self, frame: bytes) -> bytes:
        ihl = (frame[14] & 15) * 4
        total = int.from_bytes(frame[16:18], "big")
        src, dst = frame[26:30], frame[30:34]
        nsrc, ndst = self.raw.get(src, src), self.raw.get(dst, dst)
        l4 = 14 + ihl
        end = 14 + total
        word = int.from_bytes(frame[20:22], "big")
        fragment = _LATER if word & 0x1FFF else _FIRST if word & 0x2000 else _WHOLE
        segment = frame[l4:end]
        new_segment = self._payload(frame[23], segment, fragment != _WHOLE)
        if nsrc == src and ndst == dst and new_segment == segment:
            return frame
        header = bytearray(frame[14:l4])
        header[12:16], header[16:20], header[10:12] = nsrc, ndst, b"\x00\x00"
        header[10:12] = _checksum(bytes(header)).to_bytes(2, "big")
        pseudo = nsrc + ndst + bytes([0, frame[23]]) + len(new_segment).to_bytes(2, "big")
        new_segment = self._l4_checksum(frame[23], segment, new_segment, fragment, src + dst, pseudo)
        return frame[:14] + bytes(header) + new_segment + frame[end:]

    def _ipv6(self, frame: bytes) -> bytes:
        src, dst = frame[22:38], frame[38:54]
        nsrc, ndst = self.raw.get(src, src), self.raw.get(dst, dst)
        proto = frame[20]
        start = 54
        fragment = _WHOLE
        if proto == 44:  # fragment header: the transport header is only in the first fragment
            proto = frame[54]
            word = int.from_bytes(frame[56:58], "big")
            fragment = _LATER if word & 0xFFF8 else _FIRST if word & 1 else _WHOLE
            start = 62
        end = 54 + int.from_bytes(frame[18:20], "big")
        segment = frame[start:end]
        new_segment = self._payload(proto, segment, fragment != _WHOLE)
        if nsrc == src and ndst == dst and new_segment == segment:
            return frame
        pseudo = nsrc + ndst + len(new_segment).to_bytes(4, "big") + bytes([0, 0, 0, proto])
        new_segment = self._l4_checksum(proto, segment, new_segment, fragment, src + dst, pseudo)
        return frame[:22] + nsrc + ndst + frame[54:start] + new_segment + frame[end:]

    def _payload(self, proto: int, segment: bytes, fragmented: bool) -> bytes:
        if proto not in (6, 17) or not self.pattern.search(segment):
            return segment
        if fragmented:
            raise ValueError("an address to rewrite appears as text inside a fragmented datagram")
        head = (segment[12] >> 4) * 4 if proto == 6 else 8
        return segment[:head] + self.pattern.sub(self._text, segment[head:])

    @staticmethod
    def _l4_checksum(proto: int, old: bytes, new: bytes, fragment: int, old_addrs: bytes, pseudo: bytes) -> bytes:
        where = 16 if proto == 6 else 6 if proto == 17 else -1
        if where < 0 or fragment == _LATER or len(new) < where + 2:
            return new  # not TCP/UDP, or a later fragment: no transport header here
        current = int.from_bytes(new[where : where + 2], "big")
        if proto == 17 and current == 0:
            return new  # IPv4 UDP without a checksum
        if fragment == _FIRST:
            # first fragment of a larger datagram: only the addresses changed, so adjust (RFC 1624)
            value = (current + int.from_bytes(old_addrs, "big") - int.from_bytes(pseudo[: len(old_addrs)], "big")) % 0xFFFF
        else:
            value = _checksum(pseudo + new[:where] + b"\x00\x00" + new[where + 2 :])
        if proto == 17 and value == 0:
            value = 0xFFFF
        return new[:where] + value.to_bytes(2, "big") + new[where + 2 :]


# -- sign-ins ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class Truth:
    """What the generated capture holds, for the runner to check the analysis against."""

    signins: int = 0
    scenarios: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    noise: Counter[str] = field(default_factory=Counter)


@cache
def _spec(name: str) -> Spec:
    for spec in CATALOGUE:
        if spec.name == name:
            return spec
    raise KeyError(name)


@cache
def sessions_per_scenario() -> dict[str, int]:
    """How many sign-ins each weighted scenario makes (one throwaway build each)."""
    out = {}
    for name in WEIGHTS:
        spec = _spec(name)
        cap = Capture(spec.name, spec.description, seed=spec.seed, start=spec.start, link="ethernet")
        spec.build(cap)
        out[name] = len(cap.sessions)
    return out


def _us(when: datetime.datetime) -> int:
    return (when - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)) // datetime.timedelta(microseconds=1)


def _datetime(us: int) -> datetime.datetime:
    return datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(microseconds=us)


def signin_packets(name: str, seed: int, start_us: int, pool: AddressPool, truth: Truth) -> list[Packet]:
    """One catalogue scenario at `start_us`, its client addresses replaced by fresh ones."""
    spec = _spec(name)
    cap = Capture(spec.name, spec.description, seed=seed, start=_datetime(start_us), link="ethernet")
    spec.build(cap)
    mapping = {a: pool.like(a) for a in sorted({s.address for s in cap.sessions})}
    mapping[RP_INTERNAL] = pool.like(RP_SHAPE)
    rewrite = Rewriter(mapping).frame
    truth.scenarios[name] += 1
    for s in cap.sessions:
        truth.signins += 1
        truth.outcomes[s.outcome] += 1
        truth.kinds[s.kind] += 1
    return [(round(t * 1_000_000), rewrite(frame)) for t, frame in cap.net.packets()]


# -- opaque TLS ---------------------------------------------------------------------------------------


@cache
def certificate_chains() -> dict[str, list[bytes]]:
    """A (leaf, intermediate) DER chain per TLS site, signed with Ed25519 keys drawn from fixed
    seeds, so the certificates (and the capture) are the same on every run."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

    def key(n: int) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32)

    def name(cn: str, org: str) -> x509.Name:
        return x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Washington"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Redmond"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ])

    not_before = datetime.datetime(2013, 9, 1, tzinfo=datetime.UTC)
    root_key, inter_key = key(1), key(2)
    root_name = name("Lab Root Certification Authority", "Lab Trust Services")
    inter_name = name("Lab Secure Server CA 2013", "Lab Trust Services")
    inter = (
        x509.CertificateBuilder()
        .subject_name(inter_name)
        .issuer_name(root_name)
        .public_key(inter_key.public_key())
        .serial_number(0x5A17C0DE01)
        .not_valid_before(not_before)
        .not_valid_after(not_before + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(inter_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, None)
    )
    chains = {}
    for i, site in enumerate(TLS_SITES):
        domain = site.split(".", 1)[1]
        leaf_key = key(10 + i)
        leaf = (
            x509.CertificateBuilder()
            .subject_name(name(site, domain.split(".")[0].title()))
            .issuer_name(inter_name)
            .public_key(leaf_key.public_key())
            .serial_number(0x1000 + i)
            .not_valid_before(not_before)
            .not_valid_after(not_before + datetime.timedelta(days=730))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(site), x509.DNSName(f"*.{domain}"), x509.DNSName(domain)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(inter_key.public_key()), critical=False)
            .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier("http://crl.lab-trust.example/server2013.crl")], None, None, None)]), critical=False)
            .add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier("http://ocsp.lab-trust.example"))]), critical=False)
            .sign(inter_key, None)
        )
        from cryptography.hazmat.primitives.serialization import Encoding

        chains[site] = [leaf.public_bytes(Encoding.DER), inter.public_bytes(Encoding.DER)]
    return chains


def _record(content_type: int, body: bytes, version: bytes = b"\x03\x03") -> bytes:
    out = []
    for i in range(0, max(len(body), 1), 16384):
        piece = body[i : i + 16384]
        out.append(bytes([content_type]) + version + len(piece).to_bytes(2, "big") + piece)
    return b"".join(out)


def _handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def _ext(ext_type: int, body: bytes) -> bytes:
    return ext_type.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


def _client_hello(rng: random.Random, sni: str, tls13: bool) -> bytes:
    name = sni.encode()
    exts = _ext(0, (len(name) + 3).to_bytes(2, "big") + b"\x00" + len(name).to_bytes(2, "big") + name)
    exts += _ext(23, b"") + _ext(0xFF01, b"\x00") + _ext(10, b"\x00\x06\x00\x1d\x00\x17\x00\x18")
    exts += _ext(11, b"\x01\x00") + _ext(35, b"") + _ext(16, b"\x00\x0c\x02h2\x08http/1.1")
    exts += _ext(13, b"\x00\x0a\x04\x03\x08\x04\x04\x01\x05\x01\x02\x01")
    if tls13:
        exts += _ext(43, b"\x04\x03\x04\x03\x03") + _ext(51, b"\x00\x24\x00\x1d\x00\x20" + rng.randbytes(32))
    suites = b"\x13\x01\x13\x02" if tls13 else b""
    suites += b"\xc0\x2c\xc0\x2b\xc0\x30\xc0\x2f\x00\x9f\x00\x9e\xc0\x24\xc0\x23\xc0\x28\xc0\x27\x00\x9d\x00\x9c\x00\x3d\x00\x3c\x00\x35\x00\x2f"
    body = b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32) + len(suites).to_bytes(2, "big") + suites
    body += b"\x01\x00" + len(exts).to_bytes(2, "big") + exts
    return _record(22, _handshake(1, body), b"\x03\x01")


def _server_hello(rng: random.Random, tls13: bool) -> bytes:
    if tls13:
        exts = _ext(43, b"\x03\x04") + _ext(51, b"\x00\x1d\x00\x20" + rng.randbytes(32))
        suite = b"\x13\x01"
    else:
        exts = _ext(0xFF01, b"\x00") + _ext(11, b"\x01\x00") + _ext(23, b"")
        suite = b"\xc0\x30"
    body = b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32) + suite + b"\x00"
    return _handshake(2, body + len(exts).to_bytes(2, "big") + exts)


def _app(rng: random.Random, size: int) -> bytes:
    return _record(23, rng.randbytes(size))


def tls_packets(rng: random.Random, start_us: int, client_ip: str, server_ip: str, site: str) -> list[Packet]:
    """One HTTPS connection: the handshake in the clear (TLS 1.2 with the certificate chain, or
    TLS 1.3), then a few encrypted requests and answers; now and then a refused handshake."""
    net = Network(rng.getrandbits(32), _datetime(start_us))
    client = net.host("client", client_ip)
    server = net.host("server", server_ip)
    conn = net.tcp(client, server, 443, rtt=rng.uniform(0.002, 0.09))
    tls13 = rng.random() < 0.3
    conn.send(_client_hello(rng, site, tls13))
    if rng.random() < 0.03:
        conn.reply(_record(21, b"\x02\x28"), think=0.002)  # fatal handshake_failure, in the clear
        conn.close(by="server")
        return [(round(t * 1_000_000), f) for t, f in net.packets()]
    if tls13:
        flight = _record(22, _server_hello(rng, True)) + _record(20, b"\x01") + _app(rng, rng.randint(2400, 4800)) + _app(rng, 80)
        conn.reply(flight, think=0.004)
        conn.send(_record(20, b"\x01") + _app(rng, 53))
    else:
        chain = certificate_chains()[site]
        cert_body = b"".join(len(c).to_bytes(3, "big") + c for c in chain)
        kx = b"\x03\x00\x17\x41\x04" + rng.randbytes(64) + b"\x04\x01\x01\x00" + rng.randbytes(256)
        flight = _record(22, _server_hello(rng, False) + _handshake(11, len(cert_body).to_bytes(3, "big") + cert_body)
                         + _handshake(12, kx) + _handshake(14, b""))
        conn.reply(flight, think=0.004)
        conn.send(_record(22, _handshake(16, b"\x41\x04" + rng.randbytes(64))) + _record(20, b"\x01") + _record(22, rng.randbytes(40)))
        ticket = _handshake(4, b"\x00\x00\x70\x80\x00\xc0" + rng.randbytes(192))
        conn.reply(_record(22, ticket) + _record(20, b"\x01") + _record(22, rng.randbytes(40)), think=0.002)
    for _ in range(rng.choice((1, 1, 2, 3))):
        conn.send(_app(rng, rng.randint(300, 1400)), gap=rng.uniform(0.0, 0.5))
        conn.reply(_app(rng, rng.choice((400, 1500, 4000, 12000, 30000))), think=rng.uniform(0.005, 0.12))
    if rng.random() < 0.7:
        conn.send(_record(21, rng.randbytes(26)), gap=rng.uniform(0.1, 3.0))  # encrypted close_notify
    conn.close(by="client")
    return [(round(t * 1_000_000), f) for t, f in net.packets()]


# -- web browsing and DNS -------------------------------------------------------------------------


def http_packets(rng: random.Random, start_us: int, client_ip: str, server_ip: str, site: str) -> list[Packet]:
    """A browser fetching a page and its resources over one keep-alive connection on port 80."""
    net = Network(rng.getrandbits(32), _datetime(start_us))
    client = net.host("client", client_ip)
    server = net.host("server", server_ip)
    conn = net.tcp(client, server, 80, rtt=rng.uniform(0.005, 0.08))
    ua = rng.choice(BROWSER_UAS)
    for i in range(rng.choice((1, 2, 3, 4, 6))):
        kind = "page" if i == 0 else rng.choice(("script", "style", "image", "image"))
        path = {"page": f"/articles/{rng.randrange(10**6)}.html", "script": f"/js/app.{rng.randrange(999)}.js",
                "style": "/css/site.css", "image": f"/img/{rng.randrange(10**5)}.jpg"}[kind]
        conn.send(lync.request("GET", path, site, [("Accept", "*/*"), ("Accept-Encoding", "gzip, deflate")], user_agent=ua),
                  gap=rng.uniform(0.0, 0.3))
        if kind == "image":
            body, ctype, packed = rng.randbytes(rng.choice((2000, 6000, 15000, 40000))), "image/jpeg", False
        else:
            words = [rng.choice((b"lorem", b"ipsum", b"<div class='c'>", b"</div>", b"function(){", b"var x=", b"color:#333;"))
                     for _ in range(rng.randint(200, 4000))]
            body, ctype, packed = b" ".join(words), {"page": "text/html", "script": "application/javascript",
                                                    "style": "text/css"}[kind], True
        status = 200 if rng.random() < 0.95 else rng.choice((304, 404))
        conn.reply(lync.response(status, body=body if status == 200 else b"", content_type=ctype, ts=net.now,
                                 server="nginx/1.4.6", gzip_body=packed), think=rng.uniform(0.01, 0.15))
    conn.close(by="client" if rng.random() < 0.6 else "server")
    return [(round(t * 1_000_000), f) for t, f in net.packets()]


def dns_packets(rng: random.Random, start_us: int, client_ip: str) -> list[Packet]:
    net = Network(rng.getrandbits(32), _datetime(start_us))
    client = net.host("client", client_ip)
    resolver = net.host("resolver", "10.0.0.5")
    name = rng.choice(DNS_NAMES)
    qtype = rng.choice(("A", "A", "AAAA"))
    query = dnsmsg.query(rng.randrange(1, 0xFFFF), name, qtype)
    value = f"198.18.{rng.randrange(256)}.{rng.randrange(1, 255)}" if qtype == "A" else f"2001:db8:18::{rng.randrange(1, 0xFFFF):x}"
    answer = dnsmsg.response(query, answers=[(name, qtype, value)])
    sport = net.udp(client, resolver, 53, query)
    net.udp_reply(resolver, client, 53, sport, answer, delay=rng.uniform(0.0005, 0.02))
    return [(round(t * 1_000_000), f) for t, f in net.packets()]


# -- media ----------------------------------------------------------------------------------------------


def _mac(rng: random.Random) -> bytes:
    return b"\x00\x15\x5d" + rng.randbytes(3)


def rtp_packets(rng: random.Random, start_us: int, client_ip: str, peer_ip: str, count: int) -> Iterator[Packet]:
    """An RTP-like call (20 ms audio, sometimes video) both ways, produced lazily: `count` packets."""
    a, b = socket.inet_aton(client_ip), socket.inet_aton(peer_ip)
    ports = (rng.randrange(50000, 50060, 2), rng.randrange(50000, 59999, 2))
    macs = (_mac(rng), _mac(rng))
    ssrc = (rng.getrandbits(32), rng.getrandbits(32))
    seq = [rng.randrange(65536), rng.randrange(65536)]
    ident = [rng.randrange(65536), rng.randrange(65536)]
    video = rng.random() < 0.1
    ptype = 0 if rng.random() < 0.5 else 114  # PCMU or a dynamic (SILK-like) payload type
    t = start_us
    made = 0
    tick = 0
    while made < count:
        for d in (0, 1):
            src, dst = (a, b) if d == 0 else (b, a)
            sizes = [160 if ptype == 0 else rng.randint(40, 120)]
            if video and tick % 2 == 0:
                sizes += [rng.randint(900, 1160) for _ in range(rng.randint(1, 3))]
            jitter = 0 if d == 0 else 1500 + rng.randrange(2000)  # the far end's packets arrive later
            for k, size in enumerate(sizes):
                if made >= count:
                    return
                pt = ptype if k == 0 else 122
                rtp = struct.pack("!BBHII", 0x80, pt, seq[d] & 0xFFFF, (tick * 160) & 0xFFFFFFFF, ssrc[d] ^ k) + rng.randbytes(size)
                seq[d] += 1
                udp_len = 8 + len(rtp)
                sport, dport = (ports[0], ports[1]) if d == 0 else (ports[1], ports[0])
                pseudo = src + dst + b"\x00\x11" + udp_len.to_bytes(2, "big")
                csum = _checksum(pseudo + struct.pack("!HHHH", sport, dport, udp_len, 0) + rtp) or 0xFFFF
                ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0xB8, 20 + udp_len, ident[d] & 0xFFFF, 0, 128, 17, 0, src, dst))
                ident[d] += 1
                ip[10:12] = _checksum(bytes(ip)).to_bytes(2, "big")
                eth = (macs[1] + macs[0]) if d == 0 else (macs[0] + macs[1])
                when = t + jitter + k * 120
                yield when, eth + b"\x08\x00" + bytes(ip) + struct.pack("!HHHH", sport, dport, udp_len, csum) + rtp
                made += 1
        t += 20_000
        tick += 1


# -- planning and writing ------------------------------------------------------------------------------


def _seeded(make: Callable[..., Iterable[Packet]], seed: int, start: int, *args: object) -> Iterable[Packet]:
    return make(random.Random(seed), start, *args)


@dataclass(order=True, slots=True)
class Unit:
    start: int
    order: int
    make: Callable[[], Iterable[Packet]] = field(compare=False)


def plan(signins: int, seed: int, truth: Truth) -> list[Unit]:
    """Every unit of the capture (a sign-in scenario or one piece of noise) with its start time."""
    rng = random.Random(seed)
    pool = AddressPool(random.Random(seed ^ 0x5EED))
    span = max(MIN_SPAN, signins * SECONDS_PER_SIGNIN)
    t0 = _us(START)
    width = int(span * 1_000_000)
    units: list[Unit] = []

    def add(make: Callable[..., Iterable[Packet]], *args: object) -> None:
        """A noise unit: `make(rng, start, *args)` with its own seeded generator."""
        start = t0 + rng.randrange(width)
        units.append(Unit(start, len(units), partial(_seeded, make, rng.getrandbits(64), start, *args)))

    counts = sessions_per_scenario()
    names = list(WEIGHTS)
    weights = [WEIGHTS[n] for n in names]
    left = signins
    while left > 0:
        name = rng.choices(names, weights)[0]
        if counts[name] > left:
            fitting = [n for n in names if counts[n] <= left]
            name = rng.choices(fitting, [WEIGHTS[n] for n in fitting])[0]
        left -= counts[name]
        start = t0 + rng.randrange(width)
        make = partial(signin_packets, name, rng.getrandbits(48), start, pool, truth)
        # scenario 11 starts its background traffic two seconds before the sign-in's start
        units.append(Unit(start - 2_000_000, len(units), make))

    def client() -> str:
        return pool.like("10.128.100.100")

    def public() -> str:
        return pool.like("198.118.100.100")

    rtp_left = signins * RTP_PACKETS_PER_SIGNIN
    while rtp_left > 0:
        n = min(rtp_left, rng.randint(250, 9000))
        rtp_left -= n
        caller = client()
        add(rtp_packets, caller, "203.0.113.21" if rng.random() < 0.6 else public(), n)
        truth.noise["rtp_calls"] += 1
        truth.noise["rtp_packets"] += n
    tls_servers = {site: f"198.18.{200 + i}.{10 + i}" for i, site in enumerate(TLS_SITES)}
    tls_servers["lyncweb.contoso.com"] = "203.0.113.10"
    for _ in range(round(signins * TLS_CONNS_PER_SIGNIN)):
        site = rng.choice(TLS_SITES)
        who = public() if site == "lyncweb.contoso.com" else client()
        add(tls_packets, who, tls_servers[site], site)
        truth.noise["tls_connections"] += 1
    web_servers = {site: f"198.18.{100 + i}.{20 + i}" for i, site in enumerate(WEB_SITES)}
    for _ in range(round(signins * HTTP_CONNS_PER_SIGNIN)):
        site = rng.choice(WEB_SITES)
        add(http_packets, client(), web_servers[site], site)
        truth.noise["http_connections"] += 1
    for _ in range(round(signins * DNS_LOOKUPS_PER_SIGNIN)):
        add(dns_packets, client())
        truth.noise["dns_lookups"] += 1
    return sorted(units)


class Writer:
    """pcapng (one Ethernet interface, microsecond timestamps) or classic pcap, written as it goes."""

    def __init__(self, out: BinaryIO, fmt: str, comment: str) -> None:
        self.out = out
        self.fmt = fmt
        self.packets = 0
        self.bytes = 0
        if fmt == "pcapng":
            out.write(pcapwriter.section_header(comment) + pcapwriter.interface_description(1, 262144, False))
        else:
            out.write(struct.pack("<IHHiIII", pcapwriter.PCAP_MAGIC_US, 2, 4, 0, 0, 262144, 1))

    def write(self, us: int, frame: bytes) -> None:
        if self.fmt == "pcapng":
            self.out.write(pcapwriter.enhanced_packet(us, frame, 262144))
        else:
            sec, frac = divmod(us, 1_000_000)
            self.out.write(struct.pack("<IIII", sec, frac, len(frame), len(frame)) + frame)
        self.packets += 1
        self.bytes += len(frame)


def merge(units: list[Unit], write: Callable[[int, bytes], None]) -> None:
    """Write the packets of all units in time order; a unit is built only when the clock reaches it."""
    heap: list[tuple[int, int, bytes, Iterator[Packet]]] = []
    i = 0
    last = 0
    while heap or i < len(units):
        while i < len(units) and (not heap or units[i].start <= heap[0][0]):
            unit = units[i]
            it = iter(unit.make())
            first = next(it, None)
            if first is not None:
                heapq.heappush(heap, (first[0], unit.order, first[1], it))
            i += 1
        t, order, frame, it = heap[0]
        if t < last:
            raise RuntimeError(f"unit {order} has a packet at {t} before one already written at {last}")
        last = t
        write(t, frame)
        nxt = next(it, None)
        if nxt is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (nxt[0], order, nxt[1], it))


def generate(output: Path, *, signins: int, seed: int, fmt: str = "pcapng") -> dict[str, object]:
    """Write the capture and `<output>.summary.json`; returns the summary."""
    if signins < 1:
        raise ValueError("at least one sign-in")
    started = time.perf_counter()
    truth = Truth()
    units = plan(signins, seed, truth)
    output.parent.mkdir(parents=True, exist_ok=True)
    comment = f"lyncpcap benchmark capture: {signins} sign-ins, seed {seed} (python -m bench.generate)"
    with open(output, "wb", buffering=1 << 20) as out:
        writer = Writer(out, fmt, comment)
        merge(units, writer.write)
    summary: dict[str, object] = {
        "file": str(output),
        "format": fmt,
        "seed": seed,
        "signins": truth.signins,
        "packets": writer.packets,
        "bytes": output.stat().st_size,
        "scenarios": dict(sorted(truth.scenarios.items())),
        "outcomes": dict(sorted(truth.outcomes.items())),
        "client_kinds": dict(sorted(truth.kinds.items())),
        "noise": dict(truth.noise),
        "generated_in_s": round(time.perf_counter() - started, 1),
    }
    output.with_name(output.name + ".summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--signins", type=int, default=5000, help="sign-in sessions to bury in the capture (default 5000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--format", choices=("pcapng", "pcap"), default="pcapng")
    parser.add_argument("--output", type=Path, default=None, help="default: bench/out/bench-SIGNINS-sSEED.FORMAT")
    args = parser.parse_args(argv)
    output = args.output or Path(__file__).parent / "out" / f"bench-{args.signins}-s{args.seed}.{args.format}"
    summary = generate(output, signins=args.signins, seed=args.seed, fmt=args.format)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
