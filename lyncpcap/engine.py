"""The per-capture pipeline: packets → flows → decoders → step classifiers.

`Engine` is the flows layer's selector/handler and the classifiers' `Collector`; it keeps only
steps, authentication records and TLS summaries, never packets or bodies, so memory follows the
number of sign-in steps rather than the capture size.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from lyncpcap.flows import Connection, Dispatcher, StreamSink
from lyncpcap.model import AuthExchange, Step
from lyncpcap.protocols import dns as dns_proto
from lyncpcap.protocols import kerberos, tls
from lyncpcap.protocols.http import HttpStream, looks_like_http_request, looks_like_sip
from lyncpcap.protocols.sip import SipMessage, SipStream, parse_datagram
from lyncpcap.read import open_capture
from lyncpcap.steps.common import Endpoints
from lyncpcap.steps.dns import DnsClassifier
from lyncpcap.steps.http import HTTPS_PORTS, ConnState, HttpClassifier
from lyncpcap.steps.kdc import KdcClassifier
from lyncpcap.steps.sip import SipClassifier

DNS_PORTS = frozenset({53})
KDC_PORTS = frozenset({88})
SIP_UDP_PORTS = frozenset({5060})
UDP_PORTS = DNS_PORTS | KDC_PORTS | SIP_UDP_PORTS


@dataclass(slots=True)
class TlsConnection:
    """What could be seen of a TLS connection that was not decrypted."""

    conn: int
    client: str
    client_port: int
    server: str
    server_port: int
    first_frame: int
    time: float
    sni: str | None = None
    version: str | None = None
    client_random: str | None = None
    alerts: list[tuple[int, int, int]] = field(default_factory=list)
    application_data: bool = False
    decrypted: bool = False
    reason: str = "no key material for this connection"

    def as_dict(self) -> dict[str, object]:
        return {
            "conn": self.conn,
            "client": self.client,
            "client_port": self.client_port,
            "server": self.server,
            "server_port": self.server_port,
            "first_frame": self.first_frame,
            "sni": self.sni,
            "version": self.version,
            "alerts": [list(a) for a in self.alerts],
            "decrypted": self.decrypted,
            "reason": None if self.decrypted else self.reason,
        }


@dataclass(slots=True)
class CaptureResult:
    path: str
    format: str
    compressed: bool
    packets: int
    decrypted: bool
    warnings: list[str]
    stats: Counter[str]
    steps: list[Step]
    auth: list[AuthExchange]
    tls: list[TlsConnection]
    secrets_blocks: int = 0


class _Flip:
    """Adapts a sink when the flows layer guessed the connection's direction wrong."""

    def __init__(self, sink: StreamSink) -> None:
        self.sink = sink

    @property
    def done(self) -> bool:
        return bool(getattr(self.sink, "done", False))

    @property
    def peer_acked(self) -> int | None:
        return getattr(self.sink, "peer_acked", None)

    @peer_acked.setter
    def peer_acked(self, value: int | None) -> None:
        if hasattr(self.sink, "peer_acked"):
            self.sink.peer_acked = value  # type: ignore[attr-defined]

    def on_data(self, direction: int, data: bytes, ts: float, frame: int) -> None:
        self.sink.on_data(1 - direction, data, ts, frame)

    def on_gap(self, direction: int, size: int, ts: float, frame: int) -> None:
        self.sink.on_gap(1 - direction, size, ts, frame)

    def on_close(self, ts: float, frame: int, how: str) -> None:
        self.sink.on_close(ts, frame, how)


class _FramedSink:
    """Kerberos or DNS over TCP: a 2/4-byte length prefix per message, per direction."""

    def __init__(self, make_framer: Callable[[], object], on_record: Callable[[int, bytes, float, int], None]) -> None:
        self.framers = (make_framer(), make_framer())
        self.on_record = on_record
        self.done = False

    def on_data(self, direction: int, data: bytes, ts: float, frame: int) -> None:
        for rec in self.framers[direction].feed(data):  # type: ignore[attr-defined]
            self.on_record(direction, rec, ts, frame)

    def on_gap(self, direction: int, size: int, ts: float, frame: int) -> None:
        self.framers = tuple(  # type: ignore[assignment]
            type(f)() if i == direction else f for i, f in enumerate(self.framers)
        )

    def on_close(self, ts: float, frame: int, how: str) -> None:
        pass


