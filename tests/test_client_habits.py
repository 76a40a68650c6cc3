"""What real clients and servers do that the bundled samples do not show, each on a lab capture
(real DNS, HTTP, NTLM, Kerberos and SIP bytes): the samples' scenarios with one habit changed,
which must change nothing a user reads — or exactly what PROTOCOL.md says it changes."""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import lyncpcap
from lyncpcap.lab import build, krb5, lync, scenarios, tlssim, world
from lyncpcap.lab.flows import (
    _register,
    certprov,
    certprov_publish,
    discover_json,
    discover_xml,
    mex,
    oauth_token,
    oauth_user_401,
    sip_leg,
    sip_offer,
    sip_tls_dsk,
    user_200,
    user_401,
    webticket_kerberos,
    webticket_ntlm,
)
from lyncpcap.lab.pcapwriter import write_pcap
from lyncpcap.lab.world import REALM, Capture, Client, Contoso, nxdomain
from lyncpcap.read import open_capture
from lyncpcap.steps.tables import client_of

IE_CONTROL = "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.2; WOW64; Trident/7.0; .NET4.0C; .NET4.0E)"


def _capture(tmp_path: Path, scenario: str, **changes: Any) -> lyncpcap.Analysis:
    """The catalogue scenario `scenario` (with Spec fields replaced), built and analysed."""
    spec = next(s for s in scenarios.CATALOGUE if s.name == scenario)
    written = build.build_one(dataclasses.replace(spec, **changes), tmp_path)
    return lyncpcap.analyze(next(p for p in written if p.suffix in (".pcap", ".pcapng")))


def _sessions(a: lyncpcap.Analysis) -> list[tuple[object, ...]]:
    """What a user reads of each session (frame numbers aside: the habit adds packets)."""
    return [(s.client_address, s.user, s.client_kind, s.location, s.auth_protocol, s.outcome,
             tuple(re.sub(r" \(frame \d+", " (frame", e) for e in s.location_evidence)) for s in a.session_list]


def _at_client(cap: Capture, name: str, address: str, *, ua: str, rtt: float, kind: str, location: str,
               user: str | None = None, auth_protocol: str = "unknown", outcome: str = "incomplete",
               **truth: Any) -> tuple[Contoso, Client]:
    """The lab's Contoso and one client on its own machine, where the capture is taken."""
    w = Contoso(cap)
    host = cap.net.host(name, address)
    cap.net.capture_host = host
    t = cap.session(kind=kind, location=location, address=address, user=user, auth_protocol=auth_protocol, outcome=outcome,
                    **truth)
    return w, Client(cap, w, host, t, ua=ua, rtt=rtt)


