"""What a capture that runs on long after a sign-in does that the short samples do not show.

A support engineer starts the capture, has the user sign in, and stops it when the ticket allows:
minutes or hours later.  A request that never got its answer (a DNS server that did not reply, a
KDC out of reach, a registrar that said nothing) must stay in the sign-in it belongs to however
long the capture runs on — not become a session of its own at the end of the capture — and the
requests waiting for answers must not pile up in memory.  Each capture is a lab capture (real DNS,
Kerberos and SIP bytes) analysed by one process and by two.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import lyncpcap
from lyncpcap import engine
from lyncpcap.lab import build, dnsmsg, krb5, lync, scenarios
from lyncpcap.lab.flows import SipLeg, _registered, sip_leg, sip_offer
from lyncpcap.lab.scenarios import DESKTOP_UA, sip, sip_kerberos
from lyncpcap.lab.world import REALM, Capture, Client, Contoso, nxdomain
from lyncpcap.model import Step
from lyncpcap.steps import dns as dns_steps

#: the capture runs on this long after the first sign-in (longer than a session's idle time)
LATER = 1200.0


def _unanswered_lookup(c: Client, name: str) -> None:
    c.qid = (c.qid + 1) & 0xFFFF or 1
    c.cap.net.udp(c.host, c.resolver, 53, dnsmsg.query(c.qid, name, "A"))
    c.truth.record("dns", "A", "timeout", name=name)
    c.cap.net.advance(2.0)  # the resolver's first tries go unanswered, the client moves on


def _desktop_inside(cap: Capture, first: str) -> tuple[Contoso, Client]:
    w = Contoso(cap)
    pc = cap.net.host("leo-pc", "10.0.10.50")
    cap.net.capture_host = pc
    t = cap.session(kind="Lync 2013 desktop", location="internal", address="10.0.10.50", user="leo@CONTOSO.COM",
                    auth_protocol="kerberos", outcome=first)  # fmt: skip
    return w, Client(cap, w, pc, t, ua=DESKTOP_UA, rtt=0.0006)


def _registers(c: Client, w: Contoso, *, close: bool = True) -> SipLeg:
    """The desktop finds its pool by SRV and registers with Kerberos."""
    c.dns("_sipinternaltls._tcp.contoso.com", "SRV")
    c.dns(w.fe)
    leg = sip_leg(c, sip_uri=sip("leo"))
    sip_offer(c, leg, ["NTLM", "Kerberos", "TLS-DSK"])
    sip_kerberos(c, leg, user="leo", sip_uri=sip("leo"))
    if close:
        leg.conn.close(by="client")
    return leg


def _later_phone(cap: Capture, w: Contoso) -> None:
    """Another device, LATER seconds on: the capture was still running."""
    cap.net.advance(LATER)
    phone = cap.net.host("mallory-phone", "10.0.20.60")
    t = cap.session(kind="unknown", location="unknown", address="10.0.20.60", user=None, auth_protocol="unknown",
                    outcome="failure", failure_step="dns")  # fmt: skip
    nxdomain(Client(cap, w, phone, t, ua=None), "lyncdiscoverinternal.contoso.com")


def _build(tmp_path: Path, scenario: object) -> Path:
    spec = next(s for s in scenarios.CATALOGUE if s.name == "09c-lyncdiscover-nxdomain")
    written = build.build_one(dataclasses.replace(spec, build=scenario), tmp_path)  # type: ignore[arg-type]
    return next(p for p in written if p.suffix in (".pcap", ".pcapng"))


def _read(capture: Path) -> lyncpcap.Analysis:
    one = lyncpcap.analyze(capture, jobs=1)
    two = lyncpcap.analyze(capture, jobs=2)
    assert two.to_json() == one.to_json()
    assert not [w for w in one.captures[0].warnings if "out of time order" in w]
    return one


def test_a_lookup_without_answer_stays_in_its_sign_in(tmp_path: Path) -> None:
    """lyncdiscoverinternal times out, the desktop falls back to SRV and signs in; 20 minutes on,
    a phone looks the name up.  Two sessions: the desktop's with its timed-out lookup first."""

    def scenario(cap: Capture) -> None:
        w, c = _desktop_inside(cap, "success")
        _unanswered_lookup(c, "lyncdiscoverinternal.contoso.com")
        nxdomain(c, "lyncdiscover.contoso.com")
        _registers(c, w)
        _later_phone(cap, w)

    a = _read(_build(tmp_path, scenario))
    desktop, phone = a.session_list
    assert (desktop.client_address, desktop.outcome, phone.client_address) == ("10.0.10.50", "success", "10.0.20.60")
    first = desktop.steps[0]
    assert (first.step, first.url, first.status, first.result) == ("dns", "lyncdiscoverinternal.contoso.com", "timeout", "failure")
    assert first.failure_reason == "DNS: no answer for lyncdiscoverinternal.contoso.com"
    assert [s.step for s in phone.steps] == ["dns"]


