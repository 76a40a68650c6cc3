"""The per-capture pipeline: packets → flows → decoders → step classifiers.

`Engine` is the flows layer's selector/handler and the classifiers' `Collector`; it keeps only
steps, authentication records and TLS summaries, never packets or bodies, so memory follows the
number of sign-in steps rather than the capture size.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from lyncpcap.errors import CaptureError, MalformedError
from lyncpcap.flows import Connection, Dispatcher, StreamSink
from lyncpcap.flows.partition import Partition
from lyncpcap.flows.pdus import KnownConnection, PduStreams
from lyncpcap.heldsteps import HeldSteps
from lyncpcap.model import AuthExchange, Step
from lyncpcap.protocols import dns as dns_proto
from lyncpcap.protocols import kerberos, tls
from lyncpcap.protocols.http import (
    RESYNC_KEEP,
    START_PATTERNS,
    HttpStream,
    looks_like_http_request,
    looks_like_sip,
)
from lyncpcap.protocols.http2 import Http2Stream
from lyncpcap.protocols.sip import SipMessage, SipStream, parse_datagram
from lyncpcap.read import open_capture
from lyncpcap.read.archive import Archive
from lyncpcap.read.capture import Capture
from lyncpcap.read.layers import EARLIEST_TIME, LATEST_TIME, SKIP_REASONS
from lyncpcap.read.pdu import LINKTYPE_WIRESHARK_UPPER_PDU, PORT_TCP, PORT_UDP, parse_exported_pdu
from lyncpcap.read.tshark import (
    TLS13_SERVER,
    TLS_KEY_LOG_SECRETS,
    ExportRun,
    KeyLog,
    RsaKey,
    ServerHello,
    Tshark,
    TsharkCheck,
    TsharkUnavailable,
    server_hellos,
    suite_text,
    undecrypted_reason,
)
from lyncpcap.steps.common import Endpoints
from lyncpcap.steps.dns import DnsClassifier, lync_name
from lyncpcap.steps.http import HTTPS_PORTS, ConnState, HttpClassifier
from lyncpcap.steps.kdc import KdcClassifier
from lyncpcap.steps.sip import SipClassifier

#: alerts a client sends when it rejects the server's certificate
CERTIFICATE_ALERTS = frozenset({42, 43, 44, 45, 46, 48, 49})
DNS_PORTS = frozenset({53})
KDC_PORTS = frozenset({88})
#: Seconds of capture time between two looks for DNS, KDC and SIP requests that have waited too
#: long for their answer (each classifier's TIMEOUT)
EXPIRY_EVERY = 5.0
SIP_UDP_PORTS = frozenset({5060})
#: TLS connections listed one by one (`a.tls`, "tls" in the JSON) when nothing is decrypted; past
#: these the capture's TLS is counted by server, so that memory does not follow the connections
TLS_LISTED = 10_000
#: TLS ports no other service uses: SIP over TLS, the Front End's external web site
LYNC_TLS_PORTS = frozenset({5061, 4443})
#: clients whose Lync servers (from their lookups) are remembered, and servers per client
LYNC_CLIENTS_KEPT = 65536
LYNC_SERVERS_KEPT = 64
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
    cipher: str | None = None  #: the suite the server chose, when the reason needed it
    client_certificate: bool = False  #: the client sent a certificate in the clear (TLS 1.2 client authentication)

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
            "cipher": self.cipher,
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
    tls_unlisted: Counter[str] = field(default_factory=Counter)  # server -> TLS connections past TLS_LISTED


@dataclass(slots=True)
class InternalErrors:
    """Connections and datagrams whose decoding stopped at a bug of ours (an exception other than
    MalformedError): counted, the one earliest in the capture named, the rest of the capture
    analysed.  Only the exception's type and where it was raised are kept: its message may quote
    the packet, secrets included."""

    count: int = 0
    first: tuple[int, str] | None = None  # (frame, "TypeError at http.py:616")
    what: tuple[str, str] = ("connection or datagram", "connections or datagrams")  # one, several

    def add(self, frame: int, exc: BaseException) -> None:
        self.count += 1
        if self.first is None or frame < self.first[0]:
            self.first = (frame, _where(exc))

    def merge(self, other: InternalErrors) -> None:
        self.count += other.count
        if other.first is not None and (self.first is None or other.first < self.first):
            self.first = other.first

    def note(self) -> list[str]:
        if not self.first:
            return []
        frame, where = self.first
        return [
            f"{self.count} {self.what[self.count > 1]} stopped being decoded at an internal error "
            f"(first in frame {frame}: {where}); their later steps are missing. "
            "Please report it with the capture"
        ]


_PACKAGE = str(Path(__file__).parent)


def _where(exc: BaseException) -> str:
    """"TypeError at http.py:616": the type, and the last line of lyncpcap's own code it passed."""
    tb = exc.__traceback__
    place = ""
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name.startswith(_PACKAGE):
            place = f" at {Path(name).name}:{tb.tb_lineno}"
        tb = tb.tb_next
    return type(exc).__name__ + place


class _Wrapper:
    """A sink around another: it passes on whether the inner one is done and what the sender had
    acknowledged (for sinks that want to know)."""

    __slots__ = ("sink",)

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


