"""Kerberos V5 messages (RFC 4120) in canonical DER, and their GSS-API / SPNEGO wrappings
(RFC 4121 §4.1, RFC 4178), for the lab's sample captures.

Everything is real structure except the ciphertexts: no keys exist in the lab, so each
`EncryptedData.cipher` is pseudo-random bytes from the caller's `rng`, as long as the real
ciphertext of a typical Windows plaintext would be for that encryption type.
"""

from __future__ import annotations

import datetime
import random
import struct
from collections.abc import Iterable, Sequence

# Message types (RFC 4120 §7.5.7).
KRB_AS_REQ, KRB_AS_REP, KRB_TGS_REQ, KRB_TGS_REP, KRB_AP_REQ, KRB_AP_REP = 10, 11, 12, 13, 14, 15
KRB_ERROR = 30

# Principal name types (RFC 4120 §6.2, RFC 6806).
NT_PRINCIPAL, NT_SRV_INST, NT_ENTERPRISE = 1, 2, 10

# Pre-authentication data types.
PA_TGS_REQ, PA_ENC_TIMESTAMP, PA_PK_AS_REP_OLD, PA_PK_AS_REQ, PA_ETYPE_INFO2 = 1, 2, 15, 16, 19
PA_PAC_REQUEST = 128  # [MS-KILE] §2.2.3

# Encryption types and the bytes each adds to a plaintext: confounder + integrity checksum.
ETYPE_OVERHEAD: dict[int, int] = {
    17: 16 + 12,  # aes128-cts-hmac-sha1-96
    18: 16 + 12,  # aes256-cts-hmac-sha1-96
    19: 16 + 16,  # aes128-cts-hmac-sha256-128
    20: 16 + 24,  # aes256-cts-hmac-sha384-192
    23: 8 + 16,  # rc4-hmac
    24: 8 + 16,  # rc4-hmac-exp
    3: 8 + 16,  # des-cbc-md5 (plaintext padded to 8)
    1: 8 + 4,  # des-cbc-crc (plaintext padded to 8)
}
DES_ETYPES = (1, 3)

# Options as Windows sets them (RFC 4120 §5.4.1 bit numbers): forwardable, renewable,
# canonicalize, renewable-ok for AS; the same less renewable-ok for TGS.
KDC_OPTIONS_AS = 0x40810010
KDC_OPTIONS_TGS = 0x40810000
AP_OPTIONS_MUTUAL = 0x20000000  # mutual-required

KRB5_OID = "1.2.840.113554.1.2.2"
MS_KRB5_OID = "1.2.840.48018.1.2.2"
SPNEGO_OID = "1.3.6.1.5.5.2"
NTLMSSP_OID = "1.3.6.1.4.1.311.2.2.10"
NEGOEX_OID = "1.3.6.1.4.1.311.2.2.30"

TOK_AP_REQ = b"\x01\x00"
TOK_AP_REP = b"\x02\x00"
TOK_ERROR = b"\x03\x00"

NEG_STATES = {"accept-completed": 0, "accept-incomplete": 1, "reject": 2, "request-mic": 3}

# The NTSTATUS that Windows KDCs put in KERB-ERROR-DATA for common errors ([MS-KILE] §2.2.1).
_NT_STATUS: dict[int, int] = {
    6: 0xC0000064,  # KDC_ERR_C_PRINCIPAL_UNKNOWN: STATUS_NO_SUCH_USER
    7: 0xC0000064,  # KDC_ERR_S_PRINCIPAL_UNKNOWN (Windows reports the same status)
    18: 0xC0000072,  # KDC_ERR_CLIENT_REVOKED: STATUS_ACCOUNT_DISABLED
    23: 0xC0000071,  # KDC_ERR_KEY_EXPIRED: STATUS_PASSWORD_EXPIRED
    24: 0xC000006A,  # KDC_ERR_PREAUTH_FAILED: STATUS_WRONG_PASSWORD
}


# -- DER ------------------------------------------------------------------------------------


def der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + der_length(len(value)) + value