def test_a_kerberos_request_without_answer_stays_in_its_sign_in(tmp_path: Path) -> None:
    """The KDC does not answer the service-ticket request for the registrar; the desktop goes on.
    The unanswered request is in the desktop's session, not one of its own."""

    def scenario(cap: Capture) -> None:
        w, c = _desktop_inside(cap, "success")
        request = krb5.tgs_req("leo", REALM, f"sip/{w.fe}", nonce=cap.rng.getrandbits(31), rng=cap.rng)
        cap.net.udp(c.host, w.dc, 88, request)
        c.truth.record("kerberos", "TGS-REQ", None)
        cap.net.advance(3.0)
        _registers(c, w)
        _later_phone(cap, w)

    a = _read(_build(tmp_path, scenario))
    desktop, phone = a.session_list
    assert len(a.session_list) == 2 and phone.client_address == "10.0.20.60"
    unanswered = [s for s in desktop.steps if s.detail == "no answer from the KDC"]
    assert [(s.step, s.method, s.url) for s in unanswered] == [("kerberos", "TGS-REQ", "sip/fe01.contoso.com")]


def test_a_register_without_answer_stays_in_its_sign_in_and_best_effort_notifies_are_no_steps(tmp_path: Path) -> None:
    """The registrar sends BENOTIFYs (no response is ever sent to them), then says nothing to a
    REGISTER; 20 minutes on, another device.  The silent REGISTER stays the desktop's last step."""

    def scenario(cap: Capture) -> None:
        w, c = _desktop_inside(cap, "incomplete")
        c.dns("_sipinternaltls._tcp.contoso.com", "SRV")
        c.dns(w.fe)
        leg = sip_leg(c, sip_uri=sip("leo"))
        sip_offer(c, leg, ["NTLM", "Kerberos", "TLS-DSK"])
        for n in range(3):
            leg.conn.reply(_benotify(n), think=0.2)
        leg.conn.send(leg.dialog.register(None, edge_via=None, received=None))
        c.truth.record("sip-register", "REGISTER", None)
        cap.net.advance(90.0)
        leg.conn.close(by="client")
        _later_phone(cap, w)

    a = _read(_build(tmp_path, scenario))
    desktop, _phone = a.session_list
    assert len(a.session_list) == 2
    last = desktop.steps[-1]
    assert (last.step, last.status, last.result) == ("sip-register", None, "none")
    assert "no final response seen" in last.detail
    assert not [s for s in a.step_list if s.method == "BENOTIFY"]


