"""Sign-in building blocks for the lab, following PROTOCOL.md §10 step orders.

Each function performs one sign-in phase for a `Client` (Autodiscover, MEX, a web ticket with a
given authentication, CertProv, a REGISTER handshake, UCWA) and records its steps in the truth.
"""

from __future__ import annotations

from dataclasses import dataclass

from lyncpcap.lab import krb5, lync
from lyncpcap.lab.fixtures import certificate, tls_dsk
from lyncpcap.lab.netsim import Host
from lyncpcap.lab.ntlmmsg import NtlmClient, challenge
from lyncpcap.lab.world import DOMAIN, NETBIOS, REALM, Client, Conn, ntlm_response_secret

DESKTOP_UA = "UCCAPI/15.0.4569.1503 OC/15.0.4569.1503 (Microsoft Lync)"
DESKTOP_HTTP_UA = "OC/15.0.4569.1503 (Microsoft Lync)"
WEB_PORTS_DEFAULT = [
    "WebTicketServiceWinNegotiate",
    "WebTicketServiceCert",
    "WebTicketServicePin",
    "WebTicketServiceAuth",
    "WebTicketServiceAnon",
]
AD = "/Autodiscover/AutodiscoverService.svc/root"


def fe_fqdn(c: Client) -> str:
    return c.w.fe


# -- Autodiscover ------------------------------------------------------------------------------


def discover_xml(c: Client, server: Host, host: str, sip_uri: str, *, web: str) -> None:
    """Desktop-style root request (`?sipuri=`, XML)."""
    user = sip_uri.split(":", 1)[1]
    c.http(
        server,
        host,
        "GET",
        f"/?sipuri={user}",
        step="autodiscover",
        headers=[("Accept", "application/vnd.microsoft.rtc.autodiscover+xml;v=1")],
        response=lambda ts: lync.response(
            200, body=lync.autodiscover_root_xml(web, DOMAIN), content_type=lync.AUTODISCOVER_XML, ts=ts, lync=c.w.fe, rng=c.rng
        ),
    )


def discover_json(c: Client, server: Host, host: str, *, web: str, path: str = "/", origin: str | None = None) -> None:
    """UCWA-style root request (JSON)."""
    hs = [("Accept", "application/json")]
    if origin:
        hs += [("X-Ms-Origin", origin), ("X-Requested-With", "XMLHttpRequest"), ("Referer", f"https://{host}/xframe")]
    c.http(
        server,
        host,
        "GET",
        path,
        step="autodiscover",
        headers=hs,
        response=lambda ts: lync.response(
            200, body=lync.autodiscover_root_json(web, DOMAIN), content_type="application/json", ts=ts, lync=c.w.fe, rng=c.rng
        ),
    )


def user_401(c: Client, server: Host, web: str) -> None:
    c.http(
        server,
        web,
        "GET",
        f"{AD}/user",
        step="autodiscover",
        headers=[("Accept", "application/vnd.microsoft.rtc.autodiscover+xml;v=1")],
        response=lambda ts: lync.response(401, lync.webticket_challenge_headers(web), ts=ts, lync=c.w.fe, rng=c.rng),
    )


def user_200(c: Client, server: Host, web: str, ticket: str, *, location: str) -> None:
    w = c.w
    c.http(
        server,
        web,
        "GET",
        f"{AD}/user",
        step="autodiscover",
        headers=[("Accept", "application/vnd.microsoft.rtc.autodiscover+xml;v=1"), ("X-MS-WebTicket", f"opaque={ticket}")],
        response=lambda ts: lync.response(
            200,
            body=lync.autodiscover_user_xml(int_web=w.pool, ext_web=w.ext_web, pool=w.pool, edge=w.edge, location=location),
            content_type=lync.AUTODISCOVER_XML,
            ts=ts,
            lync=w.fe,
            rng=c.rng,
        ),
    )


def oauth_user_401(c: Client, server: Host, web: str, *, grants: str = "urn:microsoft.rtc:windows,urn:microsoft.rtc:anonmeeting,password") -> None:
    c.http(
        server,
        web,
        "GET",
        f"{AD}/oauth/user?originalDomain={DOMAIN}",
        step="autodiscover",
        headers=[("Accept", "application/json")],
        response=lambda ts: lync.response(401, lync.oauth_challenge_headers(web, DOMAIN, grants), ts=ts, lync=c.w.fe, rng=c.rng),
    )