@pytest.mark.parametrize("name", ["01-desktop-internal-kerberos", "03-windows-phone-ntlm", "08-ucwa-mobile-oauth"])
def test_aaaa_lookups_beside_the_a_lookups_change_nothing(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows asks for A and AAAA; an IPv4-only deployment answers AAAA with an empty NOERROR.
    That is no failed step, and it does not hide the A answer that tells inside from outside
    (PROTOCOL.md §1.5)."""
    reference = _sessions(_capture(tmp_path / "as-built", name))
    a_lookup = world.Client.dns

    def a_and_aaaa(self: Client, name: str, qtype: str = "A", **kw: Any) -> None:
        a_lookup(self, name, qtype, **kw)
        if qtype == "A":
            missing = kw.get("rcode", "NOERROR") != "NOERROR"
            a_lookup(self, name, "AAAA", rcode=kw.get("rcode", "NOERROR"), answers=None if missing else [])

    monkeypatch.setattr(world.Client, "dns", a_and_aaaa)
    a = _capture(tmp_path / "with-aaaa", name)
    assert _sessions(a) == reference
    aaaa = [s for s in a.step_list if s.step == "dns" and s.method == "AAAA"]
    assert aaaa and all(s.result != "failure" or s.status == "NXDOMAIN" for s in aaaa)
    assert any(s.detail.endswith("no IPv6 address (AAAA)") for s in aaaa)


def test_passive_authentication_in_the_desktops_embedded_browser_is_one_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Lync 2013 desktop runs AD FS in an Internet Explorer control whose User-Agent is a
    browser's (PROTOCOL.md §10.7 step 3): its requests stay in the desktop's session."""
    reference = _capture(tmp_path / "as-built", "07-passive-adfs-2fa")
    request = world.Client.http

    def embedded(self: Client, server: Any, host_header: str, method: str, target: str, *, step: str, **kw: Any) -> Any:
        if step != "adfs":
            return request(self, server, host_header, method, target, step=step, **kw)
        ua, self.ua = self.ua, IE_CONTROL
        try:
            return request(self, server, host_header, method, target, step=step, **kw)
        finally:
            self.ua = ua

    monkeypatch.setattr(world.Client, "http", embedded)
    a = _capture(tmp_path / "embedded", "07-passive-adfs-2fa")
    assert any(e.value == IE_CONTROL for s in a.step_list for e in s.evidence)
    (session,) = a.session_list
    assert (session.client_kind, session.auth_protocol, session.outcome) == ("Lync 2013 desktop", "passive", "success")
    assert [st.step for st in session.steps] == [st.step for st in reference.session_list[0].steps]
    assert [f.id for f in a.finding_list] == [f.id for f in reference.finding_list]


def _first_sign_ins_on_three_machines(cap: Capture) -> None:
    """PROTOCOL.md §10.1 steps 7-10: Kerberos REGISTER → 401 offering only TLS-DSK (sts-uri) →
    CertProv → TLS-DSK → 200, once on each of alice's three machines."""
    w = Contoso(cap)
    for i, name in enumerate(["alice-pc", "alice-laptop", "alice-vdi"]):
        address = f"10.0.10.{31 + i}"
        pc = cap.net.host(name, address)
        cap.net.capture_host = pc
        t = cap.session(kind="Lync 2013 desktop", location="internal", address=address, user="alice@CONTOSO.COM",
                        auth_protocol="kerberos", outcome="success")
        c = Client(cap, w, pc, t, ua=scenarios.DESKTOP_HTTP_UA, rtt=0.0006)
        c.dns("lyncdiscoverinternal.contoso.com")
        discover_xml(c, w.fe_host, "lyncdiscoverinternal.contoso.com", scenarios.sip("alice"), web=w.pool)
        applies = scenarios.desktop_web_ticket_path(c, w, w.fe_host, w.pool, "alice", location="Internal")
        c.tgs("alice", f"HTTP/{w.pool}")
        ticket = webticket_kerberos(c, w.fe_host, w.pool, user="alice", sip_uri=scenarios.sip("alice"), applies_to=applies)
        user_200(c, w.fe_host, w.pool, ticket, location="Internal")
        leg = sip_leg(c, sip_uri=scenarios.sip("alice"))
        sip_offer(c, leg, ["NTLM", "Kerberos", "TLS-DSK"])
        c.tgs("alice", f"sip/{w.fe}")
        ap = krb5.gss_krb5(krb5.ap_req(REALM, f"sip/{w.fe}", rng=c.rng, cname="alice"))
        _register(c, leg, lync.sip_auth("Kerberos", target=f"sip/{w.fe}", gssapi=ap), 401, "Unauthorized",
                  lync.sip_offer(["TLS-DSK"], fqdn=w.fe, pool=w.pool))
        certprov(c, w.fe_host, w.pool, sip_uri=scenarios.sip("alice"), ticket=ticket)
        endpoint = f"https://{w.pool}/CertProv/CertProvisioningService.svc"
        ticket2 = webticket_kerberos(c, w.fe_host, w.pool, user="alice", sip_uri=scenarios.sip("alice"), applies_to=endpoint,
                                     anonymous_first=False)
        certprov_publish(c, w.fe_host, w.pool, sip_uri=scenarios.sip("alice"), ticket=ticket2)
        sip_tls_dsk(c, leg, user_cn="alice", sip_uri=scenarios.sip("alice"))
        c.close_all()
        leg.conn.close(by="client")
        cap.net.advance(60.0)


def test_the_first_sign_in_detour_from_kerberos_to_a_certificate_is_no_refused_login(tmp_path: Path) -> None:
    a = _capture(tmp_path, "01-desktop-internal-kerberos", build=_first_sign_ins_on_three_machines, name="first-sign-ins")
    assert [s.outcome for s in a.session_list] == ["success"] * 3
    detours = [st for s in a.session_list for st in s.steps if st.step == "sip-register" and st.auth == "kerberos"]
    assert len(detours) == 3
    assert all(st.result == "challenge" and "asks for a certificate (TLS-DSK)" in st.detail for st in detours)
    assert "lockout-risk" not in [f.id for f in a.finding_list]


def test_a_401_with_diagnostic_28029_is_a_disabled_method_not_a_wrong_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`X-Ms-diagnostics: 28029` ("Authentication type not allowed", PROTOCOL.md §4.7, §9.3): the
    pool does not take NTLM at all, so three attempts are no lockout risk."""
    respond = lync.response

    def not_allowed(status: int, headers: list[tuple[str, str]] | None = None, *args: Any, **kw: Any) -> bytes:
        if status == 401:
            headers = [*(headers or []), ("X-Ms-diagnostics", '28029;source="fe01.contoso.com";reason="Authentication type not allowed."')]
        return respond(status, headers, *args, **kw)

    monkeypatch.setattr(lync, "response", not_allowed)
    a = _capture(tmp_path, "09a-wrong-password")
    assert len(a.session_list) == 3
    for s in a.session_list:
        assert s.outcome == "failure" and s.failure is not None
        assert s.failure["reason"] == "NTLM is not allowed on this pool", s.failure
        assert "28029" in s.failure["evidence"]
    ids = [f.id for f in a.finding_list]
    assert "lockout-risk" not in ids and "external-domain-credentials" in ids


@pytest.mark.parametrize(
    ("user_agent", "kind"),
    [
        ("Skype%20for%20Business/6.16.0.9 CFNetwork/808.2.16 Darwin/16.3.0", "Lync 2013 iOS"),
        ("Lync%202013/5.4.1 CFNetwork/711.1.16 Darwin/14.0.0", "Lync 2013 iOS"),
        ("OC/15.0.4569.1503 (skype for business)", "Skype for Business 2015 desktop"),
        ("OC/15.0.4569.1503 (Skype for Business)", "Skype for Business 2015 desktop"),
        ("Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.4266; Pro) (Skype for Business)",
         "Skype for Business desktop"),
        ("OC/15.0.4569.1503 (Microsoft Lync)", "Lync 2013 desktop"),
        (IE_CONTROL, "Web browser"),
    ],
)
def test_user_agents_named_in_protocol_md(user_agent: str, kind: str) -> None:
    """PROTOCOL.md §8.2: `Darwin` (CFNetwork) is iOS; `(skype for business)` in any case is the
    SfB desktop."""
    match = client_of(user_agent)
    assert match is not None and match.kind == kind


def test_a_chain_of_redirects_to_new_places_is_not_a_loop(tmp_path: Path) -> None:
    """HTTP to HTTPS, the Director to the home pool: four Autodiscover redirects, each to a place
    not seen before, are progress (PROTOCOL.md §2.1, §12.5: flag only repeats)."""

    def scenario(cap: Capture) -> None:
        w, c = _at_client(cap, "phone", "192.168.9.30", ua=scenarios.ANDROID_UA, rtt=0.04, kind="Lync 2013 Android",
                          location="external")
        c.dns("lyncdiscover.contoso.com")
        chain = ["lyncdiscover.contoso.com", "lyncdirector.contoso.com", "lyncweb2.contoso.com", "lyncweb.contoso.com",
                 "lyncpool.contoso.com"]
        for host, target in itertools.pairwise(chain):
            body = lync.autodiscover_redirect_json(target, "contoso.com")
            c.http(w.rp_ext, host, "GET", "/Autodiscover/AutodiscoverService.svc/root", step="autodiscover",
                   headers=[("Accept", "application/json")],
                   response=lambda ts, body=body: lync.response(200, body=body, content_type="application/json", ts=ts))
        c.close_all()

    a = _capture(tmp_path, "03-windows-phone-ntlm", build=scenario, name="redirect-chain")
    (session,) = a.session_list
    assert len([st for st in session.steps if st.facts.get("redirect")]) == 4
    assert session.failure is None or "go round" not in session.failure["reason"], session.failure


def test_the_meeting_simple_url_on_its_own_host_is_the_join_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`https://meet.<domain>/<user>/<ConfID>` (PROTOCOL.md §8.3), not `/meet/` under the web
    services' name: still the Lync Web App's join page."""
    request = world.Client.http

    def simple_url(self: Client, server: Any, host_header: str, method: str, target: str, **kw: Any) -> Any:
        if target.startswith("/meet/"):
            target = target[len("/meet") :]
        return request(self, server, host_header, method, target, **kw)

    monkeypatch.setattr(world.Client, "http", simple_url)
    a = _capture(tmp_path, "06-lwa-guests-anonymous")
    joins = [st for st in a.step_list if st.url and st.url.startswith("http://meet.contoso.com/")]
    assert joins and all(st.facts.get("kind") == "lwa-meet" and st.facts.get("lync") for st in joins)
    assert [s.client_kind for s in a.session_list] == ["Lync Web App", "Lync Web App"]


def _smart_card_from_outside(cap: Capture) -> None:
    """A desktop outside signs in to a 2FA pool; AD FS authenticates it by its smart card (a TLS
    client certificate, PROTOCOL.md §5.7, §10.7 step 3): no form, no one-time password."""
    w, c = _at_client(cap, "ivy-laptop", "192.168.5.20", ua=scenarios.DESKTOP_HTTP_UA, rtt=0.03, kind="Lync 2013 desktop",
                      location="external", user="ivy@contoso.com", auth_protocol="passive", outcome="success")
    c.smart_card = "ivy"
    rng = cap.rng
    nxdomain(c, "lyncdiscoverinternal.contoso.com")
    c.dns("lyncdiscover.contoso.com")
    discover_xml(c, w.rp_ext, "lyncdiscover.contoso.com", scenarios.sip("ivy"), web=w.ext_web)
    user_401(c, w.rp_ext, w.ext_web)
    mex(c, w.rp_ext, w.ext_web, scenarios.PASSIVE_PORTS)
    realm = f"https://{w.ext_web}/passiveauth/"
    wctx = "rm=0&id=passive&ru=%2fPassiveAuth%2f5e1f"
    ls = f"/adfs/ls/?wa=wsignin1.0&wtrealm={quote(realm, safe='')}&wctx={quote(wctx, safe='')}"
    c.http(w.rp_ext, w.ext_web, "GET", "/PassiveAuth/PassiveAuth.aspx?ReturnUrl=%2fPassiveAuth%2f", step="adfs",
           response=lambda ts: lync.response(302, [("Location", f"https://{w.adfs}{ls}")], ts=ts, lync=w.fe, rng=rng))
    c.dns(w.adfs)
    wresult = cap.secret(lync.saml2_wresult(upn="ivy@contoso.com", realm=realm, issuer=f"http://{w.adfs}/adfs/services/trust",
                                            rng=rng, now=cap.when))
    c.http(w.adfs_host, w.adfs, "GET", ls, step="adfs",
           response=lambda ts: lync.response(200, body=lync.adfs_token_post(f"https://{w.ext_web}/PassiveAuth/", wresult, wctx),
                                             content_type="text/html; charset=utf-8", ts=ts))
    fedauth = cap.secret(lync.b64(rng.randbytes(96)))
    form = f"wa=wsignin1.0&wresult={quote(wresult, safe='')}&wctx={quote(wctx, safe='')}".encode()
    c.http(w.rp_ext, w.ext_web, "POST", "/PassiveAuth/", step="adfs", body=form, content_type="application/x-www-form-urlencoded",
           response=lambda ts: lync.response(302, [("Location", "/PassiveAuth/PassiveAuth.aspx"),
                                                  ("Set-Cookie", f"FedAuth={fedauth}; path=/; secure; HttpOnly")], ts=ts, lync=w.fe, rng=rng))
    body = lync.rst(applies_to=f"https://{w.ext_web}/Autodiscover/AutodiscoverService.svc/root/user", sip_uri=scenarios.sip("ivy"), rng=rng)
    rstr, ticket = lync.rstr_saml(sip_uri=scenarios.sip("ivy"), issuer=f"https://{w.ext_web}/WebTicket/WebTicketService.svc", rng=rng,
                                  now=cap.when)
    c.http(w.rp_ext, w.ext_web, "POST", "/WebTicket/WebTicketService.svc/WsFed", step="webticket", body=body,
           content_type="text/xml; charset=utf-8", headers=[("SOAPAction", f'"{lync.RST_ACTION}"'), ("Cookie", f"FedAuth={fedauth}")],
           response=lambda ts: lync.response(200, body=rstr, content_type="text/xml; charset=utf-8", ts=ts, lync=w.fe, rng=rng))
    cap.secret(ticket)
    user_200(c, w.rp_ext, w.ext_web, ticket, location="External")
    c.close_all()


def test_a_smart_card_at_ad_fs_is_the_second_factor(tmp_path: Path, tshark: str) -> None:
    """Decrypted, the AD FS connection shows the client's certificate: the sign-in from outside
    has its second factor, and no 'external-without-mfa' finding is raised."""
    spec = next(s for s in scenarios.CATALOGUE if s.name == "02-desktop-external-ntlm-tls")
    spec = dataclasses.replace(spec, build=_smart_card_from_outside, name="smart-card", twin_of=None, embed_keys=False)
    with tlssim.Pki() as pki:
        written = build.build_one(spec, tmp_path, pki=pki)
    capture = next(p for p in written if p.suffix in (".pcap", ".pcapng"))
    keylog = next(p for p in written if p.suffix == ".keylog")
    a = lyncpcap.analyze(capture, keylog=keylog)
    (session,) = a.session_list
    assert (session.location, session.auth_protocol, session.outcome) == ("external", "passive", "success")
    at_adfs = [st for st in session.steps if st.step == "adfs" and st.facts.get("client_certificate")]
    assert len(at_adfs) == 1 and at_adfs[0].url.startswith("https://adfs.contoso.com/adfs/ls/")
    assert "TLS client certificate (smart card)" in at_adfs[0].detail
    assert "external-without-mfa" not in [f.id for f in a.finding_list]
    assert not [st for st in session.steps if st.step != "adfs" and st.facts.get("client_certificate")]


def test_an_srv_record_pointing_outside_the_sip_domain_is_named(tmp_path: Path) -> None:
    """PROTOCOL.md §1.1: the `_sipinternaltls` target must be in the SIP domain, or the client
    does not trust it; the lookup says so, and a configuration finding names the record."""

    def scenario(cap: Capture) -> None:
        _w, c = _at_client(cap, "pc", "10.0.10.90", ua=scenarios.LYNC2010_UA, rtt=0.001, kind="Lync 2010 desktop",
                           location="internal")
        c.dns("_sipinternaltls._tcp.contoso.com", "SRV", answers=[("_sipinternaltls._tcp.contoso.com", "SRV", "0 0 5061 pool01.corp.fabrikam.net")])
        c.dns("_sip._tls.contoso.com", "SRV", answers=[("_sip._tls.contoso.com", "SRV", "0 0 443 sip.contoso.com")])
        leg = sip_leg(c, sip_uri=scenarios.sip("wendy"), ua=scenarios.LYNC2010_UA)
        sip_offer(c, leg, ["NTLM", "Kerberos", "TLS-DSK"])
        leg.conn.close(by="client")

    a = _capture(tmp_path, "01-desktop-internal-kerberos", build=scenario, name="srv-outside")
    internal, public = (s for s in a.step_list if s.step == "dns")
    assert internal.facts["srv_foreign_targets"] == ["pool01.corp.fabrikam.net"]
    assert "pool01.corp.fabrikam.net is outside contoso.com: the client does not trust it" in internal.detail
    assert "srv_foreign_targets" not in public.facts
    (finding,) = [f for f in a.finding_list if f.id == "srv-target-outside-sip-domain"]
    assert "_sipinternaltls._tcp.contoso.com → pool01.corp.fabrikam.net (not in contoso.com)" in finding.detail


def test_requests_on_the_front_ends_external_web_site_came_from_outside(tmp_path: Path) -> None:
    """Captured at the Front End behind a reverse proxy that adds no X-Forwarded-For (TMG): the
    external web site's port (4443, or 8080 in the clear) is what says the client is outside
    (PROTOCOL.md §0, §12 item 4)."""

    def scenario(cap: Capture) -> None:
        w = Contoso(cap)
        cap.net.capture_host = w.fe_host
        t = cap.session(kind="Lync 2013 Android", location="external", address=w.rp_int.ipv4 or "", user=None,
                        auth_protocol="unknown", outcome="incomplete")
        c = Client(cap, w, w.rp_int, t, ua=scenarios.ANDROID_UA, rtt=0.0009, via_rp=w.rp_int)
        discover_json(c, w.rp_ext, "lyncdiscover.contoso.com", web=w.ext_web)
        oauth_user_401(c, w.rp_ext, w.ext_web)
        c.close_all()

    a = _capture(tmp_path, "09b-locked-account", build=scenario, name="behind-tmg")
    (session,) = a.session_list
    assert not any(e.value.startswith("X-Forwarded") for st in session.steps for e in st.evidence)
    assert session.location == "external"
    assert any("the Front End's external web site" in e for e in session.location_evidence), session.location_evidence


_RST2_FAULT = (
    '<?xml version="1.0" encoding="utf-8" ?><S:Envelope xmlns:S="http://www.w3.org/2003/05/soap-envelope" '
    'xmlns:wst="http://schemas.xmlsoap.org/ws/2005/02/trust" xmlns:psf="http://schemas.microsoft.com/Passport/SoapServices/SOAPFault">'
    "<S:Body><S:Fault><S:Code><S:Value>S:Sender</S:Value><S:Subcode><S:Value>wst:FailedAuthentication</S:Value></S:Subcode>"
    '</S:Code><S:Reason><S:Text xml:lang="en-US">Authentication Failure</S:Text></S:Reason><S:Detail><psf:error>'
    "<psf:value>0x80048821</psf:value><psf:internalerror><psf:code>0x80041012</psf:code><psf:text>{text}</psf:text>"
    "</psf:internalerror></psf:error></S:Detail></S:Fault></S:Body></S:Envelope>"
)


def test_office_365_sts_answers_to_a_spraying_tool(tmp_path: Path) -> None:
    """A tool tries one password for six accounts at Office 365's RST2.srf (PROTOCOL.md §5.8):
    five are refused ('Error validating credentials', 'The user account does not exist'); for the
    sixth the password was right and Office 365 asks for multi-factor: that one is no failure."""
    answers = {
        "amy": "AADSTS50126: Error validating credentials due to invalid username or password.",
        "ben": "AADSTS50126: Error validating credentials due to invalid username or password.",
        "cat": "AADSTS50076: Due to a configuration change made by your administrator, you must use multi-factor authentication.",
        "dan": "AADSTS50034: The user account does not exist in the contoso.com directory.",
        "eve": "AADSTS50126: Error validating credentials due to invalid username or password.",
        "fay": "AADSTS50126: Error validating credentials due to invalid username or password.",
    }

    def scenario(cap: Capture) -> None:
        w = Contoso(cap)
        attacker = cap.net.host("vps", "198.51.100.99")
        sts = cap.net.host("msol", "40.126.9.10")
        cap.net.capture_host = attacker
        for user, text in answers.items():
            t = cap.session(kind="Script (Python)", location="external", address="198.51.100.99", user=f"{user}@contoso.com",
                            auth_protocol="soap", outcome="failure")
            c = Client(cap, w, attacker, t, ua="python-requests/2.31.0", rtt=0.02)
            body = lync.rst(applies_to="online.lync.com", sip_uri=None, rng=c.rng, username=f"{user}@contoso.com",
                            password="Winter2024!", now=cap.when)
            fault = _RST2_FAULT.format(text=text).encode()
            c.http(sts, "login.microsoftonline.com", "POST", "/RST2.srf", step="webticket", body=body,
                   content_type="application/soap+xml; charset=utf-8",
                   response=lambda ts, fault=fault: lync.response(500, body=fault, content_type="application/soap+xml; charset=utf-8",
                                                                   ts=ts, server=None))
            c.close_all()
            cap.net.advance(20.0)

    a = _capture(tmp_path, "10-password-spray", build=scenario, name="o365-spray")
    steps = {st.evidence_of("account")[0]: st for st in a.step_list}
    assert set(steps) == {f"{u}@contoso.com" for u in answers}
    assert all(st.step == "webticket" and st.auth == "soap" and st.credential for st in steps.values())
    assert steps["amy@contoso.com"].failure_reason == "Office 365 refused the credentials: wrong user name or password"
    assert steps["dan@contoso.com"].failure_reason == "Office 365 does not know this account (unknown user)"
    mfa = steps["cat@contoso.com"]
    assert mfa.failure_reason.startswith("Office 365 requires multi-factor authentication") and mfa.facts["password_accepted"]
    (spray,) = [f for f in a.finding_list if f.id == "password-spray"]
    assert "cat@contoso.com" not in " ".join(spray.evidence) and "amy@contoso.com" in " ".join(spray.evidence)
    assert spray.detail.endswith("The password of 1 account(s) was right (the server asked only for the second factor): cat@contoso.com.")


def test_a_forward_proxy_on_8080_inside_is_not_the_front_ends_external_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An internal desktop whose web requests go to a corporate proxy on port 8080 (absolute-form
    targets, `GET http://host/path`): the port says nothing about where the client is."""
    build_request = lync.request

    def absolute_form(method: str, target: str, host: str, *args: Any, **kw: Any) -> bytes:
        return build_request(method, f"http://{host}{target}", host, *args, **kw)

    def scenario(cap: Capture) -> None:
        w, c = _at_client(cap, "judy-pc", "10.0.10.44", ua=scenarios.DESKTOP_HTTP_UA, rtt=0.001, kind="Lync 2013 desktop",
                          location="internal", user="CONTOSO\\judy", auth_protocol="ntlm", outcome="failure",
                          failure_step="webticket")
        proxy = cap.net.host("proxy", "10.0.99.1")
        c._server = lambda server: (c.host, proxy, 8080)  # type: ignore[method-assign]
        c.dns("lyncdiscoverinternal.contoso.com")
        discover_xml(c, w.fe_host, "lyncdiscoverinternal.contoso.com", scenarios.sip("judy"), web=w.pool)
        applies = scenarios.desktop_web_ticket_path(c, w, w.fe_host, w.pool, "judy", location="Internal")
        webticket_ntlm(c, w.fe_host, w.pool, user="judy", password="Wrong1", workstation="JUDY-PC",
                       sip_uri=scenarios.sip("judy"), applies_to=applies, accept=False)
        c.close_all()

    monkeypatch.setattr(lync, "request", absolute_form)
    a = _capture(tmp_path, "09a-wrong-password", build=scenario, name="forward-proxy")
    (session,) = a.session_list
    assert all(st.server_port == 8080 and st.facts.get("via_forward_proxy") for st in session.steps if st.step != "dns")
    assert session.location == "internal", session.location_evidence
    assert "external-domain-credentials" not in [f.id for f in a.finding_list]


def test_encodings_real_servers_and_clients_write() -> None:
    """A SOAP fault in UTF-16 with its byte-order mark, an OAuth answer with a UTF-8 one, and a
    UsernameToken written in plain text whose length happens to suit base64."""
    import base64

    from lyncpcap.protocols import oauth, wstrust

    fault = lync.soap_fault(28020, "No valid security token.")
    assert b"<s:Fault>" in fault
    envelope = ('<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
                + fault.decode() + "</s:Body></s:Envelope>")
    parsed = wstrust.try_parse(envelope.encode("utf-16"))  # BOM, then UTF-16-LE
    assert isinstance(parsed, wstrust.SoapFault) and parsed.error_id == 28020
    answer = oauth.parse_response(b'\xef\xbb\xbf{"error":"invalid_grant"}')
    assert answer is not None and answer.error == "invalid_grant"
    assert wstrust._maybe_b64("bobsmith") == "bobsmith"
    assert wstrust._maybe_b64(base64.b64encode(b"CONTOSO\\alice").decode()) == "CONTOSO\\alice"
    assert wstrust._maybe_b64(base64.b64encode("Jürgen".encode("utf-16-le")).decode()) == "Jürgen"


class _AnswersOnTheHeaders:
    """A connection whose server answers 401 as soon as a request's headers are in, while the
    rest of its body is still on the wire (IIS does so; so does any server to `Expect:
    100-continue` when it will refuse)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.tcp = getattr(conn, "tcp", conn)
        self._rest = b""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def send(self, data: bytes, *, gap: float = 0.0) -> None:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep and len(body) > 1:
            self._rest = body[len(body) // 2 :]
            data = head + sep + body[: len(body) // 2]
        self._conn.send(data, gap=gap)

    def reply(self, data: bytes, *, think: float = 0.02) -> None:
        rest, self._rest = self._rest, b""
        if rest and data.split(b" ", 2)[1] == b"401":
            self._conn.reply(data, think=0.002)  # the answer first, then the end of the request
            self._conn.send(rest, gap=0.001)
            return
        if rest:
            self._conn.send(rest)
        self._conn.reply(data, think=think)


@pytest.mark.parametrize("name", ["02-desktop-external-ntlm", "09a-wrong-password", "12-internal-spn-missing"])
def test_an_answer_before_the_end_of_its_request_belongs_to_that_request(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_built = _capture(tmp_path / "as-built", name)
    reference, reference_steps = _sessions(as_built), [(st.step, st.status, st.result) for st in as_built.step_list]
    connect = world.Client.conn

    def early(self: Client, *args: Any, **kw: Any) -> Any:
        return _AnswersOnTheHeaders(connect(self, *args, **kw))

    monkeypatch.setattr(world.Client, "conn", early)
    a = _capture(tmp_path / "early", name)
    assert _sessions(a) == reference
    assert [(st.step, st.status, st.result) for st in a.step_list] == reference_steps


@pytest.mark.parametrize("name", ["08-ucwa-mobile-oauth", "12-internal-spn-missing", "09a-wrong-password"])
def test_challenges_listed_in_one_header_are_each_read(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 7235 lets a server list its challenges in one WWW-Authenticate header (`Negotiate,
    NTLM`; `Bearer trusted_issuers="…", MsRtcOAuth href="…",grant_type="…"`): the same reading as
    one header per challenge."""
    as_built = _capture(tmp_path / "as-built", name)
    respond = lync.response

    def one_header(status: int, headers: list[tuple[str, str]] | None = None, *args: Any, **kw: Any) -> bytes:
        listed = [v for k, v in headers or [] if k.lower() == "www-authenticate"]
        if len(listed) > 1:
            headers = [(k, v) for k, v in headers or [] if k.lower() != "www-authenticate"]
            headers.append(("WWW-Authenticate", ", ".join(listed)))
        return respond(status, headers, *args, **kw)

    monkeypatch.setattr(lync, "response", one_header)
    a = _capture(tmp_path / "one-header", name)
    assert _sessions(a) == _sessions(as_built)
    assert [(st.step, st.result, st.facts.get("offered"), st.facts.get("oauth_grants")) for st in a.step_list] == [
        (st.step, st.result, st.facts.get("offered"), st.facts.get("oauth_grants")) for st in as_built.step_list
    ]
    assert [(f.id, f.detail) for f in a.finding_list] == [(f.id, f.detail) for f in as_built.finding_list]


def test_challenge_lists_split_where_a_scheme_starts() -> None:
    from lyncpcap.protocols.httpauth import challenges

    assert challenges("Negotiate, NTLM") == ["Negotiate", "NTLM"]
    assert challenges('Bearer trusted_issuers="a@b", client_id="4", MsRtcOAuth href="https://x/oauthtoken",grant_type="a,b"') == [
        'Bearer trusted_issuers="a@b", client_id="4"', 'MsRtcOAuth href="https://x/oauthtoken", grant_type="a,b"']
    assert challenges('NTLM qop="auth", realm="SIP Communications Service", version=4') == [
        'NTLM qop="auth", realm="SIP Communications Service", version=4']
    assert challenges("MsRtcOAuth href=https://x,grant_type=urn:microsoft.rtc:windows,password") == [
        "MsRtcOAuth href=https://x, grant_type=urn:microsoft.rtc:windows, password"]


def test_a_reverse_proxys_pooled_connection_keeps_each_users_identity(tmp_path: Path) -> None:
    """Captured on the reverse proxy's inside: it carries two phones' requests on one keep-alive
    connection to the Front End (X-Forwarded-For tells them apart).  Neither user's name reaches
    the other's steps."""

    def scenario(cap: Capture) -> None:
        w = Contoso(cap)
        cap.net.capture_host = w.rp_int
        phones = []
        for user, address in (("alice", "198.51.100.10"), ("bob", "198.51.100.20")):
            t = cap.session(kind="Lync 2013 Android", location="external", address=address, user=f"{user}@contoso.com",
                            auth_protocol="password", outcome="success")
            phones.append(Client(cap, w, w.rp_int, t, ua=scenarios.ANDROID_UA, rtt=0.0009, via_rp=w.rp_int, public_ip=address))
        alice, bob = phones
        bob.conns = alice.conns  # one pooled connection
        discover_json(alice, w.rp_ext, "lyncdiscover.contoso.com", web=w.ext_web)
        oauth_user_401(alice, w.rp_ext, w.ext_web)
        discover_json(bob, w.rp_ext, "lyncdiscover.contoso.com", web=w.ext_web)
        oauth_user_401(bob, w.rp_ext, w.ext_web)
        oauth_token(bob, w.rp_ext, w.ext_web, "password", username="bob@contoso.com", password="Bob-Pass1")
        oauth_token(alice, w.rp_ext, w.ext_web, "password", username="alice@contoso.com", password="Alice-Pass1")
        alice.close_all()

    a = _capture(tmp_path, "09b-locked-account", build=scenario, name="pooled")
    assert len({st.conn for st in a.step_list}) == 1
    assert [(s.client_address, s.user) for s in a.session_list] == [("198.51.100.10", "alice@contoso.com"),
                                                                     ("198.51.100.20", "bob@contoso.com")]
    for s in a.session_list:
        named = {e.value for st in s.steps for e in st.evidence if e.kind == "account"}
        assert named == {s.user}, (s.client_address, named)


def test_ad_fs_2_forms_sign_in_is_read() -> None:
    """AD FS 2.0 (FormsSignIn.aspx) names its fields the ASP.NET WebForms way and reports a wrong
    password in `ctl00_ContentPlaceHolder1_ErrorTextLabel`."""
    from lyncpcap.protocols import adfs

    form = (b"__VIEWSTATE=%2FwEPDw&ctl00%24ContentPlaceHolder1%24UsernameTextBox=CONTOSO%5Csam"
            b"&ctl00%24ContentPlaceHolder1%24PasswordTextBox=Sam-forgot&ctl00%24ContentPlaceHolder1%24SubmitButton=Sign+In")
    req = adfs.parse_request("wa=wsignin1.0&wtrealm=https%3A%2F%2Flyncpool.contoso.com%2Fpassiveauth%2F", form)
    assert req.username == "CONTOSO\\sam" and req.password is not None and req.password.value == "Sam-forgot"
    page = adfs.parse_page(b'<form><input name="ctl00$ContentPlaceHolder1$PasswordTextBox" type="password" />'
                           b'<span id="ctl00_ContentPlaceHolder1_ErrorTextLabel">The user name or password is incorrect</span></form>')
    assert page.login_form and page.error_text == "The user name or password is incorrect"


@pytest.mark.parametrize("accept", [True, False])
def test_an_authenticating_forward_proxy(accept: bool, tmp_path: Path) -> None:
    """A desktop behind a forward proxy that wants NTLM (407, Proxy-Authenticate): its 407s are the
    proxy's challenges, and a 407 after a complete NTLM AUTHENTICATE is the proxy refusing."""
    from lyncpcap.lab.ntlmmsg import NtlmClient, challenge
    from lyncpcap.lab.world import DOMAIN, NETBIOS

    def scenario(cap: Capture) -> None:
        w, c = _at_client(cap, "pc", "10.0.10.90", ua=scenarios.DESKTOP_HTTP_UA, rtt=0.001, kind="Lync 2013 desktop",
                          location="internal", outcome="success" if accept else "failure")
        conn = cap.net.tcp(c.host, cap.net.host("proxy", "10.0.10.1"), 8080, rtt=0.001)
        target = "http://lyncdiscover.contoso.com/?sipuri=alice@contoso.com"

        def request(extra: list[tuple[str, str]]) -> bytes:
            return lync.request("GET", target, "lyncdiscover.contoso.com", [("Accept", lync.AUTODISCOVER_XML), *extra], user_agent=c.ua)

        def refused(headers: list[tuple[str, str]]) -> bytes:
            return lync.response(407, headers, body=b"<html>Proxy Authentication Required</html>", content_type="text/html", ts=cap.now)

        conn.send(request([]))
        conn.reply(refused([("Proxy-Authenticate", "Negotiate"), ("Proxy-Authenticate", "NTLM")]))
        ntlm = NtlmClient("alice", NETBIOS, "Passw0rd!", "PC01", rng=c.rng)
        negotiate = ntlm.negotiate()
        ch = challenge(target_name=NETBIOS, nb_domain=NETBIOS, nb_computer="PROXY", dns_domain=DOMAIN, dns_computer="proxy.contoso.com",
                       dns_tree=DOMAIN, timestamp=cap.when, rng=c.rng, flags_from=negotiate)
        conn.send(request([("Proxy-Authorization", "NTLM " + lync.b64(negotiate))]))
        conn.reply(refused([("Proxy-Authenticate", "NTLM " + lync.b64(ch))]))
        conn.send(request([("Proxy-Authorization", "NTLM " + lync.b64(ntlm.authenticate(ch, spn="HTTP/proxy.contoso.com")))]))
        if accept:
            conn.reply(lync.response(200, body=lync.autodiscover_root_xml(w.pool, DOMAIN), content_type=lync.AUTODISCOVER_XML,
                                     ts=cap.now, lync=w.fe, rng=c.rng))
        else:
            conn.reply(refused([("Proxy-Authenticate", "Negotiate"), ("Proxy-Authenticate", "NTLM")]))
        conn.close(by="client")

    a = _capture(tmp_path, "01-desktop-internal-kerberos", build=scenario, name=f"proxy-407-{accept}")
    steps = [st for st in a.step_list if st.step == "autodiscover"]
    assert [(st.status, st.result) for st in steps[:2]] == [(407, "challenge"), (407, "challenge")]
    assert "the forward proxy asks for authentication" in steps[0].detail
    last = steps[2]
    if accept:
        assert last.status == 200 and last.result != "failure"
    else:
        assert (last.status, last.result) == (407, "failure")
        assert last.failure_reason == "the forward proxy refused the credentials (Proxy-Authorization)"
        (session,) = a.session_list
        assert session.outcome == "failure" and session.failure is not None and session.failure["step"] == "autodiscover"


def test_a_forward_proxy_that_cannot_reach_the_server_is_named(tmp_path: Path) -> None:
    """`CONNECT lyncdiscover.contoso.com:443` answered 502 by a forward proxy inside: the proxy
    could not reach the server (not the reverse proxy failing to reach the Front End)."""

    def scenario(cap: Capture) -> None:
        _w, c = _at_client(cap, "pc", "10.0.10.90", ua=scenarios.DESKTOP_HTTP_UA, rtt=0.001, kind="Lync 2013 desktop",
                           location="internal", outcome="failure")
        nxdomain(c, "lyncdiscoverinternal.contoso.com")
        c.dns("lyncdiscover.contoso.com")
        conn = cap.net.tcp(c.host, cap.net.host("proxy", "10.0.10.1"), 8080, rtt=0.001)
        conn.send(b"CONNECT lyncdiscover.contoso.com:443 HTTP/1.1\r\nHost: lyncdiscover.contoso.com:443\r\n"
                  b"User-Agent: " + scenarios.DESKTOP_HTTP_UA.encode() + b"\r\n\r\n")
        conn.reply(lync.response(502, body=b"<html>Cannot connect</html>", content_type="text/html", ts=cap.now, server=None))
        conn.close(by="client")

    a = _capture(tmp_path, "01-desktop-internal-kerberos", build=scenario, name="connect-502")
    (step,) = [st for st in a.step_list if st.method == "CONNECT"]
    assert step.failure_reason == "Autodiscover request failed: the forward proxy could not reach lyncdiscover.contoso.com:443 (502 Bad Gateway)"


def _web_steps(a: lyncpcap.Analysis) -> list[list[tuple[object, ...]]]:
    return [[(st.step, st.method, st.url, st.status, st.result, st.auth, st.failure_reason) for st in s.steps]
            for s in a.session_list]


@pytest.mark.parametrize(
    "name",
    ["05-lwa-domain-user-soap", "06-lwa-guests-anonymous", "07-passive-adfs-2fa", "08-ucwa-mobile-oauth",
     "09f-oauth-invalid-grant", "09h-adfs-errors"],
)
def test_a_browser_speaking_http2_reads_as_http_1_1(name: str, tmp_path: Path) -> None:
    """A browser talks HTTP/2 to IIS 10 and later as soon as it can (Lync Web App, UCWA, AD FS
    forms): one stream per request, HPACK-encoded fields, DATA frames.  The same sessions, steps,
    statuses, results and reasons as the HTTP/1.1 capture of the same sign-ins."""
    http1 = _capture(tmp_path / "http1", name)
    http2 = _capture(tmp_path / "http2", name, http2=True)
    assert _sessions(http2) == _sessions(http1)
    assert _web_steps(http2) == _web_steps(http1)
    assert [f.id for f in http2.finding_list] == [f.id for f in http1.finding_list]
    assert http2.captures[0].warnings == []
    raw = Path(http2.captures[0].path).read_bytes()  # the capture really speaks HTTP/2 only
    assert b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" in raw and b"HTTP/1.1\r\n" not in raw and b"HTTP/1.1 " not in raw


def test_http2_decrypted_from_a_browsers_key_log(tmp_path: Path, tshark: str) -> None:
    """The way HTTP/2 really arrives: inside TLS, decrypted by tshark from the key log."""
    spec = next(s for s in scenarios.CATALOGUE if s.name == "08-ucwa-mobile-oauth-tls")
    analyses = []
    for http2 in (False, True):
        with tlssim.Pki() as pki:
            written = build.build_one(dataclasses.replace(spec, http2=http2), tmp_path / str(http2), pki=pki)
        capture = next(p for p in written if p.suffix in (".pcap", ".pcapng"))
        keylog = next((p for p in written if p.suffix == ".keylog"), None)
        analyses.append(lyncpcap.analyze(capture, keylog=keylog))
    http1, http2 = analyses
    assert http2.captures[0].decrypted
    assert _web_steps(http2) == _web_steps(http1) and len(_web_steps(http2)[0]) > 8
    assert _sessions(http2) == _sessions(http1)


def test_an_http2_connection_cut_by_a_capture_gap_keeps_what_came_before(tmp_path: Path) -> None:
    spec = next(s for s in scenarios.CATALOGUE if s.name == "08-ucwa-mobile-oauth")
    written = build.build_one(dataclasses.replace(spec, http2=True), tmp_path)
    capture = next(p for p in written if p.suffix in (".pcap", ".pcapng"))
    with open_capture(capture) as cap:
        cap.read_head()
        (linktype,) = cap.linktypes
        frames = [(ts, bytes(data)) for _n, ts, _lt, data, _w in cap]
    # lose the server's largest segment: the HPACK state after it is gone
    biggest = max(range(len(frames)), key=lambda i: len(frames[i][1]))
    path = tmp_path / "gap.pcap"
    write_pcap(path, frames[:biggest] + frames[biggest + 1 :], linktype)
    a, whole = lyncpcap.analyze(path), lyncpcap.analyze(capture)
    warnings = a.captures[0].warnings
    assert any("HTTP/2 connection lost bytes to a capture gap" in w for w in warnings)
    assert not any("internal error" in w for w in warnings)
    assert 0 < len(a.step_list) < len(whole.step_list)