def _benotify(n: int) -> bytes:
    body = b'<categories xmlns="http://schemas.microsoft.com/2006/09/sip/categories"/>'
    return (
        f"BENOTIFY sip:10.0.10.50:50123;transport=tcp SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 10.0.0.21:5061;branch=z9hG4bKbn{n}\r\n"
        f"From: <sip:leo@contoso.com>;tag=bn{n}\r\nTo: <sip:leo@contoso.com>;tag=leo\r\n"
        f"Call-ID: benotify-{n}\r\nCSeq: {n + 1} BENOTIFY\r\nEvent: vnd-microsoft-roaming-self\r\n"
        f"Content-Type: application/vnd-microsoft-roaming-self+xml\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def test_requests_waiting_for_answers_do_not_pile_up() -> None:
    """Three hours of DNS queries that get no answer (a capture of one direction only): the
    engine holds only the last TIMEOUT seconds of them, and hands each on as it times out."""
    steps: list[Step] = []
    eng = engine.Engine(steps.append)
    waiting = []
    for i in range(10_800):  # one a second
        query = dnsmsg.query(i & 0xFFFF or 1, f"host{i}.contoso.com", "A")
        eng.udp_handler(1_400_000_000.0 + i, i + 1, "10.0.10.50", 50000 + (i % 10000), "10.0.0.10", 53, query)
        waiting.append(len(eng.dns.pending))
    assert max(waiting) <= dns_steps.TIMEOUT + engine.EXPIRY_EVERY + 1
    assert len(steps) >= 10_800 - max(waiting)
    assert [s.time for s in steps] == sorted(s.time for s in steps)
    assert all(s.status == "timeout" and s.result == "failure" for s in steps)
    eng.finish()
    assert len(steps) == 10_800 and not eng.dns.pending


@pytest.mark.parametrize("method", ["REGISTER", "SUBSCRIBE"])
def test_sip_transactions_are_forgotten_once_answered(method: str) -> None:
    """A pool's SIP over hours: every transaction answered leaves nothing behind."""
    from lyncpcap.protocols.sip import parse_datagram

    eng = engine.Engine(lambda step: None)
    for i in range(2_000):
        ts = 1_400_000_000.0 + 3 * i
        head = (f"Via: SIP/2.0/UDP 10.0.10.50:5060;branch=z9hG4bK{i}\r\nFrom: <sip:leo@contoso.com>;tag=a{i}\r\n"
                f"To: <sip:leo@contoso.com>\r\nCall-ID: call-{i}\r\nCSeq: 1 {method}\r\n")  # fmt: skip
        request = f"{method} sip:contoso.com SIP/2.0\r\n{head}Content-Length: 0\r\n\r\n".encode()
        answer = f"SIP/2.0 200 OK\r\n{head}Content-Length: 0\r\n\r\n".encode()
        eng.udp_handler(ts, 2 * i + 1, "10.0.10.50", 5060, "10.0.0.21", 5060, request)
        eng.udp_handler(ts + 0.01, 2 * i + 2, "10.0.0.21", 5060, "10.0.10.50", 5060, answer)
        assert parse_datagram(answer, 0, 0.0).status == 200
    assert not eng.sip.pending and not eng.sip.attempts


def test_a_signed_in_clients_refreshes_and_web_use_start_no_sessions(tmp_path: Path) -> None:
    """After its sign-in, the desktop refreshes its registration (REGISTERs signed with the security
    association) and fetches the address book with its web ticket every ten minutes, and a phone
    signed in before the capture began polls UCWA with its OAuth token: one sign-in session, the
    rest steps of signed-in clients outside any sign-in."""

    def scenario(cap: Capture) -> None:
        w, c = _desktop_inside(cap, "success")
        leg = _registers(c, w, close=False)
        phone_host = cap.net.host("leo-phone", "10.0.20.61")
        t = cap.session(kind="Lync 2013 iOS", location="internal", address="10.0.20.61", user=None, auth_protocol="unknown",
                        outcome="success")  # fmt: skip
        phone = Client(cap, w, phone_host, t, ua="Lync 2013 for iOS/5.4.1 (iPhone; iOS 9.3.5)")
        ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        for _ in range(6):
            cap.net.advance(600.0)
            _registered(c, leg, "Kerberos", "ABCD1234", sip("leo"))
            c.http(w.fe_host, w.pool, "GET", "/abs/handler/D-0ee5-0ee6.lsabs", step="other",
                   headers=[("X-MS-WebTicket", "opaque=2000000000000000000000000000000000000000")],
                   response=lambda _t: b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")  # fmt: skip
            phone.http(w.fe_host, w.pool, "GET", "/ucwa/oauth/v1/applications/1234/events?ack=7", step="ucwa",
                       headers=[("Authorization", "Bearer cwt=AAEBHAEFAAAAAAAFFQAAAE")], response=lambda _t: ok)  # fmt: skip
        # the event channel's long poll the capture ends in the middle of: no answer yet
        cap.net.advance(600.0)
        poll = lync.request("GET", "/ucwa/oauth/v1/applications/1234/events?ack=8", w.pool,
                            [("Authorization", "Bearer cwt=AAEBHAEFAAAAAAAFFQAAAE")], b"", user_agent=phone.ua)  # fmt: skip
        phone.conn(w.fe_host, sni=w.pool).send(poll)
        cap.net.advance(30.0)
        leg.conn.close(by="client")

    a = _read(_build(tmp_path, scenario))
    (session,) = a.session_list
    assert (session.client_address, session.outcome, session.auth_protocol) == ("10.0.10.50", "success", "kerberos")
    assert session.steps[-1].step == "sip-register" and session.steps[-1].facts.get("goal")
    later = [s for s in a.step_list if s.session is None]
    assert sorted({(s.step, s.client) for s in later}) == [
        ("other", "10.0.10.50"), ("sip-register", "10.0.10.50"), ("ucwa", "10.0.20.61")
    ]
    assert len(later) == 19 and [s.result for s in later].count("success") == 18
    (waiting,) = [s for s in later if s.result == "none"]
    assert (waiting.step, waiting.client, waiting.url.split("?")[0]) == (
        "ucwa", "10.0.20.61", "http://lyncpool.contoso.com/ucwa/oauth/v1/applications/1234/events")


def test_tls_connections_past_the_listed_ones_are_counted_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """A day at a reverse proxy holds hundreds of thousands of TLS connections no key opens: the
    first TLS_LISTED are listed one by one, the rest counted by server — by one process and by two."""
    capture = Path(__file__).resolve().parents[1] / "sample_captures" / "11-background-noise.pcapng"
    everything = lyncpcap.analyze(capture, jobs=1)
    assert len(everything.tls_list) == 6 and "tls.unlisted" not in everything.captures[0].stats
    monkeypatch.setattr(engine, "TLS_LISTED", 4)
    for jobs in (1, 2):
        a = lyncpcap.analyze(capture, jobs=jobs)
        assert [t.conn for t in a.tls_list] == [t.conn for t in everything.tls_list][:4]
        assert a.captures[0].stats["tls.unlisted"] == 2
        (note,) = [w for w in a.captures[0].warnings if "counted but not listed" in w]
        servers = {engine.tls_server(t) for t in everything.tls_list[4:]}
        assert note.startswith("2 more TLS connection(s), past the first 4,") and all(s in note for s in servers)
        assert [s.id for s in a.session_list] == [s.id for s in everything.session_list]


def _step(name: str, client: str, start: float, end: float, **facts: object) -> Step:
    s = Step(step=name, time=start, end=end, frame=int(start * 10), src=client, dst="203.0.113.10", method="GET",
             url="https://lyncweb.contoso.com/x", status=200, auth=None, detail="", result="success", client=client)  # fmt: skip
    s.facts.update(facts, lync=True)
    return s


def test_a_ucwa_long_poll_answered_minutes_later_is_not_grouped_out_of_time_order() -> None:
    """UCWA's event channel is a long poll the server answers up to minutes later: its step comes
    after later ones have been grouped, which for an activity step changes nothing, so no warning;
    a sign-in step that late still counts."""
    from lyncpcap.sessions import SessionBuilder

    sessions: list[object] = []
    builder = SessionBuilder(sessions.append)
    builder.add(_step("autodiscover", "10.0.0.1", 0.0, 0.1))
    for t in range(10, 160, 10):
        builder.add(_step("autodiscover", f"10.0.1.{t}", float(t), t + 0.1))
    builder.add(_step("ucwa", "10.0.0.1", 1.0, 181.0, ticket="bearer", kind="resource"))  # the long poll
    assert builder.late == 0
    builder.add(_step("webticket", "10.0.0.2", 2.0, 182.0))  # a sign-in step that took three minutes
    builder.finish()
    assert builder.late == 1