class _TlsSink:
    def __init__(self, record: TlsConnection) -> None:
        self.record = record
        self.inspector = tls.TlsStreamInspector()
        self.done = False

    def on_data(self, direction: int, data: bytes, ts: float, frame: int) -> None:
        self.inspector.feed(direction, data)
        self._update()
        if self.inspector.saw_application_data:
            self.done = True

    def on_gap(self, direction: int, size: int, ts: float, frame: int) -> None:
        self.done = True

    def on_close(self, ts: float, frame: int, how: str) -> None:
        self._update()

    def _update(self) -> None:
        i = self.inspector
        r = self.record
        if i.client_hello is not None:
            r.sni = i.client_hello.sni
            r.client_random = i.client_hello.client_random
        r.version = i.version or r.version
        r.alerts = list(i.alerts)
        r.application_data = i.saw_application_data


class Engine:
    """Analyses one capture file (plaintext, or already-decrypted streams fed by the TLS layer)."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.auth: list[AuthExchange] = []
        self.tls: list[TlsConnection] = []
        self.notes: list[str] = []
        self.http = HttpClassifier(self)
        self.sip = SipClassifier(self)
        self.kdc = KdcClassifier(self)
        self.dns = DnsClassifier(self)
        self.decrypted_conns: set[tuple[str, int, str, int]] = set()

    # Collector -----------------------------------------------------------------------------
    def add_step(self, step: Step) -> None:
        self.steps.append(step)

    def add_auth(self, exchange: AuthExchange) -> None:
        self.auth.append(exchange)

    def note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)

    # flows hooks ---------------------------------------------------------------------------
    def tcp_selector(self, conn: Connection, direction: int, first: bytes, *, transport: str = "tcp") -> StreamSink | None:
        flip = False
        ep = Endpoints(
            client=conn.client,
            src=conn.client,
            dst=conn.server,
            src_port=conn.client_port,
            dst_port=conn.server_port,
            conn=conn.index,
            transport=transport,
        )
        if first.startswith(b"HTTP/") or (first.startswith(b"SIP/2.0 ") and direction == 0):
            flip = direction == 0
        elif direction == 1 and (looks_like_http_request(first) or (looks_like_sip(first) and not first.startswith(b"SIP/2.0 "))):
            flip = True
        if flip:
            ep = Endpoints(conn.server, conn.server, conn.client, conn.server_port, conn.client_port, conn.index, transport)
        sink: StreamSink | None = None
        if looks_like_http_request(first) or first.startswith(b"HTTP/"):
            https = transport == "tls" or (ep.dst_port in HTTPS_PORTS)
            state = ConnState(endpoints=ep, scheme="https" if https else "http")
            sink = HttpStream(partial(self.http.on_exchange, state))
        elif looks_like_sip(first):
            sink = SipStream(partial(self._sip_tcp, ep))
        elif conn.server_port in KDC_PORTS or conn.client_port in KDC_PORTS:
            sink = _FramedSink(kerberos.KerberosTcpFramer, partial(self._kdc_tcp, ep))
        elif conn.server_port in DNS_PORTS or conn.client_port in DNS_PORTS:
            sink = _FramedSink(dns_proto.DnsTcpFramer, partial(self._dns_tcp, ep))
        elif tls.looks_like_tls(first) and transport == "tcp":
            rec = TlsConnection(
                conn=conn.index,
                client=ep.client,
                client_port=ep.src_port or 0,
                server=ep.dst,
                server_port=ep.dst_port or 0,
                first_frame=conn.first_frame,
                time=conn.first_ts,
            )
            self.tls.append(rec)
            tsink: StreamSink = _TlsSink(rec)
            return _Flip(tsink) if flip else tsink
        if sink is None:
            return None
        return _Flip(sink) if flip else sink

    def udp_handler(self, ts: float, frame: int, src: str, sport: int, dst: str, dport: int, payload: bytes) -> None:
        if sport in DNS_PORTS or dport in DNS_PORTS:
            self.dns.on_datagram(payload, ts=ts, frame=frame, src=src, sport=sport, dst=dst, dport=dport)
        elif sport in KDC_PORTS or dport in KDC_PORTS:
            self.kdc.on_message(payload, ts=ts, frame=frame, src=src, sport=sport, dst=dst, dport=dport, conn=None, transport="udp")
        elif looks_like_sip(payload):
            try:
                msg = parse_datagram(payload, frame, ts)
            except Exception:
                self.note("a SIP datagram could not be parsed")
                return
            ep = Endpoints(src, src, dst, sport, dport, None, "udp") if msg.is_request else Endpoints(dst, dst, src, dport, sport, None, "udp")
            self.sip.on_message(ep, msg)

    def _sip_tcp(self, ep: Endpoints, msg: SipMessage) -> None:
        self.sip.on_message(ep, msg)

    def _kdc_tcp(self, ep: Endpoints, direction: int, rec: bytes, ts: float, frame: int) -> None:
        if direction == 0:
            src, sport, dst, dport = ep.src, ep.src_port or 0, ep.dst, ep.dst_port or 0
        else:
            src, sport, dst, dport = ep.dst, ep.dst_port or 0, ep.src, ep.src_port or 0
        self.kdc.on_message(rec, ts=ts, frame=frame, src=src, sport=sport, dst=dst, dport=dport, conn=ep.conn, transport="tcp")

    def _dns_tcp(self, ep: Endpoints, direction: int, rec: bytes, ts: float, frame: int) -> None:
        if direction == 0:
            src, sport, dst, dport = ep.src, ep.src_port or 0, ep.dst, ep.dst_port or 0
        else:
            src, sport, dst, dport = ep.dst, ep.dst_port or 0, ep.src, ep.src_port or 0
        self.dns.on_datagram(rec, ts=ts, frame=frame, src=src, sport=sport, dst=dst, dport=dport, conn=ep.conn, transport="tcp")

    def finish(self) -> None:
        self.sip.finish()
        self.kdc.finish()
        self.dns.finish()
        if self.kdc.errors:
            self.note(f"{self.kdc.errors} Kerberos messages could not be decoded")
        if self.dns.errors:
            self.note(f"{self.dns.errors} DNS messages could not be decoded")


def analyse_file(path: str | Path, *, progress: Callable[[int], None] | None = None, full: bool = False) -> CaptureResult:
    """Run one plaintext capture file through the pipeline.

    `full=True` is the reference path: every TCP connection and UDP datagram is offered to the
    decoders, with no port pre-filter.  The default fast path must give identical results.
    """
    engine = Engine()
    with open_capture(path) as cap:
        dispatcher = Dispatcher(
            engine.tcp_selector,
            engine.udp_handler,
            udp_ports=None if full else UDP_PORTS,
        )
        dispatcher.run(cap, progress)
        engine.finish()
        warnings = list(cap.warnings) + list(dispatcher.warnings) + engine.notes
        undecrypted = [t for t in engine.tls if not t.decrypted]
        if undecrypted:
            warnings.append(
                f"{len(undecrypted)} TLS connection(s) were not decrypted; no step is inferred from them "
                "(pass --keylog or use a capture with embedded secrets)"
            )
        return CaptureResult(
            path=str(path),
            format=cap.format,
            compressed=cap.compressed,
            packets=dispatcher.stats.get("packets", 0),
            decrypted=False,
            warnings=warnings,
            stats=dispatcher.stats,
            steps=engine.steps,
            auth=engine.auth,
            tls=engine.tls,
            secrets_blocks=len(cap.secrets),
        )
