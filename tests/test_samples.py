"""Every sample capture's analysis matches its truth file: same sessions, fields and step order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import sample_captures, truth_path
from truth import differences, load

import lyncpcap


@pytest.mark.parametrize("capture", sample_captures(), ids=lambda p: p.stem)
def test_analysis_matches_truth(capture: Path) -> None:
    analysis = lyncpcap.analyze(capture)
    problems = differences(analysis, load(truth_path(capture)))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("capture", sample_captures(), ids=lambda p: p.stem)
def test_failing_sessions_explain_why(capture: Path) -> None:
    """A failed session names its step, a reason in words, and the server's own evidence."""
    for s in lyncpcap.analyze(capture).session_list:
        if s.outcome == "failure":
            assert s.failure is not None
            assert s.failure["reason"] and len(s.failure["reason"]) > 10
            assert s.failure["evidence"]
        else:
            assert s.failure is None


def test_every_sample_has_a_truth_file() -> None:
    captures = sample_captures() + sample_captures(tls=True)
    assert len(captures) >= 19
    for c in captures:
        assert truth_path(c).exists(), c


# Header names, authentication schemes, content types and transfer codings are case-insensitive
# (RFC 9110 5.1, 11.1, 8.3.1, RFC 3261 7.3.1); clients and proxies write them in every case.
_CASE_INSENSITIVE = re.compile(
    rb"(?im)^(www-authenticate|authorization|proxy-authenticate|proxy-authorization|transfer-encoding"
    rb"|content-encoding|content-type|connection|host|user-agent|cseq|call-id|via)(: *)([^\r\n;, ]*)"
)


def _recased(match: re.Match[bytes]) -> bytes:
    name, colon, token = match.groups()
    if name.lower() in (b"host", b"user-agent", b"cseq", b"call-id", b"via"):
        return name.lower() + colon + token  # only the name: these values are not all case-insensitive
    return name.upper() + colon + token.swapcase()


@pytest.mark.parametrize("capture", sample_captures(), ids=lambda p: p.stem)
def test_the_case_of_case_insensitive_words_changes_nothing(capture: Path, tmp_path: Path) -> None:
    """`WWW-AUTHENTICATE: nEGOTIATE`, `content-type: TEXT/XML`, `TRANSFER-ENCODING: CHUNKED`: the
    same sessions, steps and findings as the capture as written (the bytes keep their lengths)."""
    raw = capture.read_bytes()
    recased = _CASE_INSENSITIVE.sub(_recased, raw)
    assert len(recased) == len(raw)
    path = tmp_path / capture.name
    path.write_bytes(recased)
    analysis = lyncpcap.analyze(path)
    problems = differences(analysis, load(truth_path(capture)))
    assert not problems, "\n".join(problems)
    original = lyncpcap.analyze(capture)
    assert [f.id for f in analysis.finding_list] == [f.id for f in original.finding_list]
