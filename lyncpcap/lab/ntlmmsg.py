"""NTLM messages (MS-NLMP) for the lab, computed by pyspnego's own NTLM primitives.

pyspnego's context classes draw nonces from os.urandom and the clock; here its lower-level message
and crypto functions get challenges, timestamps and session keys from the caller's `rng`, so the
same seed gives the same bytes while the responses stay real (a server holding the password
accepts them).  Connectionless (datagram) NTLM, as SIP uses it (MS-SIPAE), has no NEGOTIATE: the
server's CHALLENGE comes first with NTLMSSP_NEGOTIATE_DATAGRAM set.
"""

from __future__ import annotations

import datetime
import random

from spnego._ntlm_raw.crypto import (
    compute_response_v1,
    compute_response_v2,
    hmac_md5,
    lmowfv1,
    ntowfv1,
    ntowfv2,
    rc4k,
)
from spnego._ntlm_raw.messages import Authenticate as _Authenticate
from spnego._ntlm_raw.messages import (
    AvFlags,
    AvId,
    Challenge,
    FileTime,
    Negotiate,
    NegotiateFlags,
    SingleHost,
    TargetInfo,
    Version,
)

VARIANTS = ("v2", "v1", "ntlm2-session")

# NEGOTIATE flags of a Windows 7 / 2008 R2 HTTP client (IE, WinHTTP): 0xa2088207.
CLIENT_FLAGS = (
    NegotiateFlags.key_56
    | NegotiateFlags.key_128
    | NegotiateFlags.version
    | NegotiateFlags.extended_session_security
    | NegotiateFlags.always_sign
    | NegotiateFlags.ntlm
    | NegotiateFlags.request_target
    | NegotiateFlags.oem
    | NegotiateFlags.unicode
)

# CHALLENGE flags of an IIS server on a domain member when the client sent no NEGOTIATE to
# intersect with: 0xa2898205.
SERVER_FLAGS = (
    NegotiateFlags.key_56
    | NegotiateFlags.key_128
    | NegotiateFlags.version
    | NegotiateFlags.target_info
    | NegotiateFlags.extended_session_security
    | NegotiateFlags.target_type_domain
    | NegotiateFlags.always_sign
    | NegotiateFlags.ntlm
    | NegotiateFlags.request_target
    | NegotiateFlags.unicode
)

# Connectionless NTLM as a Lync registrar offers it: signing is what SIP needs (MS-SIPAE §3.2.5).
DATAGRAM_FLAGS = (
    NegotiateFlags.key_56
    | NegotiateFlags.key_exch
    | NegotiateFlags.key_128
    | NegotiateFlags.version
    | NegotiateFlags.target_info
    | NegotiateFlags.extended_session_security
    | NegotiateFlags.target_type_domain
    | NegotiateFlags.always_sign
    | NegotiateFlags.ntlm
    | NegotiateFlags.datagram
    | NegotiateFlags.sign
    | NegotiateFlags.request_target
    | NegotiateFlags.unicode
)


def parse_version(text: str) -> Version:
    """ "6.1.7601" → the 8-byte VERSION structure (NTLM revision 15)."""
    parts = [int(p) for p in text.split(".")]
    if len(parts) != 3:
        raise ValueError(f"version is 'major.minor.build', not {text!r}")
    return Version(major=parts[0], minor=parts[1], build=parts[2])


def _utc(when: datetime.datetime) -> datetime.datetime:
    return when.replace(tzinfo=datetime.UTC) if when.tzinfo is None else when.astimezone(datetime.UTC)


def _filetime(when: datetime.datetime) -> FileTime:
    return FileTime.from_datetime(_utc(when))


def challenge(
    *,
    target_name: str,
    nb_domain: str,
    nb_computer: str,
    dns_domain: str,
    dns_computer: str,
    dns_tree: str,
    timestamp: datetime.datetime,
    rng: random.Random,
    version: str = "6.3.9600",
    flags_from: bytes | None = None,
    datagram: bool = False,
) -> bytes:
    """A CHALLENGE_MESSAGE with a server challenge from `rng` and the usual six AV pairs.

    `flags_from` is the client's NEGOTIATE: the flags are then what a Windows server answers to it
    (the client's offer, with UNICODE chosen over OEM and extended session security over LM_KEY,
    plus TARGET_INFO and the target type).  `datagram` makes the connectionless challenge SIP uses."""
    if datagram:
        flags = int(DATAGRAM_FLAGS)
    elif flags_from is not None:
        offered = Negotiate.unpack(flags_from).flags
        flags = offered | NegotiateFlags.request_target | NegotiateFlags.target_info
        flags |= NegotiateFlags.target_type_domain | NegotiateFlags.ntlm
        if flags & NegotiateFlags.unicode:
            flags &= ~NegotiateFlags.oem
        if flags & NegotiateFlags.extended_session_security:
            flags &= ~NegotiateFlags.lm_key
        flags &= ~(NegotiateFlags.oem_domain_name_supplied | NegotiateFlags.oem_workstation_supplied)
    else:
        flags = int(SERVER_FLAGS)
    info = TargetInfo()
    info[AvId.nb_domain_name] = nb_domain
    info[AvId.nb_computer_name] = nb_computer
    info[AvId.dns_domain_name] = dns_domain
    info[AvId.dns_computer_name] = dns_computer
    info[AvId.dns_tree_name] = dns_tree
    info[AvId.timestamp] = _filetime(timestamp)
    version_struct = parse_version(version) if flags & NegotiateFlags.version else None
    msg = Challenge(
        flags, rng.randbytes(8), target_name=target_name, target_info=info, version=version_struct
    )
    return msg.pack()