def oauth_user_200(c: Client, server: Host, web: str, token: str, *, redirect_to: str | None = None) -> None:
    body = lync.autodiscover_redirect_json(redirect_to, DOMAIN) if redirect_to else lync.autodiscover_user_json(web, DOMAIN)
    c.http(
        server,
        web,
        "GET",
        f"{AD}/oauth/user?originalDomain={DOMAIN}",
        step="autodiscover",
        headers=[("Accept", "application/json"), ("Authorization", f"Bearer {token}")],
        response=lambda ts: lync.response(200, body=body, content_type="application/json", ts=ts, lync=c.w.fe, rng=c.rng),
    )


def mex(c: Client, server: Host, web: str, ports: list[str] | None = None, *, status: int = 200) -> None:
    def resp(ts: float) -> bytes:
        if status != 200:
            return lync.response(status, body=lync.NOT_FOUND_HTML, content_type="text/html", ts=ts, server="Microsoft-HTTPAPI/2.0")
        return lync.response(200, body=lync.mex_wsdl(web, ports or WEB_PORTS_DEFAULT), content_type="text/xml; charset=utf-8", ts=ts, lync=c.w.fe, rng=c.rng)

    c.http(server, web, "GET", "/WebTicket/WebTicketService.svc/mex", step="mex", response=resp)


# -- web tickets ---------------------------------------------------------------------------------


def _rstr(c: Client, sip_uri: str, web: str, extra: list[tuple[str, str]] | None = None) -> tuple[bytes, str]:
    body, aid = lync.rstr_saml(sip_uri=sip_uri, issuer=f"https://{web}/WebTicket/WebTicketService.svc", rng=c.rng, now=c.cap.when)
    return body, aid


def webticket_kerberos(c: Client, server: Host, web: str, *, user: str, sip_uri: str, applies_to: str, anonymous_first: bool = True) -> str:
    """Negotiate/Kerberos web ticket after a TGS for HTTP/<web>; returns the ticket (assertion id)."""
    rng = c.rng
    rst = lync.rst(applies_to=applies_to, sip_uri=sip_uri, rng=rng)
    hdr = [("SOAPAction", f'"{lync.RST_ACTION}"')]
    ct = "text/xml; charset=utf-8"
    path = "/WebTicket/WebTicketService.svc"
    if anonymous_first:
        c.http(server, web, "POST", path, step="webticket", body=rst, content_type=ct, headers=hdr,
               response=lambda ts: lync.response(401, [("WWW-Authenticate", "Negotiate"), ("WWW-Authenticate", "NTLM")], ts=ts, lync=c.w.fe, rng=rng))
    token = krb5.spnego_init(krb5.gss_krb5(krb5.ap_req(REALM, f"HTTP/{web}", rng=rng, cname=user)))
    body, aid = _rstr(c, sip_uri, web)
    aprep = krb5.spnego_resp(response_token=krb5.gss_krb5(krb5.ap_rep(rng=rng), tok_id=b"\x02\x00"))
    c.http(server, web, "POST", path, step="webticket", body=rst, content_type=ct,
           headers=[*hdr, ("Authorization", f"Negotiate {lync.b64(token)}")],
           response=lambda ts: lync.response(200, [("WWW-Authenticate", f"Negotiate {lync.b64(aprep)}")], body=body,
                                             content_type="text/xml; charset=utf-8", ts=ts, lync=c.w.fe, rng=rng),
           think=(0.04, 0.15))
    c.cap.secret(aid)
    return aid


def webticket_ntlm(
    c: Client,
    server: Host,
    web: str,
    *,
    user: str,
    password: str,
    workstation: str,
    sip_uri: str,
    applies_to: str,
    cwt: bool = False,
    scheme: str = "NTLM",
    anonymous_first: bool = True,
    accept: bool = True,
    variant: str = "v2",
    new: bool = True,
) -> str | None:
    rng = c.rng
    rst = lync.rst(applies_to=applies_to, sip_uri=sip_uri, rng=rng, token_type=lync.CWT_TOKEN if cwt else lync.SAML_TOKEN, now=c.cap.when)
    ticket: list[str] = []

    def final(ts: float) -> bytes:
        if not accept:
            return lync.response(401, [("WWW-Authenticate", "Negotiate"), ("WWW-Authenticate", "NTLM")], ts=ts, lync=c.w.fe, rng=rng)
        if cwt:
            tok = lync.cwt(rng)
            ticket.append(tok)
            return lync.response(200, body=lync.rstr_cwt(token=tok, now=c.cap.when), content_type="text/xml; charset=utf-8", ts=ts, lync=c.w.fe, rng=rng)
        body, aid = _rstr(c, sip_uri, web)
        ticket.append(aid)
        return lync.response(200, body=body, content_type="text/xml; charset=utf-8", ts=ts, lync=c.w.fe, rng=rng)

    c.ntlm_http(server, web, "POST", "/WebTicket/WebTicketService.svc", step="webticket", user=user, password=password,
                workstation=workstation, body=rst, content_type="text/xml; charset=utf-8", final=final, scheme=scheme,
                anonymous_first=anonymous_first, variant=variant, extra_headers=[("SOAPAction", f'"{lync.RST_ACTION}"')], new=new)
    if ticket:
        c.cap.secret(ticket[0])
        return ticket[0]
    return None