class _Guard(_Wrapper):
    """Every connection's sink is wrapped in one: an exception a decoder did not mean to raise ends
    that connection's decoding (`done`), is counted by the engine, and the capture goes on —
    unless the engine says it came from downstream (the output), which must stop the analysis."""

    __slots__ = ("engine", "failed")

    def __init__(self, engine: Engine, sink: StreamSink) -> None:
        super().__init__(sink)
        self.engine = engine
        self.failed = False

    @property
    def done(self) -> bool:
        return self.failed or bool(getattr(self.sink, "done", False))

    def on_data(self, direction: int, data: bytes, ts: float, frame: int) -> None:
        if self.failed:
            return
        engine = self.engine
        if ts >= engine.expire_at:
            engine.clock(ts, frame)
        try:
            self.sink.on_data(direction, data, ts, frame)
        except Exception as exc:
            self._failed(exc, frame)

    def on_gap(self, direction: int, size: int, ts: float, frame: int) -> None:
        if self.failed:
            return
        try:
            self.sink.on_gap(direction, size, ts, frame)
        except Exception as exc:
            self._failed(exc, frame)

    def on_close(self, ts: float, frame: int, how: str) -> None:
        if self.failed:
            return
        try:
            self.sink.on_close(ts, frame, how)
        except Exception as exc:
            self._failed(exc, frame)

    def _failed(self, exc: Exception, frame: int) -> None:
        if not self.engine.contain(exc, frame):
            raise exc
        self.failed = True


#: Bytes of a connection's first data the selector wants to see: its longest first word ("OPTIONS ",
#: "REGISTER ", "SIP/2.0 ") or a TLS record header, with room to spare.
DECIDE_BYTES = 16
#: Bytes of a connection that began before the capture (its first data is in the middle of a
#: message) searched for the start of an HTTP or SIP message before it is given up.
HUNT_BYTES = 256 << 10
#: The start line of an HTTP or SIP request or response, wherever it is.
_MESSAGE_START = re.compile(b"|".join(p.pattern for p in START_PATTERNS.values()))


#: The start of the client's connection preface in HTTP/2 (RFC 9113 §3.4), decrypted (a browser
#: with SSLKEYLOGFILE talking to IIS 10 or later, which offers h2 over TLS) or in clear text (h2c).
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n"


class _Undecided:
    """A connection whose first data does not say what it carries.

    * Too short to tell (a client that sent "P", then "OST /WebTicket/oauthtoken HTTP/1.1..."):
      its data waits until DECIDE_BYTES of the first direction, or the end of a line, have come —
      or the other side speaks, a gap or the end comes first; then the selector judges the whole
      start, and the sink it chooses gets everything, in order.
    * In the middle of a message (the capture began while a request or answer was under way, or
      lost its first segments): up to HUNT_BYTES are searched for the start line of an HTTP or
      SIP message, in either direction; the selector judges the connection from there, as if it
      began there, and the other direction's reader is told that bytes went missing (it looks for
      its next message start).  TLS records in mid-stream cannot be decrypted: dropped at once.

    Without a sink the connection is dropped (`done`), as the selector's None would have."""

    __slots__ = ("_acked", "_dropped", "choose", "direction", "head", "hunted", "sink", "skipped", "tails", "waiting")

    def __init__(self, choose: Callable[[int, bytes], StreamSink | None], direction: int, *, hunting: bool = False) -> None:
        self.choose = choose  # (direction, first bytes) -> sink or None
        self.direction = direction
        self.head = b""
        self.waiting: list[tuple[int, bytes, float, int, int | None]] = []  # data, with peer_acked then
        self.sink: StreamSink | None = None
        self._dropped = False
        self._acked: int | None = None
        self.hunted: int | None = 0 if hunting else None  # bytes searched so far; None: not hunting
        self.tails = [b"", b""]  # per direction: the end of what was searched (a start line may straddle)
        self.skipped = [False, False]  # per direction: bytes went by unread

    @property
    def done(self) -> bool:
        return self._dropped if self.sink is None else bool(getattr(self.sink, "done", False))

    @property
    def peer_acked(self) -> int | None:
        return self._acked

    @peer_acked.setter
    def peer_acked(self, value: int | None) -> None:
        self._acked = value
        if self.sink is not None and hasattr(self.sink, "peer_acked"):
            self.sink.peer_acked = value  # type: ignore[attr-defined]

    def on_data(self, direction: int, data: bytes, ts: float, frame: int) -> None:
        if self.sink is not None:
            self.sink.on_data(direction, data, ts, frame)
        elif self._dropped:
            return
        elif self.hunted is not None:
            self._hunt(direction, data, ts, frame)
        else:
            self.waiting.append((direction, data, ts, frame, self._acked))
            if direction == self.direction:
                self.head += data
            if direction != self.direction or len(self.head) >= DECIDE_BYTES or b"\n" in self.head:
                self._decide()

    def on_gap(self, direction: int, size: int, ts: float, frame: int) -> None:
        if self.sink is None and not self._dropped:
            if self.hunted is None:
                self._decide()
            else:  # a start line cannot straddle a hole
                self.tails[direction] = b""
                self.skipped[direction] = True
        if self.sink is not None and not self.done:
            self.sink.on_gap(direction, size, ts, frame)

    def on_close(self, ts: float, frame: int, how: str) -> None:
        if self.sink is None and not self._dropped and self.hunted is None:
            self._decide()
        if self.sink is not None:
            self.sink.on_close(ts, frame, how)

    def _decide(self) -> None:
        sink = self.choose(self.direction, self.head)
        head, waiting, self.waiting, self.head = self.head, self.waiting, [], b""
        if sink is None:
            if tls.looks_like_tls_record(head):
                self._dropped = True
                return
            self.hunted = 0  # the middle of something: look for a message start in what came
            for direction, data, ts, frame, acked in waiting:
                self.peer_acked = acked
                self._hunt(direction, data, ts, frame)  # once a sink is found, it gets the rest
                if self._dropped:
                    break
            return
        self._deliver(sink, waiting)

    def _deliver(self, sink: StreamSink, waiting: list[tuple[int, bytes, float, int, int | None]]) -> None:
        self.sink = sink
        for direction, data, ts, frame, acked in waiting:
            if getattr(sink, "done", False):
                break
            if hasattr(sink, "peer_acked"):
                sink.peer_acked = acked  # type: ignore[attr-defined]
            sink.on_data(direction, data, ts, frame)

    def _hunt(self, direction: int, data: bytes, ts: float, frame: int) -> None:
        assert self.hunted is not None
        if self.sink is not None:
            self.sink.on_data(direction, data, ts, frame)
            return
        searched = self.tails[direction] + data
        m = _MESSAGE_START.search(searched)
        if m is None:
            self.hunted += len(data)
            self.skipped[direction] = True
            if self.hunted >= HUNT_BYTES:
                self._dropped = True
            self.tails[direction] = searched[-RESYNC_KEEP:]
            return
        rest = searched[m.start() :]
        sink = self.choose(direction, rest)
        if sink is None:  # cannot happen for a start line, but then: keep looking
            self.tails[direction] = b""
            return
        other = 1 - direction
        if self.skipped[other]:  # its reader must look for a message start too
            sink.on_gap(other, 0, ts, frame)
        self._deliver(sink, [(direction, rest, ts, frame, self._acked)])