class NtlmClient:
    """The client side of one NTLM handshake, deterministic from `rng`.

    variant "v2" sends NTLMv2 (NTProofStr over the server's AV pairs, MIC when the server sent a
    timestamp); "v1" sends DES responses to the bare server challenge (LM compatibility level 0);
    "ntlm2-session" sends NTLM2 session responses (v1 DES over MD5(server ‖ client challenge))."""

    def __init__(
        self,
        user: str,
        domain: str,
        password: str,
        workstation: str,
        *,
        version: str = "6.1.7601",
        rng: random.Random,
        variant: str = "v2",
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant is one of {VARIANTS}, not {variant!r}")
        self.user = user
        self.domain = domain
        self.password = password
        self.workstation = workstation
        self.version = parse_version(version)
        self.rng = rng
        self.variant = variant
        self._negotiate: bytes | None = None
        self.exported_session_key: bytes | None = None
        # Windows sends MsvAvSingleHost with a per-boot machine id (MS-NLMP §2.2.2.2).
        self.machine_id = rng.randbytes(32)

    def negotiate(self) -> bytes:
        """The NEGOTIATE_MESSAGE (type 1) a Windows client sends first over HTTP."""
        flags = CLIENT_FLAGS
        if self.variant == "v1":
            flags = (flags & ~NegotiateFlags.extended_session_security) | NegotiateFlags.lm_key
        self._negotiate = Negotiate(int(flags), version=self.version).pack()
        return self._negotiate

    def authenticate(
        self, challenge: bytes, *, timestamp: datetime.datetime | None = None, spn: str | None = None
    ) -> bytes:
        """The AUTHENTICATE_MESSAGE (type 3) answering `challenge`, with real responses computed
        from the password.  NTLMv2 takes its time from `timestamp` if given, else from the server's
        MsvAvTimestamp; `spn` (e.g. "HTTP/lyncpool.contoso.com") goes in MsvAvTargetName."""
        chal = Challenge.unpack(challenge)
        flags = chal.flags
        datagram = bool(flags & NegotiateFlags.datagram)
        if self.variant == "v1":
            flags &= ~NegotiateFlags.extended_session_security
        elif self.variant == "ntlm2-session" and not flags & NegotiateFlags.extended_session_security:
            raise ValueError("the server did not offer extended session security (NTLM2 session responses)")
        if flags & NegotiateFlags.unicode:
            flags &= ~NegotiateFlags.oem
        # The target type describes the server; Windows clients do not echo it.
        flags &= ~(
            NegotiateFlags.target_type_domain
            | NegotiateFlags.target_type_server
            | NegotiateFlags.target_type_share
        )
        client_challenge = self.rng.randbytes(8)
        mic_needed = False

        if self.variant == "v2":
            info = chal.target_info.copy() if chal.target_info else TargetInfo()
            server_time = info.get(AvId.timestamp)
            if timestamp is not None:
                time = _filetime(timestamp)
            elif server_time is not None:
                time = server_time
            else:
                raise ValueError("NTLMv2 needs a timestamp: the challenge has no MsvAvTimestamp")
            mic_needed = server_time is not None
            if mic_needed:
                info[AvId.flags] = AvFlags(int(info.get(AvId.flags, 0)) | AvFlags.mic)
            info[AvId.single_host] = SingleHost(
                size=48, z4=0, custom_data=bytes.fromhex("0100000000100000"), machine_id=self.machine_id
            )
            info[AvId.channel_bindings] = b"\x00" * 16  # no TLS channel binding, as Windows sends it
            if spn:
                info[AvId.target_name] = spn
            response_key = ntowfv2(self.user, ntowfv1(self.password), self.domain)
            nt_resp, lm_resp, key_exchange_key = compute_response_v2(
                response_key, chal.server_challenge, client_challenge, time, info
            )
            if mic_needed:
                lm_resp = b"\x00" * 24  # MS-NLMP §3.1.5.1.2: no LMv2 when the server sent a timestamp
        else:
            lm_hash = lmowfv1(self.password)
            nt_resp, lm_resp, key_exchange_key = compute_response_v1(
                flags,
                ntowfv1(self.password),
                lm_hash,
                chal.server_challenge,
                client_challenge,
                no_lm_response=False,
            )

        encrypted_key: bytes | None = None
        if flags & NegotiateFlags.key_exch:
            self.exported_session_key = self.rng.randbytes(16)
            encrypted_key = rc4k(key_exchange_key, self.exported_session_key)
        else:
            self.exported_session_key = key_exchange_key
        msg = _Authenticate(
            flags,
            lm_resp,
            nt_resp,
            domain_name=self.domain,
            username=self.user,
            workstation=self.workstation,
            encrypted_session_key=encrypted_key,
            version=self.version if flags & NegotiateFlags.version else None,
        )
        if mic_needed:
            # MIC = HMAC_MD5(ExportedSessionKey, NEGOTIATE ‖ CHALLENGE ‖ AUTHENTICATE); the
            # connectionless exchange has no NEGOTIATE.
            negotiate = b"" if datagram else (self._negotiate or b"")
            msg.mic = hmac_md5(self.exported_session_key, negotiate + challenge + msg.pack())
        return msg.pack()


def nt_proof_str(authenticate: bytes, challenge: bytes, password: str) -> tuple[bytes, bytes]:
    """(NTProofStr in the message, NTProofStr recomputed from `password`) for an NTLMv2 AUTHENTICATE."""
    auth = _Authenticate.unpack(authenticate)
    chal = Challenge.unpack(challenge)
    nt_resp = auth.nt_challenge_response or b""
    if len(nt_resp) <= 24:
        raise ValueError("not an NTLMv2 response")
    key = ntowfv2(auth.user_name or "", ntowfv1(password), auth.domain_name)
    return nt_resp[:16], hmac_md5(key, chal.server_challenge + nt_resp[16:])
