"""Every sample capture's analysis matches its truth file: same sessions, fields and step order."""

from __future__ import annotations

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
