"""The sample captures: every sign-in flavour of the seed table and PROTOCOL.md §10, plus failures.

Each builder fills a `Capture` and states, as it goes, what a correct analysis must find. Names,
addresses and passwords are invented (contoso.com, documentation address ranges).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from lyncpcap.lab import lync
from lyncpcap.lab.flows import (
    DESKTOP_HTTP_UA,
    DESKTOP_UA,
    certprov,
    certprov_publish,
    discover_json,
    discover_xml,
    mex,
    oauth_token,
    oauth_user_200,
    oauth_user_401,
    sip_kerberos,
    sip_leg,
    sip_ntlm,
    sip_offer,
    sip_tls_dsk,
    ucwa_application,
    user_200,
    user_401,
    webticket_cert,
    webticket_kerberos,
    webticket_ntlm,
    webticket_usernametoken,
)
from lyncpcap.lab.world import DOMAIN, Capture, Client, Contoso, nxdomain

ANDROID_UA = "ACOMO/5.4.1087.0 (Android 4.4.2; samsung SM-G900F)"
ANDROID_OLD_UA = "ACOMO/5.1.1018.0 (Android 4.2.2; HTC One)"
IOS_UA = "Lync/5.6.1 (iPhone; iOS 8.1; Scale/2.00) CFNetwork/711.1.12 Darwin/14.0.0"
WP_UA = "Mozilla/5.0 (compatible; MSIE 10.0; Windows Phone 8.0; Trident/6.0; IEMobile/10.0; ARM; Touch; NOKIA; Lumia 920) Lync/5.0.8308"
BROWSER_UA = "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko"
LYNC2010_UA = "UCCAPI/4.0.7577.4356 OC/4.0.7577.4356 (Microsoft Lync 2010)"
PY_UA = "python-requests/2.2.1 CPython/2.7.6 Linux/3.13.0-24-generic"
PS_UA = "Mozilla/5.0 (Windows NT; Windows NT 6.3; en-US) WindowsPowerShell/4.0"
CONF_ID = "AB12CD34"


def t0(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2014, 2, day, hour, minute, 5, 123456, tzinfo=UTC)


def sip(user: str) -> str:
    return f"sip:{user}@{DOMAIN}"


def desktop_web_ticket_path(c: Client, w: Contoso, server: Any, web: str, user: str, *, location: str) -> str:
    """Autodiscover user 401 → MEX, shared by desktop flows; returns the user-resource URL."""
    user_401(c, server, web)
    mex(c, server, web)
    return f"https://{web}/Autodiscover/AutodiscoverService.svc/root/user"


# -----------------------------------------------------------------------------------------------
# 01  Lync 2013 desktop, internal, Kerberos (and a second machine that already holds a certificate)
# -----------------------------------------------------------------------------------------------


def desktop_internal_kerberos(cap: Capture) -> None:
    w = Contoso(cap)
    pc = cap.net.host("alice-pc", "10.0.10.21")
    cap.net.capture_host = pc
    t = cap.session(kind="Lync 2013 desktop", location="internal", address="10.0.10.21", user="alice@CONTOSO.COM",
                    auth_protocol="kerberos", outcome="success")
    c = Client(cap, w, pc, t, ua=DESKTOP_HTTP_UA, rtt=0.0006)
    c.dns("lyncdiscoverinternal.contoso.com")
    discover_xml(c, w.fe_host, "lyncdiscoverinternal.contoso.com", sip("alice"), web=w.pool)
    applies = desktop_web_ticket_path(c, w, w.fe_host, w.pool, "alice", location="Internal")
    c.tgs("alice", f"HTTP/{w.pool}")
    ticket = webticket_kerberos(c, w.fe_host, w.pool, user="alice", sip_uri=sip("alice"), applies_to=applies)
    user_200(c, w.fe_host, w.pool, ticket, location="Internal")
    leg = sip_leg(c, sip_uri=sip("alice"))
    sip_offer(c, leg, ["NTLM", "Kerberos", "TLS-DSK"])
    certprov(c, w.fe_host, w.pool, sip_uri=sip("alice"), ticket=ticket)
    cp = f"https://{w.pool}/CertProv/CertProvisioningService.svc"
    ticket2 = webticket_kerberos(c, w.fe_host, w.pool, user="alice", sip_uri=sip("alice"), applies_to=cp, anonymous_first=False)
    certprov_publish(c, w.fe_host, w.pool, sip_uri=sip("alice"), ticket=ticket2)
    sip_tls_dsk(c, leg, user_cn="alice", sip_uri=sip("alice"))
    c.close_all()
    leg.conn.close(by="client")

    # bob signs in over IPv6 a few minutes later; his machine has had its Lync certificate for weeks
    cap.net.advance(95.0)
    pc2 = cap.net.host("bob-pc", "10.0.10.22", "fd00:c0:10::22")
    t2 = cap.session(kind="Lync 2013 desktop", location="internal", address="fd00:c0:10::22", user="sip:bob@contoso.com",
                     auth_protocol="tls-dsk", outcome="success")
    c2 = Client(cap, w, pc2, t2, ua=DESKTOP_HTTP_UA, rtt=0.0007, family=6)
    c2.dns("lyncdiscoverinternal.contoso.com", "AAAA")
    discover_xml(c2, w.fe_host, "lyncdiscoverinternal.contoso.com", sip("bob"), web=w.pool)
    applies = desktop_web_ticket_path(c2, w, w.fe_host, w.pool, "bob", location="Internal")
    ticket = webticket_cert(c2, w.fe_host, w.pool, sip_uri=sip("bob"), applies_to=applies)
    user_200(c2, w.fe_host, w.pool, ticket, location="Internal")
    leg = sip_leg(c2, sip_uri=sip("bob"))
    sip_offer(c2, leg, ["NTLM", "Kerberos", "TLS-DSK"])
    sip_tls_dsk(c2, leg, user_cn="bob", sip_uri=sip("bob"))
    c2.close_all()
    cap.notes.append("bob's client already holds its Lync certificate: web ticket via /Cert, SIP via TLS-DSK only")


# -----------------------------------------------------------------------------------------------
# 02  Lync 2013 desktop, external, NTLM — captured at the Front End behind the reverse proxy
# -----------------------------------------------------------------------------------------------


def desktop_external_ntlm(cap: Capture) -> None:
    w = Contoso(cap)
    cap.net.capture_host = w.fe_host
    public = "198.51.100.77"
    t = cap.session(kind="Lync 2013 desktop", location="external", address=public, user="CONTOSO\\carol",
                    auth_protocol="ntlm", outcome="success")
    c = Client(cap, w, w.rp_int, t, ua=DESKTOP_HTTP_UA, rtt=0.0008, via_rp=w.rp_int, public_ip=public)
    discover_xml(c, w.rp_ext, "lyncdiscover.contoso.com", sip("carol"), web=w.ext_web)
    applies = desktop_web_ticket_path(c, w, w.rp_ext, w.ext_web, "carol", location="External")
    ticket = webticket_ntlm(c, w.rp_ext, w.ext_web, user="carol", password="Summer2013!", workstation="CAROL-LAPTOP",
                            sip_uri=sip("carol"), applies_to=applies)
    assert ticket
    user_200(c, w.rp_ext, w.ext_web, ticket, location="External")
    leg = sip_leg(c, sip_uri=sip("carol"), edge_capture=True)
    sip_offer(c, leg, ["NTLM", "TLS-DSK"])
    certprov(c, w.rp_ext, w.ext_web, sip_uri=sip("carol"), ticket=ticket)
    cp = f"https://{w.ext_web}/CertProv/CertProvisioningService.svc"
    ticket2 = webticket_ntlm(c, w.rp_ext, w.ext_web, user="carol", password="Summer2013!", workstation="CAROL-LAPTOP",
                             sip_uri=sip("carol"), applies_to=cp, anonymous_first=False)
    assert ticket2
    certprov_publish(c, w.rp_ext, w.ext_web, sip_uri=sip("carol"), ticket=ticket2)
    sip_tls_dsk(c, leg, user_cn="carol", sip_uri=sip("carol"))
    c.close_all()
    cap.findings += ["external-domain-credentials", "external-without-mfa"]
    cap.notes.append("capture point: the Front End; the client's address is in X-Forwarded-For and in the SIP Via received=")


# -----------------------------------------------------------------------------------------------
# 03  Lync 2013 for Windows Phone, NTLM (Wi-Fi capture with Linux cooked framing)
# -----------------------------------------------------------------------------------------------


def windows_phone_ntlm(cap: Capture) -> None:
    w = Contoso(cap)
    phone = cap.net.host("lumia", "192.168.1.50")
    router = cap.net.host("home-router", "192.168.1.1")
    cap.net.capture_host = phone
    t = cap.session(kind="Lync 2013 Windows Phone", location="external", address="192.168.1.50", user="CONTOSO\\dave",
                    auth_protocol="ntlm", outcome="success")
    c = Client(cap, w, phone, t, ua=WP_UA, rtt=0.045, resolver=router)
    nxdomain(c, "lyncdiscoverinternal.contoso.com")
    c.dns("lyncdiscover.contoso.com")
    discover_json(c, w.rp_ext, "lyncdiscover.contoso.com", web=w.ext_web)
    oauth_user_401(c, w.rp_ext, w.ext_web)
    mex(c, w.rp_ext, w.ext_web, ["WebTicketServiceWinNegotiate", "WebTicketServiceWinNtlm", "WebTicketServiceAuth", "WebTicketServiceCert", "OAuth"])
    token = webticket_ntlm(c, w.rp_ext, w.ext_web, user="dave", password="Dave#Lumia920", workstation="",
                           sip_uri=sip("dave"), applies_to=f"https://{w.ext_web}/ucwa/oauth/v1/applications", cwt=True)
    assert token
    oauth_user_200(c, w.rp_ext, w.ext_web, token)
    ucwa_application(c, w.rp_ext, w.ext_web, token, app_ua="WPLync/5.0.8308.0 (Lumia 920; Windows Phone 8.0)", kind="Phone", sip_uri=sip("dave"))
    c.close_all()
    cap.findings += ["external-domain-credentials", "external-without-mfa"]


# -----------------------------------------------------------------------------------------------
# 04  Lync 2013 for Android: 5.4 uses NTLM, 5.1 uses SOAP (VLAN-tagged capture at the reverse proxy)
# -----------------------------------------------------------------------------------------------


def android_ntlm_soap(cap: Capture) -> None:
    w = Contoso(cap)
    cap.net.capture_host = w.rp_int
    t = cap.session(kind="Lync 2013 Android", location="external", address="203.0.113.201", user="CONTOSO\\erin",
                    auth_protocol="ntlm", outcome="success")
    c = Client(cap, w, w.rp_int, t, ua=ANDROID_UA, rtt=0.0009, via_rp=w.rp_int, public_ip="203.0.113.201")
    discover_json(c, w.rp_ext, "lyncdiscover.contoso.com", web=w.ext_web)
    oauth_user_401(c, w.rp_ext, w.ext_web)
    mex(c, w.rp_ext, w.ext_web)
    token = webticket_ntlm(c, w.rp_ext, w.ext_web, user="erin", password="Erin.2014", workstation="",
                           sip_uri=sip("erin"), applies_to=f"https://{w.ext_web}/ucwa/oauth/v1/applications", cwt=True,
                           anonymous_first=False)
    assert token
    oauth_user_200(c, w.rp_ext, w.ext_web, token)
    ucwa_application(c, w.rp_ext, w.ext_web, token, app_ua="AndroidLync/5.4.1087.0 (SM-G900F Android 4.4.2)", kind="Phone", sip_uri=sip("erin"))
    c.close_all()

    cap.net.advance(41.0)
    t2 = cap.session(kind="Lync 2013 Android", location="external", address="198.51.100.23", user="CONTOSO\\frank",
                     auth_protocol="soap", outcome="success")
    c2 = Client(cap, w, w.rp_int, t2, ua=ANDROID_OLD_UA, rtt=0.0009, via_rp=w.rp_int, public_ip="198.51.100.23")
    discover_json(c2, w.rp_ext, "lyncdiscover.contoso.com", web=w.ext_web)
    oauth_user_401(c2, w.rp_ext, w.ext_web)
    mex(c2, w.rp_ext, w.ext_web)
    token = webticket_usernametoken(c2, w.rp_ext, w.ext_web, user="frank", password="Fr@nkly99",
                                    applies_to=f"https://{w.ext_web}/WebTicket/WebTicketService.svc/Auth")
    assert token
    oauth_user_200(c2, w.rp_ext, w.ext_web, token)
    ucwa_application(c2, w.rp_ext, w.ext_web, token, app_ua="AndroidLync/5.1.1018.0 (HTC One Android 4.2.2)", kind="Phone", sip_uri=sip("frank"))
    c2.close_all()
    cap.findings += ["external-domain-credentials", "external-without-mfa"]
    cap.notes.append("Android builds before 5.4 use a SOAP UsernameToken (/WebTicketService.svc/Auth) instead of NTLM")


# -----------------------------------------------------------------------------------------------
# 05  Lync Web App, domain user, SOAP (IPv6, captured at the browser)
# -----------------------------------------------------------------------------------------------


def meet_and_lwa(c: Client, w: Contoso, server: Any, *, lwa_page: bool = True) -> None:
    rng = c.rng
    c.http(server, w.meet, "GET", f"/meet/gina/{CONF_ID}", step="other", new=True,
           response=lambda ts: lync.response(200, body=lync.meet_page(ext_web=w.ext_web, organizer=f"gina@{DOMAIN}", conf_id=CONF_ID,
                                                                      conf_key=c.cap.secret("7XK2Q9PD")),
                                             content_type="text/html; charset=utf-8", ts=ts, lync=w.fe, rng=rng))
    if lwa_page:
        conf = lync.b64(f"<conf-info><conf-uri>sip:gina@{DOMAIN};gruu;opaque=app:conf:focus:id:{CONF_ID}</conf-uri><conf-key>7XK2Q9PD</conf-key></conf-info>".encode())
        c.http(server, w.ext_web, "GET", f"/lwa/WebPages/LwaClient.aspx?legacy=False&xml={conf}", step="other",
               response=lambda ts: lync.response(200, body=b"<!DOCTYPE html><html><head><title>Lync Web App</title></head><body><div id=\"lwa\"></div></body></html>",
                                                 content_type="text/html; charset=utf-8", ts=ts, lync=w.fe, rng=rng))


def lwa_domain_user_soap(cap: Capture) -> None:
    w = Contoso(cap)
    pc = cap.net.host("gina-home", "198.51.100.60", "2001:db8:200::50")
    cap.net.capture_host = pc
    t = cap.session(kind="Lync Web App", location="external", address="2001:db8:200::50", user="CONTOSO\\gina",
                    auth_protocol="soap", outcome="success")
    c = Client(cap, w, pc, t, ua=BROWSER_UA, rtt=0.03, family=6, resolver=w.isp_dns)
    c.dns(w.meet, "AAAA")
    meet_and_lwa(c, w, w.rp_ext)
    discover_json(c, w.rp_ext, w.ext_web, web=w.ext_web, path=f"/Autodiscover/AutodiscoverService.svc/root?originalDomain={DOMAIN}",
                  origin=f"https://{w.ext_web}")
    mex(c, w.rp_ext, w.ext_web)
    token = webticket_usernametoken(c, w.rp_ext, w.ext_web, user="gina", password="G1na-Meetings",
                                    applies_to=f"https://{w.ext_web}/WebTicket/WebTicketService.svc/Auth")
    assert token
    ucwa_application(c, w.rp_ext, w.ext_web, token, app_ua="LWA/15.0", kind="browser", path="/ucwa/v1/applications",
                     sip_uri=sip("gina"), auth_header="X-MS-WebTicket")
    c.close_all()
    cap.findings += ["external-domain-credentials", "external-without-mfa"]


# -----------------------------------------------------------------------------------------------
# 06  Lync Web App guests: anonymous SOAP (/Anon) and the UCWA anonmeeting grant
# -----------------------------------------------------------------------------------------------


def lwa_guests(cap: Capture) -> None:
    w = Contoso(cap)
    g1 = cap.net.host("guest1", "198.51.100.140")
    cap.net.capture_host = w.rp_ext
    t = cap.session(kind="Lync Web App", location="external", address="198.51.100.140", user=None,
                    auth_protocol="anonymous", outcome="success")
    c = Client(cap, w, g1, t, ua=BROWSER_UA, rtt=0.025, resolver=w.isp_dns)
    c.dns(w.meet)
    meet_and_lwa(c, w, w.rp_ext, lwa_page=False)
    discover_json(c, w.rp_ext, w.ext_web, web=w.ext_web, path=f"/Autodiscover/AutodiscoverService.svc/root?originalDomain={DOMAIN}",
                  origin=f"https://{w.ext_web}")
    rng = cap.rng
    conf_uri = f"sip:gina@{DOMAIN};gruu;opaque=app:conf:focus:id:{CONF_ID}"
    body = lync.rst(applies_to=f"https://{w.ext_web}/WebTicket/WebTicketService.svc/Anon", sip_uri=None, rng=rng,
                    token_type=lync.CWT_TOKEN, now=cap.when, anonymous_conf=conf_uri)
    tok = cap.secret(lync.cwt(rng))
    c.http(w.rp_ext, w.ext_web, "POST", "/WebTicket/WebTicketService.svc/Anon", step="webticket", body=body,
           content_type="text/xml; charset=utf-8", headers=[("SOAPAction", f'"{lync.RST_ACTION}"')],
           response=lambda ts: lync.response(200, body=lync.rstr_cwt(token=tok, now=cap.when), content_type="text/xml; charset=utf-8",
                                             ts=ts, lync=w.fe, rng=rng))
    ucwa_application(c, w.rp_ext, w.ext_web, tok, app_ua="LWA/15.0", kind="browser", path="/ucwa/anonymous/v1/applications",
                     auth_header="X-MS-WebTicket")
    c.close_all()

    cap.net.advance(12.0)
    g2 = cap.net.host("guest2", "198.51.100.141")
    t2 = cap.session(kind="Lync Web App", location="external", address="198.51.100.141", user=None,
                     auth_protocol="anonymous", outcome="success")
    c2 = Client(cap, w, g2, t2, ua=BROWSER_UA, rtt=0.028, resolver=w.isp_dns)
    c2.dns(w.meet)
    meet_and_lwa(c2, w, w.rp_ext)
    discover_json(c2, w.rp_ext, w.ext_web, web=w.ext_web, path=f"/Autodiscover/AutodiscoverService.svc/root?originalDomain={DOMAIN}",
                  origin=f"https://{w.ext_web}")
    oauth_user_401(c2, w.rp_ext, w.ext_web)
    token = oauth_token(c2, w.rp_ext, w.ext_web, "urn:microsoft.rtc:anonmeeting", expires=3599,
                        password="7XK2Q9PD", ms_rtc_conferenceuri=conf_uri)
    assert token
    app = ucwa_application(c2, w.rp_ext, w.ext_web, token, app_ua="LWA/15.0", kind="browser")
    c2.http(w.rp_ext, w.ext_web, "DELETE", f"/ucwa/oauth/v1/applications/{app}?ts=1392884400123", step="ucwa",
            headers=[("Authorization", f"Bearer {token}")],
            response=lambda ts: lync.response(204, ts=ts, lync=w.fe, rng=rng))
    c2.close_all()
    cap.findings += ["anonymous-access"]


# -----------------------------------------------------------------------------------------------
# 07  Passive authentication through AD FS with a second factor (2FA pool)
# -----------------------------------------------------------------------------------------------

PASSIVE_PORTS = ["WsFedPassive", "WebTicketServiceCert"]
MISCONFIGURED_PASSIVE_PORTS = ["WsFedPassive", "WebTicketServiceWinNegotiate", "WebTicketServiceCert"]


def passive_start(c: Client, w: Contoso, user: str, *, ports: list[str] = PASSIVE_PORTS) -> tuple[str, str]:
    """Discovery at a 2FA pool up to the AD FS sign-in page; returns (wtrealm, wctx)."""
    rng = c.rng
    c.dns("lyncdiscoverinternal.contoso.com")
    discover_xml(c, w.fe_host, "lyncdiscoverinternal.contoso.com", sip(user), web=w.pool)
    user_401(c, w.fe_host, w.pool)
    mex(c, w.fe_host, w.pool, ports)
    realm = f"https://{w.pool}/passiveauth/"
    wctx = f"rm=0&id=passive&ru=%2fPassiveAuth%2f{rng.randbytes(6).hex()}"
    location = (
        f"https://{w.adfs}/adfs/ls/?wa=wsignin1.0&wtrealm={quote(realm, safe='')}&wctx={quote(wctx, safe='')}"
        f"&wct={c.cap.when.strftime('%Y-%m-%dT%H%%3a%M%%3a%SZ')}"
    )
    c.http(w.fe_host, w.pool, "GET", "/PassiveAuth/PassiveAuth.aspx?ReturnUrl=%2fPassiveAuth%2f", step="adfs",
           response=lambda ts: lync.response(302, [("Location", location)], ts=ts, lync=w.fe, rng=rng))
    c.dns(w.adfs)
    path = location.split(w.adfs, 1)[1]
    c.http(w.adfs_host, w.adfs, "GET", path, step="adfs",
           response=lambda ts: lync.response(200, body=lync.adfs_login_page(path), content_type="text/html; charset=utf-8", ts=ts))
    return realm, wctx


def adfs_forms(c: Client, w: Contoso, user: str, password: str, path_query: str, *, page: Callable[[float], bytes]) -> None:
    c.cap.secret(password)
    form = f"UserName={quote(user + '@' + DOMAIN)}&Password={quote(password, safe='')}&AuthMethod=FormsAuthentication".encode()
    c.http(w.adfs_host, w.adfs, "POST", path_query, step="adfs", body=form, content_type="application/x-www-form-urlencoded",
           response=page, think=(0.08, 0.25))


def passive_desktop(cap: Capture) -> None:
    w = Contoso(cap)
    pc = cap.net.host("hank-pc", "10.0.10.61")
    cap.net.capture_host = pc
    t = cap.session(kind="Lync 2013 desktop", location="internal", address="10.0.10.61", user="hank@contoso.com",
                    auth_protocol="passive", outcome="success")
    c = Client(cap, w, pc, t, ua=DESKTOP_HTTP_UA, rtt=0.0006)
    rng = cap.rng
    realm, wctx = passive_start(c, w, "hank")
    ls = f"/adfs/ls/?wa=wsignin1.0&wtrealm={quote(realm, safe='')}&wctx={quote(wctx, safe='')}"
    context = rng.randbytes(24).hex()
    adfs_forms(c, w, "hank", "H4nk&Token!", ls,
               page=lambda ts: lync.response(200, body=lync.adfs_mfa_page(ls, context), content_type="text/html; charset=utf-8", ts=ts))
    otp = cap.secret("482913")
    wresult = cap.secret(lync.saml2_wresult(upn=f"hank@{DOMAIN}", realm=realm, issuer=f"http://{w.adfs}/adfs/services/trust", rng=rng, now=cap.when))
    c.http(w.adfs_host, w.adfs, "POST", ls, step="adfs", body=f"Context={context}&otp={otp}&AuthMethod=OtpAuthenticationAdapter".encode(),
           content_type="application/x-www-form-urlencoded",
           response=lambda ts: lync.response(200, body=lync.adfs_token_post(f"https://{w.pool}/PassiveAuth/", wresult, wctx),
                                             content_type="text/html; charset=utf-8", ts=ts), think=(2.5, 6.0))
    fedauth = cap.secret(lync.b64(rng.randbytes(96)))
    form = f"wa=wsignin1.0&wresult={quote(wresult, safe='')}&wctx={quote(wctx, safe='')}".encode()
    c.http(w.fe_host, w.pool, "POST", "/PassiveAuth/", step="adfs", body=form, content_type="application/x-www-form-urlencoded",
           response=lambda ts: lync.response(302, [("Location", "/PassiveAuth/PassiveAuth.aspx"),
                                                  ("Set-Cookie", f"FedAuth={fedauth}; path=/; secure; HttpOnly")], ts=ts, lync=w.fe, rng=rng))
    cookie = [("Cookie", f"FedAuth={fedauth}")]

    def wsfed_ticket(applies: str) -> str:
        body = lync.rst(applies_to=applies, sip_uri=sip("hank"), rng=rng)
        rstr, aid = lync.rstr_saml(sip_uri=sip("hank"), issuer=f"https://{w.pool}/WebTicket/WebTicketService.svc", rng=rng, now=cap.when)
        c.http(w.fe_host, w.pool, "POST", "/WebTicket/WebTicketService.svc/WsFed", step="webticket", body=body,
               content_type="text/xml; charset=utf-8", headers=[("SOAPAction", f'"{lync.RST_ACTION}"'), *cookie],
               response=lambda ts: lync.response(200, body=rstr, content_type="text/xml; charset=utf-8", ts=ts, lync=w.fe, rng=rng))
        cap.secret(aid)
        return aid

    ticket = wsfed_ticket(f"https://{w.pool}/Autodiscover/AutodiscoverService.svc/root/user")
    user_200(c, w.fe_host, w.pool, ticket, location="Internal")
    leg = sip_leg(c, sip_uri=sip("hank"))
    sip_offer(c, leg, ["TLS-DSK"])
    certprov(c, w.fe_host, w.pool, sip_uri=sip("hank"), ticket=ticket)
    ticket2 = wsfed_ticket(f"https://{w.pool}/CertProv/CertProvisioningService.svc")
    certprov_publish(c, w.fe_host, w.pool, sip_uri=sip("hank"), ticket=ticket2)
    sip_tls_dsk(c, leg, user_cn="hank", sip_uri=sip("hank"))
    c.close_all()
    cap.notes.append("the pool offers only WS-Fed passive and certificate web tickets, and only TLS-DSK for SIP")


# -----------------------------------------------------------------------------------------------
# 08  UCWA mobile (Lync 2013 iOS) with the OAuth password grant, redirected to its home pool
# -----------------------------------------------------------------------------------------------


def ucwa_mobile_oauth(cap: Capture) -> None:
    w = Contoso(cap)
    phone = cap.net.host("ivan-iphone", "192.168.7.31")
    router = cap.net.host("hotel-router", "192.168.7.1")
    rp2 = cap.net.host("rp2-ext", "203.0.113.12")
    cap.net.capture_host = phone
    web2 = "lyncweb2.contoso.com"
    w.server_fqdn[rp2.name] = web2
    t = cap.session(kind="Lync 2013 iOS", location="external", address="192.168.7.31", user="ivan@contoso.com",
                    auth_protocol="password", outcome="success")
    c = Client(cap, w, phone, t, ua=IOS_UA, rtt=0.06, resolver=router)
    nxdomain(c, "lyncdiscoverinternal.contoso.com")
    c.dns("lyncdiscover.contoso.com")
    discover_json(c, w.rp_ext, "lyncdiscover.contoso.com", web=w.ext_web)
    oauth_user_401(c, w.rp_ext, w.ext_web)
    token = oauth_token(c, w.rp_ext, w.ext_web, "password", username="ivan@contoso.com", password="Iv@n-Phone-7")
    assert token
    oauth_user_200(c, w.rp_ext, w.ext_web, token, redirect_to=web2)
    c.dns(web2, answers=[(web2, "A", rp2.ipv4 or "")])
    discover_json(c, rp2, web2, web=web2, path=f"/Autodiscover/AutodiscoverService.svc/root?originalDomain={DOMAIN}")
    oauth_user_401(c, rp2, web2)
    token2 = oauth_token(c, rp2, web2, "password", username="ivan@contoso.com", password="Iv@n-Phone-7")
    assert token2
    oauth_user_200(c, rp2, web2, token2)
    ucwa_application(c, rp2, web2, token2, app_ua="iPhoneLync/5.6.1 (iPhone; iOS 8.1)", kind="Phone", sip_uri=sip("ivan"))
    c.close_all()
    cap.findings += ["external-domain-credentials", "external-without-mfa"]
    cap.notes.append("the Director-style pool redirects the user to lyncweb2; the second 401/token cycle there is normal")


# -----------------------------------------------------------------------------------------------
# 09  Failures
# -----------------------------------------------------------------------------------------------


def wrong_password(cap: Capture) -> None:
    w = Contoso(cap)
    pc = cap.net.host("judy-home", "192.168.2.10")
    router = cap.net.host("judy-router", "192.168.2.1")
    cap.net.capture_host = pc
    for attempt in range(3):
        t = cap.session(kind="Lync 2013 desktop", location="external", address="192.168.2.10", user="CONTOSO\\judy",
                        auth_protocol="ntlm", outcome="failure", failure_step="webticket")
        c = Client(cap, w, pc, t, ua=DESKTOP_HTTP_UA, rtt=0.038, resolver=router)
        nxdomain(c, "lyncdiscoverinternal.contoso.com")
        c.dns("lyncdiscover.contoso.com")
        discover_xml(c, w.rp_ext, "lyncdiscover.contoso.com", sip("judy"), web=w.ext_web)
        applies = desktop_web_ticket_path(c, w, w.rp_ext, w.ext_web, "judy", location="External")
        webticket_ntlm(c, w.rp_ext, w.ext_web, user="judy", password=["Judy2013", "Judy2014", "judy2014!"][attempt],
                       workstation="JUDY-PC", sip_uri=sip("judy"), applies_to=applies, accept=False)
        c.close_all()
        cap.net.advance(18.0 + 4 * attempt)
    cap.findings += ["lockout-risk", "external-domain-credentials"]
    cap.notes.append("the user retypes the password twice; every attempt ends with 401 after a full NTLM type 3")


def locked_account(cap: Capture) -> None:
    w = Contoso(cap)
    cap.net.capture_host = w.fe_host
    # a phone with a stale saved password keeps retrying through the reverse proxy
    t = cap.session(kind="Lync 2013 Android", location="external", address="203.0.113.150", user="kim@contoso.com",
                    auth_protocol="password", outcome="failure", failure_step="oauth")
    c = Client(cap, w, w.rp_int, t, ua=ANDROID_UA, rtt=0.0009, via_rp=w.rp_int, public_ip="203.0.113.150")
    discover_json(c, w.rp_ext, "lyncdiscover.contoso.com", web=w.ext_web)
    oauth_user_401(c, w.rp_ext, w.ext_web)
    for _ in range(4):
        oauth_token(c, w.rp_ext, w.ext_web, "password", accept=False, username="kim@contoso.com", password="Kim-OldPass1")
        cap.net.advance(30.0)
    c.close_all()
    # kim's desktop now finds the account locked: the KDC refuses, NTLM is refused too
    pc = cap.net.host("kim-pc", "10.0.10.40")
    t2 = cap.session(kind="Lync 2013 desktop", location="internal", address="10.0.10.40", user="CONTOSO\\kim",
                     auth_protocol="ntlm", outcome="failure", failure_step="webticket")
    c2 = Client(cap, w, pc, t2, ua=DESKTOP_HTTP_UA, rtt=0.0006)
    c2.dns("lyncdiscoverinternal.contoso.com")
    discover_xml(c2, w.fe_host, "lyncdiscoverinternal.contoso.com", sip("kim"), web=w.pool)
    applies = desktop_web_ticket_path(c2, w, w.fe_host, w.pool, "kim", location="Internal")
    c2.tgs("kim", f"HTTP/{w.pool}", error=18)
    webticket_ntlm(c2, w.fe_host, w.pool, user="kim", password="Kim-NewPass2", workstation="KIM-PC", sip_uri=sip("kim"),
                   applies_to=applies, accept=False, scheme="Negotiate")
    c2.close_all()
    cap.findings += ["lockout-risk", "external-domain-credentials", "kerberos-fallback-ntlm"]
    cap.notes.append("capture point: a span of the server VLAN (reverse proxy → Front End, clients → DC and Front End)")


def lyncdiscover_nxdomain(cap: Capture) -> None:
    w = Contoso(cap)
    pc = cap.net.host("leo-pc", "10.0.10.50")
    cap.net.capture_host = pc
    t = cap.session(kind="Lync 2013 desktop", location="internal", address="10.0.10.50", user="leo@CONTOSO.COM",
                    auth_protocol="kerberos", outcome="success")
    c = Client(cap, w, pc, t, ua=DESKTOP_UA, rtt=0.0006)
    nxdomain(c, "lyncdiscoverinternal.contoso.com")
    nxdomain(c, "lyncdiscover.contoso.com")
    c.dns("_sipinternaltls._tcp.contoso.com", "SRV")
    c.dns(w.fe)
    leg = sip_leg(c, sip_uri=sip("leo"))
    sip_offer(c, leg, ["NTLM", "Kerberos", "TLS-DSK"])
    sip_kerberos(c, leg, user="leo", sip_uri=sip("leo"))
    leg.conn.close(by="client")
    cap.net.advance(7.0)
    phone = cap.net.host("mallory-phone", "10.0.20.60")
    t2 = cap.session(kind="unknown", location="unknown", address="10.0.20.60", user=None, auth_protocol="unknown",
                     outcome="failure", failure_step="dns")
    c2 = Client(cap, w, phone, t2, ua=None)
    nxdomain(c2, "lyncdiscoverinternal.contoso.com")
    nxdomain(c2, "lyncdiscover.contoso.com")
    cap.notes.append("Autodiscover is not published: the desktop falls back to DNS SRV, the phone cannot sign in")


def mex_404(cap: Capture) -> None:
    w = Contoso(cap)
    pc = cap.net.host("nina-home", "192.168.3.20")
    router = cap.net.host("nina-router", "192.168.3.1")
    cap.net.capture_host = pc
    t = cap.session(kind="Lync 2013 desktop", location="external", address="192.168.3.20", user="sip:nina@contoso.com",
                    auth_protocol="unknown", outcome="failure", failure_step="mex")
    c = Client(cap, w, pc, t, ua=DESKTOP_HTTP_UA, rtt=0.035, resolver=router)
    nxdomain(c, "lyncdiscoverinternal.contoso.com")
    c.dns("lyncdiscover.contoso.com")
    discover_xml(c, w.rp_ext, "lyncdiscover.contoso.com", sip("nina"), web=w.ext_web)
    user_401(c, w.rp_ext, w.ext_web)
    mex(c, w.rp_ext, w.ext_web, status=404)
    c.close_all()
    cap.notes.append("the reverse proxy has no rule for /WebTicket: MEX answers 404 from the proxy itself")


def webticket_fault(cap: Capture) -> None:
    w = Contoso(cap)
    cap.net.capture_host = w.fe_host
    t = cap.session(kind="Lync Web App", location="external", address="198.51.100.150", user="CONTOSO\\oscar",
                    auth_protocol="soap", outcome="failure", failure_step="webticket")
    c = Client(cap, w, w.rp_int, t, ua=BROWSER_UA, rtt=0.0009, via_rp=w.rp_int, public_ip="198.51.100.150")
    meet_and_lwa(c, w, w.rp_ext)
    discover_json(c, w.rp_ext, w.ext_web, web=w.ext_web, path=f"/Autodiscover/AutodiscoverService.svc/root?originalDomain={DOMAIN}",
                  origin=f"https://{w.ext_web}")
    mex(c, w.rp_ext, w.ext_web)
    webticket_usernametoken(c, w.rp_ext, w.ext_web, user="oscar", password="Osc4r-typo", accept=False,
                            applies_to=f"https://{w.ext_web}/WebTicket/WebTicketService.svc/Auth")
    c.close_all()
    cap.findings += ["external-domain-credentials"]


def oauth_invalid_grant(cap: Capture) -> None:
    w = Contoso(cap)
    cap.net.capture_host = w.rp_int
    t = cap.session(kind="Lync 2013 Android", location="external", address="203.0.113.99", user="peggy@contoso.com",
                    auth_protocol="password", outcome="failure", failure_step="oauth")
    c = Client(cap, w, w.rp_int, t, ua=ANDROID_UA, rtt=0.0009, via_rp=w.rp_int, public_ip="203.0.113.99")
    discover_json(c, w.rp_ext, "lyncdiscover.contoso.com", web=w.ext_web)
    oauth_user_401(c, w.rp_ext, w.ext_web)
    oauth_token(c, w.rp_ext, w.ext_web, "password", accept=False, username="peggy@contoso.com", password="Peggy!wrong")
    c.close_all()
    cap.findings += ["external-domain-credentials"]


def sip_forbidden(cap: Capture) -> None:
    w = Contoso(cap)
    pc = cap.net.host("quentin-pc", "10.0.10.70")
    cap.net.capture_host = pc
    t = cap.session(kind="Lync 2010 desktop", location="internal", address="10.0.10.70", user="CONTOSO\\quentin",
                    auth_protocol="ntlm", outcome="failure", failure_step="sip-register")
    c = Client(cap, w, pc, t, ua=LYNC2010_UA, rtt=0.0006)
    c.dns("lyncdiscoverinternal.contoso.com")
    c.dns("_sipinternaltls._tcp.contoso.com", "SRV")
    leg = sip_leg(c, sip_uri=sip("rachel"), ua=LYNC2010_UA)
    sip_offer(c, leg, ["NTLM", "Kerberos", "TLS-DSK"])
    sip_ntlm(c, leg, user="quentin", password="Qu3ntin.2010", workstation="QUENTIN-XP", sip_uri=sip("rachel"),
             variant="ntlm2-session",
             reject=(403, "Forbidden", f'4004;reason="Credentials not authorized to act as specified from URI";source="{w.fe}"'))
    leg.conn.close(by="client")
    cap.findings += ["ntlm-v1", "kerberos-fallback-ntlm"]
    cap.notes.append("quentin signs in with rachel's address; his old Windows XP sends NTLM2-session responses")


def adfs_failures(cap: Capture) -> None:
    w = Contoso(cap)
    pc = cap.net.host("sam-pc", "10.0.10.81")
    cap.net.capture_host = w.fe_host
    t = cap.session(kind="Lync 2013 desktop", location="internal", address="10.0.10.81", user="sam@contoso.com",
                    auth_protocol="passive", outcome="failure", failure_step="adfs")
    c = Client(cap, w, pc, t, ua=DESKTOP_HTTP_UA, rtt=0.0006)
    realm, wctx = passive_start(c, w, "sam", ports=MISCONFIGURED_PASSIVE_PORTS)
    ls = f"/adfs/ls/?wa=wsignin1.0&wtrealm={quote(realm, safe='')}&wctx={quote(wctx, safe='')}"
    adfs_forms(c, w, "sam", "Sam-forgot", ls,
               page=lambda ts: lync.response(200, body=lync.adfs_login_page(ls, error="Incorrect user ID or password. Type the correct user ID and password, and try again."),
                                             content_type="text/html; charset=utf-8", ts=ts))
    c.close_all()
    cap.net.advance(33.0)
    pc2 = cap.net.host("tina-pc", "10.0.10.82")
    t2 = cap.session(kind="Lync 2013 desktop", location="internal", address="10.0.10.82", user="tina@contoso.com",
                     auth_protocol="passive", outcome="failure", failure_step="adfs")
    c2 = Client(cap, w, pc2, t2, ua=DESKTOP_HTTP_UA, rtt=0.0006)
    rng = cap.rng
    realm, wctx = passive_start(c2, w, "tina", ports=MISCONFIGURED_PASSIVE_PORTS)
    ls = f"/adfs/ls/?wa=wsignin1.0&wtrealm={quote(realm, safe='')}&wctx={quote(wctx, safe='')}"
    context = rng.randbytes(24).hex()
    adfs_forms(c2, w, "tina", "Tina*Secure1", ls,
               page=lambda ts: lync.response(200, body=lync.adfs_mfa_page(ls, context), content_type="text/html; charset=utf-8", ts=ts))
    otp = cap.secret("739201")
    activity = lync.guid(rng)
    c2.http(w.adfs_host, w.adfs, "POST", ls, step="adfs", body=f"Context={context}&otp={otp}&AuthMethod=OtpAuthenticationAdapter".encode(),
            content_type="application/x-www-form-urlencoded",
            response=lambda ts: lync.response(200, body=lync.adfs_error_page(activity), content_type="text/html; charset=utf-8", ts=ts),
            think=(2.0, 4.0))
    c2.close_all()
    cap.findings += ["passive-with-other-methods"]
    cap.notes.append("sam mistypes his AD FS password; tina passes both factors but AD FS fails issuing the token (MSIS7012)")
    cap.notes.append("the pool offers WS-Fed passive but still also Windows authentication in its MEX: two-factor can be bypassed")


def connect_failures(cap: Capture) -> None:
    w = Contoso(cap)
    phone = cap.net.host("xavier-phone", "192.168.9.40")
    router = cap.net.host("xavier-router", "192.168.9.1")
    cap.net.capture_host = phone
    t = cap.session(kind="unknown", location="external", address="192.168.9.40", user=None, auth_protocol="unknown",
                    outcome="failure", failure_step="other")
    c = Client(cap, w, phone, t, ua=ANDROID_UA, rtt=0.05, resolver=router)
    nxdomain(c, "lyncdiscoverinternal.contoso.com")
    c.dns("lyncdiscover.contoso.com")
    for _ in range(2):  # the reverse proxy is down: its address answers every SYN with RST
        cap.net.tcp(phone, w.rp_ext, w.ports.web, rtt=0.05, handshake=False).refused()
        t.record("other", "TCP", "refused")
        cap.net.advance(1.5)
    cap.net.advance(20.0)
    # a desktop whose internal Autodiscover address is silently dropped by a firewall: it waits out
    # three SYNs (7 s), then signs in through the reverse proxy
    pc = cap.net.host("yvonne-pc", "192.168.9.41")
    t2 = cap.session(kind="Lync 2013 desktop", location="external", address="192.168.9.41", user="CONTOSO\\yvonne",
                     auth_protocol="ntlm", outcome="success")
    c2 = Client(cap, w, pc, t2, ua=DESKTOP_HTTP_UA, rtt=0.04, resolver=router)
    c2.dns("lyncdiscoverinternal.contoso.com")
    cap.net.tcp(pc, w.fe_host, w.ports.web, rtt=0.04, handshake=False).unanswered(3)
    t2.record("other", "TCP", "no answer")
    c2.dns("lyncdiscover.contoso.com")
    discover_xml(c2, w.rp_ext, "lyncdiscover.contoso.com", sip("yvonne"), web=w.ext_web)
    applies = desktop_web_ticket_path(c2, w, w.rp_ext, w.ext_web, "yvonne", location="External")
    ticket = webticket_ntlm(c2, w.rp_ext, w.ext_web, user="yvonne", password="Yv0nne!Home", workstation="YVONNE-PC",
                            sip_uri=sip("yvonne"), applies_to=applies)
    assert ticket
    user_200(c2, w.rp_ext, w.ext_web, ticket, location="External")
    c2.close_all()
    cap.findings += ["external-domain-credentials", "external-without-mfa"]
    cap.notes.append("the phone's reverse proxy refuses connections (RST); the desktop's internal Autodiscover "
                     "address is dropped by a firewall, so it loses 7 s before falling back to lyncdiscover")


def certificate_untrusted(cap: Capture) -> None:
    from lyncpcap.lab.tlssim import untrusted_handshake

    w = Contoso(cap)
    phone = cap.net.host("zoe-phone", "192.168.11.20")
    router = cap.net.host("zoe-router", "192.168.11.1")
    cap.net.capture_host = phone
    t = cap.session(kind="unknown", location="external", address="192.168.11.20", user=None, auth_protocol="unknown",
                    outcome="failure", failure_step="other")
    c = Client(cap, w, phone, t, ua=ANDROID_UA, rtt=0.05, resolver=router)
    nxdomain(c, "lyncdiscoverinternal.contoso.com")
    c.dns("lyncdiscover.contoso.com")
    for _ in range(2):  # the phone does not know the private CA that signed the reverse proxy's certificate
        untrusted_handshake(cap.net.tcp(phone, w.rp_ext, 443, rtt=0.05), cap.pki, [w.ext_web, "lyncdiscover.contoso.com"],
                            sni="lyncdiscover.contoso.com")
        t.record("other", "TLS", "unknown_ca")
        cap.net.advance(2.0)
    cap.notes.append("the reverse proxy's certificate comes from a private CA the phone does not trust: the phone "
                     "sends a fatal unknown_ca alert after the server's certificate")


def legacy_client_2fa_pool(cap: Capture) -> None:
    w = Contoso(cap)
    pc = cap.net.host("victor-pc", "10.0.10.80")
    cap.net.capture_host = pc
    t = cap.session(kind="Lync 2010 desktop", location="internal", address="10.0.10.80", user="sip:victor@contoso.com",
                    auth_protocol="unknown", outcome="failure", failure_step="mex")
    c = Client(cap, w, pc, t, ua=LYNC2010_UA, rtt=0.0006)
    c.dns("_sipinternaltls._tcp.contoso.com", "SRV")
    c.dns(w.fe)
    leg = sip_leg(c, sip_uri=sip("victor"), ua=LYNC2010_UA)
    sip_offer(c, leg, ["TLS-DSK"])  # the two-factor pool: certificates only for SIP
    certprov(c, w.fe_host, w.pool, sip_uri=sip("victor"), ticket="")  # the CertProv metadata names the issuer
    mex(c, w.fe_host, w.pool, PASSIVE_PORTS)  # ... whose web tickets need AD FS or a certificate
    cap.net.advance(0.4)
    leg.conn.close(by="client")  # Lync 2010 cannot do passive authentication: it gives up
    c.close_all()
    cap.notes.append("a Lync 2010 desktop on the two-factor pool: SIP offers only TLS-DSK, the web ticket service only "
                     "passive (AD FS) and certificate; the client has no certificate and cannot do passive, so it stops")


# -----------------------------------------------------------------------------------------------
# 10  Password spraying against the published web services
# -----------------------------------------------------------------------------------------------

SPRAY_USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "gina", "walter"]


def password_spray(cap: Capture) -> None:
    w = Contoso(cap)
    cap.net.capture_host = w.fe_host
    attacker = "203.0.113.66"
    sessions: dict[str, Any] = {}
    tries = [(u, "Winter2014!") for u in SPRAY_USERS] + [("alice", "Spring2014!"), ("bob", "Spring2014!")]
    for user, password in tries:
        ok = user == "walter"
        if user not in sessions:
            sessions[user] = cap.session(kind="Script (Python)", location="external", address=attacker, user=f"CONTOSO\\{user}",
                                         auth_protocol="soap", outcome="success" if ok else "failure",
                                         failure_step=None if ok else "webticket")
        c = Client(cap, w, w.rp_int, sessions[user], ua=PY_UA, rtt=0.0009, via_rp=w.rp_int, public_ip=attacker)
        webticket_usernametoken(c, w.rp_ext, w.ext_web, user=user, password=password, accept=ok,
                                applies_to=f"https://{w.ext_web}/WebTicket/WebTicketService.svc/Auth")
        c.close_all()
        cap.net.advance(2.5)
    # a slow sprayer: one OAuth password guess every 15 minutes from another address
    slow = "198.51.100.201"
    for user in ["henry", "irene", "jack", "karen", "liam", "mona"]:
        t = cap.session(kind="Script (PowerShell)", location="external", address=slow, user=f"{user}@contoso.com",
                        auth_protocol="password", outcome="failure", failure_step="oauth")
        c = Client(cap, w, w.rp_int, t, ua=PS_UA, rtt=0.0009, via_rp=w.rp_int, public_ip=slow)
        oauth_token(c, w.rp_ext, w.ext_web, "password", accept=False, username=f"{user}@contoso.com", password="Welcome1")
        c.close_all()
        cap.net.advance(900.0)
    cap.findings += ["password-spray", "external-domain-credentials", "external-without-mfa"]
    cap.notes.append("fast spray on /WebTicketService.svc/Auth (one account falls), slow spray on /oauthtoken every 15 minutes")


# -----------------------------------------------------------------------------------------------
# 11  A sign-in buried in everyday traffic
# -----------------------------------------------------------------------------------------------


def with_background_noise(cap: Capture) -> None:
    from lyncpcap.lab.noise import add_noise

    w = Contoso(cap)
    pc = cap.net.host("uma-laptop", "192.168.5.20")
    router = cap.net.host("uma-router", "192.168.5.1")
    cap.net.capture_host = pc
    start = cap.net.now
    t = cap.session(kind="Lync 2013 desktop", location="external", address="192.168.5.20", user="CONTOSO\\uma",
                    auth_protocol="ntlm", outcome="success")
    cap.net.advance(3.0)
    c = Client(cap, w, pc, t, ua=DESKTOP_HTTP_UA, rtt=0.04, resolver=router)
    nxdomain(c, "lyncdiscoverinternal.contoso.com")
    c.dns("lyncdiscover.contoso.com")
    discover_xml(c, w.rp_ext, "lyncdiscover.contoso.com", sip("uma"), web=w.ext_web)
    applies = desktop_web_ticket_path(c, w, w.rp_ext, w.ext_web, "uma", location="External")
    ticket = webticket_ntlm(c, w.rp_ext, w.ext_web, user="uma", password="Uma+Laptop5", workstation="UMA-LAPTOP",
                            sip_uri=sip("uma"), applies_to=applies)
    assert ticket
    user_200(c, w.rp_ext, w.ext_web, ticket, location="External")
    c.dns(w.edge)
    leg = sip_leg(c, sip_uri=sip("uma"), via_edge=True)
    sip_offer(c, leg, ["NTLM", "TLS-DSK"])
    certprov(c, w.rp_ext, w.ext_web, sip_uri=sip("uma"), ticket=ticket)
    ticket2 = webticket_ntlm(c, w.rp_ext, w.ext_web, user="uma", password="Uma+Laptop5", workstation="UMA-LAPTOP",
                             sip_uri=sip("uma"), applies_to=f"https://{w.ext_web}/CertProv/CertProvisioningService.svc",
                             anonymous_first=False)
    assert ticket2
    certprov_publish(c, w.rp_ext, w.ext_web, sip_uri=sip("uma"), ticket=ticket2)
    sip_tls_dsk(c, leg, user_cn="uma", sip_uri=sip("uma"))
    c.close_all()
    end = cap.net.now
    add_noise(cap, pc, router, start=start - 2.0, end=end + 4.0)
    cap.findings += ["external-domain-credentials", "external-without-mfa"]
    cap.notes.append("web browsing, opaque TLS, DNS and an RTP-like media stream around the sign-in")


# -----------------------------------------------------------------------------------------------
# 12  Internal desktop whose web SPN is missing: Kerberos fails at the KDC, NTLM inside Negotiate
# -----------------------------------------------------------------------------------------------


def internal_spn_missing(cap: Capture) -> None:
    w = Contoso(cap)
    pc = cap.net.host("victor-pc", "10.0.10.90")
    cap.net.capture_host = pc
    t = cap.session(kind="Lync 2013 desktop", location="internal", address="10.0.10.90", user="CONTOSO\\victor",
                    auth_protocol="ntlm", outcome="success")
    c = Client(cap, w, pc, t, ua=DESKTOP_HTTP_UA, rtt=0.0006)
    c.dns("lyncdiscoverinternal.contoso.com")
    discover_xml(c, w.fe_host, "lyncdiscoverinternal.contoso.com", sip("victor"), web=w.pool)
    applies = desktop_web_ticket_path(c, w, w.fe_host, w.pool, "victor", location="Internal")
    c.tgs("victor", f"HTTP/{w.pool}", error=7)
    ticket = webticket_ntlm(c, w.fe_host, w.pool, user="victor", password="V1ctor#Desk", workstation="VICTOR-PC",
                            sip_uri=sip("victor"), applies_to=applies, scheme="Negotiate")
    assert ticket
    user_200(c, w.fe_host, w.pool, ticket, location="Internal")
    leg = sip_leg(c, sip_uri=sip("victor"))
    sip_offer(c, leg, ["NTLM", "Kerberos", "TLS-DSK"])
    certprov(c, w.fe_host, w.pool, sip_uri=sip("victor"), ticket=ticket)
    ticket2 = webticket_ntlm(c, w.fe_host, w.pool, user="victor", password="V1ctor#Desk", workstation="VICTOR-PC",
                             sip_uri=sip("victor"), applies_to=f"https://{w.pool}/CertProv/CertProvisioningService.svc",
                             scheme="Negotiate", anonymous_first=False)
    assert ticket2
    certprov_publish(c, w.fe_host, w.pool, sip_uri=sip("victor"), ticket=ticket2)
    sip_tls_dsk(c, leg, user_cn="victor", sip_uri=sip("victor"))
    c.close_all()
    cap.findings += ["kerberos-fallback-ntlm"]
    cap.notes.append("KDC_ERR_S_PRINCIPAL_UNKNOWN for HTTP/lyncpool.contoso.com, then Negotiate carrying raw NTLM")


# -----------------------------------------------------------------------------------------------
# The catalogue
# -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    name: str
    build: Callable[[Capture], None]
    description: str
    seed: int
    start: datetime
    link: str = "ethernet"
    fmt: str = "pcapng"
    nanosecond: bool = False
    big_endian: bool = False
    tls: bool = False
    embed_keys: bool = False
    twin_of: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: fmt "saz"/"har": the web exchanges of `archive_of`'s scenario run, as that archive
    archive_of: str | None = None
    #: only this client's exchanges (a HAR is saved in one browser)
    client: str | None = None
    #: web connections speak HTTP/2 (lab/h2.py)
    http2: bool = False


CATALOGUE: tuple[Spec, ...] = (
    Spec("01-desktop-internal-kerberos", desktop_internal_kerberos,
         "Lync 2013 desktop, internal, Kerberos web ticket, CertProv, TLS-DSK; a second machine (IPv6) with a cached certificate",
         101, t0(20, 8, 1)),
    Spec("02-desktop-external-ntlm", desktop_external_ntlm,
         "Lync 2013 desktop, external through the reverse proxy and Edge, NTLM; captured at the Front End",
         102, t0(20, 8, 12)),
    Spec("03-windows-phone-ntlm", windows_phone_ntlm,
         "Lync 2013 for Windows Phone, external, NTLM web ticket then UCWA; Linux cooked capture on the Wi-Fi",
         103, t0(20, 9, 3), link="sll", fmt="pcap"),
    Spec("04-android-ntlm-and-soap", android_ntlm_soap,
         "Lync 2013 for Android: 5.4 with NTLM, 5.1 with SOAP UsernameToken; 802.1Q capture at the reverse proxy",
         104, t0(20, 9, 30), link="vlan"),
    Spec("05-lwa-domain-user-soap", lwa_domain_user_soap,
         "Lync Web App, domain user, SOAP UsernameToken web ticket; IPv6 at the browser",
         105, t0(20, 10, 0)),
    Spec("06-lwa-guests-anonymous", lwa_guests,
         "Lync Web App guests: anonymous SOAP (/Anon) and the UCWA anonmeeting grant",
         106, t0(20, 10, 30), fmt="pcap", big_endian=True),
    Spec("07-passive-adfs-2fa", passive_desktop,
         "Lync 2013 desktop on a two-factor pool: AD FS WS-Federation with a one-time code, then TLS-DSK",
         107, t0(20, 11, 0), fmt="pcap", nanosecond=True),
    Spec("08-ucwa-mobile-oauth", ucwa_mobile_oauth,
         "Lync 2013 for iOS (UCWA) with the OAuth password grant, redirected to its home pool",
         108, t0(20, 11, 30)),
    Spec("09a-wrong-password", wrong_password,
         "Failure: wrong password, 401 after a full NTLM type 3, three attempts",
         109, t0(21, 7, 45)),
    Spec("09b-locked-account", locked_account,
         "Failure: a phone with a stale password retries OAuth; the account locks; the desktop's Kerberos and NTLM are refused",
         110, t0(21, 8, 0)),
    Spec("09c-lyncdiscover-nxdomain", lyncdiscover_nxdomain,
         "Failure: lyncdiscover names do not resolve; the desktop falls back to DNS SRV, a phone gives up",
         111, t0(21, 8, 30), fmt="pcap"),
    Spec("09d-mex-404", mex_404,
         "Failure: the reverse proxy answers 404 for the WebTicket MEX",
         112, t0(21, 9, 0), link="qinq"),
    Spec("09e-webticket-fault-28020", webticket_fault,
         "Failure: Lync Web App UsernameToken refused with SOAP fault ErrorId 28020",
         113, t0(21, 9, 30)),
    Spec("09f-oauth-invalid-grant", oauth_invalid_grant,
         "Failure: OAuth password grant refused with invalid_grant; Linux cooked v2 capture",
         114, t0(21, 10, 0), link="sll2", fmt="pcap"),
    Spec("09g-sip-register-4004", sip_forbidden,
         "Failure: SIP REGISTER refused with ms-diagnostics 4004 after NTLM2-session credentials",
         115, t0(21, 10, 30)),
    Spec("09h-adfs-errors", adfs_failures,
         "Failure: AD FS rejects a password (errorText) and fails after the second factor (MSIS7012 error page)",
         116, t0(21, 11, 0)),
    Spec("09i-connect-failures", connect_failures,
         "Failure: the reverse proxy refuses connections (RST); a firewall drops internal Autodiscover (SYN timeouts)",
         120, t0(21, 11, 30)),
    Spec("09j-certificate-untrusted", certificate_untrusted,
         "Failure: a phone does not trust the reverse proxy's certificate (real TLS, fatal unknown_ca alert)",
         121, t0(21, 12, 0), tls=True),
    Spec("09k-legacy-client-2fa-pool", legacy_client_2fa_pool,
         "Failure: a Lync 2010 desktop on a two-factor pool: only TLS-DSK and passive web tickets offered, it gives up",
         122, t0(21, 12, 30)),
    Spec("10-password-spray", password_spray,
         "Attack: password spraying on /WebTicketService.svc/Auth (fast) and /oauthtoken (slow)",
         117, t0(22, 2, 10)),
    Spec("11-background-noise", with_background_noise,
         "A desktop external NTLM sign-in among web browsing, opaque TLS, DNS and RTP-like media",
         118, t0(22, 9, 0)),
    Spec("12-internal-spn-missing", internal_spn_missing,
         "Internal desktop: HTTP SPN missing (KDC_ERR_S_PRINCIPAL_UNKNOWN), Negotiate falls back to NTLM",
         119, t0(22, 9, 30)),
    Spec("02-desktop-external-ntlm-tls", desktop_external_ntlm,
         "TLS twin of 02 (real TLS 1.2, key log file beside it)",
         102, t0(20, 8, 12), tls=True, twin_of="02-desktop-external-ntlm"),
    Spec("08-ucwa-mobile-oauth-tls", ucwa_mobile_oauth,
         "TLS twin of 08 (real TLS 1.2, keys embedded in the pcapng as a Decryption Secrets Block)",
         108, t0(20, 11, 30), tls=True, embed_keys=True, twin_of="08-ucwa-mobile-oauth"),
    # The web-only scenarios as the archives support engineers are sent (same scenario runs)
    Spec("05-lwa-domain-user-soap-saz", lwa_domain_user_soap,
         "05 as a Fiddler SAZ: Fiddler as the browser's HTTPS-decrypting proxy (web exchanges only)",
         105, t0(20, 10, 0), fmt="saz", archive_of="05-lwa-domain-user-soap"),
    Spec("05-lwa-domain-user-soap-har", lwa_domain_user_soap,
         "05 as a HAR saved from the browser's developer tools (web exchanges only)",
         105, t0(20, 10, 0), fmt="har", archive_of="05-lwa-domain-user-soap"),
    Spec("06-lwa-guests-anonymous-saz", lwa_guests,
         "06 as one Fiddler SAZ: both guests' browsers used the same Fiddler proxy",
         106, t0(20, 10, 30), fmt="saz", archive_of="06-lwa-guests-anonymous"),
    Spec("06-lwa-guests-anonymous-guest1-har", lwa_guests,
         "06 as a HAR saved in the first guest's browser (its web exchanges only)",
         106, t0(20, 10, 30), fmt="har", archive_of="06-lwa-guests-anonymous", client="198.51.100.140"),
    Spec("06-lwa-guests-anonymous-guest2-har", lwa_guests,
         "06 as a HAR saved in the second guest's browser (its web exchanges only)",
         106, t0(20, 10, 30), fmt="har", archive_of="06-lwa-guests-anonymous", client="198.51.100.141"),
    Spec("08-ucwa-mobile-oauth-saz", ucwa_mobile_oauth,
         "08 as a Fiddler SAZ: the phone used Fiddler as its HTTPS-decrypting proxy (web exchanges only)",
         108, t0(20, 11, 30), fmt="saz", archive_of="08-ucwa-mobile-oauth"),
    Spec("08-ucwa-mobile-oauth-har", ucwa_mobile_oauth,
         "08 as a HAR exported from the proxy that decrypted the phone's HTTPS (web exchanges only)",
         108, t0(20, 11, 30), fmt="har", archive_of="08-ucwa-mobile-oauth"),
)

#: Spec.fmt values that write an HTTP archive instead of a capture
ARCHIVE_FORMATS = ("saz", "har")
