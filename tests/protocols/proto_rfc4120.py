"""RFC 4120 (Kerberos V5) and RFC 4178 (SPNEGO) ASN.1 written out for pyasn1, to build test messages.

An independent encoder: the decoders under test never see these definitions, only the DER that
pyasn1 produces from them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pyasn1.codec.der import encoder
from pyasn1.type import char, namedtype, tag, univ, useful


def _ctx(n: int) -> tag.Tag:
    return tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, n)


def _app(n: int) -> tag.Tag:
    return tag.Tag(tag.tagClassApplication, tag.tagFormatConstructed, n)


def _int(n: int) -> univ.Integer:
    return univ.Integer().subtype(explicitTag=_ctx(n))


class KerberosString(char.GeneralString):
    pass


class KerberosTime(useful.GeneralizedTime):
    pass


class PrincipalName(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("name-type", _int(0)),
        namedtype.NamedType(
            "name-string", univ.SequenceOf(componentType=KerberosString()).subtype(explicitTag=_ctx(1))
        ),
    )


class EncryptedData(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("etype", _int(0)),
        namedtype.OptionalNamedType("kvno", _int(1)),
        namedtype.NamedType("cipher", univ.OctetString().subtype(explicitTag=_ctx(2))),
    )


class Ticket(univ.Sequence):
    tagSet = univ.Sequence.tagSet.tagExplicitly(_app(1))
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("tkt-vno", _int(0)),
        namedtype.NamedType("realm", KerberosString().subtype(explicitTag=_ctx(1))),
        namedtype.NamedType("sname", PrincipalName().subtype(explicitTag=_ctx(2))),
        namedtype.NamedType("enc-part", EncryptedData().subtype(explicitTag=_ctx(3))),
    )


class PAData(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("padata-type", _int(1)),
        namedtype.NamedType("padata-value", univ.OctetString().subtype(explicitTag=_ctx(2))),
    )


class KDCReqBody(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("kdc-options", univ.BitString().subtype(explicitTag=_ctx(0))),
        namedtype.OptionalNamedType("cname", PrincipalName().subtype(explicitTag=_ctx(1))),
        namedtype.NamedType("realm", KerberosString().subtype(explicitTag=_ctx(2))),
        namedtype.OptionalNamedType("sname", PrincipalName().subtype(explicitTag=_ctx(3))),
        namedtype.OptionalNamedType("from", KerberosTime().subtype(explicitTag=_ctx(4))),
        namedtype.NamedType("till", KerberosTime().subtype(explicitTag=_ctx(5))),
        namedtype.OptionalNamedType("rtime", KerberosTime().subtype(explicitTag=_ctx(6))),
        namedtype.NamedType("nonce", _int(7)),
        namedtype.NamedType(
            "etype", univ.SequenceOf(componentType=univ.Integer()).subtype(explicitTag=_ctx(8))
        ),
        namedtype.OptionalNamedType(
            "additional-tickets", univ.SequenceOf(componentType=Ticket()).subtype(explicitTag=_ctx(11))
        ),
    )


class KDCReq(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("pvno", _int(1)),
        namedtype.NamedType("msg-type", _int(2)),
        namedtype.OptionalNamedType(
            "padata", univ.SequenceOf(componentType=PAData()).subtype(explicitTag=_ctx(3))
        ),
        namedtype.NamedType("req-body", KDCReqBody().subtype(explicitTag=_ctx(4))),
    )


class ASReq(KDCReq):
    tagSet = univ.Sequence.tagSet.tagExplicitly(_app(10))


class TGSReq(KDCReq):
    tagSet = univ.Sequence.tagSet.tagExplicitly(_app(12))


class KDCRep(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("pvno", _int(0)),
        namedtype.NamedType("msg-type", _int(1)),
        namedtype.OptionalNamedType(
            "padata", univ.SequenceOf(componentType=PAData()).subtype(explicitTag=_ctx(2))
        ),
        namedtype.NamedType("crealm", KerberosString().subtype(explicitTag=_ctx(3))),
        namedtype.NamedType("cname", PrincipalName().subtype(explicitTag=_ctx(4))),
        namedtype.NamedType("ticket", Ticket().subtype(explicitTag=_ctx(5))),
        namedtype.NamedType("enc-part", EncryptedData().subtype(explicitTag=_ctx(6))),
    )


class ASRep(KDCRep):
    tagSet = univ.Sequence.tagSet.tagExplicitly(_app(11))


class TGSRep(KDCRep):
    tagSet = univ.Sequence.tagSet.tagExplicitly(_app(13))


class APReq(univ.Sequence):
    tagSet = univ.Sequence.tagSet.tagExplicitly(_app(14))
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("pvno", _int(0)),
        namedtype.NamedType("msg-type", _int(1)),
        namedtype.NamedType("ap-options", univ.BitString().subtype(explicitTag=_ctx(2))),
        namedtype.NamedType("ticket", Ticket().subtype(explicitTag=_ctx(3))),
        namedtype.NamedType("authenticator", EncryptedData().subtype(explicitTag=_ctx(4))),
    )


class APRep(univ.Sequence):
    tagSet = univ.Sequence.tagSet.tagExplicitly(_app(15))
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("pvno", _int(0)),
        namedtype.NamedType("msg-type", _int(1)),
        namedtype.NamedType("enc-part", EncryptedData().subtype(explicitTag=_ctx(2))),
    )


class KRBError(univ.Sequence):
    tagSet = univ.Sequence.tagSet.tagExplicitly(_app(30))
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("pvno", _int(0)),
        namedtype.NamedType("msg-type", _int(1)),
        namedtype.OptionalNamedType("ctime", KerberosTime().subtype(explicitTag=_ctx(2))),
        namedtype.OptionalNamedType("cusec", _int(3)),
        namedtype.NamedType("stime", KerberosTime().subtype(explicitTag=_ctx(4))),
        namedtype.NamedType("susec", _int(5)),
        namedtype.NamedType("error-code", _int(6)),
        namedtype.OptionalNamedType("crealm", KerberosString().subtype(explicitTag=_ctx(7))),
        namedtype.OptionalNamedType("cname", PrincipalName().subtype(explicitTag=_ctx(8))),
        namedtype.NamedType("realm", KerberosString().subtype(explicitTag=_ctx(9))),
        namedtype.NamedType("sname", PrincipalName().subtype(explicitTag=_ctx(10))),
        namedtype.OptionalNamedType("e-text", KerberosString().subtype(explicitTag=_ctx(11))),
        namedtype.OptionalNamedType("e-data", univ.OctetString().subtype(explicitTag=_ctx(12))),
    )


class MethodData(univ.SequenceOf):
    componentType = PAData()


# -- RFC 4178 SPNEGO ------------------------------------------------------------------------------


class MechTypeList(univ.SequenceOf):
    componentType = univ.ObjectIdentifier()


class NegTokenInit(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType("mechTypes", MechTypeList().subtype(explicitTag=_ctx(0))),
        namedtype.OptionalNamedType("reqFlags", univ.BitString().subtype(explicitTag=_ctx(1))),
        namedtype.OptionalNamedType("mechToken", univ.OctetString().subtype(explicitTag=_ctx(2))),
        namedtype.OptionalNamedType("mechListMIC", univ.OctetString().subtype(explicitTag=_ctx(3))),
    )


class NegTokenResp(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType("negState", univ.Enumerated().subtype(explicitTag=_ctx(0))),
        namedtype.OptionalNamedType("supportedMech", univ.ObjectIdentifier().subtype(explicitTag=_ctx(1))),
        namedtype.OptionalNamedType("responseToken", univ.OctetString().subtype(explicitTag=_ctx(2))),
        namedtype.OptionalNamedType("mechListMIC", univ.OctetString().subtype(explicitTag=_ctx(3))),
    )


# -- builders -------------------------------------------------------------------------------------

WHEN = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
NT_PRINCIPAL, NT_SRV_INST, NT_SRV_HST, NT_ENTERPRISE = 1, 2, 3, 10


def _time(when: datetime = WHEN) -> str:
    return when.strftime("%Y%m%d%H%M%SZ")


def fill_principal(target: univ.Sequence, name: str, name_type: int = NT_PRINCIPAL) -> None:
    target["name-type"] = name_type
    strings = target["name-string"]
    for part in name.split("/"):
        strings.append(part)


def fill_encrypted(target: univ.Sequence, etype: int, size: int = 32, kvno: int | None = 2) -> None:
    target["etype"] = etype
    if kvno is not None:
        target["kvno"] = kvno
    target["cipher"] = bytes(range(size % 256)) * (size // 256) + bytes(range(size % 256))


def fill_ticket(target: univ.Sequence, realm: str, sname: str, etype: int) -> None:
    target["tkt-vno"] = 5
    target["realm"] = realm
    fill_principal(target["sname"], sname, NT_SRV_INST)
    fill_encrypted(target["enc-part"], etype, 120)


def _kdc_req(
    cls: type[KDCReq],
    msg_type: int,
    *,
    realm: str,
    sname: str,
    cname: str | None,
    etypes: list[int],
    padata: list[tuple[int, bytes]],
    additional: list[tuple[str, str, int]] | None = None,
) -> bytes:
    req = cls()
    req["pvno"] = 5
    req["msg-type"] = msg_type
    if padata:
        seq = req["padata"]
        for ptype, value in padata:
            item = PAData()
            item["padata-type"] = ptype
            item["padata-value"] = value
            seq.append(item)
    body = req["req-body"]
    body["kdc-options"] = body["kdc-options"].clone(hexValue="40810010")
    if cname is not None:
        fill_principal(body["cname"], cname)
    body["realm"] = realm
    fill_principal(body["sname"], sname, NT_SRV_INST)
    body["till"] = _time(datetime(2037, 9, 13, 2, 48, 5, tzinfo=UTC))
    body["nonce"] = 0x7FFFFFFF
    for e in etypes:
        body["etype"].append(e)
    if additional:
        for t_realm, t_sname, t_etype in additional:
            ticket = Ticket()
            fill_ticket(ticket, t_realm, t_sname, t_etype)
            body["additional-tickets"].append(ticket)
    return encoder.encode(req)


def as_req(
    cname: str, realm: str, *, etypes: list[int] | None = None, padata: list[tuple[int, bytes]] | None = None
) -> bytes:
    return _kdc_req(
        ASReq,
        10,
        realm=realm,
        sname=f"krbtgt/{realm}",
        cname=cname,
        etypes=etypes or [18, 17, 23],
        padata=padata if padata is not None else [(128, b"0\x05\xa0\x03\x01\x01\xff")],
    )


def ap_req(realm: str, sname: str, etype: int = 18, mutual: bool = True) -> bytes:
    req = APReq()
    req["pvno"] = 5
    req["msg-type"] = 14
    req["ap-options"] = req["ap-options"].clone(hexValue="20000000" if mutual else "00000000")
    fill_ticket(req["ticket"], realm, sname, etype)
    fill_encrypted(req["authenticator"], etype, 80, kvno=None)
    return encoder.encode(req)


def tgs_req(
    realm: str,
    sname: str,
    *,
    tgt_etype: int = 18,
    etypes: list[int] | None = None,
    additional: list[tuple[str, str, int]] | None = None,
) -> bytes:
    pa_tgs = ap_req(realm, f"krbtgt/{realm}", tgt_etype, mutual=False)
    return _kdc_req(
        TGSReq,
        12,
        realm=realm,
        sname=sname,
        cname=None,
        etypes=etypes or [18, 17, 23],
        padata=[(1, pa_tgs), (167, b"0\x07\xa0\x05\x03\x03\x00\x00\x00")],
        additional=additional,
    )


def _kdc_rep(
    cls: type[KDCRep], msg_type: int, crealm: str, cname: str, sname: str, ticket_etype: int
) -> bytes:
    rep = cls()
    rep["pvno"] = 5
    rep["msg-type"] = msg_type
    if msg_type == 11:
        item = PAData()
        item["padata-type"] = 19
        item["padata-value"] = b"0\x000"
        rep["padata"].append(item)
    rep["crealm"] = crealm
    fill_principal(rep["cname"], cname)
    fill_ticket(rep["ticket"], crealm, sname, ticket_etype)
    fill_encrypted(rep["enc-part"], 18, 200)
    return encoder.encode(rep)


def as_rep(crealm: str, cname: str, ticket_etype: int = 18) -> bytes:
    return _kdc_rep(ASRep, 11, crealm, cname, f"krbtgt/{crealm}", ticket_etype)


def tgs_rep(crealm: str, cname: str, sname: str, ticket_etype: int = 18) -> bytes:
    return _kdc_rep(TGSRep, 13, crealm, cname, sname, ticket_etype)


def ap_rep(etype: int = 18) -> bytes:
    rep = APRep()
    rep["pvno"] = 5
    rep["msg-type"] = 15
    fill_encrypted(rep["enc-part"], etype, 40, kvno=None)
    return encoder.encode(rep)


def krb_error(
    code: int,
    realm: str,
    sname: str,
    *,
    cname: str | None = None,
    crealm: str | None = None,
    e_text: str | None = None,
    e_data: bytes | None = None,
) -> bytes:
    err = KRBError()
    err["pvno"] = 5
    err["msg-type"] = 30
    err["stime"] = _time()
    err["susec"] = 12345
    err["error-code"] = code
    if crealm is not None:
        err["crealm"] = crealm
    if cname is not None:
        fill_principal(err["cname"], cname)
    err["realm"] = realm
    fill_principal(err["sname"], sname, NT_SRV_INST)
    if e_text is not None:
        err["e-text"] = e_text
    if e_data is not None:
        err["e-data"] = e_data
    return encoder.encode(err)


def method_data(types: list[int]) -> bytes:
    seq = MethodData()
    for t in types:
        item = PAData()
        item["padata-type"] = t
        item["padata-value"] = b""
        seq.append(item)
    return encoder.encode(seq)


# -- GSS-API / SPNEGO framing ---------------------------------------------------------------------

OID_KRB5 = "1.2.840.113554.1.2.2"
OID_MS_KRB5 = "1.2.840.48018.1.2.2"
OID_NTLM = "1.3.6.1.4.1.311.2.2.10"
OID_SPNEGO = "1.3.6.1.5.5.2"


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def initial_context_token(oid: str, inner: bytes) -> bytes:
    """RFC 2743 §3.1 [APPLICATION 0] IMPLICIT SEQUENCE { thisMech, innerContextToken ANY }."""
    content = encoder.encode(univ.ObjectIdentifier(oid)) + inner
    return b"\x60" + _der_length(len(content)) + content


def gss_krb5(tok_id: bytes, message: bytes, oid: str = OID_KRB5) -> bytes:
    return initial_context_token(oid, tok_id + message)


def neg_token_init(mech_types: list[str], mech_token: bytes | None) -> bytes:
    init = NegTokenInit()
    for oid in mech_types:
        init["mechTypes"].append(oid)
    if mech_token is not None:
        init["mechToken"] = mech_token
    choice = b"\xa0" + _der_length(len(encoder.encode(init))) + encoder.encode(init)
    return initial_context_token(OID_SPNEGO, choice)


def neg_token_resp(
    neg_state: int | None, supported_mech: str | None, response_token: bytes | None, mic: bytes | None = None
) -> bytes:
    resp = NegTokenResp()
    if neg_state is not None:
        resp["negState"] = neg_state
    if supported_mech is not None:
        resp["supportedMech"] = supported_mech
    if response_token is not None:
        resp["responseToken"] = response_token
    if mic is not None:
        resp["mechListMIC"] = mic
    body = encoder.encode(resp)
    return b"\xa1" + _der_length(len(body)) + body
