"""The fast path gives the reference path's results: every sample, every corpus file, a generated
benchmark capture.

Reference ("full"): `analyze(..., full=True)` offers every TCP connection and UDP datagram to the
decoders, frame by frame.  Fast: the default, where the reader drops media on uninteresting ports
and segments of ignored connections before they become objects (`Capture.scan` + `Prefilter`).
Timings are the benchmark's business (bench/); here only results are compared.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    CORPUS,
    ROOT,
    analysis_document,
    capture_id,
    corpus_captures,
    every_capture,
    sample_captures,
)

import lyncpcap
from lyncpcap.analysis import Analysis, CaptureInfo
from lyncpcap.engine import Engine
from lyncpcap.flows import Dispatcher, dispatch
from lyncpcap.read import open_capture
from lyncpcap.read.capture import Capture, Prefilter, Record

sys.path.insert(0, str(ROOT))  # the bench package (generator) lives beside the tests

from bench.generate import generate

UDP_PORTS = frozenset({53, 88, 5060})


CAPTURES = every_capture()
_ids = capture_id
_document = analysis_document


def _records(source: Iterable[Record]) -> list[tuple[int, float, int, bytes, int]]:
    return [(f, ts, lt, bytes(d), w) for f, ts, lt, d, w in source]


# -- the whole analysis ---------------------------------------------------------------------------


def test_there_is_something_to_compare() -> None:
    assert len(sample_captures()) >= 19
    assert len(corpus_captures()) == 21, f"the shared corpus is not at {CORPUS}"


@pytest.mark.parametrize("capture", CAPTURES, ids=_ids)
def test_fast_analysis_is_the_full_analysis(capture: Path) -> None:
    fast = lyncpcap.analyze(capture)
    full = lyncpcap.analyze(capture, full=True)
    assert _document(fast) == _document(full)
    assert fast.captures[0].stats == full.captures[0].stats


# -- the reader: scan, prefilter, read_head ---------------------------------------------------------


@pytest.mark.parametrize("capture", CAPTURES, ids=_ids)
def test_scan_hands_over_what_iteration_yields(capture: Path) -> None:
    with open_capture(capture) as cap:
        iterated = _records(cap)
        warnings = list(cap.warnings)
    scanned: list[Record] = []
    with open_capture(capture) as cap:
        cap.scan(lambda *rec: scanned.append(rec))  # type: ignore[arg-type]
        assert cap.warnings == warnings
    assert _records(scanned) == iterated


@pytest.mark.parametrize("capture", CAPTURES, ids=_ids)
def test_read_head_then_reading_misses_nothing(capture: Path) -> None:
    with open_capture(capture) as cap:
        iterated = _records(cap)
        linktypes, secrets = set(cap.linktypes), list(cap.secrets)
    with open_capture(capture) as cap:
        cap.read_head()
        if iterated:
            assert iterated[0][2] in cap.linktypes
        assert _records(cap) == iterated
        assert cap.linktypes == linktypes and cap.secrets == secrets
    scanned: list[Record] = []
    with open_capture(capture) as cap:
        cap.read_head()
        cap.scan(lambda *rec: scanned.append(rec))  # type: ignore[arg-type]
    assert _records(scanned) == iterated


def test_read_head_finds_embedded_secrets_before_any_frame() -> None:
    capture = ROOT / "sample_captures" / "08-ucwa-mobile-oauth-tls.pcapng"
    with open_capture(capture) as cap:
        cap.read_head()
        assert cap.secrets and cap.frames == 0
        assert cap.linktypes == {1}


def test_prefilter_drops_only_judged_frames_and_counts_them() -> None:
    capture = ROOT / "sample_captures" / "11-background-noise.pcapng"
    ticks: list[float] = []
    pre = Prefilter(UDP_PORTS, {}, 0, ticks.append, 64)
    kept: list[Record] = []
    with open_capture(capture) as cap:
        cap.scan(lambda *rec: kept.append(rec), pre)  # type: ignore[arg-type]
    with open_capture(capture) as cap:
        every = _records(cap)
    assert pre.udp > 700 and pre.tcp == 0  # the RTP-like stream; no TCP entry is marked ignored
    assert len(kept) + pre.udp == len(every)
    assert pre.bytes == sum(w for *_, w in every) - sum(w for *_, w in kept)
    assert ticks == [every[n - 1][1] for n in range(64, len(every) + 1, 64)]
    kept_frames = {r[0] for r in kept}
    for frame, _ts, _lt, data, _w in every:
        if frame not in kept_frames:
            assert data[23] == 17 and int.from_bytes(data[34:36], "big") not in UDP_PORTS


def test_prefilter_wants_a_power_of_two() -> None:
    with pytest.raises(ValueError):
        Prefilter(None, {}, 0, lambda ts: None, 100)


# -- the flows layer: scanning with a prefilter is feeding frame by frame ---------------------------


def _engine_run(capture: Path, source: str, udp_ports: frozenset[int] | None) -> tuple[str, dict[str, int], int]:
    """(analysis document, dispatcher stats, frames fed one by one) for one way of reading."""
    engine = Engine()
    dispatcher = Dispatcher(engine.tcp_selector, engine.udp_handler, udp_ports=udp_ports)
    fed = 0
    feed = dispatcher.feed

    def counting(frame: int, ts: float, linktype: int, data: bytes, wirelen: int) -> None:
        nonlocal fed
        fed += 1
        feed(frame, ts, linktype, data, wirelen)

    dispatcher.feed = counting
    with open_capture(capture) as cap:
        if source == "scan":
            dispatcher.run(cap)
        elif source == "after read_head":
            cap.read_head()
            dispatcher.run(cap)
        else:
            dispatcher.run(iter(cap))  # one by one
        info = CaptureInfo(str(capture), cap.format, dispatcher.stats["packets"], False, dispatcher.warnings)
    engine.finish()
    analysis = Analysis.from_steps([info], engine.steps, engine.auth, engine.tls)
    return _document(analysis), dict(dispatcher.stats), fed


@pytest.mark.parametrize("capture", CAPTURES, ids=_ids)
def test_scanned_capture_gives_the_fed_capture_results(capture: Path) -> None:
    for udp_ports in (UDP_PORTS, None):
        document, stats, fed = _engine_run(capture, "one by one", udp_ports)
        assert fed == stats["packets"]
        for source in ("scan", "after read_head"):
            got_document, got_stats, _ = _engine_run(capture, source, udp_ports)
            assert (got_document, got_stats) == (document, stats), source


def test_a_scanned_capture_never_hands_over_the_media() -> None:
    capture = ROOT / "sample_captures" / "11-background-noise.pcapng"
    for source in ("scan", "after read_head"):
        _document_text, stats, fed = _engine_run(capture, source, UDP_PORTS)
        assert fed < stats["packets"] - 700, source  # the RTP-like stream never became records
    _document_text, stats, fed = _engine_run(capture, "one by one", UDP_PORTS)
    assert fed == stats["packets"]


@pytest.mark.parametrize("name", ["10-password-spray.pcapng", "11-background-noise.pcapng"])
def test_housekeeping_happens_at_the_same_packets(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # sweeps every 16 packets instead of every 65536: the prefilter's ticks must match feed's own
    monkeypatch.setattr(dispatch, "HOUSEKEEPING_EVERY", 16)
    monkeypatch.setattr(dispatch, "SWEEP_SECONDS", 1.0)
    capture = ROOT / "sample_captures" / name
    document, stats, _ = _engine_run(capture, "one by one", UDP_PORTS)
    assert stats["tcp.table_evictions"] > 0
    for source in ("scan", "after read_head"):
        got_document, got_stats, _ = _engine_run(capture, source, UDP_PORTS)
        assert (got_document, got_stats) == (document, stats), source


def test_run_accepts_plain_records() -> None:
    capture = ROOT / "sample_captures" / "02-desktop-external-ntlm.pcapng"
    with open_capture(capture) as cap:
        records = _records(cap)
    engine = Engine()
    dispatcher = Dispatcher(engine.tcp_selector, engine.udp_handler)
    dispatcher.run(records)
    assert dispatcher.stats["packets"] == len(records) and engine.steps


# -- a generated benchmark capture --------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("bench") / "bench-40.pcapng"
    summary = generate(path, signins=40, seed=7)
    return path, summary


def test_generated_capture_fast_is_full_and_finds_every_signin(generated: tuple[Path, dict[str, Any]]) -> None:
    path, summary = generated
    fast = lyncpcap.analyze(path)
    full = lyncpcap.analyze(path, full=True)
    assert _document(fast) == _document(full)
    assert fast.captures[0].stats == full.captures[0].stats
    assert len(fast.session_list) == summary["signins"] == 40
    outcomes: dict[str, int] = {}
    for s in fast.session_list:
        outcomes[s.outcome] = outcomes.get(s.outcome, 0) + 1
    assert outcomes == summary["outcomes"]
    assert len({s.client_address for s in fast.session_list}) > 30  # distinct sign-ins, not copies
    assert fast.captures[0].stats["udp"] > fast.captures[0].stats["packets"] // 3  # media dominates


def test_generated_capture_is_deterministic(generated: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path, _summary = generated
    again = tmp_path / "again.pcapng"
    generate(again, signins=40, seed=7)
    assert again.read_bytes() == path.read_bytes()
    generate(tmp_path / "other.pcap", signins=40, seed=8, fmt="pcap")
    with open_capture(tmp_path / "other.pcap") as cap:
        assert isinstance(cap, Capture) and cap.format == "pcap"
        frames = sum(1 for _ in cap)
    assert frames > 1000


# -- decoders' fast paths give the slow paths' answers ---------------------------------------------


def _tree(element: Any) -> tuple[Any, ...]:
    return (element.tag, sorted(element.attrib.items()), element.text, element.tail, [_tree(c) for c in element])


def _careful_parse(data: bytes) -> tuple[Any, ...] | str:
    """What xmlsafe.parse gave before it had a fast path: defusedxml, DTDs and entities refused."""
    import defusedxml.ElementTree as SafeET
    from defusedxml import DefusedXmlException

    try:
        return _tree(SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True))
    except DefusedXmlException as exc:
        return f"unsafe XML refused: {type(exc).__name__}"
    except (SafeET.ParseError, LookupError, ValueError) as exc:
        return f"bad XML: {exc}"


def test_xml_fast_path_builds_the_careful_parsers_trees(monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    from lyncpcap.errors import MalformedError
    from lyncpcap.protocols import autodiscover, certprov, mex, wstrust, xmlsafe

    for remembered in (autodiscover, certprov, mex, wstrust):
        remembered._try_parse.cache_clear()  # documents seen before would not be parsed again
    seen: list[bytes] = []
    parse = xmlsafe.parse

    def recording(data: bytes) -> Any:
        seen.append(bytes(data))
        return parse(data)

    monkeypatch.setattr(xmlsafe, "parse", recording)
    for name in ("01-desktop-internal-kerberos.pcapng", "07-passive-adfs-2fa.pcap", "09e-webticket-fault-28020.pcapng"):
        lyncpcap.analyze(ROOT / "sample_captures" / name)
    monkeypatch.setattr(xmlsafe, "parse", parse)
    documents = list(dict.fromkeys(seen))
    assert len(documents) > 20 and any(xmlsafe._cannot_hold_a_dtd(d) for d in documents)
    rng = random.Random(3)
    cases = list(documents)
    for doc in documents[:40]:
        cut = rng.randrange(len(doc))
        flip = rng.randrange(len(doc))
        cases += [
            doc[:cut],
            doc[:flip] + bytes([rng.randrange(256)]) + doc[flip + 1 :],
            b'<!DOCTYPE x [<!ENTITY e "boom">]>' + doc,
            b'<?xml version="1.0" encoding="UTF-16"?>' + doc,
            doc.replace(b"utf-8", b"cp500", 1),
            doc.replace(b"utf-8", b"utz-8", 1),  # no such encoding
            doc.replace(b"utf-8", b"utf-32", 1),  # one expat cannot read
            doc.replace(b"utf-8", b"rot13", 1),  # a codec, not a text encoding
            b"<!-- a comment -->" + doc,
            b"\xef\xbb\xbf" + doc,
            doc.decode("utf-8", "replace").encode("utf-16"),
        ]
    for data in cases:
        try:
            got: tuple[Any, ...] | str = _tree(xmlsafe.parse(data))
        except MalformedError as exc:
            got = str(exc)
        assert got == _careful_parse(data), data[:120]
    entity = b'<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><x>&b;</x>'
    assert not xmlsafe._cannot_hold_a_dtd(entity)
    with pytest.raises(MalformedError, match="unsafe"):
        xmlsafe.parse(entity)


def _split_params_by_characters(text: str) -> list[str]:
    """The original character-by-character split of auth parameters (the reference)."""
    parts: list[str] = []
    cur: list[str] = []
    quoted = escape = False
    for ch in text:
        if escape:
            cur.append(ch)
            escape = False
            continue
        if ch == "\\" and quoted:
            cur.append(ch)
            escape = True
            continue
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    if cur:
        parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def test_auth_parameters_split_like_the_character_loop() -> None:
    import random

    from lyncpcap.protocols.httpauth import _split_params

    rng = random.Random(11)
    for length in range(14):
        for _ in range(3000):
            text = "".join(rng.choice('ab ,"\\=') for _ in range(length))
            assert _split_params(text) == _split_params_by_characters(text), text
    real = 'TLS-DSK qop="auth", realm="SIP Communications Service", opaque="A1", gssapi-data="' + "QUJD" * 900 + '", version=4'
    assert _split_params(real) == _split_params_by_characters(real)


def test_remembered_documents_are_the_parsed_documents() -> None:
    from lyncpcap.protocols import autodiscover, mex

    wsdl = b'<?xml version="1.0" encoding="utf-8"?><wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"><wsdl:service name="WebTicketService"><wsdl:port name="WebTicketServiceWinNtlm"/></wsdl:service></wsdl:definitions>'
    first = mex.try_parse(wsdl)
    assert first == mex.parse(wsdl) and mex.try_parse(wsdl[:] + b"") is first  # an equal body: the same record
    assert mex.try_parse(b"<not xml") is None and mex.try_parse(b"") is None
    assert autodiscover.try_parse(b'{"_links": {"user": {"href": "u"}}}') == autodiscover.parse(b'{"_links": {"user": {"href": "u"}}}')
