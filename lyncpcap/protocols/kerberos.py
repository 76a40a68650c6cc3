"""Kerberos V5 message decoding (RFC 4120 §5, with RFC 6113 FAST armour and MS-KILE extended errors).

Reads the clear-text parts of KDC and AP exchanges — message type, principals, realms, etypes,
pre-authentication types, error codes — from one DER message; `KerberosTcpFramer` splits TCP/88.
"""

from __future__ import annotations

from dataclasses import dataclass

from lyncpcap.errors import MalformedError
from lyncpcap.protocols import asn1
from lyncpcap.protocols.asn1 import Element, Tag, TagClass

PVNO = 5

MESSAGE_NAMES: dict[int, str] = {
    10: "as-req",
    11: "as-rep",
    12: "tgs-req",
    13: "tgs-rep",
    14: "ap-req",
    15: "ap-rep",
    20: "krb-safe",
    21: "krb-priv",
    22: "krb-cred",
    30: "krb-error",
}

# RFC 4120 §7.5.9, RFC 4556 §3.1.3 (PKINIT), RFC 6113 §5.4.3 (FAST).
ERROR_NAMES: dict[int, str] = {
    0: "KDC_ERR_NONE",
    1: "KDC_ERR_NAME_EXP",
    2: "KDC_ERR_SERVICE_EXP",
    3: "KDC_ERR_BAD_PVNO",
    4: "KDC_ERR_C_OLD_MAST_KVNO",
    5: "KDC_ERR_S_OLD_MAST_KVNO",
    6: "KDC_ERR_C_PRINCIPAL_UNKNOWN",
    7: "KDC_ERR_S_PRINCIPAL_UNKNOWN",
    8: "KDC_ERR_PRINCIPAL_NOT_UNIQUE",
    9: "KDC_ERR_NULL_KEY",
    10: "KDC_ERR_CANNOT_POSTDATE",
    11: "KDC_ERR_NEVER_VALID",
    12: "KDC_ERR_POLICY",
    13: "KDC_ERR_BADOPTION",
    14: "KDC_ERR_ETYPE_NOSUPP",
    15: "KDC_ERR_SUMTYPE_NOSUPP",
    16: "KDC_ERR_PADATA_TYPE_NOSUPP",
    17: "KDC_ERR_TRTYPE_NOSUPP",
    18: "KDC_ERR_CLIENT_REVOKED",
    19: "KDC_ERR_SERVICE_REVOKED",
    20: "KDC_ERR_TGT_REVOKED",
    21: "KDC_ERR_CLIENT_NOTYET",
    22: "KDC_ERR_SERVICE_NOTYET",
    23: "KDC_ERR_KEY_EXPIRED",
    24: "KDC_ERR_PREAUTH_FAILED",
    25: "KDC_ERR_PREAUTH_REQUIRED",
    26: "KDC_ERR_SERVER_NOMATCH",
    27: "KDC_ERR_MUST_USE_USER2USER",
    28: "KDC_ERR_PATH_NOT_ACCEPTED",
    29: "KDC_ERR_SVC_UNAVAILABLE",
    31: "KRB_AP_ERR_BAD_INTEGRITY",
    32: "KRB_AP_ERR_TKT_EXPIRED",
    33: "KRB_AP_ERR_TKT_NYV",
    34: "KRB_AP_ERR_REPEAT",
    35: "KRB_AP_ERR_NOT_US",
    36: "KRB_AP_ERR_BADMATCH",
    37: "KRB_AP_ERR_SKEW",
    38: "KRB_AP_ERR_BADADDR",
    39: "KRB_AP_ERR_BADVERSION",
    40: "KRB_AP_ERR_MSG_TYPE",
    41: "KRB_AP_ERR_MODIFIED",
    42: "KRB_AP_ERR_BADORDER",
    44: "KRB_AP_ERR_BADKEYVER",
    45: "KRB_AP_ERR_NOKEY",
    46: "KRB_AP_ERR_MUT_FAIL",
    47: "KRB_AP_ERR_BADDIRECTION",
    48: "KRB_AP_ERR_METHOD",
    49: "KRB_AP_ERR_BADSEQ",
    50: "KRB_AP_ERR_INAPP_CKSUM",
    51: "KRB_AP_PATH_NOT_ACCEPTED",
    52: "KRB_ERR_RESPONSE_TOO_BIG",
    60: "KRB_ERR_GENERIC",
    61: "KRB_ERR_FIELD_TOOLONG",
    62: "KDC_ERROR_CLIENT_NOT_TRUSTED",
    63: "KDC_ERROR_KDC_NOT_TRUSTED",
    64: "KDC_ERROR_INVALID_SIG",
    65: "KDC_ERR_KEY_TOO_WEAK",
    66: "KDC_ERR_CERTIFICATE_MISMATCH",
    67: "KRB_AP_ERR_NO_TGT",
    68: "KDC_ERR_WRONG_REALM",
    69: "KRB_AP_ERR_USER_TO_USER_REQUIRED",
    70: "KDC_ERR_CANT_VERIFY_CERTIFICATE",
    71: "KDC_ERR_INVALID_CERTIFICATE",
    72: "KDC_ERR_REVOKED_CERTIFICATE",
    73: "KDC_ERR_REVOCATION_STATUS_UNKNOWN",
    74: "KDC_ERR_REVOCATION_STATUS_UNAVAILABLE",
    75: "KDC_ERR_CLIENT_NAME_MISMATCH",
    76: "KDC_ERR_KDC_NAME_MISMATCH",
    77: "KDC_ERR_INCONSISTENT_KEY_PURPOSE",
    78: "KDC_ERR_DIGEST_IN_CERT_NOT_ACCEPTED",
    79: "KDC_ERR_PA_CHECKSUM_MUST_BE_INCLUDED",
    80: "KDC_ERR_DIGEST_IN_SIGNED_DATA_NOT_ACCEPTED",
    81: "KDC_ERR_PUBLIC_KEY_ENCRYPTION_NOT_SUPPORTED",
    90: "KDC_ERR_PREAUTH_EXPIRED",
    91: "KDC_ERR_MORE_PREAUTH_DATA_REQUIRED",
    92: "KDC_ERR_PREAUTH_BAD_AUTHENTICATION_SET",
    93: "KDC_ERR_UNKNOWN_CRITICAL_FAST_OPTIONS",
}

