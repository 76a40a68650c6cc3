"""The lab's scenario vocabulary: the Contoso deployment, clients that talk to it, and the truth.

Each client action sends real bytes through `netsim` (or real TLS through `tlssim`) and, at the same
moment, records the step it is in the scenario's truth — so truth files come from how a capture was
made, never from lyncpcap's output (CONTRACT.md, "Truth files").
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from lyncpcap.lab import dnsmsg, krb5, lync
from lyncpcap.lab.netsim import Host, Network, TcpConn
from lyncpcap.lab.ntlmmsg import NtlmClient, challenge

DOMAIN = "contoso.com"
REALM = "CONTOSO.COM"
NETBIOS = "CONTOSO"


class Conn(Protocol):
    def send(self, data: bytes, *, gap: float = 0.0) -> None: ...
    def reply(self, data: bytes, *, think: float = 0.02) -> None: ...
    def close(self, *, by: str = "client", rst: bool = False) -> None: ...


@dataclass
class TruthSession:
    kind: str
    location: str
    address: str
    user: str | None
    auth_protocol: str
    outcome: str
    failure_step: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)

    def record(self, step: str, method: str | None = None, status: int | str | None = None, **extra: Any) -> None:
        """Note a step as the scenario performs it (what was sent and what the server answered)."""
        self.steps.append({"step": step, "method": method, "status": status, **extra})

    def to_json(self) -> dict[str, Any]:
        return {
            "client": {"kind": self.kind, "location": self.location, "address": self.address},
            "user": self.user,
            "auth_protocol": self.auth_protocol,
            "outcome": self.outcome,
            "failure": {"step": self.failure_step} if self.failure_step else None,
            "steps": list(self.steps),
        }


@dataclass
class WebExchange:
    """One web request/response as an HTTP proxy (Fiddler) or a browser (HAR) would record it:
    the bytes on the connection and when they went (seconds since the epoch)."""

    truth: TruthSession
    client: str
    client_port: int
    server: str
    server_port: int
    connection: int  # netsim connection index: exchanges with the same one shared a connection
    request: bytes
    response: bytes
    begin: float  # the client starts sending the request
    sent: float  # the last request byte left
    answered: float  # the first response byte arrived
    done: float  # the last response byte arrived
    new_connection: bool  # the request opened its connection (connect/TLS time belongs to it)


class Capture:
    """One sample capture under construction, with its truth."""

    def __init__(
        self,
        name: str,
        description: str,
        *,
        seed: int,
        start: datetime,
        link: str = "ethernet",
        tls: bool = False,
        pki: Any = None,
        vlan_id: int = 100,
        http2: bool = False,
    ) -> None:
        self.name = name
        self.description = description
        self.net = Network(seed, start, link, vlan_id=vlan_id)
        self.rng = random.Random(seed * 7919 + 1)
        self.tls = tls
        self.http2 = http2  # web connections speak HTTP/2 (lab/h2.py), as a browser to IIS 10 does
        self.pki = pki
        self.keylog: list[str] = []
        self.sessions: list[TruthSession] = []
        self.secrets: list[str] = []
        self.findings: list[str] = []
        self.notes: list[str] = []
        self.web: list[WebExchange] = []  # every Client.http exchange, for the SAZ/HAR writers

    @property
    def now(self) -> float:
        return self.net.now

    @property
    def when(self) -> datetime:
        return datetime.fromtimestamp(self.net.now, UTC)

    def secret(self, value: str) -> str:
        if value not in self.secrets:
            self.secrets.append(value)
        return value

    def session(self, **kw: Any) -> TruthSession:
        s = TruthSession(**kw)
        self.sessions.append(s)
        return s

    def truth(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "sessions": [s.to_json() for s in self.sessions],
            "findings": sorted(set(self.findings)),
            "secrets": list(self.secrets),
            "notes": self.notes,
        }

    def write(
        self,
        directory: Path,
        *,
        fmt: str = "pcapng",
        nanosecond: bool = False,
        big_endian: bool = False,
        embed_keys: bool = False,
        twin_of: str | None = None,
    ) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        ext = "pcapng" if fmt == "pcapng" else "pcap"
        path = directory / f"{self.name}.{ext}"
        written = [path]
        if fmt == "pcapng":
            secrets = ("\n".join(self.keylog) + "\n").encode() if (embed_keys and self.keylog) else None
            self.net.write_pcapng(path, secrets=secrets, comment=self.description)
        else:
            self.net.write_pcap(path, nanosecond=nanosecond, big_endian=big_endian)
        if self.keylog and not embed_keys:
            kl = directory / f"{self.name}.keylog"
            kl.write_text("\n".join(self.keylog) + "\n")
            written.append(kl)
        truth = self.truth()
        if twin_of:
            truth["plaintext_twin"] = twin_of
        tpath = directory / f"{self.name}.truth.json"
        tpath.write_text(json.dumps(truth, indent=2, ensure_ascii=False) + "\n")
        written.append(tpath)
        return written


# ----------------------------------------------------------------------------------------------
# The deployment
# ----------------------------------------------------------------------------------------------


@dataclass
class Ports:
    web: int  # client → internal web / reverse proxy
    rp_fe: int  # reverse proxy → Front End external web site
    sip: int  # client → registrar
    edge: int  # client → Access Edge
    edge_fe: int  # Edge → Front End


PLAIN_PORTS = Ports(web=80, rp_fe=8080, sip=5060, edge=5060, edge_fe=5060)
TLS_PORTS = Ports(web=443, rp_fe=443, sip=5061, edge=443, edge_fe=5061)


class Contoso:
    """The Lync 2013 deployment every scenario talks to."""

    pool = "lyncpool.contoso.com"  # internal web services of the pool
    fe = "fe01.contoso.com"  # Front End server (registrar)
    ext_web = "lyncweb.contoso.com"  # external web services (reverse proxy)
    edge = "sip.contoso.com"  # Access Edge
    adfs = "adfs.contoso.com"
    meet = "meet.contoso.com"

    def __init__(self, cap: Capture) -> None:
        self.cap = cap
        net = cap.net
        self.ports = TLS_PORTS if cap.tls else PLAIN_PORTS
        self.dc = net.host("dc01", "10.0.0.5", "fd00:c0:5::5")
        self.fe_host = net.host("fe01", "10.0.0.21", "fd00:c0:5::21")
        self.adfs_host = net.host("adfs01", "10.0.0.30", "fd00:c0:5::30")
        self.rp_ext = net.host("rp-ext", "203.0.113.10", "2001:db8:113::10")
        self.rp_int = net.host("rp-int", "10.0.1.5")
        self.edge_ext = net.host("edge-ext", "203.0.113.20")
        self.edge_int = net.host("edge-int", "10.0.1.20")
        self.isp_dns = net.host("isp-dns", "198.51.100.53", "2001:db8:53::53")
        self.server_fqdn = {
            self.fe_host.name: self.fe,
            self.rp_ext.name: self.ext_web,
            self.adfs_host.name: self.adfs,
        }

    # DNS answers for names in this deployment
    def answers(self, name: str, qtype: str = "A") -> list[tuple[str, str, str]]:
        n = name.lower()
        v6 = qtype == "AAAA"

        def addr(h: Host) -> str:
            return (h.ipv6 if v6 else h.ipv4) or ""

        table: dict[str, list[tuple[str, str, str]]] = {
            "lyncdiscoverinternal.contoso.com": [(name, "CNAME", self.pool), (self.pool, qtype, addr(self.fe_host))],
            "lyncdiscover.contoso.com": [(name, "CNAME", self.ext_web), (self.ext_web, qtype, addr(self.rp_ext))],
            self.pool: [(name, qtype, addr(self.fe_host))],
            self.fe: [(name, qtype, addr(self.fe_host))],
            self.ext_web: [(name, qtype, addr(self.rp_ext))],
            self.meet: [(name, "CNAME", self.ext_web), (self.ext_web, qtype, addr(self.rp_ext))],
            self.adfs: [(name, qtype, addr(self.adfs_host))],
            self.edge: [(name, qtype, self.edge_ext.ipv4 or "")],
            "_sipinternaltls._tcp.contoso.com": [(name, "SRV", f"0 0 5061 {self.fe}")],
            "_sip._tls.contoso.com": [(name, "SRV", f"0 0 443 {self.edge}")],
        }
        return [a for a in table.get(n, []) if a[2]]


class Client:
    """A client machine signing in: its host, user agent, truth session and open connections."""

    def __init__(
        self,
        cap: Capture,
        world: Contoso,
        host: Host,
        truth: TruthSession,
        *,
        ua: str | None,
        rtt: float = 0.002,
        family: int = 4,
        resolver: Host | None = None,
        via_rp: Host | None = None,
        public_ip: str | None = None,
    ) -> None:
        self.cap = cap
        self.w = world
        self.host = host
        self.truth = truth
        self.ua = ua
        self.rtt = rtt
        self.family = family
        self.resolver = resolver or world.dc
        self.via_rp = via_rp  # capture at the Front End: requests arrive from the reverse proxy
        self.public_ip = public_ip  # X-Forwarded-For value
        self.conns: dict[tuple[str, int], Conn] = {}
        self.qid = cap.rng.randrange(1, 0xFFFF)
        self.smart_card: str | None = None  # a user's CN: TLS client authentication to AD FS (capture with TLS)

    @property
    def rng(self) -> random.Random:
        return self.cap.rng

    def think(self, lo: float, hi: float) -> float:
        return round(self.rng.uniform(lo, hi), 6)

    # -- DNS ------------------------------------------------------------------------------------
    def dns(self, name: str, qtype: str = "A", *, rcode: str = "NOERROR", answers: list[tuple[str, str, str]] | None = None) -> None:
        self.qid = (self.qid + 1) & 0xFFFF or 1
        q = dnsmsg.query(self.qid, name, qtype)
        ans = self.w.answers(name, qtype) if answers is None and rcode == "NOERROR" else (answers or [])
        soa = "contoso.com" if rcode == "NXDOMAIN" or not ans else None
        r = dnsmsg.response(q, rcode=rcode, answers=ans, authority_soa=soa)
        fam = self.family if (self.family == 4 or self.resolver.ipv6) else 4
        sport = self.cap.net.udp(self.host, self.resolver, 53, q, family=fam)
        self.cap.net.udp_reply(self.resolver, self.host, 53, sport, r, delay=self.think(0.0008, 0.004), family=fam)
        self.truth.record("dns", qtype, rcode, name=name)
        self.cap.net.advance(self.think(0.0005, 0.002))

    # -- Kerberos -------------------------------------------------------------------------------
    def kdc(self, request: bytes, reply: bytes, *, tcp: bool = False, method: str = "TGS-REQ", status: str = "", spn: str | None = None) -> None:
        net = self.cap.net
        if tcp:
            c = net.tcp(self.host, self.w.dc, 88, rtt=self.rtt)
            c.send(krb5.tcp_record(request))
            c.reply(krb5.tcp_record(reply), think=self.think(0.001, 0.004))
            c.close(by="client")
        else:
            sport = net.udp(self.host, self.w.dc, 88, request)
            net.udp_reply(self.w.dc, self.host, 88, sport, reply, delay=self.think(0.001, 0.004))
        self.truth.record("kerberos", method, status, spn=spn)
        net.advance(self.think(0.0005, 0.002))

    def tgs(self, user: str, sname: str, *, tcp: bool = False, error: int | None = None) -> None:
        rng = self.rng
        req = krb5.tgs_req(user, REALM, sname, nonce=rng.getrandbits(31), rng=rng)
        if error is not None:
            rep = krb5.krb_error(error, REALM, sname, stime=self.cap.when)
        else:
            rep = krb5.tgs_rep(user, REALM, sname, rng=rng)
        self.kdc(req, rep, tcp=tcp, method="TGS-REQ", status=f"KRB-ERROR {error}" if error is not None else "TGS-REP", spn=sname)

    # -- HTTP -----------------------------------------------------------------------------------
    def _server(self, server: Host) -> tuple[Host, Host, int]:
        """(source host, destination host, port) of a web request to `server` from this client."""
        if self.via_rp is not None:
            return self.via_rp, self.w.fe_host if server in (self.w.rp_ext, self.w.fe_host) else server, self.w.ports.rp_fe
        return self.host, server, self.w.ports.web

    def conn(self, server: Host, *, new: bool = False, sni: str | None = None, port: int | None = None) -> Conn:
        src, dst, p = self._server(server)
        p = port or p
        key = (dst.name, p)
        if not new and key in self.conns:
            return self.conns[key]
        if key in self.conns:
            self.conns[key].close(by="client")
        tcp = self.cap.net.tcp(src, dst, p, family=self.family if (self.family == 4 or (src.ipv6 and dst.ipv6)) else 4, rtt=self.rtt)
        c: Conn = tcp
        if self.cap.tls:
            from lyncpcap.lab.tlssim import TlsConn

            name = self.w.server_fqdn.get(dst.name, dst.name)
            card = self.cap.pki.client_cert(self.smart_card) if self.smart_card and dst is self.w.adfs_host else None
            c = TlsConn(tcp, self.cap.pki, [name, *( [sni] if sni and sni != name else [])], sni=sni or name, keylog=self.cap.keylog,
                        client_cert=card)
        if self.cap.http2:
            from lyncpcap.lab.h2 import Http2Conn

            c = Http2Conn(c, scheme="https" if self.cap.tls else "http")
        self.conns[key] = c
        return c

    def close_all(self) -> None:
        for c in self.conns.values():
            c.close(by="client")
        self.conns.clear()

    def http(
        self,
        server: Host,
        host_header: str,
        method: str,
        target: str,
        *,
        step: str,
        response: Callable[[float], bytes],
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        new: bool = False,
        think: tuple[float, float] = (0.01, 0.06),
        gap: float = 0.0,
        record: bool = True,
    ) -> Conn:
        _, dst_host, dst_port = self._server(server)
        opened = new or (dst_host.name, dst_port) not in self.conns
        c = self.conn(server, new=new, sni=host_header)
        hs = list(headers or [])
        if self.via_rp is not None and self.public_ip:
            hs.append(("X-Forwarded-For", self.public_ip))
        req = lync.request(method, target, host_header, hs, body, user_agent=self.ua, content_type=content_type)
        begin = self.cap.now + gap
        c.send(req, gap=gap)
        sent = self.cap.now
        t = self.think(*think)
        answer = response(self.cap.now + t)
        c.reply(answer, think=t)
        self._log(c, req, answer, begin, sent, sent + t, opened)
        if record:
            status = int(answer.split(b" ", 2)[1])
            self.truth.record(step, method, status, path=target.split("?", 1)[0], host=host_header)
        self.cap.net.advance(self.think(0.001, 0.01))
        return c

    def _log(self, c: Conn, request: bytes, answer: bytes, begin: float, sent: float, answered: float, opened: bool) -> None:
        tcp: object = getattr(c, "tcp", c)  # a TlsConn runs over its TcpConn
        assert isinstance(tcp, TcpConn)
        fam = tcp.family
        self.cap.web.append(
            WebExchange(
                truth=self.truth,
                client=(tcp.client.ipv6 if fam == 6 else tcp.client.ipv4) or "",
                client_port=tcp.client_port,
                server=(tcp.server.ipv6 if fam == 6 else tcp.server.ipv4) or "",
                server_port=tcp.server_port,
                connection=tcp.index,
                request=request,
                response=answer,
                begin=begin,
                sent=sent,
                answered=min(max(answered, sent), self.cap.now),
                done=self.cap.now,
                new_connection=opened,
            )
        )

    # -- NTLM over HTTP (three legs on one connection) -----------------------------------------
    def ntlm_http(
        self,
        server: Host,
        host_header: str,
        method: str,
        target: str,
        *,
        step: str,
        user: str,
        password: str,
        workstation: str,
        body: bytes,
        content_type: str,
        final: Callable[[float], bytes],
        scheme: str = "NTLM",
        anonymous_first: bool = True,
        variant: str = "v2",
        extra_headers: list[tuple[str, str]] | None = None,
        server_name: str = "FE01",
        new: bool = True,
    ) -> None:
        rng = self.rng
        fqdn = self.w.server_fqdn.get(server.name, host_header)
        offers = [("WWW-Authenticate", "Negotiate"), ("WWW-Authenticate", "NTLM")]
        if anonymous_first:
            self.http(server, host_header, method, target, step=step, body=body, content_type=content_type, new=new, headers=extra_headers,
                      response=lambda ts: lync.response(401, offers, ts=ts, lync=fqdn, rng=rng))
            new = False
        client = NtlmClient(user, NETBIOS, password, workstation, rng=rng, variant=variant)
        t1 = client.negotiate()
        ch = challenge(
            target_name=NETBIOS,
            nb_domain=NETBIOS,
            nb_computer=server_name,
            dns_domain=DOMAIN,
            dns_computer=f"{server_name.lower()}.{DOMAIN}",
            dns_tree=DOMAIN,
            timestamp=self.cap.when,
            rng=rng,
            flags_from=t1,
        )
        self.http(server, host_header, method, target, step=step, body=body, content_type=content_type, new=new,
                  headers=[("Authorization", f"{scheme} {lync.b64(t1)}"), *(extra_headers or [])],
                  response=lambda ts: lync.response(401, [("WWW-Authenticate", f"{scheme} {lync.b64(ch)}")], ts=ts, lync=fqdn, rng=rng))
        t3 = client.authenticate(ch, spn=f"HTTP/{host_header}")
        self.cap.secret(ntlm_response_secret(t3))
        self.http(server, host_header, method, target, step=step, body=body, content_type=content_type,
                  headers=[("Authorization", f"{scheme} {lync.b64(t3)}"), *(extra_headers or [])], response=final,
                  think=(0.03, 0.12))


def ntlm_response_secret(authenticate: bytes) -> str:
    """What of an NTLM AUTHENTICATE is secret on the wire: NTProofStr (v2) or the whole NT response (v1)."""
    from spnego._ntlm_raw.messages import Authenticate

    nt = Authenticate.unpack(authenticate).nt_challenge_response or b""
    return (nt[:16] if len(nt) > 24 else nt).hex()


def nxdomain(client: Client, name: str, qtype: str = "A") -> None:
    client.dns(name, qtype, rcode="NXDOMAIN")

