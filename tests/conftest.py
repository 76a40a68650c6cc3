"""Shared fixtures: where the sample captures and the third-party corpus are, and tshark."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_captures"
# the third-party corpus (../shared/corpus), kept here byte for byte as test-only fixtures
CORPUS = Path(os.environ.get("LYNCPCAP_CORPUS", ROOT / "tests" / "corpus"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # test helper modules (truth.py, …)


def sample_captures(*, tls: bool = False) -> list[Path]:
    out = []
    for p in sorted(SAMPLES.glob("*.pcap*")):
        if p.name.endswith((".truth.json", ".keylog")):
            continue
        if ("-tls" in p.stem) != tls:
            continue
        out.append(p)
    return out


def corpus_captures() -> list[Path]:
    """The corpus captures that `expected.json` describes (those read without a key)."""
    if not (CORPUS / "expected.json").exists():
        return []
    names = json.loads((CORPUS / "expected.json").read_text())["files"]
    return [CORPUS / n for n in sorted(names) if "(with" not in n]


def every_capture() -> list[Path]:
    """Every sample capture, plaintext and TLS, and every corpus capture."""
    return sample_captures() + sample_captures(tls=True) + corpus_captures()


def capture_id(p: Path) -> str:
    return f"{p.parent.name}/{p.name}"


def analysis_document(a: object) -> str:
    """An Analysis's JSON document with secrets revealed, keys sorted: for comparing two runs."""
    return json.dumps(a.to_json(reveal=True), indent=1, sort_keys=True, ensure_ascii=False)  # type: ignore[attr-defined]


def truth_path(capture: Path) -> Path:
    return capture.with_name(capture.name.rsplit(".", 1)[0] + ".truth.json")


@pytest.fixture(scope="session")
def tshark() -> str:
    """tshark is installed by the test command; its absence is a failure, never a skip."""
    path = shutil.which("tshark")
    if path is None:
        pytest.fail("tshark is not installed (scripts/test.sh installs it: apt-get install tshark)")
    return path


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not (CORPUS / "expected.json").exists():
        pytest.fail(f"the shared capture corpus is not at {CORPUS} (set LYNCPCAP_CORPUS)")
    return CORPUS