# RFC 3961 §8, RFC 3962, RFC 8009, RFC 6803, RFC 4757; negative values are Microsoft's.
ETYPE_NAMES: dict[int, str] = {
    1: "des-cbc-crc",
    2: "des-cbc-md4",
    3: "des-cbc-md5",
    5: "des3-cbc-md5",
    7: "des3-cbc-sha1",
    9: "dsaWithSHA1-CmsOID",
    10: "md5WithRSAEncryption-CmsOID",
    11: "sha1WithRSAEncryption-CmsOID",
    12: "rc2CBC-EnvOID",
    13: "rsaEncryption-EnvOID",
    14: "rsaES-OAEP-ENV-OID",
    15: "des-ede3-cbc-Env-OID",
    16: "des3-cbc-sha1-kd",
    17: "aes128-cts-hmac-sha1-96",
    18: "aes256-cts-hmac-sha1-96",
    19: "aes128-cts-hmac-sha256-128",
    20: "aes256-cts-hmac-sha384-192",
    23: "rc4-hmac",
    24: "rc4-hmac-exp",
    25: "camellia128-cts-cmac",
    26: "camellia256-cts-cmac",
    65: "subkey-keymaterial",
    -128: "rc4-md4",
    -129: "rc4-plain2",
    -130: "rc4-lm",
    -131: "rc4-sha",
    -132: "des-plain",
    -133: "rc4-hmac-old",
    -134: "rc4-plain-old",
    -135: "rc4-hmac-old-exp",
    -136: "rc4-plain-old-exp",
    -140: "rc4-plain",
    -141: "rc4-plain-exp",
}

