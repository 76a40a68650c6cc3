"""Sign-ins that stop where the pool asks for what the client cannot give (PROTOCOL.md §9.5,
"legacy client on a 2FA pool"), and location from the SIP SRV names when Autodiscover is not
used.  Each case is a small lab capture: real DNS, SIP and HTTP bytes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import lyncpcap
from lyncpcap.lab import build, lync, scenarios
from lyncpcap.lab.flows import certprov, discover_json, mex, sip_leg, sip_offer
from lyncpcap.lab.world import Capture, Client, Contoso, nxdomain
from lyncpcap.model import Session

START = datetime(2024, 3, 21, 12, 0, tzinfo=UTC)


def _session(tmp_path: Path, scenario: object) -> Session:
    spec = scenarios.Spec("dead-end", scenario, "test", 7, START)  # type: ignore[arg-type]
    written = build.build_one(spec, tmp_path)
    (session,) = lyncpcap.analyze(next(p for p in written if p.suffix == ".pcapng")).session_list
    return session


def _desktop(cap: Capture, *, inside: bool) -> tuple[Contoso, Client]:
    w = Contoso(cap)
    pc = cap.net.host("pc", "10.0.10.90" if inside else "192.168.5.20")
    cap.net.capture_host = pc
    t = cap.session(kind="Lync 2010 desktop", location="internal" if inside else "external",
                    address=pc.ipv4 or "", user=None, auth_protocol="unknown", outcome="failure")
    return w, Client(cap, w, pc, t, ua=scenarios.LYNC2010_UA, rtt=0.001)


def _phone(cap: Capture) -> tuple[Contoso, Client]:
    w = Contoso(cap)
    phone = cap.net.host("phone", "192.168.9.30")
    cap.net.capture_host = phone
    t = cap.session(kind="Lync 2013 Android", location="external", address="192.168.9.30", user=None,
                    auth_protocol="unknown", outcome="failure")
    return w, Client(cap, w, phone, t, ua=scenarios.ANDROID_UA, rtt=0.04)


def test_sip_offering_only_tls_dsk_to_a_client_without_a_certificate_is_a_dead_end(tmp_path: Path) -> None:
    def scenario(cap: Capture) -> None:
        _w, c = _desktop(cap, inside=True)
        c.dns("_sipinternaltls._tcp.contoso.com", "SRV")
        leg = sip_leg(c, sip_uri=scenarios.sip("wendy"), ua=scenarios.LYNC2010_UA)
        sip_offer(c, leg, ["TLS-DSK"])
        leg.conn.close(by="client")

    s = _session(tmp_path, scenario)
    assert (s.outcome, s.location) == ("failure", "internal")
    assert s.failure is not None and s.failure["step"] == "sip-register"
    assert "accepts only TLS-DSK" in s.failure["reason"]
    assert "SIP 401 offers only TLS-DSK" in s.failure["evidence"]


def test_a_client_still_offered_ntlm_is_not_at_a_dead_end(tmp_path: Path) -> None:
    def scenario(cap: Capture) -> None:
        _w, c = _desktop(cap, inside=True)
        c.dns("_sipinternaltls._tcp.contoso.com", "SRV")
        leg = sip_leg(c, sip_uri=scenarios.sip("wendy"), ua=scenarios.LYNC2010_UA)
        sip_offer(c, leg, ["NTLM", "TLS-DSK"])
        leg.conn.close(by="client")

    assert _session(tmp_path, scenario).outcome == "incomplete"


def test_mex_offering_windows_authentication_is_not_a_dead_end(tmp_path: Path) -> None:
    def scenario(cap: Capture) -> None:
        w, c = _desktop(cap, inside=True)
        c.dns("_sipinternaltls._tcp.contoso.com", "SRV")
        certprov(c, w.fe_host, w.pool, sip_uri=scenarios.sip("wendy"), ticket="")
        mex(c, w.fe_host, w.pool, scenarios.MISCONFIGURED_PASSIVE_PORTS)
        c.close_all()

    assert _session(tmp_path, scenario).outcome != "failure"


def test_only_the_public_sip_srv_name_resolving_means_outside(tmp_path: Path) -> None:
    def scenario(cap: Capture) -> None:
        w, c = _desktop(cap, inside=False)
        nxdomain(c, "_sipinternaltls._tcp.contoso.com", "SRV")
        c.dns("_sip._tls.contoso.com", "SRV")
        certprov(c, w.fe_host, w.pool, sip_uri=scenarios.sip("wendy"), ticket="")
        mex(c, w.fe_host, w.pool, scenarios.PASSIVE_PORTS)
        c.close_all()

    s = _session(tmp_path, scenario)
    assert s.location == "external"
    assert s.failure is not None and s.failure["step"] == "mex"
    assert "MEX offers passive, certificate" in s.failure["evidence"]


def test_a_401_without_lyncs_headers_is_a_reverse_proxy_pre_authenticating(tmp_path: Path) -> None:
    def scenario(cap: Capture) -> None:
        w, c = _phone(cap)
        nxdomain(c, "lyncdiscoverinternal.contoso.com")
        c.dns("lyncdiscover.contoso.com")
        discover_json(c, w.rp_ext, "lyncdiscover.contoso.com", web=w.ext_web)
        c.http(w.rp_ext, w.ext_web, "GET", "/Autodiscover/AutodiscoverService.svc/root/oauth/user", step="autodiscover",
               headers=[("Accept", "application/json")],
               response=lambda ts: lync.response(401, [("WWW-Authenticate", 'Basic realm="lyncweb.contoso.com"')],
                                                 body=b"<html><body>Web Application Proxy: sign in</body></html>",
                                                 content_type="text/html", ts=ts, server=None))
        c.close_all()

    s = _session(tmp_path, scenario)
    assert (s.outcome, s.location) == ("failure", "external")
    assert s.failure is not None and s.failure["step"] == "autodiscover"
    assert "pre-authenticates" in s.failure["reason"]
    assert "WWW-Authenticate: Basic" in s.failure["evidence"]


def test_autodiscover_redirects_bouncing_between_pools_are_a_homing_problem(tmp_path: Path) -> None:
    def scenario(cap: Capture) -> None:
        w, c = _phone(cap)
        c.dns("lyncdiscover.contoso.com")
        pools = ["lyncweb2.contoso.com", "lyncweb.contoso.com"] * 2
        for i, target in enumerate(pools):
            host = "lyncdiscover.contoso.com" if i == 0 else pools[i - 1]
            body = lync.autodiscover_redirect_json(target, "contoso.com")
            c.http(w.rp_ext, host, "GET", "/Autodiscover/AutodiscoverService.svc/root", step="autodiscover",
                   headers=[("Accept", "application/json")],
                   response=lambda ts, body=body: lync.response(200, body=body, content_type="application/json", ts=ts))
        c.close_all()

    s = _session(tmp_path, scenario)
    assert s.outcome == "failure"
    assert s.failure is not None and s.failure["step"] == "autodiscover"
    assert "redirects go round between pools (4 redirects)" in s.failure["reason"]
    assert "lyncweb2.contoso.com → lyncweb.contoso.com → lyncweb2.contoso.com" in s.failure["evidence"]
