"""Synthetic sign-in traffic for the plugin agreement test: every URL rule, user-agent pattern and
Lync DNS name of the Python tables, and the authentication and result branches the sample
captures do not reach (Basic, Digest, SPNEGO-wrapped NTLM, anonymous NTLM, OAuth grants, AD FS
forms, CertProv ErrorInfo, SIP redirects and retransmissions …).

Expectations are not written here: the test runs lyncpcap's analysis over the same file and
compares frame by frame, exactly as for the sample captures.
"""

from __future__ import annotations

import base64
import struct
import subprocess
from pathlib import Path

from wireshark_pcap import PcapBuilder
from wireshark_run import REPO, tshark_path

SERVER = "10.9.1.1"
DESKTOP_UA = "OC/15.0.4569.1503 (Microsoft Lync)"
SIP_UA = "UCCAPI/15.0.4569.1503 OC/15.0.4569.1503 (Microsoft Lync)"

#: (Host, request target) pairs covering every rule of lyncpcap/steps/rules.py and their edges
URL_CASES: tuple[tuple[str, str], ...] = (
    ("lyncweb.contoso.com", "/WebTicket/WebTicketService.svc/mex"),
    ("lyncweb.contoso.com", "/webticket/webticketservice.svc/mex?wsdl"),
    ("lyncweb.contoso.com", "/WebTicket/WebTicketService.svc/mexico"),
    ("lyncweb.contoso.com", "/CertProv/CertProvisioningService.svc/mex"),
    ("lyncweb.contoso.com", "/CertProv/CertProvisioningService.svc/WebTicket_Proof_SHA1"),
    ("lyncweb.contoso.com", "/WebTicket/WebTicketService.svc?x=1"),
    ("lyncweb.contoso.com", "/WebTicket/WebTicketService.svc/Auth/"),
    ("lyncweb.contoso.com", "/WebTicket/oauthtoken"),
    ("lyncweb.contoso.com", "/WebTicket/oauthtokens"),
    (
        "lyncweb.contoso.com",
        "/Autodiscover/AutodiscoverService.svc/root/oauth/user?originalDomain=contoso.com",
    ),
    ("lyncweb.contoso.com", "/Autodiscover/AutodiscoverService.svc/root/user"),
    ("lyncweb.contoso.com", "/Autodiscover/AutodiscoverService.svc/root/domain"),
    ("lyncweb.contoso.com", "/Autodiscover/AutodiscoverService.svc/root?originalDomain=contoso.com"),
    ("lyncweb.contoso.com", "/Autodiscover/AutodiscoverService.svc/rootless"),
    ("lyncweb.contoso.com", "/AUTODISCOVER/AUTODISCOVERSERVICE.SVC"),
    ("lyncweb.contoso.com", "/Autodiscover/XFrame/XFrame.html"),
    ("lyncweb.contoso.com", "/PassiveAuth/PassiveAuth.aspx?ReturnUrl=%2f"),
    ("lyncweb.contoso.com", "/passiveauth"),
    ("lyncweb.contoso.com", "/passiveauthority"),
    ("adfs.contoso.com", "/adfs/ls/?wa=wsignin1.0"),
    ("adfs.contoso.com", "/adfs/oauth2/authorize"),
    ("adfs.contoso.com", "/adfs/services/trust/13/usernamemixed"),
    ("adfs.contoso.com", "/adfs/FederationMetadata/2007-06/FederationMetadata.xml"),
    ("lyncweb.contoso.com", "/ucwa/oauth/v1/applications"),
    ("lyncweb.contoso.com", "/ucwa/v1/applications/"),
    ("lyncweb.contoso.com", "/ucwa/anonymous/v1/applications?x=1"),
    ("lyncweb.contoso.com", "/ucwa/oauth/v1/applications/123/people"),
    ("meet.contoso.com", "/meet/alice/ABC123"),
    ("lyncweb.contoso.com", "/lwa/WebPages/LwaClient.aspx"),
    ("lyncweb.contoso.com", "/Reach/sip.svc"),
    ("lyncweb.contoso.com", "/Mcx/McxService.svc"),
    ("lyncweb.contoso.com", "/abs/handler/x.lsabs"),
    ("lyncweb.contoso.com", "/GroupExpansion/service.svc"),
    ("lyncweb.contoso.com", "/Scheduler/"),
    ("dialin.contoso.com", "/dialin"),
    ("lyncweb.contoso.com", "/RgsClients/Tab.aspx"),
    ("lyncweb.contoso.com", "/etc/place/null"),
    ("lyncweb.contoso.com", "/PersistentChat/RM"),
    ("lyncweb.contoso.com", "/CSCP"),
    ("lyncdiscover.contoso.com", "/"),
    ("LyncDiscoverInternal.contoso.com:8080", "/?sipuri=amy@contoso.com"),
    ("lyncdiscoverx.contoso.com", "/"),
    ("www.example.org", "/index.html"),
    ("www.example.org", "http://lyncweb.contoso.com/WebTicket/WebTicketService.svc/mex"),
)