# IANA "Kerberos Pre-authentication and Typed Data" (RFC 4120, 4556, 6113, 6806, MS-KILE, MS-SFU).
PADATA_NAMES: dict[int, str] = {
    1: "PA-TGS-REQ",
    2: "PA-ENC-TIMESTAMP",
    3: "PA-PW-SALT",
    11: "PA-ETYPE-INFO",
    14: "PA-PK-AS-REQ-OLD",
    15: "PA-PK-AS-REP-OLD",
    16: "PA-PK-AS-REQ",
    17: "PA-PK-AS-REP",
    19: "PA-ETYPE-INFO2",
    20: "PA-SVR-REFERRAL-INFO",
    128: "PA-PAC-REQUEST",
    129: "PA-FOR-USER",
    130: "PA-FOR-X509-USER",
    131: "PA-FOR-CHECK-DUPS",
    132: "PA-AS-CHECKSUM",
    133: "PA-FX-COOKIE",
    136: "PA-FX-FAST",
    137: "PA-FX-ERROR",
    138: "PA-ENCRYPTED-CHALLENGE",
    147: "PA-OTP-CHALLENGE",
    148: "PA-OTP-REQUEST",
    149: "PA-REQ-ENC-PA-REP",
    150: "PA-AS-FRESHNESS",
    165: "PA-SUPPORTED-ENCTYPES",
    166: "PA-EXTENDED-ERROR",
    167: "PA-PAC-OPTIONS",
}

# NTSTATUS values a Windows KDC puts in KERB-EXT-ERROR (MS-KILE §2.2.1) that explain sign-in failures.
NT_STATUS_NAMES: dict[int, str] = {
    0x00000000: "STATUS_SUCCESS",
    0xC0000064: "STATUS_NO_SUCH_USER",
    0xC000006A: "STATUS_WRONG_PASSWORD",
    0xC000006D: "STATUS_LOGON_FAILURE",
    0xC000006E: "STATUS_ACCOUNT_RESTRICTION",
    0xC000006F: "STATUS_INVALID_LOGON_HOURS",
    0xC0000070: "STATUS_INVALID_WORKSTATION",
    0xC0000071: "STATUS_PASSWORD_EXPIRED",
    0xC0000072: "STATUS_ACCOUNT_DISABLED",
    0xC00000BB: "STATUS_NOT_SUPPORTED",
    0xC0000133: "STATUS_TIME_DIFFERENCE_AT_DC",
    0xC000015B: "STATUS_LOGON_TYPE_NOT_GRANTED",
    0xC0000193: "STATUS_ACCOUNT_EXPIRED",
    0xC0000224: "STATUS_PASSWORD_MUST_CHANGE",
    0xC0000234: "STATUS_ACCOUNT_LOCKED_OUT",
    0xC0000272: "STATUS_NO_MATCH",
    0xC0000413: "STATUS_AUTHENTICATION_FIREWALL_FAILED",
}

PA_TGS_REQ = 1
PA_PW_SALT = 3
PA_FX_FAST = 136
KERB_ERR_TYPE_EXTENDED = 3
FX_FAST_ARMOR_AP_REQUEST = 1

_APP_TICKET = 1
AP_OPTION_MUTUAL_REQUIRED = 0x20000000  # RFC 4120 §5.5.1 APOptions bit 2, as a 32-bit big-endian value