def webticket_usernametoken(c: Client, server: Host, web: str, *, user: str, password: str, applies_to: str, accept: bool = True, fault: tuple[int, str] = (28020, "No valid security token.")) -> str | None:
    rng = c.rng
    c.cap.secret(password)
    body = lync.rst(applies_to=applies_to, sip_uri=None, rng=rng, token_type=lync.CWT_TOKEN, username=f"{NETBIOS}\\{user}", password=password, now=c.cap.when)
    ticket: list[str] = []

    def resp(ts: float) -> bytes:
        if not accept:
            return lync.response(500, body=lync.soap_fault(*fault), content_type="text/xml; charset=utf-8", ts=ts, lync=c.w.fe, rng=rng)
        tok = lync.cwt(rng)
        ticket.append(tok)
        return lync.response(200, body=lync.rstr_cwt(token=tok, now=c.cap.when), content_type="text/xml; charset=utf-8", ts=ts, lync=c.w.fe, rng=rng)

    c.http(server, web, "POST", "/WebTicket/WebTicketService.svc/Auth", step="webticket", body=body,
           content_type="text/xml; charset=utf-8", headers=[("SOAPAction", f'"{lync.RST_ACTION}"')], response=resp, think=(0.05, 0.2))
    if ticket:
        c.cap.secret(ticket[0])
        return ticket[0]
    return None


def webticket_cert(c: Client, server: Host, web: str, *, sip_uri: str, applies_to: str) -> str:
    rng = c.rng
    body = lync.rst(applies_to=applies_to, sip_uri=sip_uri, rng=rng)
    rstr, aid = _rstr(c, sip_uri, web)
    c.http(server, web, "POST", "/WebTicket/WebTicketService.svc/Cert", step="webticket", body=body,
           content_type="text/xml; charset=utf-8", headers=[("SOAPAction", f'"{lync.RST_ACTION}"')],
           response=lambda ts: lync.response(200, body=rstr, content_type="text/xml; charset=utf-8", ts=ts, lync=c.w.fe, rng=rng))
    c.cap.secret(aid)
    return aid


# -- CertProv -------------------------------------------------------------------------------------


def certprov(c: Client, server: Host, web: str, *, sip_uri: str, ticket: str, error: str | None = None) -> None:
    rng = c.rng
    c.http(server, web, "GET", "/CertProv/CertProvisioningService.svc/mex", step="certprov",
           response=lambda ts: lync.response(200, body=lync.certprov_mex(web), content_type="text/xml; charset=utf-8", ts=ts, lync=c.w.fe, rng=rng))


def certprov_publish(c: Client, server: Host, web: str, *, sip_uri: str, ticket: str, error: str | None = None) -> None:
    rng = c.rng
    csr, cert = certificate(sip_uri)
    body = lync.certprov_request(sip_uri=sip_uri, csr_der=csr, assertion_id=ticket, rng=rng)
    c.http(server, web, "POST", "/CertProv/CertProvisioningService.svc/WebTicket_Proof_SHA1", step="certprov", body=body,
           content_type="text/xml; charset=utf-8",
           headers=[("SOAPAction", '"http://schemas.microsoft.com/OCS/AuthWebServices/GetAndPublishCert"')],
           response=lambda ts: lync.response(200, body=lync.certprov_response(cert_der=None if error else cert, error=error),
                                             content_type="text/xml; charset=utf-8", ts=ts, lync=c.w.fe, rng=rng),
           think=(0.1, 0.3))


# -- SIP -------------------------------------------------------------------------------------------


@dataclass
class SipLeg:
    """Where REGISTERs travel: the connection, the dialog, and how the Edge relays them."""

    conn: Conn
    dialog: lync.SipDialog
    edge_via: str | None = None
    received: str | None = None
    remote: bool = False