class _Flip(_Wrapper):
    """Adapts a sink when the flows layer guessed the connection's direction wrong."""

    __slots__ = ()

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
    """An opaque TLS connection: its hellos and clear-text alerts, until application data follows
    (then `done`, so the flows layer drops the rest).  Certificates are not decoded: the record has
    no place for them, and decoding them was most of the cost of a TLS-heavy capture."""

    def __init__(
        self,
        record: TlsConnection,
        on_failed: Callable[[TlsConnection, float, int, str], None] | None = None,
        on_encrypted: Callable[[TlsConnection, float, int], None] | None = None,
    ) -> None:
        self.record = record
        self.inspector = tls.TlsStreamInspector(certificates=False)
        self.done = False
        self.on_failed = on_failed
        self.on_encrypted = on_encrypted  # told once, when the application data begins
        self.alert_at: tuple[float, int] | None = None  # when the first alert was seen

    def on_data(self, direction: int, data: bytes, ts: float, frame: int) -> None:
        had = len(self.inspector.alerts)
        self.inspector.feed(direction, data)
        if self.alert_at is None and len(self.inspector.alerts) > had:
            self.alert_at = (ts, frame)
        self._update()
        if self.record.application_data:
            self.done = True
            if self.on_encrypted is not None:
                self.on_encrypted(self.record, ts, frame)

    def on_gap(self, direction: int, size: int, ts: float, frame: int) -> None:
        self.done = True

    def on_close(self, ts: float, frame: int, how: str) -> None:
        self._update()
        # A handshake that failed (a fatal alert) or that the client abandoned: it sent nothing
        # after its ClientHello although the server answered, then hung up.  A client that went
        # on (ChangeCipherSpec, an encrypted record) and merely left the connection idle, as
        # browsers' pre-connections do, is not a failure.
        i = self.inspector
        fatal = any(level == 2 for _, level, _ in i.alerts)
        abandoned = (
            how != "eof"
            and i.server_hello is not None
            and not i.saw_change_cipher_spec[tls.CLIENT]
            and not i.application_data_records[tls.CLIENT]
            and not i.encrypted_alerts[tls.CLIENT]
        )
        if (
            self.on_failed is not None
            and i.client_hello is not None
            and not self.record.application_data
            and (fatal or abandoned)
        ):
            at_ts, at_frame = self.alert_at or (ts, frame)
            self.on_failed(self.record, at_ts, at_frame, how)

    def _update(self) -> None:
        i = self.inspector
        r = self.record
        if i.client_hello is not None:
            r.sni = i.client_hello.sni
            r.client_random = i.client_hello.client_random
        r.version = i.version or r.version
        r.alerts = list(i.alerts)
        r.application_data = i.saw_application_data
        r.client_certificate = r.client_certificate or i.client_certificate_sent