#: user agents exercising every pattern of lyncpcap/data/clients.json (one client address each)
USER_AGENTS: tuple[str, ...] = (
    "UCCAPI/15.0.4420.1017 OC/15.0.4420.1017 (Microsoft Lync)",
    "UCCAPI/15.0.4971.1000 OC/15.0.4971.1000 (Skype for Business)",
    "UCCAPI/16.0.4266.1001 OC/16.0.4266.1001 (Skype for Business)",
    "UCCAPI/4.0.7577.4356 OC/4.0.7577.4356 (Microsoft Lync 2010)",
    "UCCAPI/3.5.6907.0 OC/3.5.6907.0 (Microsoft Office Communicator 2007 R2)",
    "UCCP/2.0.6362.0 OC/2.0.6362.0 (Microsoft Office Communicator)",
    "CPE/4.0.7423.1 OCPhone/4.0.7423.1 (Microsoft Lync 2010 (Beta) Phone Edition)",
    "RTCC/7.0.0.0 UCWA/7.0.0.0 AndroidLync/6.25.0.27 (SM-G930U Android 8.0.0)",
    "RTCC/7.0.0.0 UCWA/7.0.0.0 iPhoneLync/6.0.1",
    "RTCC/7.0.0.0 UCWA/7.0.0.0 iPadLync/6.0.1",
    "RTCC/7.0.0.0 UCWA/7.0.0.0 WPLync/5.0",
    "RTCC/7.0.0.0 UCWA/7.0.0.0 ContosoBot/1.0",
    "RTCC/3.5.0.0 MCXService/3.5.0.0 communicator.NOKIAS60R2",
    "RTCC/4.0.0.0 AV-MCU",
    "Microsoft Lync for Mac 14.0.4",
    "Skype for Business for Mac 16.0",
    "SfBMac/16.0",
    "Microsoft Communicator for Mac 13.1",
    "Mozilla/5.0 (compatible; MSIE 10.0; Windows Phone 8.0; Trident/6.0; ARM; Touch; NOKIA; Lumia 920) Lync/5.0.8308",
    "Lync/5.0 (Windows Phone 8.1)",
    "ACOMO/5.4.1087.0 (Android 4.4.2; samsung SM-G900F)",
    "ANDROIDLYNC/6.0",
    "Skype for Business 6.2 Android",
    "Lync/5.6.1 (iPhone; iOS 8.1; Scale/2.00) CFNetwork/711.1.12 Darwin/14.0.0",
    "Skype for Business/6.10 (iPad; iOS 9.3)",
    "NokiaLync/1.0",
    "Microsoft BITS/7.5",
    "python-requests/2.2.1 CPython/2.7.6 Linux/3.13.0-24-generic",
    "Python-urllib/3.11",
    "aiohttp/3.9",
    "Mozilla/5.0 (Windows NT; Windows NT 6.3; en-US) WindowsPowerShell/4.0",
    "curl/7.88.1",
    "Wget/1.21.3",
    "okhttp/4.9.0",
    "Java/1.8.0_351",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Firefox/115.0",
    "ContosoPhone/2.0 (not a Lync client)",
)

#: DNS names: Lync discovery names of lyncpcap/steps/dns.py and near misses
DNS_NAMES: tuple[tuple[str, int, int], ...] = (
    # (name, qtype, answer count; -1 for NXDOMAIN)
    ("lyncdiscover.contoso.com", 1, 1),
    ("LyncDiscoverInternal.contoso.com", 1, -1),
    ("_sipinternaltls._tcp.contoso.com", 33, 1),
    ("_sipinternal._tcp.contoso.com", 33, 0),
    ("_sip._tls.contoso.com", 33, 1),
    ("_sip._tcp.contoso.com", 33, -1),
    ("_sipfederationtls._tcp.contoso.com", 33, 1),
    ("sipinternal.contoso.com", 1, 1),
    ("sipexternal.contoso.com", 1, -1),
    ("sip.contoso.com", 1, 1),
    ("ucupdates-r2.contoso.com", 1, 1),
    ("_ntp._udp.contoso.com", 33, 1),
    ("sipfoo.contoso.com", 1, 1),
    ("mysip.contoso.com", 1, 1),
    ("www.contoso.com", 1, 1),
)