def sip_leg(c: Client, *, sip_uri: str, via_edge: bool = False, edge_capture: bool = False, ua: str = DESKTOP_UA) -> SipLeg:
    """Open the SIP connection: client → registrar, client → Access Edge, or (capture at the Front
    End) Access Edge → registrar relaying the client's REGISTERs."""
    net = c.cap.net
    w = c.w
    ports = w.ports
    if edge_capture:
        tcp = net.tcp(w.edge_int, w.fe_host, ports.edge_fe, rtt=0.0008)
        client_ip = c.public_ip or "0.0.0.0"
        port = c.rng.randint(49152, 65535)
        edge_via: str | None = f"{w.edge_int.ipv4}:{ports.edge_fe}"
        received: str | None = c.public_ip
    else:
        dst = w.edge_ext if via_edge else w.fe_host
        tcp = net.tcp(c.host, dst, ports.edge if via_edge else ports.sip, rtt=c.rtt, family=c.family if dst.ipv6 else 4)
        client_ip = (c.host.ipv6 if (c.family == 6 and dst.ipv6) else c.host.ipv4) or ""
        port = tcp.client_port
        edge_via = None
        received = None
    conn: Conn = tcp
    if c.cap.tls:
        from lyncpcap.lab.tlssim import TlsConn

        conn = TlsConn(tcp, c.cap.pki, [w.edge if via_edge else w.fe], sni=w.edge if via_edge else w.fe, keylog=c.cap.keylog)
    dialog = lync.SipDialog(sip_uri=sip_uri, domain=DOMAIN, client_ip=client_ip, client_port=port, user_agent=ua, rng=c.rng)
    return SipLeg(conn, dialog, edge_via, received, remote=via_edge or edge_capture)


def _register(c: Client, leg: SipLeg, authorization: str | None, status: int, reason: str, headers: list[str], think: tuple[float, float] = (0.005, 0.03)) -> None:
    req = leg.dialog.register(authorization, edge_via=leg.edge_via, received=leg.received)
    leg.conn.send(req)
    leg.conn.reply(leg.dialog.response(status, reason, headers), think=c.think(*think))
    scheme = authorization.split(" ", 1)[0] if authorization else None
    c.truth.record("sip-register", "REGISTER", status, scheme=scheme)
    c.cap.net.advance(c.think(0.001, 0.01))


def sip_offer(c: Client, leg: SipLeg, schemes: list[str]) -> None:
    _register(c, leg, None, 401, "Unauthorized", lync.sip_offer(schemes, fqdn=c.w.fe, pool=c.w.pool))


def sip_tls_dsk(c: Client, leg: SipLeg, *, user_cn: str, sip_uri: str) -> None:
    """TLS-DSK: ClientHello → 401(server flight) → client cert flight → 401(Finished) → signed → 200."""
    rng = c.rng
    fe = c.w.fe
    flights = tls_dsk(user_cn, fe)
    opaque = rng.randbytes(4).hex().upper()
    _register(c, leg, lync.sip_auth("TLS-DSK", target=fe, gssapi=flights[0]), 401, "Unauthorized",
              [lync.sip_continue("TLS-DSK", target=fe, opaque=opaque, gssapi=flights[1])])
    _register(c, leg, lync.sip_auth("TLS-DSK", target=fe, gssapi=flights[2], opaque=opaque), 401, "Unauthorized",
              [lync.sip_continue("TLS-DSK", target=fe, opaque=opaque, gssapi=flights[3])])
    _registered(c, leg, "TLS-DSK", opaque, sip_uri)


def _registered(c: Client, leg: SipLeg, scheme: str, opaque: str, sip_uri: str, *, authorization: str | None = None) -> None:
    rng = c.rng
    fe = c.w.fe
    target = f"sip/{fe}" if scheme == "Kerberos" else fe
    auth = authorization or lync.sip_auth(scheme, target=target, gssapi=None, opaque=opaque, signed=True, rng=rng)
    headers = [lync.sip_authentication_info(scheme, target=target, opaque=opaque, rng=rng)]
    headers += lync.sip_200_headers(sip_uri=sip_uri, client_ip=leg.dialog.client_ip, client_port=leg.dialog.client_port,
                                    epid=leg.dialog.epid, rng=rng, remote=leg.remote)
    _register(c, leg, auth, 200, "OK", headers)