class Engine:
    """Analyses one capture file (plaintext, or already-decrypted streams fed by the TLS layer)."""

    def __init__(self, on_step: Callable[[Step], None] | None = None) -> None:
        """`on_step` receives each step as soon as it is complete (the session builder when
        streaming); without it the steps are kept in `self.steps`."""
        self.steps: list[Step] = []
        self.on_step: Callable[[Step], None] = on_step if on_step is not None else self.steps.append
        self.auth: list[AuthExchange] = []  # messages no step carried
        self.tunnels = False  # an HTTP CONNECT was seen
        self.tls: list[TlsConnection] = []
        self._tls_by_conn: dict[int, TlsConnection] = {}
        self.notes: list[str] = []
        self.http = HttpClassifier(self)
        self.sip = SipClassifier(self)
        self.kdc = KdcClassifier(self)
        self.dns = DnsClassifier(self)
        self.decrypted_conns: set[tuple[str, int, str, int]] = set()
        self.internal = InternalErrors()
        self.downstream_failed = False  # on_step raised: the analysis must stop, not go on
        self.expire_at = -math.inf  # the capture time of the next look for timed-out requests
        # a TLS connection to a Lync server that carries data no key will open becomes a step of its
        # own ("other", encrypted): set when nothing will be decrypted (decrypted connections become
        # their HTTP and SIP)
        self.encrypted_steps = False
        # client -> the servers its Lync lookups named (lyncdiscover, SIP SRV and A records): whose
        # encrypted connections are steps; the oldest clients are forgotten past LYNC_CLIENTS_KEPT
        self._lync_servers: dict[str, set[str]] = {}
        self.tls_unlisted: Counter[str] = Counter()  # server -> TLS connections past TLS_LISTED

    # Collector -----------------------------------------------------------------------------
    def add_step(self, step: Step) -> None:
        if step.step == "dns" and self.encrypted_steps and step.facts.get("lync") and step.facts.get("addresses"):
            self._lync_server(step.client, step.facts["addresses"])
        elif step.method == "CONNECT":
            self.tunnels = True  # TLS may follow inside this connection (decryption looks for it)
        elif step.step == "adfs" and step.conn is not None:
            rec = self._tls_by_conn.get(step.conn)
            if rec is not None and rec.client_certificate:
                # AD FS certificate authentication: a smart card (or virtual smart card) and its
                # PIN, the second factor of PROTOCOL.md §5.7, §10.7 step 3
                step.facts["client_certificate"] = True
                step.detail = "; ".join(d for d in (step.detail, "TLS client certificate (smart card)") if d)
        try:
            self.on_step(step)
        except BaseException:
            self.downstream_failed = True
            raise

    def contain(self, exc: Exception, frame: int) -> bool:
        """Whether `exc`, raised while decoding frame `frame`, stays with its connection or datagram
        (counted in `internal`) rather than stopping the analysis.  Not when it came from on_step
        (a closed output, a worker's pipe), nor when memory ran out."""
        if self.downstream_failed or isinstance(exc, MemoryError):
            return False
        self.internal.add(frame, exc)
        return True

    def add_auth(self, step: Step | None, exchange: AuthExchange) -> None:
        if step is not None:
            step.exchanges.append(exchange)  # it travels with its step, into that step's session
        else:
            self.auth.append(exchange)  # a message no step carried (an answer without its request)

    def note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)

    # flows hooks ---------------------------------------------------------------------------
    def dispatcher(self, *, full: bool = False, partition: Partition | None = None) -> Dispatcher:
        """The flows layer wired to this engine: every UDP datagram with `full`, else DNS, Kerberos
        and SIP ports; with `partition`, only the clients it owns (a parallel run's worker)."""
        return Dispatcher(
            self.tcp_selector,
            self.udp_handler,
            udp_ports=None if full else UDP_PORTS,
            connect_failed=self.connect_failed,
            partition=partition,
        )

    def tcp_selector(self, conn: Connection, direction: int, first: bytes, *, transport: str = "tcp") -> StreamSink | None:
        """The sink for a connection, judged by its first data (`direction` sent it): HTTP or SIP
        by their first words, Kerberos and DNS by port, TLS by its record header.  A start too
        short to judge (a request line cut after a few bytes) waits for more (`_Undecided`)."""
        if len(first) < DECIDE_BYTES and b"\n" not in first:
            return _Undecided(partial(self._select, conn, transport=transport), direction)
        sink = self._select(conn, direction, first, transport=transport)
        if sink is None and not tls.looks_like_tls_record(first):
            return _Undecided(partial(self._select, conn, transport=transport), direction, hunting=True)
        return sink

    def _select(self, conn: Connection, direction: int, first: bytes, *, transport: str) -> StreamSink | None:
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
        http2 = first.startswith(HTTP2_PREFACE)
        if http2:
            flip = direction == 1
        elif first.startswith(b"HTTP/") or (first.startswith(b"SIP/2.0 ") and direction == 0):
            flip = direction == 0
        elif direction == 1 and (looks_like_http_request(first) or (looks_like_sip(first) and not first.startswith(b"SIP/2.0 "))):
            flip = True
        if flip:
            ep = Endpoints(conn.server, conn.server, conn.client, conn.server_port, conn.client_port, conn.index, transport)
        sink: StreamSink | None = None
        if http2:
            https = transport == "tls" or (ep.dst_port in HTTPS_PORTS)
            state = ConnState(endpoints=ep, scheme="https" if https else "http")
            sink = Http2Stream(partial(self.http.on_exchange, state), self.note)
        elif looks_like_http_request(first) or first.startswith(b"HTTP/"):
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
            if not self.encrypted_steps or len(self.tls) < TLS_LISTED:  # decryption needs them all
                self.tls.append(rec)
                self._tls_by_conn[rec.conn] = rec
            else:
                self.tls_unlisted[tls_server(rec)] += 1
            sink = _TlsSink(rec, self.tls_failed, self.tls_encrypted if self.encrypted_steps else None)
        if sink is None:
            return None
        return _Guard(self, _Flip(sink) if flip else sink)

    def tls_failed(self, rec: TlsConnection, ts: float, frame: int, how: str) -> None:
        """A TLS handshake that ended without data: a fatal alert, or a client that hung up after
        the server's certificate (Schannel does that when it does not trust it)."""
        server = rec.sni or (f"[{rec.server}]" if ":" in rec.server else rec.server)
        target = f"{server}:{rec.server_port}"
        fatal = [(d, desc) for d, level, desc in rec.alerts if level == 2]
        if fatal:
            direction, desc = fatal[0]
            name = tls.ALERT_DESCRIPTIONS.get(desc, str(desc))
            who = "client" if direction == 0 else "server"
            if direction == 0 and desc in CERTIFICATE_ALERTS:
                reason = f"the client does not trust the certificate of {target} ({name}): private CA, expired or wrong name"
            elif desc in (40, 70, 71):  # handshake_failure, protocol_version, insufficient_security
                reason = (
                    f"TLS handshake with {target} failed ({name} from the {who}): "
                    "client and server share no TLS version or cipher suite"
                )
            else:
                reason = f"TLS handshake with {target} failed: the {who} sent a fatal {name} alert"
            status = name
            evidence = f"TLS alert {name} ({desc}) from the {who}, frame {frame}"
        else:
            reason = (
                f"the client gave up the TLS handshake with {target} after the server's certificate "
                "(often: the certificate is not trusted or does not name the server)"
            )
            status = "abandoned"
            evidence = f"connection closed ({how}) after the server's hello, before any data (frame {frame})"
        self._connection_failed(
            "TLS", "tls", target, status, reason, evidence,
            start=(rec.time, rec.first_frame), end=ts, client=(rec.client, rec.client_port),
            server=(rec.server, rec.server_port), conn=rec.conn, host=rec.sni,
        )

    def _lync_server(self, client: str, addresses: Sequence[str]) -> None:
        known = self._lync_servers.pop(client, None)  # re-inserted: the newest client last
        self._lync_servers[client] = known = known if known is not None else set()
        if len(known) < LYNC_SERVERS_KEPT:
            known.update(addresses)
        if len(self._lync_servers) > LYNC_CLIENTS_KEPT:
            del self._lync_servers[next(iter(self._lync_servers))]

    def tls_encrypted(self, rec: TlsConnection, ts: float, frame: int) -> None:
        """A TLS handshake with a Lync server that succeeded, its data encrypted with no key to
        read it: an "other" step from the connection's start to its first application data, so
        that the timeline shows which server the client went to and when; no HTTP or SIP step is
        inferred from it.  A Lync server: its name (SNI) is one of Lync's (lyncdiscover, sip, ...),
        its port Lync's own (5061 SIP, 4443 the external web site), or the client's Lync lookups
        named it — or the client reached it before under a Lync name.  Other TLS is left out (the
        capture's "tls" list has it all)."""
        if rec.sni and lync_name(rec.sni):
            self._lync_server(rec.client, (rec.server,))
        elif rec.server_port not in LYNC_TLS_PORTS and rec.server not in self._lync_servers.get(rec.client, ()):
            return
        server = rec.sni or (f"[{rec.server}]" if ":" in rec.server else rec.server)
        target = f"{server}:{rec.server_port}"
        step = Step(
            step="other",
            time=rec.time,
            end=ts,
            frame=rec.first_frame,
            src=rec.client,
            dst=rec.server,
            method="TLS",
            url=f"tls://{target}",
            status="encrypted",
            auth=None,
            detail=f"{rec.version or 'TLS'} with {target}: encrypted, no key to read it (--keylog, --rsa-key)",
            result="info",
            client=rec.client,
            client_port=rec.client_port,
            server_port=rec.server_port,
            conn=rec.conn,
            transport="tcp",
        )
        step.facts["lync"] = False
        step.facts["encrypted"] = True
        if rec.sni:
            step.facts["host"] = rec.sni
        self.add_step(step)

    def connect_failed(self, conn: Connection, how: str, ts: float, frame: int, syns: int) -> None:
        """A TCP connection that never carried a byte: a step the sign-in may have failed at."""
        server = f"[{conn.server}]" if ":" in conn.server else conn.server
        target = f"{server}:{conn.server_port}"
        reason, evidence = {
            "refused": (
                f"could not connect to {target}: connection refused (nothing listens there, or a firewall rejects it)",
                f"TCP RST answering the SYN (frame {frame})",
            ),
            "reset": (
                f"{target} closed the connection before any data was exchanged",
                f"TCP RST right after the handshake (frame {frame})",
            ),
            "no answer": (
                f"could not connect to {target}: no answer (a firewall drops it, or the host is down)",
                f"{syns} SYN(s) without reply, the last in frame {frame}",
            ),
        }[how]
        self._connection_failed(
            "TCP", how, target, how, reason, evidence,
            start=(conn.first_ts, conn.first_frame), end=ts, client=(conn.client, conn.client_port),
            server=(conn.server, conn.server_port), conn=conn.index, host=None,
        )

    def _connection_failed(
        self,
        layer: str,
        kind: str,
        target: str,
        status: str,
        reason: str,
        evidence: str,
        *,
        start: tuple[float, int],
        end: float,
        client: tuple[str, int],
        server: tuple[str, int],
        conn: int,
        host: str | None,
    ) -> None:
        """A connection (TCP) or its TLS handshake that failed before any data: an "other" step
        that sessions treat as a possible end of the sign-in (facts `connect_failure`)."""
        step = Step(
            step="other",
            time=start[0],
            end=end,
            frame=start[1],
            src=client[0],
            dst=server[0],
            method=layer,
            url=f"{layer.lower()}://{target}",
            status=status,
            auth=None,
            detail=reason,
            result="failure",
            client=client[0],
            client_port=client[1],
            server_port=server[1],
            conn=conn,
            transport="tcp",
            failure_reason=reason,
            failure_evidence=evidence,
        )
        step.facts["lync"] = False
        step.facts["connect_failure"] = kind
        if host:
            step.facts["host"] = host
        self.add_step(step)

    def clock(self, ts: float, frame: int) -> None:
        """Capture time has come to `ts`: DNS, KDC and SIP requests that have waited longer than
        their classifier's TIMEOUT become their steps now — in time order with the steps around
        them, which the session builder needs, and no longer held in memory."""
        self.expire_at = ts + EXPIRY_EVERY
        try:
            self.dns.expire(ts)
            self.kdc.expire(ts)
            self.sip.expire(ts)
        except Exception as exc:
            if not self.contain(exc, frame):
                raise

    def udp_handler(self, ts: float, frame: int, src: str, sport: int, dst: str, dport: int, payload: bytes) -> None:
        if ts >= self.expire_at:
            self.clock(ts, frame)
        try:
            self._datagram(ts, frame, src, sport, dst, dport, payload)
        except Exception as exc:
            if not self.contain(exc, frame):
                raise

    def _datagram(self, ts: float, frame: int, src: str, sport: int, dst: str, dport: int, payload: bytes) -> None:
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

    def finish(self, *, error_notes: bool = True) -> None:
        """End of input: pending requests become steps; with `error_notes`, the counts of messages
        that could not be decoded join the notes (a parallel run adds up its workers' counts)."""
        self.sip.finish()
        self.kdc.finish()
        self.dns.finish()
        if error_notes:
            for message in decode_error_notes(self.kdc.errors, self.dns.errors, self.internal):
                self.note(message)
        # connection order, and wire order: the same whichever worker of a parallel run saw them
        self.tls.sort(key=lambda t: t.conn)
        self.auth.sort(key=lambda a: a.frame)


