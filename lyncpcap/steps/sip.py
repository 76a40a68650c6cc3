"""SIP transactions as steps: REGISTER with MS-SIPAE NTLM / Kerberos / TLS-DSK, Digest, diagnostics.

A 401 is a challenge unless the REGISTER carried a complete credential (NTLM AUTHENTICATE,
Kerberos AP-REQ, the final TLS-DSK flight, or a signed message after the security association).
"""

from __future__ import annotations

from dataclasses import dataclass

from lyncpcap.model import Evidence, Step
from lyncpcap.protocols.http import Headers
from lyncpcap.protocols.sip import SipMessage
from lyncpcap.secrets import Secret
from lyncpcap.steps import tables
from lyncpcap.steps.common import (
    Attempt,
    Collector,
    Endpoints,
    b64decode,
    decode_token,
    kerberos_token_exchange,
    ntlm_account,
    ntlm_exchange,
)

TLS_CHANGE_CIPHER_SPEC = 20
TLS_HANDSHAKE = 22
#: A transaction without a final response this long has timed out: RFC 3261's 64*T1 (32 s) for
#: a non-INVITE request, doubled; an INVITE's answer waits for the callee, so minutes.  Its step is
#: handed on then, in time order with the steps around it, rather than at the end of the capture.
TIMEOUT = 64.0
INVITE_TIMEOUT = 300.0
#: Requests that get no response: ACK, and the best-effort NOTIFY of [MS-SIP] (presence updates
#: a Lync server sends a signed-in client, many a minute on a busy pool)
NO_RESPONSE = frozenset({"ACK", "BENOTIFY"})
#: NTLM server challenges remembered per Call-ID (for the NTLM response's redaction fingerprint)
CHALLENGES_KEPT = 4096


def via_client(headers: Headers) -> str | None:
    """The original client's address from the bottom Via (its `received=` when present)."""
    vias: list[str] = []
    for value in headers.get_all("Via"):
        vias.extend(v.strip() for v in value.split(",") if v.strip())
    if len(vias) < 2:
        return None
    bottom = vias[-1]
    params = dict(
        (p.split("=", 1)[0].strip().lower(), p.split("=", 1)[1].strip() if "=" in p else "")
        for p in bottom.split(";")[1:]
    )
    if params.get("received"):
        return params["received"].strip("[]")
    sent_by = bottom.split(";", 1)[0].split()[-1] if bottom.split(";", 1)[0].split() else ""
    if sent_by.startswith("["):
        return sent_by[1 : sent_by.find("]")]
    return sent_by.rsplit(":", 1)[0] if sent_by.count(":") == 1 else sent_by or None


def tls_dsk_flight(raw: bytes) -> str:
    """'hello' for a ClientHello flight, 'final' for a flight with ChangeCipherSpec/ClientKeyExchange."""
    pos = 0
    kinds: set[int] = set()
    hs_types: set[int] = set()
    while pos + 5 <= len(raw):
        rtype = raw[pos]
        length = int.from_bytes(raw[pos + 3 : pos + 5], "big")
        kinds.add(rtype)
        if rtype == TLS_HANDSHAKE and pos + 5 < len(raw):
            hs_types.add(raw[pos + 5])
        pos += 5 + length
    if TLS_CHANGE_CIPHER_SPEC in kinds or 16 in hs_types or 15 in hs_types:
        return "final"
    if 1 in hs_types:
        return "hello"
    if 2 in hs_types:
        return "server"
    return "data"


@dataclass(slots=True)
class _Pending:
    step: Step
    ep: Endpoints
    request: SipMessage


