"""The streamed JSON / JSON Lines output carries exactly what `Analysis.to_json()` holds.

Only the order of list items may differ: sessions are written as they close, authentication
messages session by session.  Compared on every sample capture and corpus file.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS, sample_captures

import lyncpcap
from lyncpcap import pipeline
from lyncpcap.report.stream import DocumentWriter

CAPTURES = sample_captures() + sorted(p for p in CORPUS.rglob("*.pcap*") if p.suffix in (".pcap", ".pcapng"))


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def canonical(doc: dict[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    for key in ("sessions", "auth", "unattached_steps", "tls"):
        out[key] = sorted(doc.get(key, []), key=_key)
    return out


def streamed(capture: Path, *, lines: bool, reveal: bool = False) -> str:
    buffer = io.StringIO()
    with DocumentWriter(buffer, reveal=reveal, lines=lines) as writer:
        pipeline.run([capture], writer)
        writer.end()
    return buffer.getvalue()


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.stem)
def test_streamed_document_equals_the_analysis(capture: Path) -> None:
    expected = canonical(lyncpcap.analyze(capture).to_json())
    got = canonical(json.loads(streamed(capture, lines=False)))
    assert got == expected


@pytest.mark.parametrize("capture", sample_captures()[:6], ids=lambda p: p.stem)
def test_streamed_lines_carry_every_record(capture: Path) -> None:
    doc = lyncpcap.analyze(capture).to_json(reveal=True)
    records = [json.loads(line) for line in streamed(capture, lines=True, reveal=True).splitlines()]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_type.setdefault(r.pop("type"), []).append(r)
    assert sorted(map(_key, by_type.get("session", []))) == sorted(map(_key, doc["sessions"]))
    assert sorted(map(_key, by_type.get("auth", []))) == sorted(map(_key, doc["auth"]))
    assert by_type.get("finding", []) == doc["findings"]
    assert by_type.get("client", []) == doc["clients"]
    assert by_type["capture"] == doc["captures"]


def test_nothing_is_written_before_the_first_result(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    buffer = io.StringIO()
    with pytest.raises(lyncpcap.errors.CaptureError), DocumentWriter(buffer) as writer:
        pipeline.run([bad], writer)
    assert buffer.getvalue() == ""