def decode_error_notes(kdc_errors: int, dns_errors: int, internal: InternalErrors) -> list[str]:
    out = []
    if kdc_errors:
        out.append(f"{kdc_errors} Kerberos messages could not be decoded")
    if dns_errors:
        out.append(f"{dns_errors} DNS messages could not be decoded")
    return out + internal.note()


def tls_server(t: TlsConnection) -> str:
    return f"[{t.server}]:{t.server_port}" if ":" in t.server else f"{t.server}:{t.server_port}"


def unlisted_warning(unlisted: Counter[str]) -> list[str]:
    """The TLS connections past the first TLS_LISTED: counted by server, not listed."""
    total = sum(unlisted.values())
    if not total:
        return []
    top = ", ".join(f"{server} ({n:,})" for server, n in unlisted.most_common(3))
    return [f"{total:,} more TLS connection(s), past the first {TLS_LISTED:,}, are counted but not listed one by one (most to {top})"]


def undecrypted_warning(tls: Sequence[TlsConnection]) -> list[str]:
    undecrypted = [t for t in tls if not t.decrypted and t.application_data]
    if not undecrypted:
        return []
    return [
        f"{len(undecrypted)} TLS connection(s) were not decrypted; no HTTP or SIP step is inferred from them "
        f"(first: {_describe(undecrypted[0])})"
    ]


