"""What the step classifiers share: where steps go, per-connection attempt state, auth-token decoding.

`Collector` is implemented by the engine (`lyncpcap.analysis`); classifiers only call it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Protocol

from lyncpcap.errors import MalformedError
from lyncpcap.model import AuthExchange, Evidence, Step
from lyncpcap.protocols import ntlm, spnego


class Collector(Protocol):
    def add_step(self, step: Step) -> None: ...
    def add_auth(self, step: Step | None, exchange: AuthExchange) -> None: ...  # the step that carried it
    def note(self, message: str) -> None: ...


@dataclass(slots=True)
class Endpoints:
    """Addressing of a conversation as the steps report it."""

    client: str  # the client as the session sees it (X-Forwarded-For / Via received when present)
    src: str  # the packet source of the request
    dst: str
    src_port: int | None
    dst_port: int | None
    conn: int | None
    transport: str  # "tcp", "udp", "tls" (decrypted)


@dataclass(slots=True)
class Attempt:
    """Steps of one authentication attempt on one connection, so a late identity reaches early steps."""

    steps: list[Step] = field(default_factory=list)

    def add(self, step: Step) -> None:
        self.steps.append(step)
        ids = [e for e in step.evidence if e.kind in ("account", "sip_uri")]
        if ids:
            for earlier in self.steps[:-1]:
                have = {e.kind for e in earlier.evidence}
                for e in ids:
                    if e.kind not in have:
                        earlier.evidence.append(Evidence(e.kind, e.value, f"{e.source} (same handshake)"))
        if step.result in ("success", "failure"):
            self.steps = []


def b64decode(text: str) -> bytes | None:
    t = "".join(text.split())
    if not t:
        return None
    t += "=" * (-len(t) % 4)
    try:
        return base64.b64decode(t, validate=False)
    except (binascii.Error, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class DecodedToken:
    """An HTTP/SIP authentication token decoded to what really carries the credential."""

    protocol: str  # "ntlm" | "kerberos" | "unknown"
    ntlm: ntlm.NtlmMessage | None = None
    kerberos_message: str | None = None  # "ap-req" | "ap-rep" | "krb-error"
    realm: str | None = None
    spn: str | None = None
    error_code: int | None = None
    complete_credential: bool = False  # NTLM AUTHENTICATE or Kerberos AP-REQ


def decode_token(raw: bytes | None) -> DecodedToken | None:
    """Decode a GSS/SPNEGO/NTLMSSP blob; None when absent or unreadable."""
    if not raw:
        return None
    try:
        if raw.startswith(ntlm.NTLMSSP_SIGNATURE):
            msg = ntlm.parse(raw)
            return DecodedToken("ntlm", ntlm=msg, complete_credential=msg.message_type == 3)
        tok = spnego.parse(raw)
    except MalformedError:
        return None
    if tok.ntlm is not None:
        return DecodedToken("ntlm", ntlm=tok.ntlm, complete_credential=tok.ntlm.message_type == 3)
    if tok.kerberos is not None:
        k = tok.kerberos
        return DecodedToken(
            "kerberos",
            kerberos_message=k.name,
            realm=k.realm,
            spn=k.sname,
            error_code=k.error_code,
            complete_credential=k.name == "ap-req",
        )
    if tok.mechanism in ("kerberos", "ntlm"):
        return DecodedToken(tok.mechanism)
    return DecodedToken("unknown")


def ntlm_account(msg: ntlm.NtlmMessage) -> str | None:
    if not msg.user:
        return None
    return f"{msg.domain}\\{msg.user}" if msg.domain else msg.user


NTLM_MESSAGE_NAMES = {1: "negotiate", 2: "challenge", 3: "authenticate"}


def ntlm_exchange(
    msg: ntlm.NtlmMessage, *, time: float, frame: int, transport: str, src: str, dst: str, conn: int | None
) -> AuthExchange:
    return AuthExchange(
        time=time,
        frame=frame,
        transport=transport,
        protocol="ntlm",
        message=NTLM_MESSAGE_NAMES.get(msg.message_type, str(msg.message_type)),
        src=src,
        dst=dst,
        user=msg.user or None,
        domain=msg.domain or None,
        workstation=msg.workstation or None,
        ntlm_version=msg.ntlm_version if msg.message_type == 3 else None,
        target_name=msg.target_name,
        conn=conn,
    )


def kerberos_token_exchange(
    tok: DecodedToken, *, time: float, frame: int, transport: str, src: str, dst: str, conn: int | None
) -> AuthExchange:
    return AuthExchange(
        time=time,
        frame=frame,
        transport=transport,
        protocol="kerberos",
        message=tok.kerberos_message or "ap-req",
        src=src,
        dst=dst,
        realm=tok.realm,
        spn=tok.spn,
        error_code=tok.error_code,
        conn=conn,
    )


def account_key(identity: str) -> str:
    """Normalise an account for comparison: `CONTOSO\\Alice`, `alice@contoso.com`, `sip:alice@…` → `alice`."""
    v = identity.strip().lower()
    if v.startswith(("sip:", "sips:")):
        v = v.split(":", 1)[1]
    if "\\" in v:
        v = v.rsplit("\\", 1)[1]
    if "@" in v:
        v = v.split("@", 1)[0]
    return v