# First octet of each message's [APPLICATION n] constructed tag.
MESSAGE_TAG_OCTETS = frozenset(0x60 | n for n in MESSAGE_NAMES)
MAX_TCP_RECORD = 1 << 20
"""Largest record `KerberosTcpFramer` accepts (RFC 4120 allows 2**31-1; Windows tokens stay far below)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """A cname or sname as it appears in a message, with the realm it belongs to."""

    kind: str  # "cname" | "sname"
    where: str  # "req_body" | "ticket" | "additional_ticket" | "top"
    name: str  # name-string components joined with "/"
    realm: str | None


@dataclass(frozen=True, slots=True)
class KerberosMessage:
    """The clear-text facts of one Kerberos message (encrypted parts are never opened)."""

    msg_type: int
    name: str
    realm: str | None
    cname: str | None
    crealm: str | None
    sname: str | None
    principals: tuple[Principal, ...]
    etypes: tuple[int, ...]
    enc_etype: int | None
    padata_types: tuple[int, ...]
    error_code: int | None
    error_name: str | None
    e_text: str | None
    inner_ap_req: KerberosMessage | None
    # Additions beyond the agreed shape (all optional):
    enc_part_etype: int | None = (
        None  # etype of the message's own enc-part (KDC-REP, AP-REP, AP-REQ authenticator)
    )
    kdc_options: int | None = None  # KDC-REQ-BODY kdc-options as a 32-bit big-endian integer
    mutual_required: bool | None = None  # AP-REQ ap-options mutual-required
    nt_status: int | None = None  # KRB-ERROR: NTSTATUS from MS-KILE KERB-EXT-ERROR in e-data


# -- small field readers --------------------------------------------------------------------------


def _int(element: Element) -> int:
    return element.expect(TagClass.UNIVERSAL, Tag.INTEGER, False).integer()


def _text(element: Element) -> str:
    if element.tag_class != TagClass.UNIVERSAL:
        raise MalformedError(f"expected KerberosString, found {element.describe()}")
    return element.string()


def _need(fields: dict[int, Element], tag: int, what: str) -> Element:
    try:
        return fields[tag]
    except KeyError:
        raise MalformedError(f"{what} lacks field [{tag}]") from None


def _principal_name(element: Element) -> str:
    """PrincipalName ::= SEQUENCE { name-type [0] Int32, name-string [1] SEQUENCE OF KerberosString }."""
    fields = element.fields()
    _int(_need(fields, 0, "PrincipalName"))
    parts = [_text(part) for part in _need(fields, 1, "PrincipalName").sequence()]
    return "/".join(parts)


def _encrypted_data_etype(element: Element) -> int:
    """EncryptedData ::= SEQUENCE { etype [0] Int32, kvno [1] UInt32 OPTIONAL, cipher [2] OCTET STRING }."""
    fields = element.fields()
    etype = _int(_need(fields, 0, "EncryptedData"))
    _need(fields, 2, "EncryptedData").expect(TagClass.UNIVERSAL, Tag.OCTET_STRING, False)
    if 1 in fields:
        _int(fields[1])
    return etype


@dataclass(frozen=True, slots=True)
class _Ticket:
    realm: str
    sname: str
    etype: int


def _ticket(element: Element) -> _Ticket:
    """Ticket ::= [APPLICATION 1] SEQUENCE { tkt-vno [0], realm [1], sname [2], enc-part [3] }."""
    fields = element.expect(TagClass.APPLICATION, _APP_TICKET, True).inner().fields()
    if _int(_need(fields, 0, "Ticket")) != PVNO:
        raise MalformedError("Ticket tkt-vno is not 5")
    return _Ticket(
        realm=_text(_need(fields, 1, "Ticket")),
        sname=_principal_name(_need(fields, 2, "Ticket")),
        etype=_encrypted_data_etype(_need(fields, 3, "Ticket")),
    )


def _padata(element: Element) -> list[tuple[int, Element | None]]:
    """SEQUENCE OF PA-DATA ::= SEQUENCE { padata-type [1] Int32, padata-value [2] OCTET STRING }."""
    out: list[tuple[int, Element | None]] = []
    for item in element.sequence():
        fields = item.fields()
        ptype = _int(_need(fields, 1, "PA-DATA"))
        value = fields.get(2)
        if value is not None:
            value.expect(TagClass.UNIVERSAL, Tag.OCTET_STRING, False)
        out.append((ptype, value))
    return out


def _flags32(element: Element) -> int:
    """KerberosFlags (BIT STRING, at least 32 bits in practice) as a 32-bit big-endian integer."""
    _unused, octets = element.expect(TagClass.UNIVERSAL, Tag.BIT_STRING, False).bit_string()
    return int.from_bytes((octets + b"\x00\x00\x00\x00")[:4], "big")


def _check_header(fields: dict[int, Element], pvno_tag: int, expected_type: int, what: str) -> None:
    if _int(_need(fields, pvno_tag, what)) != PVNO:
        raise MalformedError(f"{what} pvno is not 5")
    msg_type = _int(_need(fields, pvno_tag + 1, what))
    if msg_type != expected_type:
        raise MalformedError(f"{what} msg-type {msg_type} inside [APPLICATION {expected_type}]")


def _fast_armor_ap_req(value: Element) -> KerberosMessage | None:
    """AP-REQ inside PA-FX-FAST-REQUEST armored-data armor (RFC 6113 §5.4.2), None if shaped otherwise."""
    try:
        choice = asn1.decode(value.value)
        if not choice.is_tag(TagClass.CONTEXT, 0, True):
            return None
        armored = choice.inner().fields()
        armor = armored.get(0)
        if armor is None:
            return None
        armor_fields = armor.fields()
        if _int(_need(armor_fields, 0, "KrbFastArmor")) != FX_FAST_ARMOR_AP_REQUEST:
            return None
        armor_value = _need(armor_fields, 1, "KrbFastArmor").octets()
    except MalformedError:
        return None
    message = parse(armor_value)
    if message.msg_type != 14:
        raise MalformedError("FAST armour is not an AP-REQ")
    return message


# -- message bodies -------------------------------------------------------------------------------


def _kdc_req(body: Element, msg_type: int) -> KerberosMessage:
    what = MESSAGE_NAMES[msg_type].upper()
    fields = body.fields()
    _check_header(fields, 1, msg_type, what)
    principals: list[Principal] = []
    padata_types: list[int] = []
    inner: KerberosMessage | None = None
    if 3 in fields:
        for ptype, value in _padata(fields[3]):
            padata_types.append(ptype)
            found: KerberosMessage | None = None
            if ptype == PA_TGS_REQ and value is not None:
                found = parse(value.value)
                if found.msg_type != 14:
                    raise MalformedError("PA-TGS-REQ does not hold an AP-REQ")
            elif ptype == PA_FX_FAST and value is not None:
                found = _fast_armor_ap_req(value)
            if found is not None:
                principals.extend(found.principals)
                if inner is None or ptype == PA_TGS_REQ:  # the TGT AP-REQ wins over FAST armour
                    inner = found
    req = _need(fields, 4, what).fields()
    kdc_options = _flags32(req[0]) if 0 in req else None
    realm = _text(_need(req, 2, "KDC-REQ-BODY"))
    cname = _principal_name(req[1]) if 1 in req else None
    sname = _principal_name(req[3]) if 3 in req else None
    if cname is not None:
        principals.append(Principal("cname", "req_body", cname, realm))
    if sname is not None:
        principals.append(Principal("sname", "req_body", sname, realm))
    etypes = tuple(_int(e) for e in _need(req, 8, "KDC-REQ-BODY").sequence())
    if 11 in req:
        for ticket_element in req[11].sequence():
            ticket = _ticket(ticket_element)
            principals.append(Principal("sname", "additional_ticket", ticket.sname, ticket.realm))
    return KerberosMessage(
        msg_type=msg_type,
        name=MESSAGE_NAMES[msg_type],
        realm=realm,
        cname=cname,
        crealm=None,
        sname=sname,
        principals=tuple(principals),
        etypes=etypes,
        enc_etype=None,
        padata_types=tuple(padata_types),
        error_code=None,
        error_name=None,
        e_text=None,
        inner_ap_req=inner,
        kdc_options=kdc_options,
    )


def _kdc_rep(body: Element, msg_type: int) -> KerberosMessage:
    what = MESSAGE_NAMES[msg_type].upper()
    fields = body.fields()
    _check_header(fields, 0, msg_type, what)
    padata_types = tuple(ptype for ptype, _ in _padata(fields[2])) if 2 in fields else ()
    crealm = _text(_need(fields, 3, what))
    cname = _principal_name(_need(fields, 4, what))
    ticket = _ticket(_need(fields, 5, what))
    enc_part_etype = _encrypted_data_etype(_need(fields, 6, what))
    return KerberosMessage(
        msg_type=msg_type,
        name=MESSAGE_NAMES[msg_type],
        realm=crealm,
        cname=cname,
        crealm=crealm,
        sname=ticket.sname,
        principals=(
            Principal("cname", "top", cname, crealm),
            Principal("sname", "ticket", ticket.sname, ticket.realm),
        ),
        etypes=(),
        enc_etype=ticket.etype,
        padata_types=padata_types,
        error_code=None,
        error_name=None,
        e_text=None,
        inner_ap_req=None,
        enc_part_etype=enc_part_etype,
    )


def _ap_req(body: Element) -> KerberosMessage:
    fields = body.fields()
    _check_header(fields, 0, 14, "AP-REQ")
    options = _flags32(_need(fields, 2, "AP-REQ"))
    ticket = _ticket(_need(fields, 3, "AP-REQ"))
    authenticator_etype = _encrypted_data_etype(_need(fields, 4, "AP-REQ"))
    return KerberosMessage(
        msg_type=14,
        name="ap-req",
        realm=ticket.realm,
        cname=None,
        crealm=None,
        sname=ticket.sname,
        principals=(Principal("sname", "ticket", ticket.sname, ticket.realm),),
        etypes=(),
        enc_etype=ticket.etype,
        padata_types=(),
        error_code=None,
        error_name=None,
        e_text=None,
        inner_ap_req=None,
        enc_part_etype=authenticator_etype,
        mutual_required=bool(options & AP_OPTION_MUTUAL_REQUIRED),
    )


def _ap_rep(body: Element) -> KerberosMessage:
    fields = body.fields()
    _check_header(fields, 0, 15, "AP-REP")
    return _bare(15, enc_part_etype=_encrypted_data_etype(_need(fields, 2, "AP-REP")))


def _bare(
    msg_type: int, *, principals: tuple[Principal, ...] = (), enc_part_etype: int | None = None
) -> KerberosMessage:
    return KerberosMessage(
        msg_type=msg_type,
        name=MESSAGE_NAMES[msg_type],
        realm=principals[0].realm if principals else None,
        cname=None,
        crealm=None,
        sname=principals[0].name if principals else None,
        principals=principals,
        etypes=(),
        enc_etype=None,
        padata_types=(),
        error_code=None,
        error_name=None,
        e_text=None,
        inner_ap_req=None,
        enc_part_etype=enc_part_etype,
    )


def _krb_safe_priv_cred(body: Element, msg_type: int) -> KerberosMessage:
    what = MESSAGE_NAMES[msg_type].upper()
    fields = body.fields()
    _check_header(fields, 0, msg_type, what)
    if msg_type == 20:  # KRB-SAFE: safe-body [2], cksum [3]
        _need(fields, 2, what)
        _need(fields, 3, what)
        return _bare(msg_type)
    enc_etype = _encrypted_data_etype(_need(fields, 3, what))
    if msg_type == 21:  # KRB-PRIV: enc-part [3]
        return _bare(msg_type, enc_part_etype=enc_etype)
    tickets = [_ticket(t) for t in _need(fields, 2, what).sequence()]  # KRB-CRED: tickets [2]
    principals = tuple(Principal("sname", "ticket", t.sname, t.realm) for t in tickets)
    return _bare(msg_type, principals=principals, enc_part_etype=enc_etype)


def _error_data(e_data: bytes) -> tuple[tuple[int, ...], int | None]:
    """Pre-auth types offered in METHOD-DATA e-data, and an MS-KILE KERB-EXT-ERROR NTSTATUS.

    e-data is typed only by convention (METHOD-DATA for PREAUTH_REQUIRED, KERB-ERROR-DATA from
    Windows for most others), so anything else is left alone rather than called malformed.
    """
    try:
        outer = asn1.decode(e_data)
        children = outer.sequence()
    except MalformedError:
        return (), None
    if children and all(c.is_tag(TagClass.UNIVERSAL, Tag.SEQUENCE, True) for c in children):
        try:
            entries = _padata(outer)
        except MalformedError:
            return (), None
        status = None
        for ptype, value in entries:
            # Windows returns KERB-EXT-ERROR in a PA-PW-SALT entry alongside PREAUTH errors.
            if ptype == PA_PW_SALT and value is not None and len(value.value) == 12:
                status = int.from_bytes(value.value[0:4], "little")
        return tuple(ptype for ptype, _ in entries), status
    try:
        fields = outer.fields()
        if _int(_need(fields, 1, "KERB-ERROR-DATA")) == KERB_ERR_TYPE_EXTENDED and 2 in fields:
            ext_error = fields[2].octets()
            if len(ext_error) >= 4:
                return (), int.from_bytes(ext_error[0:4], "little")
    except MalformedError:
        pass
    return (), None


def _krb_error(body: Element) -> KerberosMessage:
    fields = body.fields()
    _check_header(fields, 0, 30, "KRB-ERROR")
    _need(fields, 4, "KRB-ERROR").time()
    code = _int(_need(fields, 6, "KRB-ERROR"))
    crealm = _text(fields[7]) if 7 in fields else None
    cname = _principal_name(fields[8]) if 8 in fields else None
    realm = _text(_need(fields, 9, "KRB-ERROR"))
    sname = _principal_name(_need(fields, 10, "KRB-ERROR"))
    e_text = _text(fields[11]) if 11 in fields else None
    padata_types: tuple[int, ...] = ()
    nt_status = None
    if 12 in fields:
        padata_types, nt_status = _error_data(fields[12].octets())
    principals: list[Principal] = []
    if cname is not None:
        # RFC 4120 §5.9.1: cname belongs to crealm; fall back to the error's realm when absent.
        principals.append(Principal("cname", "top", cname, crealm if crealm is not None else realm))
    principals.append(Principal("sname", "top", sname, realm))
    return KerberosMessage(
        msg_type=30,
        name="krb-error",
        realm=realm,
        cname=cname,
        crealm=crealm,
        sname=sname,
        principals=tuple(principals),
        etypes=(),
        enc_etype=None,
        padata_types=padata_types,
        error_code=code,
        error_name=ERROR_NAMES.get(code, f"KRB_ERR_{code}"),
        e_text=e_text,
        inner_ap_req=None,
        nt_status=nt_status,
    )


# -- public API -----------------------------------------------------------------------------------


def parse(data: bytes | bytearray | memoryview) -> KerberosMessage:
    """Decode one Kerberos message (the whole of `data`: a UDP payload or a framed TCP record)."""
    top = asn1.decode(data)
    if top.tag_class != TagClass.APPLICATION or not top.constructed or top.tag_number not in MESSAGE_NAMES:
        raise MalformedError(f"not a Kerberos message: {top.describe()}")
    msg_type = top.tag_number
    body = top.inner()
    if msg_type in (10, 12):
        return _kdc_req(body, msg_type)
    if msg_type in (11, 13):
        return _kdc_rep(body, msg_type)
    if msg_type == 14:
        return _ap_req(body)
    if msg_type == 15:
        return _ap_rep(body)
    if msg_type == 30:
        return _krb_error(body)
    return _krb_safe_priv_cred(body, msg_type)


def _plausible_udp(mv: memoryview) -> bool:
    header = asn1.peek_header(mv)
    if header is None or header[0] not in MESSAGE_TAG_OCTETS:
        return False
    _first, header_len, length = header
    return header_len + length == len(mv) and len(mv) > header_len and mv[header_len] == 0x30


def looks_like_kerberos(data: bytes | bytearray | memoryview) -> bool:
    """Cheap check: a whole UDP Kerberos message, or the start of a TCP record (4-byte length prefix)."""
    mv = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
    if len(mv) >= 3 and mv[0] in MESSAGE_TAG_OCTETS:
        return _plausible_udp(mv)
    if len(mv) < 7:
        return False
    record_len = int.from_bytes(mv[0:4], "big")
    header = asn1.peek_header(mv[4:])
    if record_len & 0x80000000 or header is None or header[0] not in MESSAGE_TAG_OCTETS:
        return False
    return header[1] + header[2] == record_len and record_len <= MAX_TCP_RECORD


class KerberosTcpFramer:
    """Splits one direction of a TCP/88 stream into records (RFC 4120 §7.2.2 4-octet length prefix).

    `feed` never raises: a prefix that cannot start a record (reserved high bit, zero or oversized
    length, or a body that does not open with a Kerberos [APPLICATION n] tag whose DER length fills
    the record) counts in `malformed`, and the framer scans forward to the next plausible record
    boundary (`skipped_bytes` counts what it passed over). Call `gap()` when the reassembler knows
    bytes are missing. The buffer never holds more than one record plus the data just fed.
    """

    def __init__(self, max_record: int = MAX_TCP_RECORD) -> None:
        self.max_record = max_record
        self.malformed = 0
        self.skipped_bytes = 0
        self._buf = bytearray()
        self._synced = True

    @property
    def pending(self) -> int:
        """Bytes buffered for an incomplete record."""
        return len(self._buf)

    def gap(self) -> None:
        """Bytes were lost: drop what is buffered and look for the next record boundary."""
        self.skipped_bytes += len(self._buf)
        self._buf.clear()
        self._synced = False

    def reset(self) -> None:
        self._buf.clear()
        self._synced = True

    def _check(self, pos: int) -> str:
        """'ok', 'bad' or 'more' (cannot tell yet) for a record header at `pos`."""
        buf = self._buf
        avail = len(buf) - pos
        if avail < 4:
            return "more"
        record_len = int.from_bytes(buf[pos : pos + 4], "big")
        if record_len & 0x80000000 or record_len < 2 or record_len > self.max_record:
            return "bad"
        if avail < 5:
            return "more"
        if buf[pos + 4] not in MESSAGE_TAG_OCTETS:
            return "bad"
        if avail < 6:
            return "more"
        length_octet = buf[pos + 5]
        needed = 2 + (length_octet & 0x7F if length_octet & 0x80 else 0)
        if avail < 4 + needed:
            return "more"
        header = asn1.peek_header(memoryview(buf)[pos + 4 : pos + 4 + needed])
        if header is None or header[1] + header[2] != record_len:
            return "bad"
        return "ok"

    def _resync(self) -> bool:
        """Skip to the first plausible record header; False if more data is needed first."""
        pos = 0
        while pos < len(self._buf):
            state = self._check(pos)
            if state == "ok":
                break
            if state == "more":
                self.skipped_bytes += pos
                del self._buf[:pos]
                return False
            pos += 1
        self.skipped_bytes += pos
        del self._buf[:pos]
        if not self._buf:
            return False
        self._synced = True
        return True

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while self._buf:
            if not self._synced and not self._resync():
                break
            state = self._check(0)
            if state == "more":
                break
            if state == "bad":
                self.malformed += 1
                self._synced = False
                continue
            record_len = int.from_bytes(self._buf[0:4], "big")
            if len(self._buf) < 4 + record_len:
                break
            out.append(bytes(self._buf[4 : 4 + record_len]))
            del self._buf[: 4 + record_len]
        return out