class _ExportedFrames:
    """Frames of link type 252 (Wireshark exported PDUs) read straight from the capture."""

    def __init__(self, engine: Engine, next_index: int) -> None:
        self.engine = engine
        self.streams = PduStreams(engine.tcp_selector, next_index=next_index, redelivery=True)
        self.frames = 0
        self.skipped: Counter[str] = Counter()

    def feed(self, frame: int, ts: float, data: bytes) -> None:
        self.frames += 1
        if not EARLIEST_TIME <= ts < LATEST_TIME:
            self.skipped[SKIP_REASONS["bad_time"]] += 1
            return
        try:
            pdu = parse_exported_pdu(data)
        except MalformedError:
            self.skipped["damaged exported-PDU header"] += 1
            return
        if pdu.src is None or pdu.dst is None or pdu.src_port is None or pdu.dst_port is None:
            self.skipped["exported PDU without addresses and ports"] += 1
            return
        number = pdu.orig_frame or frame
        if pdu.port_type == PORT_UDP:
            self.engine.udp_handler(ts, number, pdu.src, pdu.src_port, pdu.dst, pdu.dst_port, pdu.payload)
        elif pdu.port_type in (PORT_TCP, None):
            transport = "tls" if pdu.over_tls else "tcp"
            self.streams.tcp(number, ts, pdu.src, pdu.src_port, pdu.dst, pdu.dst_port, pdu.payload, transport=transport)
        else:
            self.skipped[f"exported PDU of port type {pdu.port_type}"] += 1

    def warnings(self) -> list[str]:
        out = [f"{n} exported PDU frame(s) skipped: {why}" for why, n in sorted(self.skipped.items())]
        if self.streams.redelivered_bytes:
            out.append(
                f"{self.streams.redelivered_bytes} bytes of exported PDUs were repeats of earlier PDUs "
                "(exported with TLS desegmentation on) and were read once"
            )
        return out


def explain_without_data(connections: Sequence[TlsConnection]) -> None:
    """The reason of TLS connections that carried no application data."""
    for t in connections:
        if not t.application_data:
            t.reason = "no application data followed the handshake" + (
                f" (alert {', '.join(tls.ALERT_DESCRIPTIONS.get(a[2], str(a[2])) for a in t.alerts)})" if t.alerts else ""
            )


def explain_without_keys(connections: Sequence[TlsConnection]) -> None:
    """The reason of every TLS connection of a capture read without any key."""
    explain_without_data(connections)
    for t in connections:
        if t.application_data:
            t.reason = "no keys: pass --keylog (SSLKEYLOGFILE) or --rsa-key, or capture with embedded secrets"