class SipClassifier:
    def __init__(self, out: Collector) -> None:
        self.out = out
        self.pending: dict[tuple[str, int, str], _Pending] = {}
        # handshakes in progress (client|Call-ID), forgotten once one ends in success or failure
        self.attempts: dict[str, Attempt] = {}
        self.challenges: dict[str, bytes] = {}  # Call-ID → NTLM server challenge (connectionless NTLM)

    def on_message(self, ep: Endpoints, msg: SipMessage) -> None:
        if msg.is_request:
            self._request(ep, msg)
        else:
            self._response(msg)

    def expire(self, now: float) -> None:
        """Transactions whose final response has not come TIMEOUT (an INVITE: INVITE_TIMEOUT)
        seconds after their request have timed out."""
        stale = []
        for key, p in self.pending.items():  # in the order the requests came
            if p.step.time + TIMEOUT > now:
                break
            if key[2] != "INVITE" or p.step.time + INVITE_TIMEOUT <= now:
                stale.append(key)
        for key in stale:
            self._unanswered(self.pending.pop(key))

    def finish(self) -> None:
        for p in list(self.pending.values()):
            self._unanswered(p)
        self.pending.clear()

    def _unanswered(self, p: _Pending) -> None:
        p.step.result = "none"
        p.step.detail = "; ".join(x for x in (p.step.detail, "no final response seen") if x)
        self._emit(p)

    # -----------------------------------------------------------------------------------------
    def _key(self, msg: SipMessage) -> tuple[str, int, str]:
        num, method = msg.cseq
        return msg.call_id, num, method

    def _request(self, ep: Endpoints, msg: SipMessage) -> None:
        key = self._key(msg)
        if key in self.pending or msg.method in NO_RESPONSE:
            return  # retransmission, or a request that gets no response
        method = msg.method or "?"
        client = via_client(msg.headers) or ep.client
        step = Step(
            step="sip-register" if method == "REGISTER" else "other",
            time=msg.first_ts,
            end=msg.ts,
            frame=msg.frame,
            src=ep.src,
            dst=ep.dst,
            method=method,
            url=msg.uri,
            status=None,
            auth=None,
            detail="",
            result="none",
            client=client,
            client_port=ep.src_port,
            server_port=ep.dst_port,
            conn=ep.conn,
            transport=ep.transport,
        )
        step.facts["lync"] = method == "REGISTER"
        step.facts["call_id"] = msg.call_id
        if msg.from_uri:
            step.evidence.append(Evidence("sip_uri", msg.from_uri, "SIP From"))
        ua = msg.headers.get("User-Agent")
        if ua:
            step.evidence.append(Evidence("user_agent", ua, "SIP User-Agent"))
        if msg.epid:
            step.facts["epid"] = msg.epid
        details: list[str] = []
        for header in ("Authorization", "Proxy-Authorization"):
            for av in msg.auth(header):
                self._credential(step, av.scheme, av.params, msg, ep, details)
        step.detail = "; ".join(details)
        self.pending[key] = _Pending(step, ep, msg)

    def _credential(self, step: Step, scheme: str, params: dict[str, str], msg: SipMessage, ep: Endpoints, details: list[str]) -> None:
        s = scheme.lower()
        step.auth = {"ntlm": "ntlm", "kerberos": "kerberos", "tls-dsk": "tls-dsk", "digest": "digest"}.get(s, "unknown")
        signed = "response" in params and "crand" in params
        if s == "digest":
            step.credential = "response" in params
            user = params.get("username")
            if user:
                step.evidence.append(Evidence("account", user, "SIP Digest username"))
            return
        if signed:
            step.credential = True
            step.facts["signed"] = True
            details.append(f"signed with the {scheme} security association")
            return
        raw = b64decode(params.get("gssapi-data", "")) if params.get("gssapi-data") else None
        if s == "tls-dsk":
            flight = tls_dsk_flight(raw) if raw else "none"
            step.facts["tls_dsk_flight"] = flight
            step.credential = flight == "final"
            details.append(f"TLS-DSK {'client certificate flight' if flight == 'final' else 'ClientHello' if flight == 'hello' else 'start'}")
            return
        tok = decode_token(raw)
        if tok is None:
            details.append(f"{scheme} start")
            return
        if tok.ntlm is not None:
            self.out.add_auth(step, ntlm_exchange(tok.ntlm, time=msg.ts, frame=msg.frame, transport="sip", src=ep.src, dst=ep.dst, conn=ep.conn))
            if tok.ntlm.message_type == 3:
                step.credential = True
                response = tok.ntlm.crackable(self.challenges.get(msg.call_id, b""))
                if response:
                    step.facts.setdefault("secrets", []).append(Secret("ntlm-response", response))
                acct = ntlm_account(tok.ntlm)
                if acct:
                    step.evidence.append(Evidence("account", acct, "NTLM AUTHENTICATE in SIP gssapi-data"))
                if tok.ntlm.ntlm_version:
                    step.facts["ntlm_version"] = tok.ntlm.ntlm_version
                details.append("NTLM AUTHENTICATE")
        elif tok.protocol == "kerberos":
            self.out.add_auth(step, kerberos_token_exchange(tok, time=msg.ts, frame=msg.frame, transport="sip", src=ep.src, dst=ep.dst, conn=ep.conn))
            step.credential = tok.complete_credential
            if tok.spn:
                step.facts["spn"] = tok.spn
            step.evidence.append(Evidence("location", "internal", "Kerberos to the registrar: the client reached a KDC"))
            details.append(f"Kerberos AP-REQ for {tok.spn}" if tok.spn else "Kerberos")

    def _response(self, msg: SipMessage) -> None:
        status = msg.status
        if status is None:
            return
        p = self.pending.get(self._key(msg))
        if p is None:
            return
        step = p.step
        if status < 200:
            step.facts.setdefault("provisional", []).append(status)
            return
        del self.pending[self._key(msg)]
        step.status = status
        step.end = msg.ts
        details = [step.detail] if step.detail else []
        server = msg.headers.get("Server")
        if server:
            step.facts["server"] = server
            name = tables.sip_server(server)
            if name:
                step.facts["server_product"] = name
        # challenges and continuations
        offered: list[str] = []
        continuation = False  # the server carries the handshake on (gssapi-data): not a refusal
        for header in ("WWW-Authenticate", "Proxy-Authenticate"):
            for av in msg.auth(header):
                offered.append(av.scheme)
                target = av.param("targetname")
                if target:
                    step.facts.setdefault("server_fqdn", target.split("/")[-1])
                if av.param("gssapi-data") or av.param("opaque"):
                    continuation = True
                if av.param("sts-uri"):
                    step.facts["sts_uri"] = av.param("sts-uri")
                raw = b64decode(av.param("gssapi-data") or "") if av.param("gssapi-data") else None
                if raw and av.lscheme in ("ntlm", "kerberos"):
                    tok = decode_token(raw)
                    if tok is not None and tok.ntlm is not None:
                        self.out.add_auth(step, ntlm_exchange(tok.ntlm, time=msg.ts, frame=msg.frame, transport="sip", src=p.ep.dst, dst=p.ep.src, conn=p.ep.conn))
                        if tok.ntlm.server_challenge:
                            self.challenges.pop(msg.call_id, None)
                            self.challenges[msg.call_id] = tok.ntlm.server_challenge
                            if len(self.challenges) > CHALLENGES_KEPT:
                                del self.challenges[next(iter(self.challenges))]  # the oldest
                    elif tok is not None and tok.protocol == "kerberos" and tok.kerberos_message:
                        self.out.add_auth(step, kerberos_token_exchange(tok, time=msg.ts, frame=msg.frame, transport="sip", src=p.ep.dst, dst=p.ep.src, conn=p.ep.conn))
        if offered:
            step.facts["offered"] = offered
        if (msg.headers.get("ms-user-logon-data") or "").lower().startswith("remoteuser"):
            step.evidence.append(Evidence("location", "external", "ms-user-logon-data: RemoteUser (signed in through the Edge)"))
        diags = msg.diagnostics
        if diags:
            step.facts["diagnostic"] = diags[0]
        if status == 200:
            step.result = "success"
            if step.step == "sip-register":
                step.facts["goal"] = True
                contact = msg.headers.get("Contact") or ""
                if "gruu=" in contact:
                    details.append("registered (GRUU assigned)")
                else:
                    details.append("registered")
        elif status in (401, 407):
            certificate_only = [o.lower() for o in offered] == ["tls-dsk"] and step.auth != "tls-dsk"
            if step.credential and not continuation and certificate_only:
                # Kerberos or NTLM accepted no further: the pool wants the user's Lync certificate and
                # points at CertProv (sts-uri).  A first sign-in on a machine always goes this way
                # (PROTOCOL.md §10.1 step 8, §6.4): no refused password.
                step.result = "challenge"
                details.append("the pool asks for a certificate (TLS-DSK)" + (", from CertProv" if step.facts.get("sts_uri") else ""))
            elif step.credential and not continuation:
                step.result = "failure"
                step.failure_reason = "SIP credentials refused"
                step.failure_evidence = f"SIP {status} {msg.reason} after complete {step.auth} credentials"
                if diags:
                    step.failure_evidence += f"; ms-diagnostics: {diags[0]}"
                details.append(step.failure_reason)
            else:
                step.result = "challenge"
                if continuation:
                    details.append(f"{step.auth or 'security association'} handshake continues")
                else:
                    details.append("challenge: " + ", ".join(offered) if offered else "challenge")
        elif status in (301, 302):
            step.result = "info"
            redirect = msg.headers.get("Contact")
            if redirect:
                step.facts["redirect"] = redirect
            details.append(f"{msg.reason or 'redirect'}")
        else:
            step.result = "failure"
            diag_id = tables.diagnostic_id(diags[0]) if diags else None
            meaning = tables.ms_diagnostic_meaning(diag_id) if diag_id is not None else None
            if meaning is None:
                meaning = {
                    403: "registration forbidden",
                    404: "SIP is either not enabled for the user or the user does not exist",
                    480: "the user's pool is temporarily unavailable",
                    503: "the service is unavailable",
                    504: "the server timed out reaching the next hop",
                }.get(status, f"{status} {msg.reason}")
            step.failure_reason = f"SIP {step.method or 'request'} rejected: {meaning}"
            step.failure_evidence = f"SIP {status} {msg.reason}" + (f"; ms-diagnostics: {diags[0]}" if diags else "")
            details.append(step.failure_evidence)
        step.detail = "; ".join(d for d in details if d)
        self._emit(p)

    def _emit(self, p: _Pending) -> None:
        key = f"{p.step.client}|{p.request.call_id}"
        attempt = self.attempts.setdefault(key, Attempt())
        attempt.add(p.step)
        if not attempt.steps:  # that handshake is over
            del self.attempts[key]
        self.out.add_step(p.step)

