"""Helpers for the lab tests: run tshark/capinfos on a capture, and build the demo network that
exercises every building block (DNS, HTTP, Kerberos over UDP and TCP, NTLM, SPNEGO, IPv6)."""

from __future__ import annotations

import base64
import datetime
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lyncpcap.lab import dnsmsg, krb5, ntlmmsg
from lyncpcap.lab.netsim import Network

CHECKSUM_PREFS = (
    "-o",
    "tcp.check_checksum:TRUE",
    "-o",
    "ip.check_checksum:TRUE",
    "-o",
    "udp.check_checksum:TRUE",
)
WARNING = 0x600000

START = datetime.datetime(2024, 3, 5, 8, 59, 30, tzinfo=datetime.UTC)
REALM = "CONTOSO.COM"
USER, DOMAIN, PASSWORD, WORKSTATION = "alice", "CONTOSO", "Passw0rd!", "CLIENT01"
WEB_FQDN = "lyncweb.contoso.com"
POOL_FQDN = "pool01.contoso.com"


def need(tool: str) -> str:
    """A Wireshark tool; the test command installs them, so a missing one fails the test."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed (scripts/test.sh installs tshark: apt-get install tshark)")
    return path


def run(tool: str, *args: str) -> str:
    proc = subprocess.run([need(tool), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{tool} {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def tshark_json(
    path: str | Path, fields: list[str], *, display_filter: str | None = None, prefs: tuple[str, ...] = ()
) -> list[dict[str, list[str]]]:
    """One dict per displayed frame: field name → list of values (absent fields are missing)."""
    args = ["-n", "-r", str(path), *prefs, "-T", "json"]
    for f in ["frame.number", *fields]:
        args += ["-e", f]
    if display_filter:
        args += ["-Y", display_filter]
    out = run("tshark", *args).strip()
    if not out:
        return []
    return [pkt["_source"]["layers"] for pkt in json.loads(out)]


def frames_with(
    path: str | Path, display_filter: str, fields: list[str], *, prefs: tuple[str, ...] = ()
) -> list[dict[str, list[str]]]:
    return tshark_json(path, fields, display_filter=display_filter, prefs=prefs)


def problems(path: str | Path, *, prefs: tuple[str, ...] = ()) -> dict[int, list[str]]:
    """Frames with a malformed mark or an expert item of severity warning or worse (checksum
    validation on), as frame number → expert messages."""
    rows = tshark_json(
        path,
        ["_ws.expert.message", "_ws.expert.severity", "_ws.malformed"],
        display_filter=f"_ws.expert.severity >= {WARNING:#x} || _ws.malformed",
        prefs=CHECKSUM_PREFS + prefs,
    )
    out: dict[int, list[str]] = {}
    for row in rows:
        msgs = row.get("_ws.expert.message", [])
        sev = [int(s) for s in row.get("_ws.expert.severity", [])]
        bad = [m for m, s in zip(msgs, sev, strict=False) if s >= WARNING]
        if "_ws.malformed" in row:
            bad.append("malformed")
        out[int(row["frame.number"][0])] = bad
    return out


def capinfos_encapsulation(path: str | Path) -> str:
    line = run("capinfos", "-M", "-E", "-T", "-r", str(path)).strip().splitlines()[-1]
    return line.split("\t")[1]


Headers = list[tuple[str, str]]


def http_request(
    method: str, uri: str, host: str, headers: Headers | None = None, body: bytes = b""
) -> bytes:
    lines = [
        f"{method} {uri} HTTP/1.1",
        f"Host: {host}",
        "User-Agent: Mozilla/4.0 (compatible; ms-office; MSOffice 15)",
    ]
    for name, value in headers or []:
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def http_response(status: int, reason: str, headers: Headers | None = None, body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", "Server: Microsoft-IIS/8.5"]
    for name, value in headers or []:
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Demo:
    """The demo network and what it was built with, so tests can compare tshark's view."""

    net: Network
    ntlm_challenge: bytes = b""
    ntlm_authenticate: bytes = b""
    dns_ids: dict[str, int] = field(default_factory=dict)


