"""GSS-API and SPNEGO token decoding (RFC 2743 §3.1, RFC 4178, MS-SPNG, RFC 4121 §4.1).

Answers the question an HTTP `Negotiate` or SIP `gssapi-data` value raises: which mechanism really
carries the credential (Kerberos or NTLM), in which framing, and what the inner message says.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from lyncpcap.errors import MalformedError
from lyncpcap.protocols import asn1, kerberos, ntlm
from lyncpcap.protocols.asn1 import Element, Tag, TagClass
from lyncpcap.protocols.kerberos import KerberosMessage
from lyncpcap.protocols.ntlm import NtlmMessage

OID_KERBEROS = "1.2.840.113554.1.2.2"
OID_MS_KERBEROS = "1.2.840.48018.1.2.2"
OID_KERBEROS_U2U = "1.2.840.113554.1.2.2.3"
OID_NTLM = "1.3.6.1.4.1.311.2.2.10"
OID_SPNEGO = "1.3.6.1.5.5.2"
OID_NEGOEX = "1.3.6.1.4.1.311.2.2.30"

OIDS: dict[str, str] = {
    OID_KERBEROS: "kerberos",
    OID_MS_KERBEROS: "kerberos",  # the legacy OID Windows 2000 used (MS-SPNG §3.1.5.2)
    OID_NTLM: "ntlm",
    OID_SPNEGO: "spnego",
    OID_KERBEROS_U2U: "kerberos-u2u",
    OID_NEGOEX: "negoex",
}
_KERBEROS_OIDS = frozenset({OID_KERBEROS, OID_MS_KERBEROS, OID_KERBEROS_U2U})

# RFC 4121 §4.1 TOK_ID of krb5 context-establishment tokens → the message each must carry.
KRB5_TOK_IDS: dict[bytes, int] = {b"\x01\x00": 14, b"\x02\x00": 15, b"\x03\x00": 30}

NEG_STATES = {0: "accept-completed", 1: "accept-incomplete", 2: "reject", 3: "request-mic"}

_INITIAL_CONTEXT_TOKEN = 0x60  # [APPLICATION 0] constructed
_BARE_KERBEROS = frozenset({0x6E, 0x6F, 0x7E})  # AP-REQ, AP-REP, KRB-ERROR
_BASE64_JUNK = re.compile(r"[^A-Za-z0-9+/=]")


@dataclass(frozen=True, slots=True)
class GssToken:
    """What a GSS-API token carries: the real mechanism, its framing and the decoded inner message."""

    mechanism: str  # "kerberos" | "ntlm" | "unknown"
    framing: str  # "spnego-init" | "spnego-resp" | "gss-krb5" | "gss-ntlm" | "raw-ntlm" | "raw-kerberos"
    mech_types: tuple[str, ...]
    supported_mech: str | None
    neg_state: str | None
    kerberos: KerberosMessage | None
    ntlm: NtlmMessage | None
    # Additions (optional): MS-SPNG NegTokenInit2 hint (e.g. "not_defined_in_RFC4178@please_ignore"
    # or a host principal), and whether a mechListMIC was sent.
    hint_name: str | None = None
    mech_list_mic: bool = False


@dataclass(frozen=True, slots=True)
class _Inner:
    mechanism: str
    kerberos: KerberosMessage | None = None
    ntlm: NtlmMessage | None = None


def _mechanism_of_oid(oid: str | None) -> str:
    if oid in _KERBEROS_OIDS:
        return "kerberos"
    if oid == OID_NTLM:
        return "ntlm"
    return "unknown"


def _krb5_inner(mv: memoryview) -> _Inner:
    """innerContextToken of a krb5 InitialContextToken: TOK_ID then the Kerberos message."""
    if len(mv) < 2:
        raise MalformedError("krb5 GSS token without TOK_ID")
    tok_id = bytes(mv[0:2])
    expected = KRB5_TOK_IDS.get(tok_id)
    if expected is None:
        # User-to-user TGT-REQ/REP (04 00 / 04 01) and anything else: Kerberos, nothing to decode.
        return _Inner("kerberos")
    message = kerberos.parse(mv[2:])
    if message.msg_type != expected:
        raise MalformedError(f"krb5 TOK_ID {tok_id.hex()} carries a {message.name}")
    return _Inner("kerberos", kerberos=message)


def _mech_token(data: memoryview) -> _Inner:
    """Identify a mechanism token by its own bytes: NTLMSSP, GSS krb5, or a bare Kerberos message."""
    if bytes(data[0:8]) == ntlm.NTLMSSP_SIGNATURE:
        return _Inner("ntlm", ntlm=ntlm.parse(data))
    if len(data) and data[0] == _INITIAL_CONTEXT_TOKEN:
        oid, rest = _initial_context_token(data)
        if oid in _KERBEROS_OIDS:
            return _krb5_inner(rest)
        if oid == OID_NTLM and bytes(rest[0:8]) == ntlm.NTLMSSP_SIGNATURE:
            return _Inner("ntlm", ntlm=ntlm.parse(rest))
        return _Inner("unknown")
    if len(data) and data[0] in _BARE_KERBEROS:
        return _Inner("kerberos", kerberos=kerberos.parse(data))
    return _Inner("unknown")


def _initial_context_token(data: memoryview) -> tuple[str, memoryview]:
    """RFC 2743 §3.1 InitialContextToken ::= [APPLICATION 0] IMPLICIT SEQUENCE { thisMech, innerContextToken }."""
    outer = asn1.decode(data).expect(TagClass.APPLICATION, 0, True)
    mech, after = asn1.read_element(outer.value, 0, depth=1)
    return mech.oid(), outer.value[after:]


def _mech_type_list(element: Element) -> tuple[str, ...]:
    return tuple(child.oid() for child in element.sequence())


def _neg_token_init(choice: Element) -> GssToken:
    """NegTokenInit (RFC 4178 §4.2.1) or MS-SPNG NegTokenInit2 (negHints at [3], mechListMIC at [4])."""
    fields = choice.inner().fields()
    mech_types = _mech_type_list(fields[0]) if 0 in fields else ()
    if 1 in fields:
        fields[1].expect(TagClass.UNIVERSAL, Tag.BIT_STRING, False).bit_string()
    hint_name = None
    mic = False
    if 3 in fields:
        if fields[3].is_tag(TagClass.UNIVERSAL, Tag.SEQUENCE, True):
            hints = fields[3].fields()
            if 0 in hints:
                hint_name = hints[0].string()
        else:
            fields[3].expect(TagClass.UNIVERSAL, Tag.OCTET_STRING, False)
            mic = True
    if 4 in fields:
        fields[4].expect(TagClass.UNIVERSAL, Tag.OCTET_STRING, False)
        mic = True
    inner = _Inner("unknown")
    if 2 in fields:
        token = fields[2].expect(TagClass.UNIVERSAL, Tag.OCTET_STRING, False).value
        inner = _mech_token(token)
        if inner.mechanism == "unknown" and mech_types:
            # The optimistic token belongs to the first mechanism offered (RFC 4178 §3).
            inner = _Inner(_mechanism_of_oid(mech_types[0]))
    return GssToken(
        mechanism=inner.mechanism,
        framing="spnego-init",
        mech_types=mech_types,
        supported_mech=None,
        neg_state=None,
        kerberos=inner.kerberos,
        ntlm=inner.ntlm,
        hint_name=hint_name,
        mech_list_mic=mic,
    )


def _neg_token_resp(choice: Element) -> GssToken:
    """NegTokenResp (RFC 4178 §4.2.2)."""
    fields = choice.inner().fields()
    neg_state = None
    if 0 in fields:
        value = fields[0].expect(TagClass.UNIVERSAL, Tag.ENUMERATED, False).integer()
        neg_state = NEG_STATES.get(value)
        if neg_state is None:
            raise MalformedError(f"negState {value} is not defined")
    supported = fields[1].oid() if 1 in fields else None
    inner = _Inner(_mechanism_of_oid(supported))
    if 2 in fields:
        token = fields[2].expect(TagClass.UNIVERSAL, Tag.OCTET_STRING, False).value
        found = _mech_token(token)
        if found.mechanism != "unknown":
            inner = found
    mic = False
    if 3 in fields:
        fields[3].expect(TagClass.UNIVERSAL, Tag.OCTET_STRING, False)
        mic = True
    return GssToken(
        mechanism=inner.mechanism,
        framing="spnego-resp",
        mech_types=(),
        supported_mech=supported,
        neg_state=neg_state,
        kerberos=inner.kerberos,
        ntlm=inner.ntlm,
        mech_list_mic=mic,
    )


def _negotiation_token(choice: Element) -> GssToken:
    """NegotiationToken ::= CHOICE { negTokenInit [0], negTokenResp [1] }."""
    if choice.is_tag(TagClass.CONTEXT, 0, True):
        return _neg_token_init(choice)
    if choice.is_tag(TagClass.CONTEXT, 1, True):
        return _neg_token_resp(choice)
    raise MalformedError(f"not a SPNEGO NegotiationToken: {choice.describe()}")


def _token(mechanism: str, framing: str, inner: _Inner) -> GssToken:
    return GssToken(
        mechanism=mechanism,
        framing=framing,
        mech_types=(),
        supported_mech=None,
        neg_state=None,
        kerberos=inner.kerberos,
        ntlm=inner.ntlm,
    )


def parse(data: bytes | bytearray | memoryview) -> GssToken:
    """Decode a GSS-API / SPNEGO token, or a raw NTLMSSP / Kerberos message sent in its place."""
    mv = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
    if len(mv) == 0:
        raise MalformedError("empty GSS token")
    if bytes(mv[0:8]) == ntlm.NTLMSSP_SIGNATURE:
        return _token("ntlm", "raw-ntlm", _Inner("ntlm", ntlm=ntlm.parse(mv)))
    first = mv[0]
    if first == _INITIAL_CONTEXT_TOKEN:
        oid, rest = _initial_context_token(mv)
        if oid == OID_SPNEGO:
            # RFC 4178 puts only negTokenInit in this wrapper, but some servers (mod_auth_kerb era)
            # wrap their negTokenResp too; both are accepted.
            return _negotiation_token(asn1.decode(rest))
        if oid in _KERBEROS_OIDS:
            return _token("kerberos", "gss-krb5", _krb5_inner(rest))
        if oid == OID_NTLM:
            if bytes(rest[0:8]) != ntlm.NTLMSSP_SIGNATURE:
                raise MalformedError("NTLM GSS token without NTLMSSP message")
            return _token("ntlm", "gss-ntlm", _Inner("ntlm", ntlm=ntlm.parse(rest)))
        raise MalformedError(f"GSS token for unsupported mechanism {oid}")
    if first in (0xA0, 0xA1):
        return _negotiation_token(asn1.decode(mv))
    if first in _BARE_KERBEROS:
        return _token("kerberos", "raw-kerberos", _Inner("kerberos", kerberos=kerberos.parse(mv)))
    raise MalformedError(f"not a GSS-API token (first octet 0x{first:02x})")


def decode_base64(text: str) -> bytes:
    """Base64 as sent in `Negotiate`/`NTLM` headers and SIP gssapi-data: whitespace and missing padding tolerated."""
    compact = "".join(text.split())
    if not compact or _BASE64_JUNK.search(compact):
        raise MalformedError("not base64")
    stripped = compact.rstrip("=")
    if "=" in stripped or len(stripped) % 4 == 1:
        raise MalformedError("not base64")
    try:
        return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError(f"not base64: {exc}") from exc


def parse_base64(text: str) -> GssToken:
    return parse(decode_base64(text))