def der_int(n: int) -> bytes:
    """INTEGER in the fewest two's-complement octets."""
    size = max(1, (n + (n < 0)).bit_length() // 8 + 1)
    return tlv(0x02, n.to_bytes(size, "big", signed=True))


def der_bool(value: bool) -> bytes:
    return tlv(0x01, b"\xff" if value else b"\x00")


def der_octets(data: bytes) -> bytes:
    return tlv(0x04, data)


def der_general_string(text: str) -> bytes:
    return tlv(0x1B, text.encode("utf-8"))


def der_enumerated(n: int) -> bytes:
    return tlv(0x0A, der_int(n)[2:])


def der_bits32(flags: int) -> bytes:
    """A 32-bit BIT STRING such as KDCOptions: Kerberos keeps all 32 bits (RFC 4120 §5.2.8)."""
    return tlv(0x03, b"\x00" + struct.pack(">I", flags))


def der_time(when: datetime.datetime) -> bytes:
    """KerberosTime: GeneralizedTime "YYYYMMDDHHMMSSZ" in UTC, no fraction."""
    if when.tzinfo is not None:
        when = when.astimezone(datetime.UTC)
    return tlv(0x18, when.strftime("%Y%m%d%H%M%SZ").encode())


def der_oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    if len(arcs) < 2:
        raise ValueError(f"not an OID: {dotted!r}")
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return tlv(0x06, bytes(out))


def seq(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def seq_of(items: Iterable[bytes]) -> bytes:
    return tlv(0x30, b"".join(items))


def ctx(n: int, value: bytes) -> bytes:
    """[n] EXPLICIT (context-specific, constructed)."""
    return tlv(0xA0 | n, value)


def app(n: int, value: bytes) -> bytes:
    """[APPLICATION n] (constructed)."""
    return tlv(0x60 | n, value)


# -- Kerberos structures --------------------------------------------------------------------


def _name_parts(name: str) -> tuple[int, list[str]]:
    if "@" in name:
        return NT_ENTERPRISE, [name]
    parts = name.split("/")
    return (NT_SRV_INST if len(parts) > 1 else NT_PRINCIPAL), parts


def principal_name(name: str, name_type: int | None = None) -> bytes:
    """PrincipalName: "alice" (NT-PRINCIPAL), "HTTP/host" (NT-SRV-INST), "alice@contoso.com"
    (NT-ENTERPRISE); `name_type` overrides the guess."""
    guessed, parts = _name_parts(name)
    return seq(
        ctx(0, der_int(guessed if name_type is None else name_type)),
        ctx(1, seq_of(der_general_string(p) for p in parts)),
    )


def _cipher_len(etype: int, plain_len: int) -> int:
    if etype in DES_ETYPES:
        plain_len = (plain_len + 7) // 8 * 8
    return plain_len + ETYPE_OVERHEAD.get(etype, 28)


def encrypted_data(etype: int, plain_len: int, rng: random.Random, kvno: int | None = None) -> bytes:
    """EncryptedData whose cipher is `rng` bytes as long as `plain_len` bytes encrypted with `etype`."""
    cipher = rng.randbytes(_cipher_len(etype, plain_len))
    fields = [ctx(0, der_int(etype))]
    if kvno is not None:
        fields.append(ctx(1, der_int(kvno)))
    fields.append(ctx(2, der_octets(cipher)))
    return seq(*fields)


def pa_data(padata_type: int, value: bytes) -> bytes:
    return seq(ctx(1, der_int(padata_type)), ctx(2, der_octets(value)))


def ticket(
    realm: str, sname: str, *, etype: int, kvno: int | None, rng: random.Random, plain_len: int
) -> bytes:
    """Ticket ::= [APPLICATION 1] SEQUENCE { tkt-vno, realm, sname, enc-part }."""
    return app(
        1,
        seq(
            ctx(0, der_int(5)),
            ctx(1, der_general_string(realm)),
            ctx(2, principal_name(sname)),
            ctx(3, encrypted_data(etype, plain_len, rng, kvno)),
        ),
    )


def _realistic_ticket_plain(rng: random.Random) -> int:
    # EncTicketPart with a Windows PAC (logon info, signatures, client info, UPN_DNS_INFO).
    return rng.randint(980, 1240)


def _authenticator_plain(cname: str, realm: str, rng: random.Random, *, gss_checksum: bool) -> int:
    # Authenticator: crealm, cname, cusec, ctime, subkey, seq-number, and for GSS the 0x8003
    # checksum (24 bytes + flags) plus Windows' KERB-AD-RESTRICTION authorization data.
    base = 90 + len(cname) + len(realm) + rng.randint(0, 12)
    return base + (110 if gss_checksum else 0)


def _format_realm(template: str, realm: str) -> str:
    return template.replace("{realm}", realm)


def _kdc_req_body(
    *,
    options: int,
    cname: str | None,
    realm: str,
    sname: str,
    till: datetime.datetime,
    rtime: datetime.datetime | None,
    nonce: int,
    etypes: Sequence[int],
) -> bytes:
    fields = [ctx(0, der_bits32(options))]
    if cname is not None:
        fields.append(ctx(1, principal_name(cname)))
    fields.append(ctx(2, der_general_string(realm)))
    fields.append(ctx(3, principal_name(sname)))
    fields.append(ctx(5, der_time(till)))
    if rtime is not None:
        fields.append(ctx(6, der_time(rtime)))
    fields.append(ctx(7, der_int(nonce & 0xFFFFFFFF)))
    fields.append(ctx(8, seq_of(der_int(e) for e in etypes)))
    return seq(*fields)


def _kdc_req(msg_type: int, padata: list[bytes], body: bytes) -> bytes:
    fields = [ctx(1, der_int(5)), ctx(2, der_int(msg_type))]
    if padata:
        fields.append(ctx(3, seq_of(padata)))
    fields.append(ctx(4, body))
    return app(msg_type, seq(*fields))


def _kdc_rep(
    msg_type: int, *, padata: list[bytes], crealm: str, cname: str, tkt: bytes, enc_part: bytes
) -> bytes:
    fields = [ctx(0, der_int(5)), ctx(1, der_int(msg_type))]
    if padata:
        fields.append(ctx(2, seq_of(padata)))
    fields += [
        ctx(3, der_general_string(crealm)),
        ctx(4, principal_name(cname)),
        ctx(5, tkt),
        ctx(6, enc_part),
    ]
    return app(msg_type, seq(*fields))


def etype_info2(entries: Sequence[tuple[int, str | None]]) -> bytes:
    """ETYPE-INFO2 ::= SEQUENCE OF { etype [0], salt [1] OPTIONAL }."""
    out = []
    for etype, salt in entries:
        fields = [ctx(0, der_int(etype))]
        if salt is not None:
            fields.append(ctx(1, der_general_string(salt)))
        out.append(seq(*fields))
    return seq_of(out)


def _salt(realm: str, cname: str) -> str:
    # Windows salts AES keys with the upper-case realm and the case-sensitive user name.
    return realm.upper() + cname.split("@")[0]


def as_req(
    cname: str,
    realm: str,
    *,
    sname: str = "krbtgt/{realm}",
    etypes: Sequence[int] = (18, 17, 23),
    preauth: bool,
    nonce: int,
    till: datetime.datetime,
    rng: random.Random,
) -> bytes:
    """AS-REQ as a Windows client sends it; `preauth` adds PA-ENC-TIMESTAMP (etype 18) and
    PA-PAC-REQUEST, without it only PA-PAC-REQUEST (the first try that draws error 25)."""
    padata = []
    if preauth:
        # PA-ENC-TS-ENC { patimestamp, pausec } is 26..28 bytes of plaintext.
        padata.append(pa_data(PA_ENC_TIMESTAMP, encrypted_data(18, 28, rng)))
    padata.append(pa_data(PA_PAC_REQUEST, seq(ctx(0, der_bool(True)))))
    body = _kdc_req_body(
        options=KDC_OPTIONS_AS,
        cname=cname,
        realm=realm,
        sname=_format_realm(sname, realm),
        till=till,
        rtime=till,
        nonce=nonce,
        etypes=etypes,
    )
    return _kdc_req(KRB_AS_REQ, padata, body)


def as_rep(
    cname: str,
    realm: str,
    *,
    sname: str = "krbtgt/{realm}",
    etype: int = 18,
    kvno: int = 2,
    rng: random.Random,
) -> bytes:
    """AS-REP carrying a TGT (ticket encrypted with the krbtgt key, `kvno`) and the client part."""
    padata = [pa_data(PA_ETYPE_INFO2, etype_info2([(etype, _salt(realm, cname))]))]
    tkt = ticket(
        realm,
        _format_realm(sname, realm),
        etype=etype,
        kvno=kvno,
        rng=rng,
        plain_len=_realistic_ticket_plain(rng),
    )
    # EncASRepPart: key, last-req, nonce, times, flags, srealm, sname, (encrypted-pa-data).
    enc = encrypted_data(etype, 250 + 2 * len(realm) + rng.randint(0, 40), rng, kvno=rng.randint(1, 5))
    return _kdc_rep(KRB_AS_REP, padata=padata, crealm=realm, cname=cname, tkt=tkt, enc_part=enc)


def ap_req(
    realm: str,
    sname: str,
    *,
    etype: int = 18,
    mutual: bool = True,
    rng: random.Random,
    cname: str = "user",
    ticket_kvno: int = 3,
) -> bytes:
    """AP-REQ for service `sname` in `realm` (what HTTP Negotiate and SIP Kerberos carry)."""
    tkt = ticket(realm, sname, etype=etype, kvno=ticket_kvno, rng=rng, plain_len=_realistic_ticket_plain(rng))
    auth = encrypted_data(etype, _authenticator_plain(cname, realm, rng, gss_checksum=True), rng)
    return app(
        KRB_AP_REQ,
        seq(
            ctx(0, der_int(5)),
            ctx(1, der_int(KRB_AP_REQ)),
            ctx(2, der_bits32(AP_OPTIONS_MUTUAL if mutual else 0)),
            ctx(3, tkt),
            ctx(4, auth),
        ),
    )


def ap_rep(*, etype: int = 18, rng: random.Random) -> bytes:
    """AP-REP: EncAPRepPart { ctime, cusec, subkey, seq-number } is about 70 bytes of plaintext."""
    enc = encrypted_data(etype, rng.randint(66, 78), rng)
    return app(KRB_AP_REP, seq(ctx(0, der_int(5)), ctx(1, der_int(KRB_AP_REP)), ctx(2, enc)))


def tgs_req(
    cname: str,
    realm: str,
    sname: str,
    *,
    tgt_realm: str | None = None,
    etypes: Sequence[int] = (18, 17, 23),
    nonce: int,
    rng: random.Random,
    till: datetime.datetime = datetime.datetime(2037, 9, 13, 2, 48, 5, tzinfo=datetime.UTC),
) -> bytes:
    """TGS-REQ for `sname` (e.g. "HTTP/lyncpool.contoso.com", "sip/fe01.contoso.com"): PA-TGS-REQ
    carries an AP-REQ with the TGT (krbtgt/`tgt_realm`).  The client name is only inside the
    encrypted authenticator, as on the wire; `cname` sets that ciphertext's length."""
    tgt_realm = tgt_realm or realm
    tgt = ticket(
        tgt_realm, f"krbtgt/{tgt_realm}", etype=18, kvno=2, rng=rng, plain_len=_realistic_ticket_plain(rng)
    )
    auth = encrypted_data(18, _authenticator_plain(cname, realm, rng, gss_checksum=False) + 30, rng)
    inner = app(
        KRB_AP_REQ,
        seq(
            ctx(0, der_int(5)), ctx(1, der_int(KRB_AP_REQ)), ctx(2, der_bits32(0)), ctx(3, tgt), ctx(4, auth)
        ),
    )
    body = _kdc_req_body(
        options=KDC_OPTIONS_TGS,
        cname=None,
        realm=realm,
        sname=sname,
        till=till,
        rtime=None,
        nonce=nonce,
        etypes=etypes,
    )
    return _kdc_req(KRB_TGS_REQ, [pa_data(PA_TGS_REQ, inner)], body)


def tgs_rep(
    cname: str, realm: str, sname: str, *, etype: int = 18, rng: random.Random, kvno: int = 3
) -> bytes:
    """TGS-REP with a service ticket for `sname` (encrypted with the service key, `kvno`)."""
    tkt = ticket(realm, sname, etype=etype, kvno=kvno, rng=rng, plain_len=_realistic_ticket_plain(rng))
    enc = encrypted_data(18, 240 + 2 * len(realm) + len(sname) + rng.randint(0, 40), rng)
    return _kdc_rep(KRB_TGS_REP, padata=[], crealm=realm, cname=cname, tkt=tkt, enc_part=enc)


def krb_error(
    code: int,
    realm: str,
    sname: str,
    *,
    cname: str | None = None,
    e_text: str | None = None,
    stime: datetime.datetime,
    etypes: Sequence[int] = (18, 23),
) -> bytes:
    """KRB-ERROR as a Windows KDC sends it.  Error 25 (KDC_ERR_PREAUTH_REQUIRED) carries METHOD-DATA
    with PA-ETYPE-INFO2 (salts for `etypes`) and the accepted pre-authentication types; errors
    with a known NTSTATUS carry KERB-ERROR-DATA ([MS-KILE] §2.2.1)."""
    sname = _format_realm(sname, realm)
    fields = [
        ctx(0, der_int(5)),
        ctx(1, der_int(KRB_ERROR)),
        ctx(4, der_time(stime)),
        ctx(5, der_int(stime.microsecond)),
        ctx(6, der_int(code)),
    ]
    if cname is not None:
        fields += [ctx(7, der_general_string(realm)), ctx(8, principal_name(cname))]
    fields += [ctx(9, der_general_string(realm)), ctx(10, principal_name(sname))]
    if e_text is not None:
        fields.append(ctx(11, der_general_string(e_text)))
    if code == 25:
        salt = _salt(realm, cname or "")
        entries = [(e, salt if e in (17, 18, 19, 20) else None) for e in etypes]
        method_data = seq_of(
            [
                pa_data(PA_ETYPE_INFO2, etype_info2(entries)),
                pa_data(PA_ENC_TIMESTAMP, b""),
                pa_data(PA_PK_AS_REQ, b""),
                pa_data(PA_PK_AS_REP_OLD, b""),
            ]
        )
        fields.append(ctx(12, der_octets(method_data)))
    elif code in _NT_STATUS:
        ext = struct.pack("<III", _NT_STATUS[code], 0, 1)  # KERB_EXT_ERROR: status, reserved, flags
        fields.append(ctx(12, der_octets(seq(ctx(1, der_int(3)), ctx(2, der_octets(ext))))))
    return app(KRB_ERROR, seq(*fields))


def tcp_record(message: bytes) -> bytes:
    """A Kerberos message as sent over TCP: a 4-byte big-endian length, then the message (RFC 4120 §7.2.2)."""
    return struct.pack(">I", len(message)) + message


# -- GSS-API and SPNEGO ---------------------------------------------------------------------


def gss_krb5(ap_req_or_rep: bytes, tok_id: bytes = TOK_AP_REQ) -> bytes:
    """InitialContextToken (RFC 2743 §3.1): 0x60, the krb5 mechanism OID, TOK_ID, the message."""
    if len(tok_id) != 2:
        raise ValueError("TOK_ID is two bytes")
    return tlv(0x60, der_oid(KRB5_OID) + tok_id + ap_req_or_rep)


def _wrap_krb(token: bytes, tok_id: bytes, raw_tag: int) -> bytes:
    # A bare AP-REQ / AP-REP gets the krb5 GSS header, as Windows sends it inside SPNEGO.
    return gss_krb5(token, tok_id) if token[:1] == bytes([raw_tag]) else token


def spnego_init(
    mech_token: bytes,
    mech_types: Sequence[str] = (MS_KRB5_OID, KRB5_OID, NEGOEX_OID, NTLMSSP_OID),
) -> bytes:
    """GSS InitialContextToken with the SPNEGO OID and a NegTokenInit (what Windows puts after
    "Negotiate ").  A bare AP-REQ is wrapped with `gss_krb5` first."""
    token = _wrap_krb(mech_token, TOK_AP_REQ, 0x6E)
    neg_init = seq(ctx(0, seq_of(der_oid(m) for m in mech_types)), ctx(2, der_octets(token)))
    return tlv(0x60, der_oid(SPNEGO_OID) + ctx(0, neg_init))


def spnego_resp(
    neg_state: str = "accept-completed",
    supported_mech: str | None = MS_KRB5_OID,
    response_token: bytes | None = None,
    mech_list_mic: bytes | None = None,
) -> bytes:
    """NegTokenResp ([1] SEQUENCE): negState, supportedMech, responseToken (a bare AP-REP is
    wrapped with `gss_krb5` and TOK_ID 02 00), mechListMIC."""
    if neg_state not in NEG_STATES:
        raise ValueError(f"neg_state is one of {sorted(NEG_STATES)}")
    fields = [ctx(0, der_enumerated(NEG_STATES[neg_state]))]
    if supported_mech is not None:
        fields.append(ctx(1, der_oid(supported_mech)))
    if response_token is not None:
        fields.append(ctx(2, der_octets(_wrap_krb(response_token, TOK_AP_REP, 0x6F))))
    if mech_list_mic is not None:
        fields.append(ctx(3, der_octets(mech_list_mic)))
    return ctx(1, seq(*fields))
