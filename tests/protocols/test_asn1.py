"""The DER/BER reader, checked against pyasn1's encoder and against hand-made broken encodings."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pyasn1.codec.der import encoder
from pyasn1.type import char, tag, univ, useful

from lyncpcap.errors import MalformedError
from lyncpcap.protocols import asn1
from lyncpcap.protocols.asn1 import Tag, TagClass


def test_integers_match_pyasn1() -> None:
    rng = random.Random(4120)
    values = [0, 1, -1, 127, 128, -128, -129, 255, 256, 2**31 - 1, 2**31, -(2**31), 2**63, -(2**64) + 1]
    values += [rng.randint(-(2**70), 2**70) for _ in range(200)]
    for value in values:
        element = asn1.decode(encoder.encode(univ.Integer(value)))
        assert element.is_tag(TagClass.UNIVERSAL, Tag.INTEGER, False)
        assert element.integer() == value


def test_oids_match_pyasn1() -> None:
    rng = random.Random(2743)
    oids = [
        "1.2.840.113554.1.2.2",
        "1.2.840.48018.1.2.2",
        "1.3.6.1.4.1.311.2.2.10",
        "2.5.29.17",
        "2.999.3",
        "0.0",
    ]
    for _ in range(200):
        first = rng.randint(0, 2)
        second = rng.randint(0, 39) if first < 2 else rng.randint(0, 10**6)
        oids.append(
            ".".join(
                str(a) for a in [first, second] + [rng.randint(0, 2**40) for _ in range(rng.randint(0, 8))]
            )
        )
    for oid in oids:
        der = encoder.encode(univ.ObjectIdentifier(oid))
        assert asn1.decode(der).oid() == oid
        assert der[2:] == asn1.encode_oid(oid)


def test_strings_and_times() -> None:
    assert asn1.decode(encoder.encode(char.GeneralString(b"CONTOSO.COM"))).string() == "CONTOSO.COM"
    assert asn1.decode(encoder.encode(char.UTF8String("Zoë"))).string() == "Zoë"
    assert asn1.decode(encoder.encode(char.BMPString("Grüße"))).string() == "Grüße"
    assert asn1.decode(encoder.encode(char.PrintableString("Contoso CA"))).string() == "Contoso CA"
    assert asn1.decode(b"\x1b\x02\xe9\x41").string() == "éA"  # not UTF-8: Latin-1 fallback
    when = asn1.decode(encoder.encode(useful.GeneralizedTime("20240501120000Z"))).time()
    assert when == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert asn1.decode(b"\x17\x0d491231235959Z").time() == datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert asn1.decode(b"\x17\x0d500101000000Z").time().year == 1950
    assert asn1.decode(b"\x17\x0b0401011200Z").time() == datetime(2004, 1, 1, 12, 0, tzinfo=UTC)
    frac = asn1.decode(b"\x18\x1220240501120000.25Z").time()
    assert frac == datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
    offset = asn1.decode(b"\x18\x1320240501120000+0200").time()
    assert offset == datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    for bad in (
        b"\x18\x0f20241301120000Z",
        b"\x18\x0e20240501120000",
        b"\x18\x0f2024O501120000Z",
        b"\x17\x00",
    ):
        with pytest.raises(MalformedError):
            asn1.decode(bad).time()


def test_structures_and_explicit_tags() -> None:
    seq = univ.Sequence()
    seq.setComponentByPosition(
        0, univ.Integer(5).subtype(explicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 0))
    )
    seq.setComponentByPosition(
        1,
        univ.OctetString(b"\x00" * 300).subtype(
            explicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 2)
        ),
    )
    der = encoder.encode(seq)
    element = asn1.decode(der)
    fields = element.fields()
    assert sorted(fields) == [0, 2]
    assert fields[0].integer() == 5 and fields[2].octets() == b"\x00" * 300
    assert bytes(element.encoded) == der and len(element.value) == len(der) - 4  # long-form length


def test_fields_must_be_increasing() -> None:
    out_of_order = b"\x30\x0a\xa1\x03\x02\x01\x01\xa0\x03\x02\x01\x00"
    with pytest.raises(MalformedError):
        asn1.decode(out_of_order).fields()
    repeated = b"\x30\x0a\xa0\x03\x02\x01\x01\xa0\x03\x02\x01\x00"
    with pytest.raises(MalformedError):
        asn1.decode(repeated).fields()
    not_context = b"\x30\x03\x02\x01\x01"
    with pytest.raises(MalformedError):
        asn1.decode(not_context).fields()


def test_high_tag_numbers() -> None:
    element = asn1.decode(b"\x9f\x81\x00\x01\x07")  # [CONTEXT 128] primitive
    assert (element.tag_class, element.tag_number, bytes(element.value)) == (TagClass.CONTEXT, 128, b"\x07")
    for bad in (b"\x9f\x1e\x00", b"\x9f\x80\x01\x00", b"\x9f\xff\xff\xff\xff\x01\x00", b"\x9f\x81"):
        with pytest.raises(MalformedError):
            asn1.decode(bad)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x30",
        b"\x30\x80\x00\x00",  # indefinite length
        b"\x30\xff",
        b"\x04\x85\x00\x00\x00\x00\x01",  # five length octets
        b"\x04\x82\x01",
        b"\x04\x05abc",
        b"\x30\x03\x02\x01\x01\x00",  # trailing byte
    ],
)
def test_broken_encodings(data: bytes) -> None:
    with pytest.raises(MalformedError):
        asn1.decode(data)


def test_primitive_accessors_are_strict() -> None:
    with pytest.raises(MalformedError):
        asn1.decode(b"\x02\x00").integer()
    with pytest.raises(MalformedError):
        asn1.decode(b"\x06\x00").oid()
    with pytest.raises(MalformedError):
        asn1.decode(b"\x06\x02\x2a\x86").oid()  # unterminated arc
    with pytest.raises(MalformedError):
        asn1.decode(b"\x06\x02\x80\x01").oid()  # leading 0x80
    with pytest.raises(MalformedError):
        asn1.decode(b"\x30\x00").octets()
    with pytest.raises(MalformedError):
        asn1.decode(b"\x02\x01\x00").children()
    with pytest.raises(MalformedError):
        asn1.decode(b"\x1e\x03abc").string()  # odd BMPString
    with pytest.raises(MalformedError):
        asn1.decode(b"\x02\x01\x05").string()
    with pytest.raises(MalformedError):
        asn1.decode(b"\x03\x01\x01").bit_string()
    assert asn1.decode(b"\x03\x02\x00\x80").bit_string() == (0, b"\x80")
    assert asn1.decode(b"\x01\x01\xff").boolean() is True
    with pytest.raises(MalformedError):
        asn1.decode(b"\x02\x41" + b"\x01" * 65).integer()


def test_depth_limit() -> None:
    data = b"\x05\x00"
    for _ in range(asn1.MAX_DEPTH + 5):
        data = asn1.encode_tlv(0x30, data)
    element = asn1.decode(data)
    with pytest.raises(MalformedError):
        while True:
            (element,) = element.children()


def test_peek_header() -> None:
    assert asn1.peek_header(b"\x6a\x82\x01\x37") == (0x6A, 4, 0x137)
    assert asn1.peek_header(b"\x6a\x05") == (0x6A, 2, 5)
    assert asn1.peek_header(b"\x6a\x82\x01") is None
    assert asn1.peek_header(b"\x6a\x80") is None
    assert asn1.peek_header(b"\x6a") is None


def test_views_share_the_buffer() -> None:
    data = bytearray(encoder.encode(univ.OctetString(b"abc")))
    element = asn1.decode(memoryview(data))
    data[2] = ord("x")
    assert bytes(element.value) == b"xbc"