class _TlsDecryption:
    """TLS decryption of one capture through tshark, beside lyncpcap's own read.

    tshark starts as soon as keys are known to exist: at once for --keylog/--rsa-key, after the
    first frame for Decryption Secrets Blocks in front of the packets, at the end for later ones.
    Its decrypted records go to the engine through `PduStreams` (transport "tls"), keyed to the
    TLS connections the plaintext read saw; those that stay undecrypted get a reason."""

    def __init__(self, path: Path, keylog: Path | None, rsa_keys: Sequence[RsaKey]) -> None:
        self.path = path
        self.keylog = keylog
        self.rsa_keys = tuple(rsa_keys)
        self.embedded = False
        self.run: ExportRun | None = None
        self.tshark: Tshark | None = None
        self.unavailable: str | None = None
        self._check: TsharkCheck | None = None
        self.streams = 0  # connections (or tunnels) whose plaintext tshark gave
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if keylog is not None or self.rsa_keys:
            self._start()

    def __enter__(self) -> _TlsDecryption:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.run is not None:
            self.run.cancel()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _start(self) -> None:
        if self.run is not None or self.unavailable is not None:
            return
        try:
            check = TsharkCheck()
        except TsharkUnavailable as exc:
            self.unavailable = str(exc)  # an error only if some TLS turns out to need decrypting
            return
        self._tmp = tempfile.TemporaryDirectory(prefix="lyncpcap-tls-")
        # the export starts while `tshark -v` is still answering; its verdict is read in `apply`,
        # after lyncpcap's own read of the capture, so the check costs no waiting
        self.run = ExportRun(check, self.path, Path(self._tmp.name), self.keylog, self.rsa_keys)
        self._check = check

    def _settle(self) -> None:
        """The version check's verdict: a tshark too old (or broken) cancels the export."""
        check, self._check = self._check, None
        if check is None:
            return
        try:
            self.tshark = check.result()
        except TsharkUnavailable as exc:
            self.close()
            self.run = None
            self.unavailable = str(exc)

    @property
    def expected(self) -> bool:
        """Decryption will be attempted: keys were given, or the capture embeds them before its
        first packet (those after it are found only at the end of the read)."""
        return self.run is not None or self.unavailable is not None

    def secrets_seen(self, secrets: Sequence[tuple[int, bytes]]) -> None:
        if not self.embedded and any(stype == TLS_KEY_LOG_SECRETS for stype, _ in secrets):
            self.embedded = True
            self._start()

    def apply(self, engine: Engine, secrets: Sequence[tuple[int, bytes]], next_index: int) -> list[str]:
        """Feed what tshark decrypted to `engine`, mark and explain the TLS connections; warnings."""
        self._settle()
        explain_without_data(engine.tls)
        carrying = [t for t in engine.tls if t.application_data]
        # TLS inside an HTTP proxy's CONNECT tunnel looks like HTTP to the plaintext read; tshark
        # follows the tunnel (its PDUs carry the tunnel's target port, not the proxy's)
        tunnels = self.run is not None and engine.tunnels
        if not carrying and not tunnels:
            return []
        if self.unavailable is not None:
            raise CaptureError(self.path, self.unavailable)
        if self.run is None:
            explain_without_keys(carrying)
            return []
        known = [
            KnownConnection(t.conn, t.client, t.client_port, t.server, t.server_port, t.first_frame, t.time)
            for t in engine.tls
        ]
        streams = PduStreams(engine.tcp_selector, known=known, next_index=next_index)
        damaged = 0
        exported = 0
        # tshark may still be writing: its records are decoded as they come
        for frame, ts, linktype, data in self.run.frames():
            if linktype != LINKTYPE_WIRESHARK_UPPER_PDU:
                continue
            exported += 1
            if not EARLIEST_TIME <= ts < LATEST_TIME:  # its frame was skipped by the plaintext read too
                damaged += 1
                continue
            try:
                pdu = parse_exported_pdu(data)
            except MalformedError:
                damaged += 1
                continue
            if (pdu.port_type not in (PORT_TCP, None) or pdu.src is None or pdu.dst is None
                    or pdu.src_port is None or pdu.dst_port is None):
                continue
            streams.tcp(pdu.orig_frame or frame, ts, pdu.src, pdu.src_port, pdu.dst, pdu.dst_port,
                        pdu.payload, transport="tls")
        problem = self.run.wait()
        warnings = [problem] if problem else []
        streams.finish()
        self.streams = len(streams.streams_seen)
        if damaged:
            warnings.append(f"{damaged} decrypted records from tshark could not be read")
        for t in engine.tls:
            if t.conn in streams.streams_seen:
                t.decrypted = True
        self._explain([t for t in carrying if not t.decrypted], secrets, problem if not exported else None)
        half = [t for t in carrying if t.decrypted and _tls13(t) and t.client_random]
        if half:
            keylog = KeyLog.load(self.keylog, secrets)
            for t in half:
                missing = keylog.missing(t.client_random or "", tls13=True)
                if len(missing) == 1:
                    side = "server's" if missing[0] == TLS13_SERVER else "client's"
                    warnings.append(
                        f"TLS connection {t.client}:{t.client_port} → {t.server}:{t.server_port} is decrypted in one "
                        f"direction only: the key log has no {missing[0]}, so the {side} messages stay unread"
                    )
        return warnings

    def _explain(self, undecrypted: list[TlsConnection], secrets: Sequence[tuple[int, bytes]], problem: str | None) -> None:
        if not undecrypted:
            return
        keylog = KeyLog.load(self.keylog, secrets)
        hellos: dict[tuple[str, int, str, int], list[ServerHello]] = {}
        needs_suite = any(
            t.client_random and (self.rsa_keys or not keylog.missing(t.client_random, _tls13(t))) for t in undecrypted
        )
        if needs_suite and self.tshark is not None and problem is None:
            hellos = server_hellos(self.tshark, self.path)
        for t in undecrypted:
            hello = None
            for h in hellos.get((t.client, t.client_port, t.server, t.server_port), []):
                if h.frame >= t.first_frame and (hello is None or h.frame < hello.frame):
                    hello = h
            if hello is not None:
                t.cipher = suite_text(hello)
            t.reason = undecrypted_reason(
                client_random=t.client_random,
                version=t.version,
                keylog=keylog,
                rsa_keys=self.rsa_keys,
                hello=hello,
                tshark_problem=problem,
            )


def _tls13(t: TlsConnection) -> bool:
    return bool(t.version and t.version.startswith("TLS 1.3"))