def build_demo(seed: int = 7, link: str = "ethernet") -> Demo:
    """Every building block in one small network, all over plain TCP/UDP (no TLS)."""
    net = Network(seed, START, link=link)
    client = net.host("CLIENT01", "10.0.1.20", "fd00:1::20")
    dc = net.host("DC01", "10.0.0.5", "fd00::5")
    web = net.host("LYNCWEB", "10.0.0.10", "fd00::10")
    rng = net.rng
    demo = Demo(net)

    # DNS: A through a CNAME, AAAA over IPv6, SRV, and NXDOMAIN with the zone's SOA.
    lookups = [
        (
            "lyncdiscoverinternal.contoso.com",
            "A",
            4,
            dict(
                answers=[
                    ("lyncdiscoverinternal.contoso.com", "CNAME", WEB_FQDN),
                    (WEB_FQDN, "A", "10.0.0.10"),
                ]
            ),
        ),
        (WEB_FQDN, "AAAA", 6, dict(answers=[(WEB_FQDN, "AAAA", "fd00::10")])),
        (
            "_sipinternaltls._tcp.contoso.com",
            "SRV",
            4,
            dict(answers=[("_sipinternaltls._tcp.contoso.com", "SRV", f"0 0 5061 {POOL_FQDN}")]),
        ),
        ("lyncdiscover.contoso.com", "A", 4, dict(rcode="NXDOMAIN", authority_soa="contoso.com")),
    ]
    for name, qtype, family, kwargs in lookups:
        qid = rng.randrange(0x10000)
        demo.dns_ids[name] = qid
        q = dnsmsg.query(qid, name, qtype)
        sport = net.udp(client, dc, 53, q, family=family)
        net.udp_reply(dc, client, 53, sport, dnsmsg.response(q, **kwargs), delay=0.0008, family=family)  # type: ignore[arg-type]
        net.advance(0.01)

    # Kerberos over UDP: AS exchange with the pre-authentication round, then a TGS for HTTP/.
    till = datetime.datetime(2037, 9, 13, 2, 48, 5, tzinfo=datetime.UTC)
    sport = net.udp(
        client, dc, 88, krb5.as_req(USER, REALM, preauth=False, nonce=rng.getrandbits(31), till=till, rng=rng)
    )
    net.udp_reply(
        dc, client, 88, sport, krb5.krb_error(25, REALM, "krbtgt/{realm}", cname=USER, stime=net.now_datetime)
    )
    net.advance(0.002)
    sport = net.udp(
        client, dc, 88, krb5.as_req(USER, REALM, preauth=True, nonce=rng.getrandbits(31), till=till, rng=rng)
    )
    net.udp_reply(dc, client, 88, sport, krb5.as_rep(USER, REALM, rng=rng), delay=0.003)
    net.advance(0.002)
    sport = net.udp(
        client, dc, 88, krb5.tgs_req(USER, REALM, f"HTTP/{WEB_FQDN}", nonce=rng.getrandbits(31), rng=rng)
    )
    net.udp_reply(dc, client, 88, sport, krb5.tgs_rep(USER, REALM, f"HTTP/{WEB_FQDN}", rng=rng), delay=0.002)
    net.advance(0.01)

    # Kerberos over TCP (4-byte length prefix): TGS for the SIP service, one unknown SPN.
    kdc = net.tcp(client, dc, 88)
    kdc.send(
        krb5.tcp_record(krb5.tgs_req(USER, REALM, f"sip/{POOL_FQDN}", nonce=rng.getrandbits(31), rng=rng))
    )
    kdc.reply(krb5.tcp_record(krb5.tgs_rep(USER, REALM, f"sip/{POOL_FQDN}", rng=rng)), think=0.002)
    kdc.close()
    kdc = net.tcp(client, dc, 88)
    kdc.send(
        krb5.tcp_record(
            krb5.tgs_req(USER, REALM, "HTTP/missing.contoso.com", nonce=rng.getrandbits(31), rng=rng)
        )
    )
    kdc.reply(
        krb5.tcp_record(krb5.krb_error(7, REALM, "HTTP/missing.contoso.com", stime=net.now_datetime)),
        think=0.002,
    )
    kdc.close()
    net.advance(0.01)

    # HTTP: a 5 KB POST answered by a 5 KB response (MSS segmentation both ways).
    http = net.tcp(client, web, 80)
    body = bytes((i * 7) % 26 + 65 for i in range(5000))
    http.send(http_request("POST", "/upload", WEB_FQDN, [("Content-Type", "application/octet-stream")], body))
    http.reply(http_response(200, "OK", [("Content-Type", "text/plain")], body[::-1]))
    http.close()
    net.advance(0.01)

    # NTLM inside HTTP Authorization headers, on one connection (connection-bound).
    ntlm = net.tcp(client, web, 80)
    uri = "/WebTicket/WebTicketService.svc"
    cl = ntlmmsg.NtlmClient(USER, DOMAIN, PASSWORD, WORKSTATION, rng=rng)
    ntlm.send(http_request("GET", uri, WEB_FQDN))
    ntlm.reply(
        http_response(401, "Unauthorized", [("WWW-Authenticate", "Negotiate"), ("WWW-Authenticate", "NTLM")])
    )
    t1 = cl.negotiate()
    ntlm.send(http_request("GET", uri, WEB_FQDN, [("Authorization", "NTLM " + b64(t1))]), gap=0.005)
    t2 = ntlmmsg.challenge(
        target_name=DOMAIN,
        nb_domain=DOMAIN,
        nb_computer="LYNCWEB",
        dns_domain="contoso.com",
        dns_computer=WEB_FQDN,
        dns_tree="contoso.com",
        timestamp=net.now_datetime,
        rng=rng,
        flags_from=t1,
    )
    ntlm.reply(http_response(401, "Unauthorized", [("WWW-Authenticate", "NTLM " + b64(t2))]))
    t3 = cl.authenticate(t2, spn=f"HTTP/{WEB_FQDN}")
    ntlm.send(http_request("GET", uri, WEB_FQDN, [("Authorization", "NTLM " + b64(t3))]), gap=0.003)
    ntlm.reply(http_response(200, "OK", [("Content-Type", "text/xml")], b"<ok/>"))
    ntlm.close()
    demo.ntlm_challenge, demo.ntlm_authenticate = t2, t3
    net.advance(0.01)

    # SPNEGO Kerberos in Authorization: Negotiate, mutual authentication in the 200.
    neg = net.tcp(client, web, 80)
    token = krb5.spnego_init(krb5.ap_req(REALM, f"HTTP/{WEB_FQDN}", rng=rng, cname=USER))
    neg.send(http_request("GET", uri, WEB_FQDN, [("Authorization", "Negotiate " + b64(token))]))
    answer = krb5.spnego_resp(response_token=krb5.ap_rep(rng=rng))
    neg.reply(http_response(200, "OK", [("WWW-Authenticate", "Negotiate " + b64(answer))], b"<ok/>"))
    neg.close()
    net.advance(0.01)

    # HTTP over IPv6.
    v6 = net.tcp(client, web, 80, family=6)
    v6.send(http_request("GET", "/autodiscover/autodiscoverservice.svc/root", WEB_FQDN))
    v6.reply(
        http_response(200, "OK", [("Content-Type", "application/json")], b"{" + b'"a":1,' * 600 + b'"b":2}')
    )
    v6.close(by="server")
    return demo
