"""Shared fixtures: where the sample captures and the third-party corpus are, and tshark."""

from __future__ import annotations

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