def analyse_file(
    path: str | Path,
    *,
    progress: Callable[[int], None] | None = None,
    full: bool = False,
    keylog: str | Path | None = None,
    rsa_keys: Sequence[RsaKey] = (),
    on_step: Callable[[Step], None] | None = None,
) -> CaptureResult:
    """Run one capture file (pcap or pcapng, gzip'd or not) through the pipeline.

    Plaintext is read here; TLS is decrypted by tshark (`read/tshark.py`) when a key log, RSA keys
    or embedded secrets are there, and its plaintext joins the same decoders and classifiers.
    Frames of link type 252 (Wireshark exported PDUs) are read as the PDUs they carry.

    `full=True` is the reference path: every TCP connection and UDP datagram is offered to the
    decoders, with no port pre-filter.  The default fast path must give identical results.
    """
    p = Path(path)
    engine = Engine(on_step)
    key_file = Path(keylog) if keylog is not None else None
    with open_capture(p) as cap, _TlsDecryption(p, key_file, rsa_keys) as decryption, ExitStack() as stack:
        dispatcher = engine.dispatcher(full=full)
        cap.read_head()  # pcapng: interface and secrets blocks in front of the first packet
        decryption.secrets_seen(cap.secrets)
        engine.encrypted_steps = not decryption.expected
        held = None
        if on_step is not None and decryption.expected:
            # the decrypted steps come after the read: the read's wait for them (heldsteps.py)
            held = stack.enter_context(HeldSteps(on_step))
            engine.on_step = held.hold
        exported: _ExportedFrames | None = None
        if LINKTYPE_WIRESHARK_UPPER_PDU in cap.linktypes:
            only_pdus = cap.linktypes == {LINKTYPE_WIRESHARK_UPPER_PDU}
            exported = _ExportedFrames(engine, 0 if only_pdus else _EXPORTED_INDEX_BASE)
            _run_mixed(dispatcher, exported, cap, progress)
            exported.streams.finish()
        else:
            dispatcher.run(cap, progress)  # the reader drops what the flows layer would ignore
        decryption.secrets_seen(cap.secrets)
        stats = dispatcher.stats
        if held is not None:
            engine.on_step = held.merge
        engine.expire_at = -math.inf  # the decrypted streams start the capture's clock again
        decryption_warnings = decryption.apply(engine, cap.secrets, stats.get("tcp.connections", 0))
        if held is not None:
            held.release()
            engine.on_step = held.on_step
        engine.finish()
        warnings = list(cap.warnings) + list(dispatcher.warnings) + engine.notes + decryption_warnings
        if exported is not None:
            warnings += exported.warnings()
            stats["exported_pdus"] = exported.frames
        warnings += undecrypted_warning(engine.tls) + unlisted_warning(engine.tls_unlisted)
        if engine.tls_unlisted:
            stats["tls.unlisted"] = sum(engine.tls_unlisted.values())
        return CaptureResult(
            path=str(path),
            format=cap.format,
            compressed=cap.compressed,
            packets=stats.get("packets", 0) + (exported.frames if exported is not None else 0),
            decrypted=bool(decryption.streams) or bool(exported and exported.streams.connections),
            warnings=warnings,
            stats=stats,
            steps=engine.steps,
            auth=engine.auth,
            tls=engine.tls,
            secrets_blocks=len(cap.secrets),
            tls_unlisted=engine.tls_unlisted,
        )


#: connection numbers of exported-PDU streams in a capture that also holds packets
_EXPORTED_INDEX_BASE = 1_000_000


def _describe(t: TlsConnection) -> str:
    sni = f" ({t.sni})" if t.sni else ""
    return f"{t.client}:{t.client_port} → {t.server}:{t.server_port}{sni}: {t.reason}"


def _run_mixed(
    dispatcher: Dispatcher, exported: _ExportedFrames, capture: Capture, progress: Callable[[int], None] | None
) -> None:
    """Like `Dispatcher.run`, with exported-PDU frames taken out for `exported`."""
    feed = dispatcher.feed
    pdu = exported.feed
    for n, (frame, ts, linktype, data, wirelen) in enumerate(capture, 1):
        if linktype == LINKTYPE_WIRESHARK_UPPER_PDU:
            pdu(frame, ts, data)
        else:
            feed(frame, ts, linktype, data, wirelen)
        if progress is not None and not n & 0xFFFF:
            progress(capture.position)
    dispatcher.finish()
    if progress is not None:
        progress(capture.position)


def analyse_archive(path: str | Path, archive: Archive) -> CaptureResult:
    """Run the exchanges of a SAZ or HAR archive through the same HTTP classifier as packets."""
    engine = Engine()
    engine.internal.what = ("archive entry", "archive entries")
    states: dict[str, ConnState] = {}
    counts: Counter[str] = Counter()
    for ax in sorted(archive.exchanges, key=lambda a: (a.exchange.request.first_ts, a.number)):
        state = states.get(ax.connection)
        if state is None:
            transport = "tls" if ax.scheme == "https" else "tcp"
            ep = Endpoints(ax.client, ax.client, ax.server, ax.client_port, ax.server_port, len(states), transport)
            state = states[ax.connection] = ConnState(endpoints=ep, scheme=ax.scheme)
        ax.exchange.index = counts[ax.connection]  # position on its connection, as on the wire
        counts[ax.connection] += 1
        try:
            engine.http.on_exchange(state, ax.exchange)
        except Exception as exc:  # a bug of ours: that entry is lost, the archive is not
            if not engine.contain(exc, ax.number):
                raise
    engine.finish()
    stats: Counter[str] = Counter(exchanges=len(archive.exchanges), entries=archive.entries)
    return CaptureResult(
        path=str(path),
        format=archive.format,
        compressed=False,
        packets=archive.entries,
        decrypted=any(ax.scheme == "https" for ax in archive.exchanges),
        warnings=list(archive.warnings) + engine.notes,
        stats=stats,
        steps=engine.steps,
        auth=engine.auth,
        tls=[],
    )