def sip_kerberos(c: Client, leg: SipLeg, *, user: str, sip_uri: str) -> None:
    rng = c.rng
    fe = c.w.fe
    c.tgs(user, f"sip/{fe}")
    ap = krb5.gss_krb5(krb5.ap_req(REALM, f"sip/{fe}", rng=rng, cname=user))
    opaque = rng.randbytes(4).hex().upper()
    _register(c, leg, lync.sip_auth("Kerberos", target=f"sip/{fe}", gssapi=ap), 401, "Unauthorized",
              [lync.sip_continue("Kerberos", target=f"sip/{fe}", opaque=opaque, gssapi=krb5.gss_krb5(krb5.ap_rep(rng=rng), tok_id=b"\x02\x00"))])
    _registered(c, leg, "Kerberos", opaque, sip_uri)


def sip_ntlm(c: Client, leg: SipLeg, *, user: str, password: str, workstation: str, sip_uri: str, variant: str = "v2",
             reject: tuple[int, str, str] | None = None) -> None:
    """Connectionless NTLM (MS-SIPAE): empty gssapi-data → 401 CHALLENGE → AUTHENTICATE → 200 / 403."""
    rng = c.rng
    fe = c.w.fe
    opaque = rng.randbytes(4).hex().upper()
    ch = challenge(target_name=NETBIOS, nb_domain=NETBIOS, nb_computer="FE01", dns_domain=DOMAIN, dns_computer=fe,
                   dns_tree=DOMAIN, timestamp=c.cap.when, rng=rng, datagram=True)
    _register(c, leg, lync.sip_auth("NTLM", target=fe, gssapi=None), 401, "Unauthorized",
              [lync.sip_continue("NTLM", target=fe, opaque=opaque, gssapi=ch)])
    client = NtlmClient(user, NETBIOS, password, workstation, rng=rng, variant=variant)
    t3 = client.authenticate(ch)
    c.cap.secret(ntlm_response_secret(t3))
    auth = lync.sip_auth("NTLM", target=fe, gssapi=t3, opaque=opaque)
    if reject:
        status, reason, diag = reject
        _register(c, leg, auth, status, reason, [f'ms-diagnostics: {diag}'])
        return
    _registered(c, leg, "NTLM", opaque, sip_uri, authorization=auth)


# -- UCWA / OAuth ------------------------------------------------------------------------------------


def oauth_token(c: Client, server: Host, web: str, grant: str, *, accept: bool = True, error: str = "invalid_grant",
                headers: list[tuple[str, str]] | None = None, passive_uri: str | None = None, expires: int = 28799, **fields: str) -> str | None:
    rng = c.rng
    if "password" in fields:
        c.cap.secret(fields["password"])
    token: list[str] = []

    def resp(ts: float) -> bytes:
        if accept:
            tok = lync.cwt(rng)
            token.append(tok)
            return lync.response(200, [("Cache-Control", "no-store")], body=lync.oauth_token(tok, expires_in=expires),
                                 content_type="application/json", ts=ts, lync=c.w.fe, rng=rng)
        extra = {"ms_rtc_passiveauthuri": passive_uri} if passive_uri else {}
        diag = [("X-Ms-diagnostics", f'28020;source="{c.w.fe}";reason="No valid security token."')] if passive_uri else []
        return lync.response(400, diag, body=lync.oauth_error(error, **extra), content_type="application/json", ts=ts, lync=c.w.fe, rng=rng)

    c.http(server, web, "POST", "/WebTicket/oauthtoken", step="oauth", body=lync.oauth_request(grant, **fields),
           content_type=lync.FORM, headers=headers, response=resp, think=(0.05, 0.2))
    if token:
        c.cap.secret(token[0])
        return token[0]
    return None


def ucwa_application(c: Client, server: Host, web: str, token: str, *, app_ua: str, kind: str | None = None,
                     namespace: str = "external", path: str = "/ucwa/oauth/v1/applications", sip_uri: str | None = None,
                     auth_header: str = "Authorization") -> str:
    rng = c.rng
    app_id = rng.randbytes(16).hex()
    value = f"Bearer {token}" if auth_header == "Authorization" else f"opaque={token}"
    c.http(server, web, "POST", path, step="ucwa",
           body=lync.ucwa_application_request(app_ua, lync.guid(rng), kind), content_type="application/json",
           headers=[(auth_header, value)],
           response=lambda ts: lync.response(201, [("X-MS-Namespace", namespace)],
                                             body=lync.ucwa_application(web, app_id, sip_uri, oauth="oauth" in path),
                                             content_type="application/vnd.microsoft.com.ucwa+json; charset=utf-8", ts=ts, lync=c.w.fe, rng=rng),
           think=(0.2, 0.6))
    return app_id
