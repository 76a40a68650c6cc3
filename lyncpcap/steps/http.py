"""Turn HTTP exchanges into sign-in steps: which step, which authentication protocol, what happened.

The authentication protocol is read from what is on the wire (NTLMSSP vs Kerberos inside
`Negotiate`, UsernameToken, OAuth grant, WS-Fed), never from the header name alone (PROTOCOL.md §12.3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lyncpcap.model import Evidence, Step
from lyncpcap.protocols import adfs, autodiscover, certprov, httpauth, mex, oauth, wstrust
from lyncpcap.protocols.http import HttpExchange, HttpRequest, HttpResponse, parse_query
from lyncpcap.secrets import Secret, redact_url
from lyncpcap.steps import rules, tables
from lyncpcap.steps.common import (
    Attempt,
    Collector,
    DecodedToken,
    Endpoints,
    b64decode,
    decode_token,
    kerberos_token_exchange,
    ntlm_account,
    ntlm_exchange,
)

HTTPS_PORTS = frozenset({443, 4443, 444, 8443, 49443})
CONF_KEY = re.compile(rb"<conf-key>([^<]{1,64})</conf-key>")
CONF_URI = re.compile(rb"<conf-uri>([^<]{1,256})</conf-uri>")
_XML_PARAM = re.compile(rb"[?&;]xml=([A-Za-z0-9+/=%]{16,8192})")


def conference_infos(texts: list[bytes]) -> list[bytes]:
    """conf-info documents in a join page or an LWA launch URL (`xml=` base64 parameter)."""
    from urllib.parse import unquote_to_bytes

    found = []
    for text in texts:
        if b"<conf-info" in text:
            found.append(text)
        for m in _XML_PARAM.finditer(text):
            raw = b64decode(unquote_to_bytes(m.group(1)).decode("ascii", "replace"))
            if raw and b"<conf-info" in raw:
                found.append(raw)
    return found


@dataclass(slots=True)
class ConnState:
    """What one HTTP connection remembers between its exchanges."""

    endpoints: Endpoints
    scheme: str
    # per client: a reverse proxy may carry several users' requests on one connection to the pool
    attempts: dict[str, Attempt] = field(default_factory=dict)
    ntlm_challenge: bytes = b""  # the server challenge of the NTLM handshake in progress


def first_forwarded(headers_value: str | None) -> str | None:
    if not headers_value:
        return None
    first = headers_value.split(",")[0].strip()
    if first.startswith("[") and "]" in first:  # [v6]:port
        return first[1 : first.index("]")]
    if first.count(":") == 1:  # v4:port
        first = first.split(":")[0]
    return first or None


#: X-Ms-diagnostics 28029, "Authentication type not allowed": the method is disabled on the pool
#: (PROTOCOL.md §4.7, §9.3); the credentials were not checked.
NOT_ALLOWED = 28029


#: Office 365's STS (RST2.srf) failure texts (PROTOCOL.md §5.8, §9.5) → (reason, what they say of
#: the password).  "multi-factor" comes only once the password was right: spraying tools count it
#: as a hit.
STS_FAULTS = (
    ("you must use multi-factor", "Office 365 requires multi-factor authentication for this account (the password was accepted)",
     "password accepted"),
    ("error validating credentials", "Office 365 refused the credentials: wrong user name or password", "refused"),
    ("the user account does not exist", "Office 365 does not know this account (unknown user)", "refused"),
    ("invalid sts request", "Office 365 refused the token request as invalid", "unchecked"),
)


def _sts_fault(body: bytes) -> tuple[str, str] | None:
    text = body.decode("utf-8", "replace").lower()
    for marker, reason, verdict in STS_FAULTS:
        if marker in text:
            return reason, verdict
    return None


def _proxy_credentials(req: HttpRequest) -> tuple[str, bool]:
    """(scheme, complete) of a request's Proxy-Authorization: complete for Basic, an NTLM
    AUTHENTICATE or a Kerberos AP-REQ; ("", False) without one."""
    value = req.headers.get("Proxy-Authorization")
    if not value:
        return "", False
    av = httpauth.parse(value)
    if av.lscheme == "basic":
        return av.scheme, True
    if av.lscheme in ("ntlm", "negotiate", "kerberos") and av.token:
        tok = decode_token(b64decode(av.token))
        if tok is not None and tok.ntlm is not None:
            return av.scheme, tok.ntlm.message_type == 3
        if tok is not None and tok.protocol == "kerberos":
            return av.scheme, bool(tok.complete_credential)
    return av.scheme, False


class HttpClassifier:
    """Classifies every HTTP exchange of every connection; one instance per analysis."""

    def __init__(self, out: Collector) -> None:
        self.out = out

    def on_exchange(self, state: ConnState, ex: HttpExchange) -> None:
        req = ex.request
        resp = ex.response
        ep = state.endpoints
        host = req.host
        rule = rules.match(host, req.path)
        client = first_forwarded(req.headers.get("X-Forwarded-For")) or ep.client
        scheme = state.scheme
        # raw; every output renders it via redact_url (CONNECT names its tunnel's host:port)
        url = f"{scheme}://{host or ep.dst}{req.path}" if req.method != "CONNECT" else req.target
        step_name = rule.step if rule else "other"
        step = Step(
            step=step_name,
            time=req.first_ts,
            end=resp.ts if resp else req.ts,
            frame=req.frame,
            src=ep.src,
            dst=ep.dst,
            method=req.method,
            url=url,
            status=resp.status if resp else None,
            auth=None,
            detail="",
            result="none" if resp is None else "info",
            client=client,
            client_port=ep.src_port,
            server_port=ep.dst_port,
            conn=ep.conn,
            transport=ep.transport,
        )
        step.facts["kind"] = rule.kind if rule else "web"
        step.facts["lync"] = bool(rule and rule.lync)
        step.facts["host"] = host
        if req.method == "CONNECT" or req.target.lower().startswith(("http://", "https://")):
            step.facts["via_forward_proxy"] = True  # absolute-form or a tunnel: sent to a forward proxy
        if req.headers.get("X-Forwarded-For"):
            step.evidence.append(Evidence("location", "external", "X-Forwarded-For: the request came through a reverse proxy"))
            step.facts["forwarded"] = True
        ua = req.headers.get("User-Agent")
        if ua:
            step.evidence.append(Evidence("user_agent", ua, "HTTP User-Agent"))
        if req.headers.get("X-Ms-Origin") or req.headers.get("X-Requested-With") == "XMLHttpRequest":
            step.facts["browser_ucwa"] = True
        if resp is not None:
            self._response_markers(step, resp)
        token = self._request_auth(step, req, ep, state)
        details: list[str] = []
        handler = getattr(self, f"_step_{step_name.replace('-', '_')}", None)
        if handler is not None:
            handler(step, req, resp, token, details)
        self._generic_result(step, req, resp, token, details)
        if resp is None and ex.error:
            _browser_error(step, ex.error, req.host or step.dst, details)
        self._response_auth(step, resp, ep, state)
        if ex.response_lost:
            details.append("response lost in a capture gap")
        step.detail = "; ".join(d for d in details if d)
        attempt = state.attempts.get(step.client)
        if attempt is None:
            attempt = state.attempts[step.client] = Attempt()
        attempt.add(step)
        self.out.add_step(step)

    # ---------------------------------------------------------------------------------------
    # authentication on the request / response
    # ---------------------------------------------------------------------------------------
    def _request_auth(self, step: Step, req: HttpRequest, ep: Endpoints, state: ConnState) -> DecodedToken | None:
        value = req.headers.get("Authorization")
        if req.headers.get("X-MS-WebTicket"):
            step.facts["ticket"] = "web-ticket"
            step.facts.setdefault("secrets", []).append(Secret("web-ticket", req.headers.get("X-MS-WebTicket") or ""))
        cookie = req.headers.get("Cookie") or ""
        if "FedAuth" in cookie:
            step.facts["fedauth_cookie"] = True
        if not value:
            return None
        av = httpauth.parse(value)
        scheme = av.lscheme
        if scheme == "bearer":
            step.facts["ticket"] = "bearer"
            if av.token:
                step.facts.setdefault("secrets", []).append(Secret("token", av.token))
            return None
        if scheme == "basic":
            raw = b64decode(av.token or "")
            step.auth = "password"
            step.credential = True
            if raw and b":" in raw:
                user = raw.split(b":", 1)[0].decode("utf-8", "replace")
                step.evidence.append(Evidence("account", user, "HTTP Basic"))
            return None
        if scheme == "digest":
            step.auth = "digest"
            step.credential = "response" in av.params
            if av.param("username"):
                step.evidence.append(Evidence("account", av.param("username") or "", "HTTP Digest"))
            return None
        if scheme not in ("ntlm", "negotiate", "kerberos"):
            return None
        tok = decode_token(b64decode(av.token or "")) if av.token else None
        step.facts["http_scheme"] = av.scheme
        if tok is None:
            step.auth = "ntlm" if scheme == "ntlm" else "unknown"
            return None
        step.auth = tok.protocol if tok.protocol in ("ntlm", "kerberos") else "unknown"
        if tok.ntlm is not None:
            msg = tok.ntlm
            self.out.add_auth(
                step,
                ntlm_exchange(msg, time=req.ts, frame=req.frame, transport="http", src=ep.src, dst=ep.dst, conn=ep.conn)
            )
            step.facts["ntlm_message"] = msg.message_type
            if msg.message_type == 3:
                step.credential = True
                response = msg.crackable(state.ntlm_challenge)
                if response:
                    step.facts.setdefault("secrets", []).append(Secret("ntlm-response", response))
                acct = ntlm_account(msg)
                if acct:
                    step.evidence.append(Evidence("account", acct, "NTLM AUTHENTICATE"))
                if msg.workstation:
                    step.facts["workstation"] = msg.workstation
                if msg.ntlm_version:
                    step.facts["ntlm_version"] = msg.ntlm_version
                if msg.ntlm_version == "anonymous":
                    step.auth = "anonymous"
            if scheme == "negotiate":
                step.facts["negotiate_ntlm"] = True
        elif tok.protocol == "kerberos":
            self.out.add_auth(
                step,
                kerberos_token_exchange(tok, time=req.ts, frame=req.frame, transport="http", src=ep.src, dst=ep.dst, conn=ep.conn)
            )
            step.credential = tok.complete_credential
            if tok.spn:
                step.facts["spn"] = tok.spn
            if tok.realm:
                step.facts["realm"] = tok.realm
            step.evidence.append(Evidence("location", "internal", "Kerberos to the web services: the client reached a KDC"))
        return tok

    def _response_auth(self, step: Step, resp: HttpResponse | None, ep: Endpoints, state: ConnState) -> None:
        if resp is None:
            return
        offered = []
        for av in httpauth.parse_all(resp.headers.get_all("WWW-Authenticate")):
            offered.append(av.scheme)
            if av.lscheme == "msrtcoauth":
                ch = oauth.parse_challenge(av.param("href"), av.param("grant_type"))
                step.facts["oauth_grants"] = list(ch.grant_types)
            if av.token and av.lscheme in ("ntlm", "negotiate", "kerberos"):
                tok = decode_token(b64decode(av.token))
                if tok is None:
                    continue
                if tok.ntlm is not None:
                    self.out.add_auth(
                step,
                        ntlm_exchange(tok.ntlm, time=resp.ts, frame=resp.frame, transport="http", src=ep.dst, dst=ep.src, conn=ep.conn)
                    )
                    if tok.ntlm.server_challenge:
                        state.ntlm_challenge = tok.ntlm.server_challenge
                    if tok.ntlm.target_info:
                        step.facts["ntlm_target"] = dict(tok.ntlm.target_info)
                elif tok.protocol == "kerberos" and tok.kerberos_message:
                    self.out.add_auth(
                step,
                        kerberos_token_exchange(tok, time=resp.ts, frame=resp.frame, transport="http", src=ep.dst, dst=ep.src, conn=ep.conn)
                    )
        if offered:
            step.facts["offered"] = offered

    def _response_markers(self, step: Step, resp: HttpResponse) -> None:
        ns = resp.headers.get("X-MS-Namespace")
        if ns and ns.lower() in ("internal", "external"):
            step.evidence.append(Evidence("location", ns.lower(), f"X-MS-Namespace: {ns}"))
        fqdn = resp.headers.get("X-MS-Server-Fqdn")
        if fqdn:
            step.facts["server_fqdn"] = fqdn
            step.facts["lync"] = True
        corr = resp.headers.get("X-MS-Correlation-Id")
        if corr:
            step.facts["correlation_id"] = corr
        diag = resp.headers.get("X-Ms-diagnostics") or resp.headers.get("X-Ms-diagnostics-public")
        if diag:
            step.facts["diagnostic"] = diag
        for cookie in resp.headers.get_all("Set-Cookie"):
            name, _, rest = cookie.partition("=")
            if name.strip() in ("FedAuth", "FedAuth1", "cwt_ucwa", "MSISAuth", "MSISAuthenticated"):
                step.facts.setdefault("cookies_set", []).append(name.strip())
                step.facts.setdefault("secrets", []).append(Secret("cookie", rest.split(";", 1)[0]))

    # ---------------------------------------------------------------------------------------
    # per step
    # ---------------------------------------------------------------------------------------
    def _step_autodiscover(self, step: Step, req: HttpRequest, resp: HttpResponse | None, tok: DecodedToken | None, details: list[str]) -> None:
        kind = step.facts["kind"]
        query = parse_query(req.target.partition("?")[2])
        sipuri = query.get("sipuri")
        if sipuri:
            uri = sipuri if sipuri.lower().startswith("sip:") else f"sip:{sipuri}"
            step.evidence.append(Evidence("sip_uri", uri, "Autodiscover ?sipuri="))
        host = (step.facts.get("host") or "").lower()
        if host.startswith("lyncdiscoverinternal."):
            step.facts["discover"] = "internal"
        elif host.startswith("lyncdiscover."):
            step.facts["discover"] = "external"
        step.facts["discovery_start"] = kind == "root" and (host.startswith("lyncdiscover") or req.path in ("/", ""))
        if resp is None:
            return
        if resp.status == 401:
            if resp.headers.get("X-MS-WebTicketURL"):
                step.facts["webticket_url"] = resp.headers.get("X-MS-WebTicketURL")
                details.append("asks for a web ticket")
            elif any(av.lscheme == "msrtcoauth" for av in httpauth.parse_all(resp.headers.get_all("WWW-Authenticate"))):
                details.append("asks for an OAuth token")
            else:
                details.append("401 without X-MS-WebTicketURL or MsRtcOAuth: a reverse proxy may be pre-authenticating")
                schemes = [av.scheme for av in httpauth.parse_all(resp.headers.get_all("WWW-Authenticate"))]
                step.facts["bare_401"] = ", ".join(schemes) or "no WWW-Authenticate"
            step.result = "challenge"
            return
        info = autodiscover.try_parse(resp.body) if resp.body else None
        if info is None:
            return
        if info.access_location:
            step.evidence.append(Evidence("location", info.access_location.lower(), f'AccessLocation="{info.access_location}"'))
            details.append(f"AccessLocation {info.access_location}")
        if info.redirect:
            step.facts["redirect"] = info.redirect
            details.append(f"redirect to {info.redirect.split('/')[2] if '//' in info.redirect else info.redirect}")
            step.result = "info"
            return
        if info.sip_internal or info.sip_external:
            step.facts["sip_access"] = {"internal": info.sip_internal, "external": info.sip_external}
        if info.resource == "user":
            step.facts["user_resource"] = True
            if step.facts.get("ticket") and 200 <= resp.status < 300:
                step.result = "success"
                details.append("user resource returned for the presented ticket")
        elif info.resource == "root":
            details.append("root: " + ", ".join(sorted(info.links)))

    def _step_mex(self, step: Step, req: HttpRequest, resp: HttpResponse | None, tok: DecodedToken | None, details: list[str]) -> None:
        if resp is None or resp.status != 200:
            return
        info = mex.try_parse(resp.body)
        if info is not None:
            step.facts["mex_methods"] = list(info.methods)
            step.facts["mex_ports"] = [name for name, _ in info.ports]
            details.append("offers " + (", ".join(info.methods) or "no known method"))

    def _step_webticket(self, step: Step, req: HttpRequest, resp: HttpResponse | None, tok: DecodedToken | None, details: list[str]) -> None:
        suffix = req.path.split("?")[0].lower().rsplit("webticketservice.svc", 1)[-1].strip("/")
        step.facts["endpoint"] = suffix or "windows"
        msg = wstrust.try_parse(req.body) if req.body else None
        if isinstance(msg, wstrust.RequestSecurityToken):
            if msg.claims_sip_uri:
                step.evidence.append(Evidence("sip_uri", msg.claims_sip_uri, "web ticket request Claims"))
            if msg.conference_uri:
                step.facts["conference_uri"] = msg.conference_uri
            if msg.applies_to:
                step.facts["applies_to"] = msg.applies_to
            if msg.token_type:
                step.facts["token_type"] = "cwt" if "cwt" in msg.token_type else "saml"
            if msg.username is not None or msg.password is not None:
                step.auth = "soap"
                step.credential = msg.password is not None
                if msg.username:
                    step.evidence.append(Evidence("account", msg.username, "SOAP UsernameToken"))
                if msg.password is not None:
                    step.facts.setdefault("secrets", []).append(msg.password)
                    details.append(f"UsernameToken user {msg.username} password {msg.password}")
            elif msg.has_x509_header:
                step.auth = "certificate"
                step.credential = True
        if suffix == "anon":
            step.auth = "anonymous"
            step.credential = True
        elif suffix == "cert" and step.auth is None:
            step.auth = "certificate"
            step.credential = True
        elif suffix in ("wsfed", "wsfedpassive", "passive") or (step.facts.get("fedauth_cookie") and step.auth is None):
            step.auth = "passive"
            step.credential = bool(step.facts.get("fedauth_cookie")) or step.credential
        if resp is None:
            return
        answer = wstrust.try_parse(resp.body) if resp.body else None
        if isinstance(answer, wstrust.RequestSecurityTokenResponse):
            step.result = "success"
            if answer.subject:
                step.evidence.append(Evidence("sip_uri", answer.subject, "web ticket subject"))
            if answer.ticket is not None:
                step.facts.setdefault("secrets", []).append(answer.ticket)
            if answer.expires:
                step.facts["ticket_expires"] = answer.expires
            details.append(f"web ticket issued ({'compact cwt' if answer.compact_ticket else 'SAML'})")
        elif isinstance(answer, wstrust.SoapFault):
            step.result = "failure"
            meaning = tables.web_diagnostic_meaning(answer.error_id) if answer.error_id else None
            if answer.error_id == NOT_ALLOWED:
                step.facts["credentials_unchecked"] = True
            step.failure_reason = f"web ticket refused: {meaning or answer.reason or answer.string or 'SOAP fault'}"
            step.failure_evidence = f"SOAP fault {answer.diagnostic()}"
            lower = (answer.reason or answer.string or "").lower()
            sts = _sts_fault(resp.body)
            if sts is not None:
                step.failure_reason, verdict = sts
                if verdict == "password accepted":
                    step.facts["password_accepted"] = True
                elif verdict == "unchecked":
                    step.facts["credentials_unchecked"] = True
            elif "disabled" in lower:
                step.failure_reason = "web ticket refused: the account is disabled"
            elif "sip uri" in lower and "does not match" in lower:
                step.failure_reason = "the sign-in address does not belong to the credentials used"
            details.append(step.failure_evidence)

    def _step_oauth(self, step: Step, req: HttpRequest, resp: HttpResponse | None, tok: DecodedToken | None, details: list[str]) -> None:
        treq = oauth.parse_request(req.body) if req.body else None
        if treq is not None and treq.grant_type:
            step.facts["grant_type"] = treq.grant_type
            g = treq.grant_type
            if g == oauth.GRANT_PASSWORD:
                step.auth = "password"
                step.credential = treq.password is not None
                if treq.username:
                    step.evidence.append(Evidence("account", treq.username, "OAuth password grant username"))
            elif g == oauth.GRANT_ANONMEETING:
                step.auth = "anonymous"
                step.credential = True
                if treq.conference_uri:
                    step.facts["conference_uri"] = treq.conference_uri
            elif g == oauth.GRANT_PASSIVE:
                step.auth = "passive"
                step.credential = bool(step.facts.get("fedauth_cookie"))
            elif g == oauth.GRANT_WINDOWS and step.auth is None:
                step.auth = None  # the HTTP layer (Negotiate/NTLM) carries the credential
            if treq.password is not None:
                step.facts.setdefault("secrets", []).append(treq.password)
            details.append(f"grant_type={g}" + (f" username={treq.username}" if treq.username else ""))
        if resp is None:
            return
        tresp = oauth.parse_response(resp.body) if resp.body else None
        if tresp is None:
            return
        if tresp.access_token is not None:
            step.result = "success"
            step.facts.setdefault("secrets", []).append(tresp.access_token)
            if tresp.expires_in is not None:
                step.facts["expires_in"] = tresp.expires_in
            details.append(f"token issued (expires_in {tresp.expires_in})")
        elif tresp.error:
            if tresp.passive_auth_uri:
                step.result = "challenge"
                step.facts["passive_auth_uri"] = tresp.passive_auth_uri
                details.append(f"{tresp.error}: passive authentication required at {tresp.passive_auth_uri}")
                return
            step.result = "failure"
            meaning = tables.oauth_error_meaning(tresp.error) or tresp.error
            diag = step.facts.get("diagnostic")
            if tresp.error in ("unsupported_grant_type", "invalid_request", "invalid_scope", "server_error") or (
                diag and tables.diagnostic_id(diag) == NOT_ALLOWED
            ):
                step.facts["credentials_unchecked"] = True  # refused before any password was checked
            step.failure_reason = f"OAuth token refused: {meaning}"
            step.failure_evidence = f'{{"error":"{tresp.error}"}}' + (f"; X-Ms-diagnostics: {diag}" if diag else "")
            details.append(step.failure_evidence)

    def _step_certprov(self, step: Step, req: HttpRequest, resp: HttpResponse | None, tok: DecodedToken | None, details: list[str]) -> None:
        if step.facts["kind"] == "certprov-mex":
            details.append("certificate provisioning metadata")
            return
        creq = certprov.try_parse(req.body) if req.body else None
        if isinstance(creq, certprov.CertRequest):
            if creq.entity:
                step.evidence.append(Evidence("sip_uri", creq.entity, "GetAndPublishCert Entity"))
            details.append("GetAndPublishCert")
        if resp is None:
            return
        cresp = certprov.try_parse(resp.body) if resp.body else None
        if isinstance(cresp, certprov.CertResponse):
            if cresp.issued:
                step.result = "success"
                details.append("certificate issued")
            elif cresp.error:
                step.result = "failure"
                step.failure_reason = "the certificate could not be issued or published"
                step.failure_evidence = f"ErrorInfo: {cresp.error}"
                details.append(step.failure_evidence)

    def _step_adfs(self, step: Step, req: HttpRequest, resp: HttpResponse | None, tok: DecodedToken | None, details: list[str]) -> None:
        query = req.target.partition("?")[2]
        body = req.body if req.method == "POST" else b""
        wsfed = adfs.parse_request(query, body)
        if step.auth is None:
            step.auth = "passive"
        if wsfed.wa:
            step.facts["wa"] = wsfed.wa
            details.append(f"wa={wsfed.wa}")
        if wsfed.wtrealm:
            step.facts["wtrealm"] = wsfed.wtrealm
        if wsfed.username:
            step.evidence.append(Evidence("account", wsfed.username, "AD FS sign-in form UserName"))
        for s in (wsfed.password, wsfed.wresult, wsfed.otp):
            if s is not None:
                step.facts.setdefault("secrets", []).append(s)
        if wsfed.password is not None:
            step.credential = True
            step.facts["adfs_phase"] = "primary"
            details.append(f"forms sign-in ({wsfed.auth_method or 'FormsAuthentication'})")
        if wsfed.second_factor:
            step.credential = True
            step.facts["adfs_phase"] = "second-factor"
            step.facts["mfa"] = True
            details.append(f"second factor ({wsfed.auth_method})")
        if wsfed.wresult is not None:
            step.facts["adfs_phase"] = "token-post"
            step.credential = True
            details.append("wresult posted to the relying party")
        if resp is None:
            return
        if 300 <= resp.status < 400:
            loc = resp.headers.get("Location") or ""
            if "wa=wsignin1.0" in loc.lower():
                details.append("redirect to AD FS")
            if step.facts.get("cookies_set"):
                details.append("session cookie " + ", ".join(step.facts["cookies_set"]))
            if step.credential:
                step.result = "success"
            return
        if resp.status >= 400:
            return
        page = adfs.parse_page(resp.body)
        if page.error_text and (step.credential or page.error_page):
            step.result = "failure"
            step.failure_reason = "AD FS sign-in failed" if not page.error_page else "AD FS returned an error page"
            step.failure_evidence = f"errorText: {page.error_text}"
            details.append(step.failure_evidence)
        elif page.error_page:
            step.result = "failure"
            step.failure_reason = "AD FS returned an error page (relying-party trust or token-signing problem)"
            step.failure_evidence = "An error occurred"
        elif page.mfa_page:
            step.facts["mfa_prompt"] = True
            details.append("second-factor page")
            if step.credential:
                step.result = "success"
        elif page.token_post_form:
            details.append("token issued (auto-submitting wresult form)")
            step.facts["token_issued"] = True
            if step.credential:
                step.result = "success"
        elif page.login_form:
            details.append("sign-in page")

    def _step_other(self, step: Step, req: HttpRequest, resp: HttpResponse | None, tok: DecodedToken | None, details: list[str]) -> None:
        """Lync Web App join pages carry the conference key that lets guests in (PROTOCOL.md §8.3)."""
        if step.facts.get("kind") not in ("lwa-meet", "lwa"):
            return
        texts = [req.target.encode()]
        if resp is not None and resp.body:
            texts.append(resp.body)
        for conf in conference_infos(texts):
            key = CONF_KEY.search(conf)
            uri = CONF_URI.search(conf)
            if uri:
                step.facts["conference_uri"] = uri.group(1).decode("utf-8", "replace")
            if key:
                step.facts.setdefault("secrets", []).append(Secret("conference-key", key.group(1).decode("utf-8", "replace")))
                if "conference key" not in details:
                    details.append("join page carries the conference key")

    def _step_ucwa(self, step: Step, req: HttpRequest, resp: HttpResponse | None, tok: DecodedToken | None, details: list[str]) -> None:
        import json

        if step.facts["kind"] == "applications" and req.method == "POST":
            step.facts["goal"] = True
            try:
                doc: Any = json.loads(req.body.decode("utf-8", "replace")) if req.body else {}
            except ValueError:
                doc = {}
            if isinstance(doc, dict):
                lower = {str(k).lower(): v for k, v in doc.items()}
                ua = lower.get("useragent")
                if isinstance(ua, str):
                    step.evidence.append(Evidence("app_user_agent", ua, "UCWA application UserAgent"))
                if isinstance(lower.get("type"), str):
                    step.facts["app_type"] = lower["type"]
                details.append("create UCWA application")
        elif req.method == "DELETE":
            details.append("leave (delete application)")

    # ---------------------------------------------------------------------------------------
    def _generic_result(self, step: Step, req: HttpRequest, resp: HttpResponse | None, tok: DecodedToken | None, details: list[str]) -> None:
        if resp is None:
            step.result = "none"
            details.append("no response seen")
            return
        status = resp.status
        if step.result in ("success", "failure", "challenge"):
            return  # the step's own handler has decided
        diag = step.facts.get("diagnostic")
        diag_id = tables.diagnostic_id(diag) if diag else None
        if status == 407:
            # a forward proxy on the way, not the Lync server, wants credentials (Proxy-Authorization)
            scheme, complete = _proxy_credentials(req)
            if complete:
                step.result = "failure"
                step.failure_reason = "the forward proxy refused the credentials (Proxy-Authorization)"
                step.failure_evidence = f"HTTP 407 {resp.reason} after complete {scheme} proxy credentials".replace("  ", " ")
                details.append(step.failure_reason)
            else:
                step.result = "challenge"
                details.append("the forward proxy asks for authentication" + (f" ({scheme} handshake)" if scheme else ""))
            return
        if status in (401, 407):
            if step.credential and diag_id == NOT_ALLOWED:
                # the credentials were never checked: the pool does not take this method at all
                step.result = "failure"
                step.facts["credentials_unchecked"] = True
                step.failure_reason = f"{self._method_name(step)} is not allowed on this pool"
                step.failure_evidence = f"HTTP {status} {resp.reason}; X-Ms-diagnostics: {diag}".replace("  ", " ")
                details.append(step.failure_reason)
            elif step.credential:
                step.result = "failure"
                step.failure_reason = self._credential_refused(step)
                evidence = f"HTTP {status} after complete {step.auth.upper() if step.auth else ''} credentials".replace("  ", " ")
                if diag:
                    evidence += f"; X-Ms-diagnostics: {diag}"
                elif b"invalid credentials" in resp.body:
                    evidence += ' ("401 - Unauthorized: Access is denied due to invalid credentials.")'
                step.failure_evidence = evidence
                details.append(step.failure_reason)
            else:
                step.result = "challenge"
                if step.facts.get("offered"):
                    details.append("challenge: " + ", ".join(step.facts["offered"]))
            return
        if 200 <= status < 400:
            if (step.step in ("webticket", "oauth", "certprov") and step.credential and 200 <= status < 300) or (step.step == "ucwa" and 200 <= status < 300) or (step.step == "other" and 200 <= status < 300):
                step.result = "success"
            else:
                step.result = "info"
            if status in (301, 302, 303, 307, 308):
                loc = resp.headers.get("Location")
                if loc:
                    step.facts["location_header"] = redact_url(loc)
                    if not any("redirect" in d for d in details):
                        details.append(f"redirect to {redact_url(loc)}")
            return
        # 4xx / 5xx without a more specific verdict
        step.result = "failure"
        meaning = tables.http_status_meaning(status) or resp.reason
        if status in (502, 503, 504) and step.facts.get("via_forward_proxy"):
            meaning = f"the forward proxy could not reach {step.facts.get('host') or 'the server'} ({status} {resp.reason})".replace(" )", ")")
        reason = {
            "mex": "web ticket metadata (MEX) not available",
            "autodiscover": "Autodiscover request failed",
            "webticket": "web ticket request failed",
            "oauth": "OAuth token request failed",
            "certprov": "certificate provisioning failed",
            "ucwa": "UCWA request refused",
            "adfs": "AD FS request failed",
        }.get(step.step, "request failed")
        if step.step == "autodiscover" and status == 404 and step.facts["kind"] in ("user", "oauth-user"):
            meaning = "the server could not determine the user's home pool (unknown user)"
        elif diag_id is not None and tables.web_diagnostic_meaning(diag_id):
            meaning = str(tables.web_diagnostic_meaning(diag_id))
            if diag_id == NOT_ALLOWED:
                step.facts["credentials_unchecked"] = True
        step.failure_reason = f"{reason}: {meaning}"
        ev = f"HTTP {status} {resp.reason}".strip()
        if diag:
            ev += f"; X-Ms-diagnostics: {diag}"
        step.failure_evidence = ev
        details.append(step.failure_reason)

    @staticmethod
    def _method_name(step: Step) -> str:
        names = {"kerberos": "Kerberos", "ntlm": "NTLM", "soap": "user name and password (SOAP)", "password": "the password grant",
                 "anonymous": "anonymous access", "passive": "passive (AD FS) authentication", "certificate": "certificate authentication"}
        return names.get(step.auth or "", f"{step.auth} authentication" if step.auth else "this authentication method")

    @staticmethod
    def _credential_refused(step: Step) -> str:
        auth = step.auth or "credentials"
        if auth == "kerberos":
            return "the web server refused the Kerberos ticket (SPN or Kerberos account password problem)"
        if auth == "ntlm":
            return "NTLM credentials refused: wrong password, or the account is locked out or disabled"
        return f"{auth} credentials refused"


#: Chrome's and Edge's network errors on a HAR entry that got no answer -> what went wrong (the
#: names of Chromium's net/base/net_error_list.h).  A sign-in step that never reached its server.
BROWSER_ERRORS: dict[str, str] = {
    "ERR_NAME_NOT_RESOLVED": "{host} does not resolve (DNS)",
    "ERR_NAME_RESOLUTION_FAILED": "{host} could not be resolved (no DNS server answered)",
    "ERR_CONNECTION_REFUSED": "could not connect to {host}: connection refused (nothing listens there, or a firewall rejects it)",
    "ERR_CONNECTION_TIMED_OUT": "could not connect to {host}: no answer (a firewall drops it, or the host is down)",
    "ERR_TIMED_OUT": "{host} did not answer in time",
    "ERR_ADDRESS_UNREACHABLE": "could not connect to {host}: no route to it",
    "ERR_CONNECTION_RESET": "{host} reset the connection",
    "ERR_CONNECTION_CLOSED": "{host} closed the connection without answering",
    "ERR_EMPTY_RESPONSE": "{host} closed the connection without answering",
    "ERR_CERT_AUTHORITY_INVALID": "the browser does not trust the certificate of {host} (an authority it does not know: a private CA?)",
    "ERR_CERT_COMMON_NAME_INVALID": "the certificate of {host} does not name it",
    "ERR_CERT_DATE_INVALID": "the certificate of {host} has expired or is not valid yet",
    "ERR_CERT_REVOKED": "the certificate of {host} is revoked",
    "ERR_SSL_PROTOCOL_ERROR": "TLS handshake with {host} failed",
    "ERR_SSL_VERSION_OR_CIPHER_MISMATCH": "TLS handshake with {host} failed: no TLS version or cipher suite in common",
    "ERR_BAD_SSL_CLIENT_AUTH_CERT": "{host} refused the client certificate (smart card) the browser offered",
    "ERR_TUNNEL_CONNECTION_FAILED": "the forward proxy could not open a tunnel to {host}",
    "ERR_PROXY_CONNECTION_FAILED": "the browser could not reach its forward proxy",
    "ERR_INTERNET_DISCONNECTED": "the machine had no network connection",
    "ERR_NETWORK_CHANGED": "the machine's network changed during the request",
}
#: errors that are the page's or the browser's own doing, not a failure of the sign-in
BENIGN_BROWSER_ERRORS = frozenset({"ERR_ABORTED", "ERR_BLOCKED_BY_CLIENT", "ERR_CACHE_MISS", "ERR_INSUFFICIENT_RESOURCES"})


def _browser_error(step: Step, error: str, host: str, details: list[str]) -> None:
    """A request the browser gave up on (a HAR entry without an answer, with its net::ERR_…)."""
    code = error.strip().removeprefix("net::")
    if "no response seen" in details:
        details.remove("no response seen")
    if code in BENIGN_BROWSER_ERRORS:
        details.append(f"cancelled by the browser ({error})")
        return
    reason = BROWSER_ERRORS.get(code, "the browser got no answer from {host}").format(host=host.split(":")[0])
    step.result = "failure"
    step.status = code
    step.failure_reason = reason
    step.failure_evidence = f"the browser's error: {error}"
    details.append(reason)

