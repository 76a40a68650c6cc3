"""NTLM authentication messages (MS-NLMP §2.2.1: NEGOTIATE, CHALLENGE, AUTHENTICATE).

Decodes the identities and the strength of an NTLM exchange — names, flags, AV pairs, response
sizes — never the responses themselves. Strings are Unicode or OEM as the flags say.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from lyncpcap.errors import MalformedError

NTLMSSP_SIGNATURE = b"NTLMSSP\x00"

NEGOTIATE_MESSAGE = 1
CHALLENGE_MESSAGE = 2
AUTHENTICATE_MESSAGE = 3
MESSAGE_NAMES = {
    NEGOTIATE_MESSAGE: "negotiate",
    CHALLENGE_MESSAGE: "challenge",
    AUTHENTICATE_MESSAGE: "authenticate",
}

OEM_ENCODING = "cp437"
"""MS-NLMP leaves the OEM code page to the system; cp437 (US) decodes every octet and keeps ASCII."""


class NegotiateFlags(enum.IntFlag):
    """MS-NLMP §2.2.2.5 NEGOTIATE flags (bit letters A–W in the spec)."""

    NTLMSSP_NEGOTIATE_UNICODE = 0x00000001  # A
    NTLM_NEGOTIATE_OEM = 0x00000002  # B
    NTLMSSP_REQUEST_TARGET = 0x00000004  # C
    NTLMSSP_NEGOTIATE_SIGN = 0x00000010  # D
    NTLMSSP_NEGOTIATE_SEAL = 0x00000020  # E
    NTLMSSP_NEGOTIATE_DATAGRAM = 0x00000040  # F
    NTLMSSP_NEGOTIATE_LM_KEY = 0x00000080  # G
    NTLMSSP_NEGOTIATE_NTLM = 0x00000200  # H
    NTLMSSP_ANONYMOUS = 0x00000800  # J (the spec gives the bit no constant name)
    NTLMSSP_NEGOTIATE_OEM_DOMAIN_SUPPLIED = 0x00001000  # K
    NTLMSSP_NEGOTIATE_OEM_WORKSTATION_SUPPLIED = 0x00002000  # L
    NTLMSSP_NEGOTIATE_ALWAYS_SIGN = 0x00008000  # M
    NTLMSSP_TARGET_TYPE_DOMAIN = 0x00010000  # N
    NTLMSSP_TARGET_TYPE_SERVER = 0x00020000  # O
    NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY = 0x00080000  # P
    NTLMSSP_NEGOTIATE_IDENTIFY = 0x00100000  # Q
    NTLMSSP_REQUEST_NON_NT_SESSION_KEY = 0x00400000  # R
    NTLMSSP_NEGOTIATE_TARGET_INFO = 0x00800000  # S
    NTLMSSP_NEGOTIATE_VERSION = 0x02000000  # T
    NTLMSSP_NEGOTIATE_128 = 0x20000000  # U
    NTLMSSP_NEGOTIATE_KEY_EXCH = 0x40000000  # V
    NTLMSSP_NEGOTIATE_56 = 0x80000000  # W


class AvId(enum.IntEnum):
    """MS-NLMP §2.2.2.1 AV_PAIR identifiers."""

    MsvAvEOL = 0x0000
    MsvAvNbComputerName = 0x0001
    MsvAvNbDomainName = 0x0002
    MsvAvDnsComputerName = 0x0003
    MsvAvDnsDomainName = 0x0004
    MsvAvDnsTreeName = 0x0005
    MsvAvFlags = 0x0006
    MsvAvTimestamp = 0x0007
    MsvAvSingleHost = 0x0008
    MsvAvTargetName = 0x0009
    MsvAvChannelBindings = 0x000A


# Keys of `target_info` / `client_info`, one per AV_PAIR id.
AV_KEYS: dict[AvId, str] = {
    AvId.MsvAvNbComputerName: "nb_computer",
    AvId.MsvAvNbDomainName: "nb_domain",
    AvId.MsvAvDnsComputerName: "dns_computer",
    AvId.MsvAvDnsDomainName: "dns_domain",
    AvId.MsvAvDnsTreeName: "dns_tree",
    AvId.MsvAvFlags: "flags",
    AvId.MsvAvTimestamp: "timestamp",
    AvId.MsvAvSingleHost: "single_host",
    AvId.MsvAvTargetName: "target_name",
    AvId.MsvAvChannelBindings: "channel_bindings",
}
_AV_TEXT = frozenset(
    {
        AvId.MsvAvNbComputerName,
        AvId.MsvAvNbDomainName,
        AvId.MsvAvDnsComputerName,
        AvId.MsvAvDnsDomainName,
        AvId.MsvAvDnsTreeName,
        AvId.MsvAvTargetName,
    }
)
MSV_AV_FLAG_MIC_PROVIDED = 0x00000002

_NTLMV1_RESPONSE_LEN = 24
_NTLMV2_CLIENT_BLOB_AV_OFFSET = 16 + 28  # NTProofStr, then NTLMv2_CLIENT_CHALLENGE header (§2.2.2.7)
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class NtlmMessage:
    """One NTLMSSP message; fields that its type does not carry are None / empty / 0."""

    message_type: int  # 1 NEGOTIATE, 2 CHALLENGE, 3 AUTHENTICATE
    flags: NegotiateFlags
    version: str | None  # "6.1.7601" when the VERSION field is present
    # CHALLENGE
    target_name: str | None
    target_info: dict[str, str]
    # AUTHENTICATE (domain/workstation also carry the NEGOTIATE's OEM "supplied" names)
    domain: str | None
    user: str | None
    workstation: str | None
    lm_response_len: int
    nt_response_len: int
    ntlm_version: str | None  # "v2" | "ntlm2-session" | "v1" | "anonymous" | None
    mic_present: bool
    # AUTHENTICATE: AV pairs of the NTLMv2 client blob (same keys as target_info; "target_name" is the SPN
    # the client meant, e.g. "HTTP/pool.contoso.com", "channel_bindings" is present when bound)
    client_info: dict[str, str] = field(default_factory=dict)
    # CHALLENGE: the server challenge; AUTHENTICATE: the responses.  The responses are secrets
    # (crackable offline): kept out of repr, only ever shown through lyncpcap.secrets.Secret.
    server_challenge: bytes = field(default=b"", repr=False)
    lm_response: bytes = field(default=b"", repr=False)
    nt_response: bytes = field(default=b"", repr=False)

    @property
    def name(self) -> str:
        return MESSAGE_NAMES[self.message_type]

    def crackable(self, server_challenge: bytes) -> str | None:
        """The AUTHENTICATE response in the common NetNTLMv1/v2 text form (user::domain:…), or None."""
        if self.message_type != AUTHENTICATE_MESSAGE or not self.nt_response or len(server_challenge) != 8:
            return None
        chal = server_challenge.hex()
        if len(self.nt_response) > 24:
            nt = self.nt_response
            return f"{self.user}::{self.domain}:{chal}:{nt[:16].hex()}:{nt[16:].hex()}"
        return f"{self.user}::{self.domain}:{self.lm_response.hex()}:{self.nt_response.hex()}:{chal}"


# -- helpers --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    length: int
    offset: int


def _view(data: bytes | bytearray | memoryview) -> memoryview:
    mv = data if isinstance(data, memoryview) else memoryview(data)
    return mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv


def _field(mv: memoryview, at: int) -> _Field:
    length, _max_length, offset = struct.unpack_from("<HHI", mv, at)
    return _Field(length, offset)


def _payload(mv: memoryview, f: _Field, header_len: int, what: str) -> memoryview:
    if f.length == 0:
        return mv[0:0]
    if f.offset < header_len or f.offset + f.length > len(mv):
        raise MalformedError(f"NTLM {what} field (offset {f.offset}, length {f.length}) is out of bounds")
    return mv[f.offset : f.offset + f.length]


def _payload_start(mv: memoryview, fields: list[_Field], minimum: int) -> int:
    """Where the payload begins: the lowest offset of a non-empty field (the header ends there)."""
    offsets = [f.offset for f in fields if f.length and f.offset >= minimum]
    return min(offsets, default=len(mv))


def _unicode(raw: memoryview, what: str) -> str:
    if len(raw) % 2:
        raise MalformedError(f"NTLM {what}: odd-length Unicode string")
    return bytes(raw).decode("utf-16-le", errors="replace")


def _text(raw: memoryview, unicode: bool, what: str) -> str:
    return _unicode(raw, what) if unicode else bytes(raw).decode(OEM_ENCODING)


def _version(mv: memoryview, at: int, header_end: int, flags: NegotiateFlags) -> str | None:
    """VERSION (§2.2.2.10): major, minor, build; present when flagged and the header has room."""
    if not flags & NegotiateFlags.NTLMSSP_NEGOTIATE_VERSION or at + 8 > min(header_end, len(mv)):
        return None
    major, minor, build = struct.unpack_from("<BBH", mv, at)
    return f"{major}.{minor}.{build}"


def filetime_to_iso(value: int) -> str:
    """FILETIME (100 ns since 1601-01-01 UTC) as ISO 8601."""
    try:
        when = _FILETIME_EPOCH + timedelta(microseconds=value // 10)
    except OverflowError as exc:
        raise MalformedError(f"FILETIME {value} is out of range") from exc
    return when.isoformat().replace("+00:00", "Z")


def parse_av_pairs(raw: memoryview | bytes) -> dict[str, str]:
    """AV_PAIR list (§2.2.2.1) → {key: text}; names as text, flags as 0x%08x, timestamp ISO, others hex.

    Stops at MsvAvEOL; a list that runs off the end without one is accepted (some stacks omit it).
    The first occurrence of an id wins.
    """
    mv = _view(raw)
    out: dict[str, str] = {}
    pos = 0
    while pos + 4 <= len(mv):
        av_id, av_len = struct.unpack_from("<HH", mv, pos)
        pos += 4
        if pos + av_len > len(mv):
            raise MalformedError("NTLM AV_PAIR runs past the end of its field")
        value = mv[pos : pos + av_len]
        pos += av_len
        if av_id == AvId.MsvAvEOL:
            return out
        try:
            key_id = AvId(av_id)
        except ValueError:
            continue
        key = AV_KEYS[key_id]
        if key in out:
            continue
        if key_id in _AV_TEXT:
            out[key] = _unicode(value, key)
        elif key_id == AvId.MsvAvFlags:
            if av_len != 4:
                raise MalformedError("MsvAvFlags is not 4 bytes")
            out[key] = f"0x{struct.unpack_from('<I', value)[0]:08x}"
        elif key_id == AvId.MsvAvTimestamp:
            if av_len != 8:
                raise MalformedError("MsvAvTimestamp is not 8 bytes")
            out[key] = filetime_to_iso(struct.unpack_from("<Q", value)[0])
        else:
            out[key] = bytes(value).hex()
    if pos != len(mv):
        raise MalformedError("NTLM AV_PAIR list ends inside a pair header")
    return out


def _classify(user: str, lm: memoryview, nt: memoryview, flags: NegotiateFlags) -> str | None:
    """Which response the client computed (MS-NLMP §3.3): the strength a report cares about."""
    if not user and len(nt) == 0 and len(lm) <= 1:
        return "anonymous"
    if len(nt) > _NTLMV1_RESPONSE_LEN:
        return "v2"
    if len(nt) == _NTLMV1_RESPONSE_LEN:
        if (
            flags & NegotiateFlags.NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY
            and len(lm) == _NTLMV1_RESPONSE_LEN
            and not any(lm[8:])
        ):
            return "ntlm2-session"
        return "v1"
    if len(nt) == 0 and len(lm) == _NTLMV1_RESPONSE_LEN:
        return "v1"  # LM response only
    return None


# -- messages -------------------------------------------------------------------------------------


def _negotiate(mv: memoryview) -> NtlmMessage:
    # Signature, MessageType, NegotiateFlags, DomainNameFields, WorkstationFields, Version (§2.2.1.1).
    (flags_value,) = struct.unpack_from("<I", mv, 12)
    flags = NegotiateFlags(flags_value)
    domain = workstation = None
    version = None
    if len(mv) >= 32:
        domain_f, ws_f = _field(mv, 16), _field(mv, 24)
        header_end = _payload_start(mv, [domain_f, ws_f], 32)
        version = _version(mv, 32, header_end, flags)
        # The *_SUPPLIED flags should accompany these, but names sent without them are still reported.
        if domain_f.length:
            domain = bytes(_payload(mv, domain_f, 32, "DomainName")).decode(OEM_ENCODING)
        if ws_f.length:
            workstation = bytes(_payload(mv, ws_f, 32, "Workstation")).decode(OEM_ENCODING)
    return NtlmMessage(
        message_type=NEGOTIATE_MESSAGE,
        flags=flags,
        version=version,
        target_name=None,
        target_info={},
        domain=domain,
        user=None,
        workstation=workstation,
        lm_response_len=0,
        nt_response_len=0,
        ntlm_version=None,
        mic_present=False,
    )


def _challenge(mv: memoryview) -> NtlmMessage:
    # Signature, MessageType, TargetNameFields, NegotiateFlags, ServerChallenge, Reserved,
    # TargetInfoFields, Version (§2.2.1.2); pre-NTLMv2 servers may stop after the challenge.
    if len(mv) < 32:
        raise MalformedError("NTLM CHALLENGE shorter than 32 bytes")
    target_f = _field(mv, 12)
    (flags_value,) = struct.unpack_from("<I", mv, 20)
    flags = NegotiateFlags(flags_value)
    info_f = _field(mv, 40) if len(mv) >= 48 else _Field(0, 0)
    header_end = _payload_start(mv, [target_f, info_f], 32)
    if header_end < 48:
        info_f = _Field(0, 0)
    unicode = bool(flags & NegotiateFlags.NTLMSSP_NEGOTIATE_UNICODE)
    target_name = (
        _text(_payload(mv, target_f, 32, "TargetName"), unicode, "TargetName") if target_f.length else None
    )
    target_info = parse_av_pairs(_payload(mv, info_f, 48, "TargetInfo")) if info_f.length else {}
    return NtlmMessage(
        server_challenge=bytes(mv[24:32]),
        message_type=CHALLENGE_MESSAGE,
        flags=flags,
        version=_version(mv, 48, header_end, flags),
        target_name=target_name,
        target_info=target_info,
        domain=None,
        user=None,
        workstation=None,
        lm_response_len=0,
        nt_response_len=0,
        ntlm_version=None,
        mic_present=False,
    )


def _authenticate(mv: memoryview) -> NtlmMessage:
    # Signature, MessageType, LmChallengeResponseFields, NtChallengeResponseFields, DomainNameFields,
    # UserNameFields, WorkstationFields, EncryptedRandomSessionKeyFields, NegotiateFlags, Version, MIC
    # (§2.2.1.3). Old clients end the header after WorkstationFields (52 bytes).
    if len(mv) < 52:
        raise MalformedError("NTLM AUTHENTICATE shorter than 52 bytes")
    lm_f, nt_f, domain_f, user_f, ws_f = (_field(mv, at) for at in (12, 20, 28, 36, 44))
    fields = [lm_f, nt_f, domain_f, user_f, ws_f]
    header_end = _payload_start(mv, fields, 52)
    has_flags = header_end >= 64 and len(mv) >= 64
    if has_flags:
        key_f = _field(mv, 52)
        header_end = min(header_end, _payload_start(mv, [key_f], 64))
        (flags_value,) = struct.unpack_from("<I", mv, 60)
        flags = NegotiateFlags(flags_value)
        _payload(mv, key_f, 64, "EncryptedRandomSessionKey")
    else:
        flags = NegotiateFlags(0)
    minimum = 64 if has_flags else 52
    lm = _payload(mv, lm_f, minimum, "LmChallengeResponse")
    nt = _payload(mv, nt_f, minimum, "NtChallengeResponse")
    raw_domain = _payload(mv, domain_f, minimum, "DomainName")
    raw_user = _payload(mv, user_f, minimum, "UserName")
    raw_ws = _payload(mv, ws_f, minimum, "Workstation")
    if has_flags:
        unicode = bool(flags & NegotiateFlags.NTLMSSP_NEGOTIATE_UNICODE)
    else:
        # No flags to go by: UTF-16LE names are even-length with a zero in every second byte.
        sample = bytes(raw_user) + bytes(raw_domain)
        unicode = len(sample) > 0 and len(sample) % 2 == 0 and not any(sample[1::2])
    domain = _text(raw_domain, unicode, "DomainName")
    user = _text(raw_user, unicode, "UserName")
    workstation = _text(raw_ws, unicode, "Workstation")
    client_info: dict[str, str] = {}
    if len(nt) > _NTLMV2_CLIENT_BLOB_AV_OFFSET and nt[16] == 1 and nt[17] == 1:
        client_info = parse_av_pairs(nt[_NTLMV2_CLIENT_BLOB_AV_OFFSET:])
    av_flags = int(client_info.get("flags", "0x0"), 16)
    mic_present = bool(av_flags & MSV_AV_FLAG_MIC_PROVIDED) and header_end >= 88
    return NtlmMessage(
        message_type=AUTHENTICATE_MESSAGE,
        flags=flags,
        version=_version(mv, 64, header_end, flags) if has_flags else None,
        target_name=None,
        target_info={},
        domain=domain,
        user=user,
        workstation=workstation,
        lm_response_len=len(lm),
        nt_response_len=len(nt),
        ntlm_version=_classify(user, lm, nt, flags),
        mic_present=mic_present,
        client_info=client_info,
        lm_response=bytes(lm),
        nt_response=bytes(nt),
    )


def parse(data: bytes | bytearray | memoryview) -> NtlmMessage:
    """Decode one NTLMSSP message; bytes after the last payload field are ignored."""
    mv = _view(data)
    if len(mv) < 16:
        raise MalformedError("NTLM message shorter than 16 bytes")
    if bytes(mv[0:8]) != NTLMSSP_SIGNATURE:
        raise MalformedError("no NTLMSSP signature")
    (message_type,) = struct.unpack_from("<I", mv, 8)
    if message_type == NEGOTIATE_MESSAGE:
        return _negotiate(mv)
    if message_type == CHALLENGE_MESSAGE:
        return _challenge(mv)
    if message_type == AUTHENTICATE_MESSAGE:
        return _authenticate(mv)
    raise MalformedError(f"unknown NTLM message type {message_type}")
