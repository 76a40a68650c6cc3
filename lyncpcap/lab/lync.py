"""Lync 2013 sign-in messages for the lab, shaped as shared PROTOCOL.md describes them.

HTTP requests/responses as IIS and the Lync web services send them, Autodiscover JSON/XML, the
WebTicket MEX WSDL, WS-Trust RST/RSTR and faults, CertProv, UCWA OAuth, AD FS pages and SIP texts.
Every function is deterministic given its arguments (randomness comes from the caller's rng).
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import uuid
from datetime import datetime, timedelta
from email.utils import format_datetime
from urllib.parse import quote, urlencode

IIS = "Microsoft-IIS/8.5"
WSA = "http://www.w3.org/2005/08/addressing"
WST = "http://docs.oasis-open.org/ws-sx/ws-trust/200512"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
AF = "urn:component:Microsoft.Rtc.WebAuthentication.2010"
SAML_TOKEN = "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV1.1"
CWT_TOKEN = "urn:component:Microsoft.Rtc.WebAuthentication.2010:user-cwt-1"
ISSUE = "http://schemas.xmlsoap.org/ws/2005/02/trust/Issue"
RST_ACTION = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue"
SYMMETRIC = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/SymmetricKey"
SIP_REALM = "SIP Communications Service"


def guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def http_date(ts: float) -> str:
    from datetime import UTC

    return format_datetime(datetime.fromtimestamp(ts, UTC), usegmt=True)


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


def request(
    method: str,
    target: str,
    host: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    user_agent: str | None = None,
    content_type: str | None = None,
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1"]
    hs: list[tuple[str, str]] = []
    if content_type:
        hs.append(("Content-Type", content_type))
    hs.extend(headers or [])
    if user_agent:
        hs.append(("User-Agent", user_agent))
    hs.append(("Host", host))
    if body or method in ("POST", "PUT"):
        hs.append(("Content-Length", str(len(body))))
    if method in ("POST", "GET") and not any(k.lower() == "connection" for k, _ in hs):
        hs.append(("Connection", "Keep-Alive"))
    lines += [f"{k}: {v}" for k, v in hs]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


REASONS = {
    100: "Continue",
    200: "OK",
    201: "Created",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def response(
    status: int,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    ts: float,
    content_type: str | None = None,
    chunked: bool = False,
    gzip_body: bool = False,
    server: str | None = IIS,
    lync: str | None = None,
    rng: random.Random | None = None,
) -> bytes:
    """An IIS-style response; `lync` = the answering FE's FQDN adds the X-MS-* headers Lync sends."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}"]
    hs: list[tuple[str, str]] = []
    if status in (401, 403) and not content_type and not body:
        content_type = "text/html"
        body = IIS_401 if status == 401 else b""
    if content_type:
        hs.append(("Content-Type", content_type))
    if server:
        hs.append(("Server", server))
    hs.extend(headers or [])
    if lync:
        hs.append(("X-MS-Server-Fqdn", lync))
        if rng is not None:
            hs.append(("X-MS-Correlation-Id", str(rng.randrange(2**31))))
            hs.append(("client-request-id", guid(rng)))
    hs.append(("X-Powered-By", "ASP.NET"))
    hs.append(("Date", http_date(ts)))
    if gzip_body and body:
        body = gzip.compress(body, mtime=0)
        hs.append(("Content-Encoding", "gzip"))
    if chunked and body:
        hs.append(("Transfer-Encoding", "chunked"))
        parts = []
        step = max(1, len(body) // 3 + 1)
        for i in range(0, len(body), step):
            piece = body[i : i + step]
            parts.append(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        payload = b"".join(parts) + b"0\r\n\r\n"
    else:
        if status not in (204, 304) and not (100 <= status < 200):
            hs.append(("Content-Length", str(len(body))))
        payload = body
    lines += [f"{k}: {v}" for k, v in hs]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + payload


IIS_401 = (
    b'<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
    b'"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\r\n'
    b'<html xmlns="http://www.w3.org/1999/xhtml">\r\n<head>\r\n'
    b'<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"/>\r\n'
    b"<title>401 - Unauthorized: Access is denied due to invalid credentials.</title>\r\n</head>\r\n"
    b'<body>\r\n<div id="header"><h1>Server Error</h1></div>\r\n<div id="content">\r\n'
    b' <div class="content-container"><fieldset>\r\n'
    b"  <h2>401 - Unauthorized: Access is denied due to invalid credentials.</h2>\r\n"
    b"  <h3>You do not have permission to view this directory or page using the credentials that you supplied.</h3>\r\n"
    b" </fieldset></div>\r\n</div>\r\n</body>\r\n</html>\r\n"
)

NOT_FOUND_HTML = (
    b"<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\"\"http://www.w3.org/TR/html4/strict.dtd\">\r\n"
    b"<HTML><HEAD><TITLE>Not Found</TITLE>\r\n"
    b'<META HTTP-EQUIV="Content-Type" Content="text/html; charset=us-ascii"></HEAD>\r\n'
    b"<BODY><h2>Not Found</h2>\r\n<hr><p>HTTP Error 404. The requested resource is not found.</p>\r\n"
    b"</BODY></HTML>\r\n"
)


# --------------------------------------------------------------------------------------------
# Autodiscover ([MS-OCDISCWS], UCWA)
# --------------------------------------------------------------------------------------------

AUTODISCOVER_XML = "application/vnd.microsoft.rtc.autodiscover+xml; v=1"
AUTODISCOVER_JSON = "application/vnd.microsoft.rtc.autodiscover+json; v=1"


def autodiscover_root_json(web: str, domain: str, *, oauth: bool = True) -> bytes:
    base = f"https://{web}/Autodiscover/AutodiscoverService.svc/root"
    links = {
        "self": {"href": f"{base}?originalDomain={domain}"},
        "user": {"href": f"{base}/{'oauth/' if oauth else ''}user?originalDomain={domain}"},
        "xframe": {"href": f"https://{web}/Autodiscover/XFrame/XFrame.html"},
    }
    return json.dumps({"_links": links}, separators=(",", ":")).encode()


def autodiscover_root_xml(web: str, domain: str) -> bytes:
    base = f"https://{web}/Autodiscover/AutodiscoverService.svc/root"
    return (
        '<?xml version="1.0" encoding="utf-8"?><AutodiscoverResponse '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f'<Root><Link token="Domain" href="{base}/domain"/><Link token="User" href="{base}/user"/>'
        f'<Link token="OAuth" href="{base}/oauth/user"/></Root></AutodiscoverResponse>'
    ).encode()


def autodiscover_redirect_json(target: str, domain: str) -> bytes:
    href = f"https://{target}/Autodiscover/AutodiscoverService.svc/root?originalDomain={domain}"
    return json.dumps({"_links": {"redirect": {"href": href}}}, separators=(",", ":")).encode()


def autodiscover_user_xml(
    *, int_web: str, ext_web: str, pool: str, edge: str, location: str
) -> bytes:
    """The User resource (L13-AUTODISC example shape) with AccessLocation."""
    ia = f"https://{int_web}/Autodiscover/AutodiscoverService.svc/root"
    ea = f"https://{ext_web}/Autodiscover/AutodiscoverService.svc/root"
    links = [
        ("External/Autodiscover", ea),
        ("Internal/Autodiscover", ia),
        ("External/AuthBroker", f"https://{ext_web}/Reach/sip.svc"),
        ("Internal/AuthBroker", f"https://{int_web}/Reach/sip.svc"),
        ("External/WebScheduler", f"https://{ext_web}/Scheduler"),
        ("External/Mcx", f"https://{ext_web}/Mcx/McxService.svc"),
        ("Internal/Mcx", f"https://{int_web}/Mcx/McxService.svc"),
        ("External/Ucwa", f"https://{ext_web}/ucwa/v1/applications"),
        ("Internal/Ucwa", f"https://{int_web}/ucwa/v1/applications"),
        ("Ucwa", f"https://{ext_web if location == 'External' else int_web}/ucwa/v1/applications"),
        ("External/XFrame", f"https://{ext_web}/Autodiscover/XFrame/XFrame.html"),
        ("Internal/XFrame", f"https://{int_web}/Autodiscover/XFrame/XFrame.html"),
        ("XFrame", f"https://{ext_web if location == 'External' else int_web}/Autodiscover/XFrame/XFrame.html"),
        ("Self", f"{ea if location == 'External' else ia}/user"),
    ]
    link_xml = "".join(f'<Link token="{t}" href="{h}"/>' for t, h in links)
    return (
        '<?xml version="1.0" encoding="utf-8"?><AutodiscoverResponse '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'AccessLocation="{location}"><User>'
        f'<SipServerInternalAccess fqdn="{pool}" port="5061"/><SipClientInternalAccess fqdn="{pool}" port="5061"/>'
        f'<SipServerExternalAccess fqdn="{edge}" port="443"/><SipClientExternalAccess fqdn="{edge}" port="443"/>'
        f"{link_xml}</User></AutodiscoverResponse>"
    ).encode()


def autodiscover_user_json(web: str, domain: str, *, oauth: bool = True) -> bytes:
    """The OAuth User resource: the applications link for UCWA clients."""
    links = {
        "self": {"href": f"https://{web}/Autodiscover/AutodiscoverService.svc/root/oauth/user?originalDomain={domain}"},
        "applications": {"href": f"https://{web}/ucwa/{'oauth/' if oauth else ''}v1/applications"},
        "xframe": {"href": f"https://{web}/Autodiscover/XFrame/XFrame.html"},
    }
    return json.dumps({"_links": links}, separators=(",", ":")).encode()


def webticket_challenge_headers(web: str) -> list[tuple[str, str]]:
    return [("X-MS-WebTicketURL", f"https://{web}/WebTicket/WebTicketService.svc")]


def oauth_challenge_headers(web: str, domain: str, grants: str) -> list[tuple[str, str]]:
    return [
        (
            "WWW-Authenticate",
            f'Bearer trusted_issuers="00000002-0000-0ff1-ce00-000000000000@{domain}", '
            'client_id="00000004-0000-0ff1-ce00-000000000000"',
        ),
        ("WWW-Authenticate", f'MsRtcOAuth href="https://{web}/WebTicket/oauthtoken",grant_type="{grants}"'),
    ]


# --------------------------------------------------------------------------------------------
# MEX ([MS-OCAUTHWS])
# --------------------------------------------------------------------------------------------


def mex_wsdl(pool: str, ports: list[str]) -> bytes:
    """WebTicketService WSDL with one wsdl:port (and policy) per enabled authentication method."""
    base = f"https://{pool}/WebTicket/WebTicketService.svc"
    suffix = {
        "WebTicketServiceWinNegotiate": "",
        "WebTicketServiceWinNtlm": "",
        "WebTicketServiceAuth": "/Auth",
        "WebTicketServiceCert": "/Cert",
        "WebTicketServiceAnon": "/Anon",
        "WebTicketServicePin": "/Pin",
        "WsFedPassive": "/WsFed",
        "WsFedBearer": "/WsFedBearer",
        "OAuth": "/OAuth",
    }
    policies = []
    bindings = []
    wports = []
    for p in ports:
        auth_type = p.replace("WebTicketService", "") or p
        policies.append(
            f'<wsp:Policy wsu:Id="{p}_policy"><wsp:ExactlyOne><wsp:All>'
            f"<af:MSWebAuthenticationType>{auth_type}</af:MSWebAuthenticationType>"
            '<sp:TransportBinding xmlns:sp="http://docs.oasis-open.org/ws-sx/ws-securitypolicy/200702">'
            "<wsp:Policy><sp:TransportToken><wsp:Policy><sp:HttpsToken/></wsp:Policy></sp:TransportToken>"
            "</wsp:Policy></sp:TransportBinding></wsp:All></wsp:ExactlyOne></wsp:Policy>"
        )
        bindings.append(
            f'<wsdl:binding name="{p}" type="tns:IWebTicketService"><wsp:PolicyReference URI="#{p}_policy"/>'
            '<soap:binding transport="http://schemas.xmlsoap.org/soap/http"/>'
            '<wsdl:operation name="IssueToken"><soap:operation soapAction="'
            f'{RST_ACTION}" style="document"/></wsdl:operation></wsdl:binding>'
        )
        wports.append(
            f'<wsdl:port name="{p}" binding="tns:{p}"><soap:address location="{base}{suffix.get(p, "")}"/></wsdl:port>'
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<wsdl:definitions name="WebTicketService" targetNamespace="http://tempuri.org/" '
        'xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" '
        'xmlns:wsp="http://schemas.xmlsoap.org/ws/2004/09/policy" '
        f'xmlns:wsu="{WSU}" xmlns:af="{AF}" xmlns:tns="http://tempuri.org/">'
        + "".join(policies)
        + '<wsdl:portType name="IWebTicketService"><wsdl:operation name="IssueToken"/></wsdl:portType>'
        + "".join(bindings)
        + '<wsdl:service name="WebTicketService">'
        + "".join(wports)
        + "</wsdl:service></wsdl:definitions>"
    ).encode()


def certprov_mex(pool: str) -> bytes:
    base = f"https://{pool}/CertProv/CertProvisioningService.svc"
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<wsdl:definitions name="CertProvisioningService" targetNamespace="http://schemas.microsoft.com/OCS/AuthWebServices/" '
        'xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" '
        'xmlns:wsp="http://schemas.xmlsoap.org/ws/2004/09/policy" '
        f'xmlns:wsu="{WSU}" xmlns:af="{AF}">'
        '<wsp:Policy wsu:Id="CertProvisioningServiceWebTicketProof_SHA1_policy"><wsp:ExactlyOne><wsp:All>'
        '<sp:EndorsingSupportingTokens xmlns:sp="http://docs.oasis-open.org/ws-sx/ws-securitypolicy/200702"><wsp:Policy>'
        '<sp:IssuedToken><sp:Issuer><wsa:Address xmlns:wsa="http://www.w3.org/2005/08/addressing">'
        f"https://{pool}/WebTicket/WebTicketService.svc</wsa:Address></sp:Issuer></sp:IssuedToken>"
        "</wsp:Policy></sp:EndorsingSupportingTokens></wsp:All></wsp:ExactlyOne></wsp:Policy>"
        '<wsdl:service name="CertProvisioningService">'
        '<wsdl:port name="CertProvisioningServiceWebTicketProof_SHA1" binding="tns:CertProvisioningServiceWebTicketProof_SHA1">'
        f'<soap:address location="{base}/WebTicket_Proof_SHA1"/></wsdl:port>'
        "</wsdl:service></wsdl:definitions>"
    ).encode()


# --------------------------------------------------------------------------------------------
# WS-Trust web tickets
# --------------------------------------------------------------------------------------------


def _envelope(body: str, header: str = "") -> bytes:
    return (
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns:wsa="{WSA}" xmlns:wsse="{WSSE}" xmlns:wsu="{WSU}">'
        f"<s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def rst(
    *,
    applies_to: str,
    sip_uri: str | None,
    rng: random.Random,
    token_type: str = SAML_TOKEN,
    username: str | None = None,
    password: str | None = None,
    now: datetime | None = None,
    anonymous_conf: str | None = None,
) -> bytes:
    """RequestSecurityToken: desktop (SAML + entropy), mobile (cwt) or /Auth (UsernameToken)."""
    header = ""
    if username is not None and password is not None:
        created = (now or datetime(2014, 1, 1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        header = (
            f'<wsse:Security s:mustUnderstand="1"><wsu:Timestamp wsu:Id="_0"><wsu:Created>{created}</wsu:Created>'
            f"</wsu:Timestamp><wsse:UsernameToken wsu:Id=\"user\"><wsse:Username>{b64(username.encode())}</wsse:Username>"
            '<wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText">'
            f"{b64(password.encode())}</wsse:Password></wsse:UsernameToken></wsse:Security>"
        )
    claims = ""
    if sip_uri:
        claims = (
            f'<wst:Claims Dialect="{AF}:authclaims"><auth:ClaimType '
            'xmlns:auth="http://schemas.xmlsoap.org/ws/2006/12/authorization" '
            'Uri="http://schemas.xmlsoap.org/ws/2005/05/identity/claims/uri" Optional="false">'
            f"<auth:Value>{sip_uri}</auth:Value></auth:ClaimType></wst:Claims>"
        )
    if anonymous_conf:
        claims = (
            f'<wst:Claims Dialect="{AF}:authclaims"><auth:ClaimType '
            'xmlns:auth="http://schemas.xmlsoap.org/ws/2006/12/authorization" '
            f'Uri="{AF}:conferenceuri" Optional="false"><auth:Value>{anonymous_conf}</auth:Value>'
            "</auth:ClaimType></wst:Claims>"
        )
    entropy = ""
    lifetime = ""
    if token_type == SAML_TOKEN:
        entropy = (
            '<wst:Entropy><wst:BinarySecret Type="http://docs.oasis-open.org/ws-sx/ws-trust/200512/Nonce">'
            f"{b64(rng.randbytes(32))}</wst:BinarySecret></wst:Entropy>"
        )
    elif now is not None:
        lifetime = (
            f"<wst:Lifetime><wsu:Created>{now.strftime('%Y-%m-%dT%H:%M:%SZ')}</wsu:Created>"
            f"<wsu:Expires>{(now + timedelta(minutes=15)).strftime('%Y-%m-%dT%H:%M:%SZ')}</wsu:Expires></wst:Lifetime>"
        )
    body = (
        f'<wst:RequestSecurityToken Context="{guid(rng)}" xmlns:wst="{WST}">'
        f"<wst:TokenType>{token_type}</wst:TokenType><wst:RequestType>{ISSUE}</wst:RequestType>"
        '<wsp:AppliesTo xmlns:wsp="http://schemas.xmlsoap.org/ws/2004/09/policy">'
        f"<wsa:EndpointReference><wsa:Address>{applies_to}</wsa:Address></wsa:EndpointReference></wsp:AppliesTo>"
        f"{claims}{entropy}{lifetime}<wst:KeyType>{SYMMETRIC}</wst:KeyType></wst:RequestSecurityToken>"
    )
    return _envelope(body, header)


def rstr_saml(*, sip_uri: str, issuer: str, rng: random.Random, now: datetime) -> tuple[bytes, str]:
    """RSTR carrying a SAML 1.1 web ticket; returns (body, assertion id)."""
    aid = f"SamlSecurityToken-{guid(rng)}"
    created = now.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    expires = (now + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    sig = b64(rng.randbytes(20))
    body = (
        f'<RequestSecurityTokenResponseCollection xmlns="{WST}"><RequestSecurityTokenResponse>'
        f"<TokenType>{SAML_TOKEN}</TokenType><RequestedSecurityToken>"
        '<saml:Assertion MajorVersion="1" MinorVersion="1" xmlns:saml="urn:oasis:names:tc:SAML:1.0:assertion" '
        f'AssertionID="{aid}" Issuer="{issuer}" IssueInstant="{created}">'
        f'<saml:Conditions NotBefore="{created}" NotOnOrAfter="{expires}"/>'
        '<saml:AuthenticationStatement AuthenticationMethod="urn:oasis:names:tc:SAML:1.0:am:unspecified">'
        '<saml:Subject><saml:NameIdentifier Format="http://schemas.xmlsoap.org/ws/2005/05/identity/claims/uri">'
        f"{sip_uri}</saml:NameIdentifier></saml:Subject></saml:AuthenticationStatement>"
        '<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo><SignatureMethod '
        'Algorithm="http://www.w3.org/2000/09/xmldsig#rsa-sha1"/></SignedInfo>'
        f"<SignatureValue>{sig}</SignatureValue></Signature></saml:Assertion></RequestedSecurityToken>"
        f'<RequestedProofToken><ComputedKey>http://docs.oasis-open.org/ws-sx/ws-trust/200512/CK/PSHA1</ComputedKey></RequestedProofToken>'
        f"<Entropy><BinarySecret>{b64(rng.randbytes(32))}</BinarySecret></Entropy>"
        f'<Lifetime><wsu:Created xmlns:wsu="{WSU}">{created}</wsu:Created>'
        f'<wsu:Expires xmlns:wsu="{WSU}">{expires}</wsu:Expires></Lifetime>'
        "</RequestSecurityTokenResponse></RequestSecurityTokenResponseCollection>"
    )
    return _envelope(body), aid


def cwt(rng: random.Random) -> str:
    return "cwt=AAEB" + base64.urlsafe_b64encode(rng.randbytes(120)).decode().rstrip("=")


def rstr_cwt(*, token: str, now: datetime) -> bytes:
    created = now.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    expires = (now + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    body = (
        f'<RequestSecurityTokenResponseCollection xmlns="{WST}"><RequestSecurityTokenResponse>'
        f"<TokenType>{CWT_TOKEN}</TokenType><RequestedSecurityToken>"
        f'<UserToken Id="{token[4:20]}" xmlns="{AF}">{token}</UserToken></RequestedSecurityToken>'
        f'<Lifetime><wsu:Created xmlns:wsu="{WSU}">{created}</wsu:Created>'
        f'<wsu:Expires xmlns:wsu="{WSU}">{expires}</wsu:Expires></Lifetime>'
        "</RequestSecurityTokenResponse></RequestSecurityTokenResponseCollection>"
    )
    return _envelope(body)


def soap_fault(error_id: int, reason: str, code: str = "a:FailedAuthentication") -> bytes:
    body = (
        "<s:Fault>"
        f'<faultcode xmlns:a="{WSSE}">{code}</faultcode>'
        f'<faultstring xml:lang="en-US">{reason}</faultstring>'
        f'<detail><OCSDiagnosticsFault xmlns="{AF}" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
        f"<Ms-Diagnostics-Fault><ErrorId>{error_id}</ErrorId><Reason>{reason}</Reason></Ms-Diagnostics-Fault>"
        "<NameValuePairs/></OCSDiagnosticsFault></detail></s:Fault>"
    )
    return (
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">' f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def saml_header(assertion_id: str, rng: random.Random) -> str:
    """WS-Security header presenting a web ticket with an HMAC-SHA1 proof signature (SIPE shape)."""
    return (
        '<wsse:Security s:mustUnderstand="1"><wsu:Timestamp wsu:Id="_0">'
        "<wsu:Created>2014-02-20T08:00:00Z</wsu:Created></wsu:Timestamp>"
        '<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:1.0:assertion" MajorVersion="1" MinorVersion="1" '
        f'AssertionID="{assertion_id}"/>'
        '<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo><SignatureMethod '
        'Algorithm="http://www.w3.org/2000/09/xmldsig#hmac-sha1"/></SignedInfo>'
        f"<SignatureValue>{b64(rng.randbytes(20))}</SignatureValue><KeyInfo><wsse:SecurityTokenReference>"
        '<wsse:KeyIdentifier ValueType="http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.0#SAMLAssertionID">'
        f"{assertion_id}</wsse:KeyIdentifier></wsse:SecurityTokenReference></KeyInfo></Signature></wsse:Security>"
    )


def certprov_request(*, sip_uri: str, csr_der: bytes, assertion_id: str, rng: random.Random) -> bytes:
    body = (
        '<GetAndPublishCert xmlns="http://schemas.microsoft.com/OCS/AuthWebServices/" '
        f'DeviceId="{{{guid(rng)}}}" Entity="{sip_uri}">'
        f'<wst:RequestSecurityToken Context="{guid(rng)}" xmlns:wst="{WST}">'
        "<wst:TokenType>http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3</wst:TokenType>"
        "<wst:RequestType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue</wst:RequestType>"
        '<wsse:BinarySecurityToken ValueType="http://schemas.microsoft.com/OCS/AuthWebServices.xsd#PKCS10" '
        f'EncodingType="{WSSE.replace("secext", "soap-message-security")}#Base64Binary">{b64(csr_der)}</wsse:BinarySecurityToken>'
        '<wstep:RequestID xmlns:wstep="http://schemas.microsoft.com/windows/pki/2009/01/enrollment">'
        f"{rng.randrange(10**6)}</wstep:RequestID></wst:RequestSecurityToken></GetAndPublishCert>"
    )
    return _envelope(body, saml_header(assertion_id, rng))


def certprov_response(*, cert_der: bytes | None, error: str | None = None) -> bytes:
    if error:
        inner = f"<ErrorInfo><Code>{error.split(':')[0]}</Code><Description>{error}</Description></ErrorInfo>"
    else:
        assert cert_der is not None
        inner = (
            f'<RequestSecurityTokenResponse xmlns="{WST}"><TokenType>'
            "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3</TokenType>"
            "<RequestedSecurityToken><wsse:BinarySecurityToken "
            'ValueType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3">'
            f"{b64(cert_der)}</wsse:BinarySecurityToken></RequestedSecurityToken>"
            "</RequestSecurityTokenResponse>"
        )
    body = f'<GetAndPublishCertResponse xmlns="http://schemas.microsoft.com/OCS/AuthWebServices/">{inner}</GetAndPublishCertResponse>'
    return _envelope(body)


# --------------------------------------------------------------------------------------------
# UCWA OAuth and applications
# --------------------------------------------------------------------------------------------

FORM = "application/x-www-form-urlencoded;charset=UTF-8"


def oauth_request(grant_type: str, **fields: str) -> bytes:
    return urlencode({"grant_type": grant_type, **fields}, quote_via=quote).encode()


def oauth_token(token: str, *, expires_in: int = 28799, scope: str = "local") -> bytes:
    return json.dumps(
        {"access_token": token, "expires_in": expires_in, "ms_rtc_identityscope": scope, "token_type": "Bearer"},
        separators=(",", ":"),
    ).encode()


def oauth_error(error: str, **extra: str) -> bytes:
    return json.dumps({"error": error, **extra}, separators=(",", ":")).encode()


def ucwa_application_request(user_agent: str, endpoint_id: str, kind: str | None = None) -> bytes:
    doc = {"UserAgent": user_agent, "EndpointId": endpoint_id, "Culture": "en-US"}
    if kind:
        doc["type"] = kind
    return json.dumps(doc, separators=(",", ":")).encode()


def ucwa_application(web: str, app_id: str, user_sip: str | None, *, oauth: bool = True) -> bytes:
    base = f"/ucwa/{'oauth/' if oauth else ''}v1/applications/{app_id}"
    doc = {
        "culture": "en-US",
        "userAgent": "UCWA",
        "type": "Application",
        "_links": {
            "self": {"href": base},
            "policies": {"href": f"{base}/policies"},
            "batch": {"href": f"{base}/batch"},
            "events": {"href": f"{base}/events?ack=1"},
        },
        "_embedded": {
            "me": {
                "name": user_sip or "Anonymous",
                "uri": user_sip or "",
                "_links": {"self": {"href": f"{base}/me"}, "makeMeAvailable": {"href": f"{base}/me/makeMeAvailable"}},
            }
        },
        "rel": "application",
    }
    return json.dumps(doc, separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------------
# AD FS (WS-Federation passive) and Lync PassiveAuth
# --------------------------------------------------------------------------------------------


def adfs_login_page(action: str, *, error: str | None = None) -> bytes:
    err = f'<span id="errorText" class="fieldMargin error">{error}</span>' if error else '<span id="errorText"></span>'
    return (
        "<!DOCTYPE html><html><head><title>Sign In</title></head><body><div id=\"loginArea\">"
        f'<form method="post" id="loginForm" autocomplete="off" action="{action}">'
        '<div id="error" class="fieldMargin error">' + err + "</div>"
        '<input id="userNameInput" name="UserName" type="email" value="" autocomplete="off"/>'
        '<input id="passwordInput" name="Password" type="password" autocomplete="off"/>'
        '<input id="kmsiInput" type="checkbox" name="Kmsi" value="true"/>'
        '<input id="optionForms" type="hidden" name="AuthMethod" value="FormsAuthentication"/>'
        '<span id="submitButton" class="submit" role="button">Sign in</span></form></div></body></html>'
    ).encode()


def adfs_mfa_page(action: str, context: str) -> bytes:
    return (
        "<!DOCTYPE html><html><head><title>Sign In</title></head><body><div id=\"loginArea\">"
        "<div id=\"authArea\"><h2>Additional authentication required</h2>"
        "<p>Enter the verification code from your token device or app.</p>"
        f'<form method="post" id="options" action="{action}">'
        f'<input type="hidden" name="Context" value="{context}"/>'
        '<input id="otpInput" name="otp" type="text" autocomplete="off"/>'
        '<input type="hidden" name="AuthMethod" value="OtpAuthenticationAdapter"/>'
        '<input type="submit" id="continueButton" value="Sign in"/></form></div></div></body></html>'
    ).encode()


def adfs_token_post(reply: str, wresult: str, wctx: str) -> bytes:
    from html import escape

    return (
        "<html><head><title>Working...</title></head><body>"
        f'<form method="POST" name="hiddenform" action="{reply}">'
        '<input type="hidden" name="wa" value="wsignin1.0" />'
        f'<input type="hidden" name="wresult" value="{escape(wresult)}" />'
        f'<input type="hidden" name="wctx" value="{escape(wctx)}" />'
        "<noscript><p>Script is disabled. Click Submit to continue.</p><input type=\"submit\" value=\"Submit\" /></noscript>"
        '</form><script language="javascript">window.setTimeout(\'document.forms[0].submit()\', 0);</script>'
        "</body></html>"
    ).encode()


def adfs_error_page(activity: str) -> bytes:
    return (
        "<!DOCTYPE html><html><head><title>Sign In</title></head><body><div id=\"errorArea\">"
        "<div id=\"openingMessage\" class=\"groupMargin\">An error occurred</div>"
        "<div id=\"errorMessage\" class=\"groupMargin\">An error occurred. Contact your administrator for more information.</div>"
        f'<div id="error"><span id="errorText">MSIS7012: An error occurred while processing the request. '
        f"Activity ID: {activity}</span></div></div></body></html>"
    ).encode()


def saml2_wresult(*, upn: str, realm: str, issuer: str, rng: random.Random, now: datetime) -> str:
    aid = "_" + guid(rng)
    created = now.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    expires = (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return (
        '<t:RequestSecurityTokenResponse xmlns:t="http://schemas.xmlsoap.org/ws/2005/02/trust">'
        f'<t:Lifetime><wsu:Created xmlns:wsu="{WSU}">{created}</wsu:Created>'
        f'<wsu:Expires xmlns:wsu="{WSU}">{expires}</wsu:Expires></t:Lifetime>'
        '<wsp:AppliesTo xmlns:wsp="http://schemas.xmlsoap.org/ws/2004/09/policy">'
        f'<wsa:EndpointReference xmlns:wsa="{WSA}"><wsa:Address>{realm}</wsa:Address></wsa:EndpointReference>'
        "</wsp:AppliesTo><t:RequestedSecurityToken>"
        '<saml:Assertion MajorVersion="1" MinorVersion="1" xmlns:saml="urn:oasis:names:tc:SAML:1.0:assertion" '
        f'AssertionID="{aid}" Issuer="{issuer}" IssueInstant="{created}">'
        '<saml:AttributeStatement><saml:Subject><saml:SubjectConfirmation><saml:ConfirmationMethod>'
        "urn:oasis:names:tc:SAML:1.0:cm:bearer</saml:ConfirmationMethod></saml:SubjectConfirmation></saml:Subject>"
        '<saml:Attribute AttributeName="upn" AttributeNamespace="http://schemas.xmlsoap.org/ws/2005/05/identity/claims">'
        f"<saml:AttributeValue>{upn}</saml:AttributeValue></saml:Attribute>"
        '<saml:Attribute AttributeName="authnmethodsreferences" AttributeNamespace="http://schemas.microsoft.com/claims">'
        "<saml:AttributeValue>http://schemas.microsoft.com/claims/multipleauthn</saml:AttributeValue></saml:Attribute>"
        "</saml:AttributeStatement>"
        f'<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignatureValue>{b64(rng.randbytes(64))}'
        "</ds:SignatureValue></ds:Signature></saml:Assertion></t:RequestedSecurityToken>"
        "<t:TokenType>urn:oasis:names:tc:SAML:1.0:assertion</t:TokenType>"
        "<t:RequestType>http://schemas.xmlsoap.org/ws/2005/02/trust/Issue</t:RequestType>"
        "<t:KeyType>http://schemas.xmlsoap.org/ws/2005/05/identity/NoProofKey</t:KeyType>"
        "</t:RequestSecurityTokenResponse>"
    )


# --------------------------------------------------------------------------------------------
# Lync Web App join page
# --------------------------------------------------------------------------------------------


def meet_page(*, ext_web: str, organizer: str, conf_id: str, conf_key: str) -> bytes:
    conf_uri = f"sip:{organizer};gruu;opaque=app:conf:focus:id:{conf_id}"
    conf_xml = (
        '<conf-info xmlns="http://schemas.microsoft.com/rtc/2009/05/simplejoinconfdoc">'
        f"<conf-uri>{conf_uri}</conf-uri><conf-key>{conf_key}</conf-key>"
        f"<ucwa-url>https://{ext_web}/ucwa/v1/applications</ucwa-url></conf-info>"
    )
    return (
        "<!DOCTYPE html><html><head><title>Lync Web App</title></head><body>"
        f'<a id="launch" href="https://{ext_web}/lwa/WebPages/LwaClient.aspx?legacy=False&amp;xml={b64(conf_xml.encode())}">'
        "Join using Lync Web App</a></body></html>"
    ).encode()


# --------------------------------------------------------------------------------------------
# SIP (MS-SIPAE)
# --------------------------------------------------------------------------------------------


class SipDialog:
    """The client side of a REGISTER dialog: keeps Call-ID, tags, epid and CSeq."""

    def __init__(self, *, sip_uri: str, domain: str, client_ip: str, client_port: int, user_agent: str, rng: random.Random):
        self.sip_uri = sip_uri
        self.domain = domain
        self.client_ip = client_ip
        self.client_port = client_port
        self.user_agent = user_agent
        self.rng = rng
        self.call_id = rng.randbytes(16).hex()
        self.tag = rng.randbytes(5).hex()
        self.epid = rng.randbytes(5).hex()
        self.cseq = 0
        self.instance = guid(rng)

    def register(
        self,
        authorization: str | None = None,
        *,
        target: str | None = None,
        edge_via: str | None = None,
        received: str | None = None,
    ) -> bytes:
        """A REGISTER; `edge_via` adds the Access Edge's Via on top (the request as the Front End
        sees it when relayed), and `received` the public address the Edge saw the client at."""
        self.cseq += 1
        host = f"[{self.client_ip}]" if ":" in self.client_ip else self.client_ip
        client_via = f"Via: SIP/2.0/TLS {host}:{self.client_port};branch=z9hG4bK{self.rng.randbytes(4).hex()}"
        if received:
            client_via += f";received={received};ms-received-port={self.client_port};ms-received-cid={self.rng.randbytes(3).hex().upper()}"
        vias = [client_via]
        if edge_via:
            vias.insert(0, f"Via: SIP/2.0/TLS {edge_via};branch=z9hG4bK{self.rng.randbytes(4).hex()};ms-internal-info=\"{self.rng.randbytes(12).hex()}\"")
        lines = [
            f"REGISTER sip:{target or self.domain} SIP/2.0",
            *vias,
            "Max-Forwards: 70",
            f"From: <{self.sip_uri}>;tag={self.tag};epid={self.epid}",
            f"To: <{self.sip_uri}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            f"Contact: <sip:{host}:{self.client_port};transport=tls;ms-opaque={self.rng.randbytes(5).hex()}>;"
            'methods="INVITE, MESSAGE, INFO, SUBSCRIBE, OPTIONS, BYE, CANCEL, NOTIFY, ACK, REFER, BENOTIFY";'
            f'proxy=replace;+sip.instance="<urn:uuid:{self.instance}>"',
            f"User-Agent: {self.user_agent}",
            "Supported: gruu-10, adhoclist, msrtc-event-categories",
            "Supported: ms-forking",
            "ms-keep-alive: UAC;hop-hop=yes",
            "Event: registration",
        ]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def response(self, status: int, reason: str, headers: list[str], *, server: str = "RTC/5.0") -> bytes:
        lines = [
            f"SIP/2.0 {status} {reason}",
            f"From: <{self.sip_uri}>;tag={self.tag};epid={self.epid}",
            f"To: <{self.sip_uri}>;tag={self.rng.randbytes(16).hex().upper()}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            *headers,
            f"Server: {server}",
            "Content-Length: 0",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


def sip_offer(schemes: list[str], *, fqdn: str, pool: str) -> list[str]:
    """WWW-Authenticate lines of a first 401 (one per offered scheme)."""
    out = []
    for s in schemes:
        target = f"sip/{fqdn}" if s == "Kerberos" else fqdn
        extra = (
            f', sts-uri="https://{pool}:443/CertProv/CertProvisioningService.svc"' if s == "TLS-DSK" else ""
        )
        out.append(f'WWW-Authenticate: {s} realm="{SIP_REALM}", targetname="{target}", version=4{extra}')
    return out


def sip_auth(scheme: str, *, target: str, gssapi: bytes | None, opaque: str | None = None, signed: bool = False, rng: random.Random | None = None) -> str:
    parts = ['qop="auth"']
    if opaque:
        parts.append(f'opaque="{opaque}"')
    parts.append(f'realm="{SIP_REALM}"')
    parts.append(f'targetname="{target}"')
    if signed and rng is not None:
        parts.append(f'crand="{rng.randbytes(4).hex()}"')
        parts.append('cnum="1"')
        parts.append(f'response="{rng.randbytes(16).hex()}"')
    else:
        parts.append(f'gssapi-data="{b64(gssapi) if gssapi else ""}"')
    parts.append("version=4")
    return f"{scheme} " + ", ".join(parts)


def sip_continue(scheme: str, *, target: str, opaque: str, gssapi: bytes | None) -> str:
    extra = f', gssapi-data="{b64(gssapi)}"' if gssapi else ""
    return f'WWW-Authenticate: {scheme} opaque="{opaque}"{extra}, targetname="{target}", realm="{SIP_REALM}", version=4'


def sip_authentication_info(scheme: str, *, target: str, opaque: str, rng: random.Random) -> str:
    return (
        f'Authentication-Info: {scheme} opaque="{opaque}", qop="auth", realm="{SIP_REALM}", '
        f'rspauth="{rng.randbytes(16).hex()}", srand="{rng.randbytes(4).hex().upper()}", snum="1", '
        f'targetname="{target}", version=4'
    )


def sip_200_headers(*, sip_uri: str, client_ip: str, client_port: int, epid: str, rng: random.Random, remote: bool) -> list[str]:
    host = f"[{client_ip}]" if ":" in client_ip else client_ip
    lines = [
        f"Contact: <sip:{host}:{client_port};transport=tls;ms-opaque={rng.randbytes(5).hex()}>;expires=7200;"
        f'+sip.instance="<urn:uuid:{guid(rng)}>";gruu="{sip_uri};opaque=user:epid:{b64(rng.randbytes(16))[:22]};gruu"',
        "Expires: 7200",
        "presence-state: register-action=\"added\"",
        "Allow-Events: vnd-microsoft-provisioning,vnd-microsoft-roaming-contacts,vnd-microsoft-roaming-ACL,"
        "presence,presence.wpending,vnd-microsoft-roaming-self,vnd-microsoft-provisioning-v2",
        "Supported: adhoclist",
        "Supported: msrtc-event-categories",
        "Supported: ms-userservices-state-notification",
        "ms-keep-alive: UAS; tcp=no; hop-hop=yes; end-meet=no; timeout=300",
    ]
    if remote:
        lines.append("ms-user-logon-data: RemoteUser")
    return lines