# ------------------------------------------------------------------------------------------------
# messages
# ------------------------------------------------------------------------------------------------
def http_request(method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers)]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def http_response(status: int, reason: str, headers: list[tuple[str, str]] = (), body: bytes = b"") -> bytes:  # type: ignore[assignment]
    lines = [
        f"HTTP/1.1 {status} {reason}",
        *(f"{k}: {v}" for k, v in headers),
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def sip_message(start: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [start, *(f"{k}: {v}" for k, v in headers), "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


OID_SPNEGO = bytes.fromhex("2b0601050502")
OID_KRB5 = bytes.fromhex("2a864886f712010202")
OID_NTLM = bytes.fromhex("2b0601040182370202 0a".replace(" ", ""))


def spnego_init(mechs: list[bytes], token: bytes | None) -> bytes:
    fields = der(0xA0, der(0x30, b"".join(der(0x06, m) for m in mechs)))
    if token is not None:
        fields += der(0xA2, der(0x04, token))
    return der(0x60, der(0x06, OID_SPNEGO) + der(0xA0, der(0x30, fields)))


def spnego_resp(token: bytes) -> bytes:
    return der(0xA1, der(0x30, der(0xA0, der(0x0A, b"\x01")) + der(0xA2, der(0x04, token))))


def _sb(length: int, offset: int) -> bytes:
    return struct.pack("<HHI", length, length, offset)


def ntlm_authenticate(
    domain: str, user: str, *, unicode: bool = True, nt_len: int = 48, flags: int | None = None
) -> bytes:
    """A type-3 message with the given names (the responses are filler of realistic sizes)."""
    enc = "utf-16-le" if unicode else "ascii"
    dom, usr, ws = domain.encode(enc), user.encode(enc), "WS01".encode(enc)
    lm, nt = b"\0" * 24, bytes(range(nt_len))
    off = 72
    parts = [lm, nt, dom, usr, ws]
    offsets = []
    for part in parts:
        offsets.append(off)
        off += len(part)
    if flags is None:
        flags = 0x00088204 | (1 if unicode else 2)  # NTLM, extended session security + UNICODE or OEM
    header = (
        b"NTLMSSP\0"
        + struct.pack("<I", 3)
        + b"".join(_sb(len(p), o) for p, o in zip(parts, offsets, strict=True))
        + _sb(0, off)
        + struct.pack("<I", flags)
        + bytes.fromhex("0601b11d0000000f")
    )
    return header + b"".join(parts)


NTLM_ANONYMOUS = (
    b"NTLMSSP\0"
    + struct.pack("<I", 3)
    + _sb(1, 72)
    + _sb(0, 73) * 5
    + struct.pack("<I", 0xA01)
    + bytes.fromhex("0601b11d0000000f")
    + b"\0"
)
NTLM_NEGOTIATE = b"NTLMSSP\0" + struct.pack("<I", 1) + struct.pack("<I", 0xA2088207) + _sb(0, 32) * 2
NTLM_CHALLENGE = (
    b"NTLMSSP\0"
    + struct.pack("<I", 2)
    + _sb(0, 48)
    + struct.pack("<I", 0xA2898205)
    + bytes(range(8))
    + b"\0" * 8
    + _sb(0, 48)
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sample_kerberos_negotiate() -> str:
    """The real SPNEGO/Kerberos AP-REQ of sample 01 (what a domain-joined client sends)."""
    out = (
        subprocess.run(
            [
                tshark_path(),
                "-n",
                "-r",
                str(REPO / "sample_captures" / "01-desktop-internal-kerberos.pcapng"),
                "-Y",
                "http.authorization",
                "-T",
                "fields",
                "-e",
                "http.authorization",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        .stdout.split("\n")[0]
        .strip()
    )
    if not out.startswith("Negotiate "):
        raise RuntimeError("sample 01 no longer carries a Negotiate token")
    return out.split(" ", 1)[1]


RST_BODY = (
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
    '<wst:RequestSecurityToken xmlns:wst="http://docs.oasis-open.org/ws-sx/ws-trust/200512">'
    "<wst:TokenType>http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV1.1</wst:TokenType>"
    '<wst:Claims Dialect="urn:component:Microsoft.Rtc.WebAuthentication.2010:authclaims">'
    '<auth:ClaimType xmlns:auth="http://schemas.xmlsoap.org/ws/2006/12/authorization" '
    'Uri="http://schemas.xmlsoap.org/ws/2005/05/identity/claims/uri"><auth:Value>sip:{user}@contoso.com</auth:Value>'
    "</auth:ClaimType></wst:Claims></wst:RequestSecurityToken></s:Body></s:Envelope>"
)
USERNAME_TOKEN_BODY = (
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header>'
    '<o:Security xmlns:o="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">'
    "<o:UsernameToken><o:Username>{user}</o:Username>"
    '<o:Password Type="#PasswordText">{password}</o:Password></o:UsernameToken></o:Security></s:Header>'
    '<s:Body><wst:RequestSecurityToken xmlns:wst="http://docs.oasis-open.org/ws-sx/ws-trust/200512">'
    "<wst:TokenType>urn:component:Microsoft.Rtc.WebAuthentication.2010:user-cwt-1</wst:TokenType>"
    "</wst:RequestSecurityToken></s:Body></s:Envelope>"
)
X509_BODY = (
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header>'
    '<o:Security xmlns:o="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">'
    '<o:BinarySecurityToken ValueType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3">'
    "MIIB</o:BinarySecurityToken></o:Security></s:Header><s:Body>"
    '<wst:RequestSecurityToken xmlns:wst="http://docs.oasis-open.org/ws-sx/ws-trust/200512"/></s:Body></s:Envelope>'
)
RSTR_BODY = (
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
    '<RequestSecurityTokenResponseCollection xmlns="http://docs.oasis-open.org/ws-sx/ws-trust/200512">'
    "<RequestSecurityTokenResponse><RequestedSecurityToken>"
    '<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:1.0:assertion" AssertionID="SamlSecurityToken-1">'
    "<saml:AuthenticationStatement><saml:Subject><saml:NameIdentifier>sip:{user}@contoso.com</saml:NameIdentifier>"
    "</saml:Subject></saml:AuthenticationStatement></saml:Assertion></RequestedSecurityToken>"
    "</RequestSecurityTokenResponse></RequestSecurityTokenResponseCollection></s:Body></s:Envelope>"
)
FAULT_BODY = (
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>'
    '<faultcode xmlns:a="urn:x">a:FailedAuthentication</faultcode>'
    '<faultstring xml:lang="en-US">No valid security token.</faultstring>'
    '<detail><OCSDiagnosticsFault xmlns="urn:component:Microsoft.Rtc.WebAuthentication.2010">'
    "<Ms-Diagnostics-Fault><ErrorId>28020</ErrorId><Reason>No valid security token.</Reason>"
    "</Ms-Diagnostics-Fault></OCSDiagnosticsFault></detail></s:Fault></s:Body></s:Envelope>"
)
AD_USER = (
    '<?xml version="1.0"?><AutodiscoverResponse AccessLocation="Internal"><User>'
    '<SipClientInternalAccess fqdn="fe01.contoso.com" port="5061"/>'
    '<Link token="Internal/Autodiscover" href="https://lyncweb.contoso.com/Autodiscover/AutodiscoverService.svc/root"/>'
    "</User></AutodiscoverResponse>"
)
AD_REDIRECT = (
    '<AutodiscoverResponse><Root><Link token="Redirect" '
    'href="https://pool2.contoso.com/Autodiscover/AutodiscoverService.svc/root"/></Root></AutodiscoverResponse>'
)
CERTPROV_REQUEST = (
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
    '<GetAndPublishCert xmlns="http://schemas.microsoft.com/OCS/AuthWebServices/" DeviceId="{{1}}" '
    'Entity="sip:{user}@contoso.com"/></s:Body></s:Envelope>'
)
CERTPROV_ERROR = (
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
    '<GetAndPublishCertResponse xmlns="http://schemas.microsoft.com/OCS/AuthWebServices/">'
    "<ErrorInfo><Code>DataStoreUnavailable</Code></ErrorInfo></GetAndPublishCertResponse></s:Body></s:Envelope>"
)
ADFS_LOGIN = (
    '<html><form method="post"><input name="UserName"/><input type="password" name="Password"/></form></html>'
)
ADFS_ERROR = (
    '<html><form><input type="password" name="Password"/>'
    '<span id="errorText">Incorrect user ID or password.</span></form></html>'
)
ADFS_TOKEN = (
    '<html><form method="POST"><input type="hidden" name="wresult" value="&lt;t:RSTR/&gt;"/></form></html>'
)


# ------------------------------------------------------------------------------------------------
# the capture
# ------------------------------------------------------------------------------------------------
def build(path: Path) -> Path:
    """Write the synthetic capture; every connection has its own client address or port."""
    pcap = PcapBuilder()
    port = [40000]

    def conn(client: str, exchanges: list[tuple[bytes, bytes]], server_port: int = 80) -> None:
        port[0] += 1
        messages: list[tuple[int, bytes]] = []
        for request, response in exchanges:
            messages.append((0, request))
            messages.append((1, response))
        pcap.tcp(client, port[0], SERVER, server_port, messages)

    ok = http_response(200, "OK")
    ua = ("User-Agent", DESKTOP_UA)

    # every URL rule, one connection
    conn("10.9.0.10", [(http_request("GET", t, [("Host", h), ua]), ok) for h, t in URL_CASES])
    # a request that only its answer (X-MS-Server-Fqdn) marks as Lync
    conn(
        "10.9.0.11",
        [
            (
                http_request("GET", "/unlisted/path", [("Host", "lyncweb.contoso.com"), ua]),
                http_response(200, "OK", [("X-MS-Server-Fqdn", "fe01.contoso.com")]),
            )
        ],
    )
    # every user agent, one client address each
    for i, agent in enumerate(USER_AGENTS):
        conn(
            f"10.9.2.{i + 1}",
            [
                (
                    http_request(
                        "GET",
                        "/ucwa/oauth/v1/applications/1/me",
                        [("Host", "lyncweb.contoso.com"), ("User-Agent", agent)],
                    ),
                    ok,
                )
            ],
        )
    # a browser with UCWA XFrame markers is Lync Web App
    conn(
        "10.9.2.200",
        [
            (
                http_request(
                    "GET",
                    "/ucwa/oauth/v1/applications/1/me",
                    [
                        ("Host", "lyncweb.contoso.com"),
                        ("User-Agent", USER_AGENTS[-2]),
                        ("X-Ms-Origin", "https://app.contoso.com"),
                    ],
                ),
                ok,
            )
        ],
    )

    wt = "/WebTicket/WebTicketService.svc"
    host = ("Host", "lyncweb.contoso.com")
    xml = ("Content-Type", "text/xml; charset=utf-8")
    challenge = http_response(
        401, "Unauthorized", [("WWW-Authenticate", "NTLM"), ("WWW-Authenticate", "Negotiate")]
    )
    rstr = http_response(200, "OK", [xml], RSTR_BODY.format(user="amy").encode())
    rst_amy = RST_BODY.format(user="amy").encode()

    def post(target: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
        return http_request("POST", target, [host, ua, xml, *headers], body)

    # HTTP NTLM handshake: the user of the AUTHENTICATE reaches the earlier steps (two-pass)
    conn(
        "10.9.3.1",
        [
            (post(wt, [], rst_amy), challenge),
            (
                post(wt, [("Authorization", "NTLM " + b64(NTLM_NEGOTIATE))], rst_amy),
                http_response(401, "Unauthorized", [("WWW-Authenticate", "NTLM " + b64(NTLM_CHALLENGE))]),
            ),
            (
                post(wt, [("Authorization", "NTLM " + b64(ntlm_authenticate("CONTOSO", "amy")))], rst_amy),
                rstr,
            ),
        ],
    )
    # refused AUTHENTICATE, with the server's diagnostic
    conn(
        "10.9.3.2",
        [
            (
                post(wt, [("Authorization", "NTLM " + b64(ntlm_authenticate("CONTOSO", "ben")))], rst_amy),
                http_response(
                    401,
                    "Unauthorized",
                    [
                        (
                            "X-Ms-diagnostics",
                            '28020;source="fe01.contoso.com";reason="No valid security token."',
                        )
                    ],
                    b"401 - Unauthorized: Access is denied due to invalid credentials.",
                ),
            )
        ],
    )
    krb = sample_kerberos_negotiate()
    conn("10.9.3.3", [(post(wt, [("Authorization", "Negotiate " + krb)], rst_amy), rstr)])
    conn(
        "10.9.3.4",
        [
            (
                post(
                    wt,
                    [("Authorization", "Negotiate " + b64(spnego_resp(ntlm_authenticate("CONTOSO", "cat"))))],
                    rst_amy,
                ),
                rstr,
            )
        ],
    )
    conn(
        "10.9.3.5",
        [
            (
                post(wt, [("Authorization", "Negotiate " + b64(spnego_init([OID_KRB5, OID_NTLM], None)))]),
                challenge,
            ),
            (
                post(wt, [("Authorization", "Negotiate " + b64(spnego_init([OID_NTLM], NTLM_NEGOTIATE)))]),
                challenge,
            ),
            (post(wt, [("Authorization", "Negotiate Zm9vYmFyYmF6")]), challenge),
            (post(wt, [("Authorization", "Negotiate")]), challenge),
            (post(wt, [("Authorization", "NTLM")]), challenge),
        ],
    )
    conn("10.9.3.6", [(post(wt, [("Authorization", "NTLM " + b64(NTLM_ANONYMOUS))]), ok)])
    conn(
        "10.9.3.7",
        [
            (
                post(
                    wt, [("Authorization", "NTLM " + b64(ntlm_authenticate("CONTOSO", "dan", unicode=False)))]
                ),
                rstr,
            ),
            # UNICODE flagged but odd-length names: malformed, so only the scheme says NTLM
            (
                post(
                    wt,
                    [
                        (
                            "Authorization",
                            "NTLM " + b64(ntlm_authenticate("CONTOSO", "dan", unicode=False, flags=0x88205)),
                        )
                    ],
                ),
                challenge,
            ),
            (
                post(
                    wt,
                    [
                        (
                            "Authorization",
                            "Negotiate "
                            + b64(ntlm_authenticate("CONTOSO", "dan", unicode=False, flags=0x88205)),
                        )
                    ],
                ),
                challenge,
            ),
        ],
    )
    conn(
        "10.9.3.8",
        [
            (post(wt, [("Authorization", "Basic " + b64(b"CONTOSO\\eve:secret"))]), rstr),
            (
                post(
                    wt,
                    [
                        (
                            "Authorization",
                            'Digest username="fay", realm="lync", nonce="1", uri="/", response="ab"',
                        )
                    ],
                ),
                http_response(401, "Unauthorized"),
            ),
        ],
    )
    conn(
        "10.9.3.9",
        [
            (
                post(
                    wt + "/Auth",
                    [],
                    USERNAME_TOKEN_BODY.format(user=b64(b"CONTOSO\\gus"), password=b64(b"pw")).encode(),
                ),
                http_response(500, "Internal Server Error", [xml], FAULT_BODY.encode()),
            ),
            (
                post(
                    wt + "/Auth",
                    [],
                    USERNAME_TOKEN_BODY.format(user="hal@contoso.com", password="pw").encode(),
                ),
                http_response(200, "OK", [xml], RSTR_BODY.format(user="hal").encode()),
            ),
        ],
    )
    conn(
        "10.9.3.10",
        [
            (post(wt + "/Cert", []), rstr),
            (post(wt, [], X509_BODY.encode()), rstr),
            (post(wt + "/Anon", []), http_response(200, "OK")),
            (post(wt + "/WsFed", []), http_response(403, "Forbidden")),
            (post(wt, [("Cookie", "FedAuth=77; other=1")]), rstr),
            (post(wt + "/OAuth", [("Authorization", "Bearer eyJ0eXAi")]), http_response(401, "Unauthorized")),
        ],
    )
    # Autodiscover user resource with tickets, and a redirect
    ad_user = "/Autodiscover/AutodiscoverService.svc/root/user"
    conn(
        "10.9.3.11",
        [
            (
                http_request("GET", ad_user, [host, ua]),
                http_response(401, "Unauthorized", [("X-MS-WebTicketURL", "https://lyncweb/WebTicket")]),
            ),
            (
                http_request("GET", ad_user, [host, ua, ("X-MS-WebTicket", "opaque=PHNhbWw+")]),
                http_response(200, "OK", [xml], AD_USER.encode()),
            ),
            (
                http_request("GET", ad_user, [host, ua, ("X-MS-WebTicket", "opaque=PHNhbWw+")]),
                http_response(200, "OK", [xml], AD_REDIRECT.encode()),
            ),
            (
                http_request(
                    "GET",
                    "/Autodiscover/AutodiscoverService.svc/root/oauth/user",
                    [host, ua, ("Authorization", "Bearer cwt=AAEB")],
                ),
                http_response(
                    200,
                    "OK",
                    [("Content-Type", "application/json")],
                    b'{"_links":{"self":{"href":"x"},"applications":{"href":"https://lyncweb/ucwa/oauth/v1/applications"}}}',
                ),
            ),
            (http_request("GET", ad_user, [host, ua]), http_response(404, "Not Found")),
        ],
    )
    # OAuth grants
    form = ("Content-Type", "application/x-www-form-urlencoded;charset=UTF-8")
    token = http_response(
        200,
        "OK",
        [("Content-Type", "application/json")],
        b'{"access_token":"cwt=AAEBHAEFAAAAAAAFFQAAA","token_type":"Bearer","expires_in":28799}',
    )
    conn(
        "10.9.3.12",
        [
            (
                post(
                    "/WebTicket/oauthtoken",
                    [form],
                    b"grant_type=password&username=ivy%40contoso.com&password=pw",
                ),
                http_response(
                    400, "Bad Request", [("Content-Type", "application/json")], b'{"error":"invalid_grant"}'
                ),
            ),
            (
                post(
                    "/WebTicket/oauthtoken",
                    [form],
                    b"grant_type=urn%3Amicrosoft.rtc%3Aanonmeeting&password=KEY&ms_rtc_conferenceuri=sip%3Ax",
                ),
                token,
            ),
            (
                post("/WebTicket/oauthtoken", [form], b"grant_type=urn:microsoft.rtc:passive"),
                http_response(
                    400,
                    "Bad Request",
                    [
                        ("Content-Type", "application/json"),
                        (
                            "X-Ms-diagnostics",
                            '28020;source="fe01.contoso.com";reason="No valid security token."',
                        ),
                    ],
                    b'{"error":"invalid_grant","ms_rtc_passiveauthuri":"https://lyncweb/PassiveAuth/PassiveAuth.aspx"}',
                ),
            ),
            (
                post(
                    "/WebTicket/oauthtoken",
                    [form, ("Cookie", "FedAuth=88")],
                    b"grant_type=urn:microsoft.rtc:passive",
                ),
                token,
            ),
            (
                post(
                    "/WebTicket/oauthtoken",
                    [form, ("Authorization", "NTLM " + b64(ntlm_authenticate("CONTOSO", "jay")))],
                    b"grant_type=urn:microsoft.rtc:windows",
                ),
                token,
            ),
            (
                post("/WebTicket/oauthtoken", [form], b"grant_type=password&username=kay&password="),
                http_response(500, "Error"),
            ),
        ],
    )
    # AD FS forms
    adfs = ("Host", "adfs.contoso.com")
    ls = "/adfs/ls/?wa=wsignin1.0&wtrealm=https%3A%2F%2Flyncweb.contoso.com%2Fpassiveauth%2F&wctx=x"
    html = ("Content-Type", "text/html")
    conn(
        "10.9.3.13",
        [
            (http_request("GET", ls, [adfs, ua]), http_response(200, "OK", [html], ADFS_LOGIN.encode())),
            (
                http_request(
                    "POST",
                    ls,
                    [adfs, ua, form],
                    b"UserName=CONTOSO%5Clee&Password=bad&AuthMethod=FormsAuthentication",
                ),
                http_response(200, "OK", [html], ADFS_ERROR.encode()),
            ),
            (
                http_request(
                    "POST",
                    ls,
                    [adfs, ua, form],
                    b"UserName=CONTOSO%5Clee&Password=good&AuthMethod=FormsAuthentication",
                ),
                http_response(302, "Found", [("Location", ls)]),
            ),
            (
                http_request("POST", ls, [adfs, ua, form], b"AuthMethod=AzureMfaAuthentication&otp=123456"),
                http_response(200, "OK", [html], ADFS_TOKEN.encode()),
            ),
            (
                http_request(
                    "POST", "/PassiveAuth/", [host, ua, form], b"wa=wsignin1.0&wresult=%3Ct%3ARSTR%2F%3E"
                ),
                http_response(
                    302, "Found", [("Set-Cookie", "FedAuth=99; path=/"), ("Location", "/PassiveAuth/")]
                ),
            ),
        ],
    )
    # CertProv, UCWA, MEX failures
    conn(
        "10.9.3.14",
        [
            (
                post(
                    "/CertProv/CertProvisioningService.svc/WebTicket_Proof_SHA1",
                    [],
                    CERTPROV_REQUEST.format(user="max").encode(),
                ),
                http_response(200, "OK", [xml], CERTPROV_ERROR.encode()),
            ),
            (
                http_request(
                    "POST",
                    "/ucwa/oauth/v1/applications",
                    [host, ua, ("Authorization", "Bearer cwt=AAEB"), ("Content-Type", "application/json")],
                    b'{"UserAgent":"x","EndpointId":"1","Culture":"en-US"}',
                ),
                http_response(201, "Created"),
            ),
            (
                http_request("POST", "/ucwa/oauth/v1/applications", [host, ua], b"{}"),
                http_response(403, "Forbidden"),
            ),
            (
                http_request("GET", "/WebTicket/WebTicketService.svc/mex", [host, ua]),
                http_response(404, "Not Found"),
            ),
            (
                http_request(
                    "GET",
                    "/WebTicket/WebTicketService.svc/mex",
                    [host, ua, ("X-Forwarded-For", "203.0.113.9:5555")],
                ),
                http_response(302, "Found", [("Location", "https://lyncweb/mex")]),
            ),
        ],
    )

    # SIP over TCP 5060
    def sip_conn(client: str, transactions: list[tuple[bytes, list[bytes]]]) -> None:
        port[0] += 1
        messages: list[tuple[int, bytes]] = []
        for request, responses in transactions:
            messages.append((0, request))
            messages.extend((1, r) for r in responses)
        pcap.tcp(client, port[0], SERVER, 5060, messages)

    def register(cseq: int, call: str, user: str, auth: list[tuple[str, str]]) -> bytes:
        return sip_message(
            "REGISTER sip:contoso.com SIP/2.0",
            [
                ("Via", f"SIP/2.0/TCP 10.9.4.1:{port[0] + 1};branch=z9hG4bK{cseq}"),
                ("From", f"<sip:{user}@contoso.com>;tag=1;epid=2"),
                ("To", f"<sip:{user}@contoso.com>"),
                ("Call-ID", call),
                ("CSeq", f"{cseq} REGISTER"),
                ("User-Agent", SIP_UA),
                *auth,
            ],
        )

    def answer(status: str, cseq: int, call: str, user: str, extra: list[tuple[str, str]] = ()) -> bytes:  # type: ignore[assignment]
        return sip_message(
            f"SIP/2.0 {status}",
            [
                ("From", f"<sip:{user}@contoso.com>;tag=1;epid=2"),
                ("To", f"<sip:{user}@contoso.com>;tag=9"),
                ("Call-ID", call),
                ("CSeq", f"{cseq} REGISTER"),
                *extra,
            ],
        )

    offer = [
        (
            "WWW-Authenticate",
            'NTLM realm="SIP Communications Service", targetname="fe01.contoso.com", version=4',
        )
    ]
    ntlm3 = b64(ntlm_authenticate("CONTOSO", "ned"))
    signed_ntlm = 'NTLM qop="auth", opaque="B2", realm="SIP Communications Service", crand="2b", cnum="2", response="ee"'
    sip_conn(
        "10.9.4.1",
        [
            (register(1, "c1", "ned", []), [answer("401 Unauthorized", 1, "c1", "ned", offer)]),
            (
                register(
                    2,
                    "c1",
                    "ned",
                    [
                        (
                            "Authorization",
                            f'NTLM qop="auth", realm="SIP Communications Service", '
                            f'targetname="fe01.contoso.com", gssapi-data="{ntlm3}", version=4',
                        )
                    ],
                ),
                [answer("401 Unauthorized", 2, "c1", "ned", offer)],
            ),
            (
                register(
                    3,
                    "c1",
                    "ned",
                    [
                        (
                            "Authorization",
                            'Digest username="ned", realm="x", nonce="1", uri="sip:contoso.com", '
                            'response="aa"',
                        )
                    ],
                ),
                [answer("100 Trying", 3, "c1", "ned"), answer("200 OK", 3, "c1", "ned")],
            ),
            # provisional and final answer in one segment
            (
                register(4, "c1", "ned", [("Authorization", signed_ntlm)]),
                [answer("100 Trying", 4, "c1", "ned") + answer("200 OK", 4, "c1", "ned")],
            ),
        ],
    )
    signed = 'Kerberos qop="auth", opaque="F1", realm="SIP Communications Service", crand="1a", cnum="1", response="ff"'
    sip_conn(
        "10.9.4.2",
        [
            (
                register(1, "c2", "oli", [("Authorization", signed)]),
                [
                    answer(
                        "301 Redirect request to Home Server",
                        1,
                        "c2",
                        "oli",
                        [("Contact", "<sip:pool2.contoso.com:5061;transport=tls>")],
                    )
                ],
            ),
            (
                register(
                    2, "c2", "oli", [("Proxy-Authorization", f'NTLM gssapi-data="{ntlm3}", opaque="A1"')]
                ),
                [answer("407 Proxy Authentication Required", 2, "c2", "oli")],
            ),
            (register(3, "c2", "oli", []), []),
            (
                register(3, "c2", "oli", []),
                [
                    answer(
                        "404 Not Found",
                        3,
                        "c2",
                        "oli",
                        [
                            (
                                "ms-diagnostics",
                                '4005;reason="Destination URI either not enabled for SIP or does not exist"',
                            )
                        ],
                    )
                ],
            ),
            (
                sip_message(
                    "OPTIONS sip:contoso.com SIP/2.0",
                    [
                        ("Via", "SIP/2.0/TCP 10.9.4.2:1;branch=z9hG4bKo"),
                        ("From", "<sip:oli@contoso.com>;tag=1"),
                        ("To", "<sip:contoso.com>"),
                        ("Call-ID", "c3"),
                        ("CSeq", "1 OPTIONS"),
                    ],
                ),
                [],
            ),
        ],
    )
    # DNS over UDP
    for i, (name, qtype, answers) in enumerate(DNS_NAMES):
        qid = 0x2000 + i
        question = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
        question += struct.pack("!HH", qtype, 1)
        pcap.udp(
            "10.9.5.1", 50000 + i, "10.9.5.53", 53, struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question
        )
        rcode = 3 if answers < 0 else 0
        count = max(answers, 0)
        rr = b""
        if count:
            rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([10, 9, 1, 1])
        pcap.udp(
            "10.9.5.53",
            53,
            "10.9.5.1",
            50000 + i,
            struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, count, 0, 0) + question + rr,
        )
    return pcap.write(path)
