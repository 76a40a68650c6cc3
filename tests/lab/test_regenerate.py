"""The lab regenerates every committed sample capture: same bytes (plaintext) or same truth (TLS)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lyncpcap.lab.build import build_one
from lyncpcap.lab.scenarios import CATALOGUE, Spec

SAMPLES = Path(__file__).resolve().parents[2] / "sample_captures"


def _ext(spec: Spec) -> str:
    return spec.fmt if spec.fmt in ("pcapng", "saz", "har") else "pcap"


@pytest.mark.parametrize("spec", [s for s in CATALOGUE if not s.tls], ids=lambda s: s.name)
def test_plaintext_capture_is_rebuilt_byte_for_byte(spec: Spec, tmp_path: Path) -> None:
    build_one(spec, tmp_path)
    name = f"{spec.name}.{_ext(spec)}"
    assert (tmp_path / name).read_bytes() == (SAMPLES / name).read_bytes(), f"{name} differs from the committed copy"
    truth = f"{spec.name}.truth.json"
    assert json.loads((tmp_path / truth).read_text()) == json.loads((SAMPLES / truth).read_text())


@pytest.mark.parametrize("spec", [s for s in CATALOGUE if s.tls], ids=lambda s: s.name)
def test_tls_twin_is_rebuilt_with_the_same_truth(spec: Spec, tmp_path: Path) -> None:
    from lyncpcap.lab.tlssim import Pki

    with Pki() as pki:
        build_one(spec, tmp_path, pki=pki)
    truth = f"{spec.name}.truth.json"
    assert json.loads((tmp_path / truth).read_text()) == json.loads((SAMPLES / truth).read_text())
    assert (tmp_path / f"{spec.name}.{_ext(spec)}").stat().st_size > 5000


def test_every_committed_capture_comes_from_the_catalogue() -> None:
    names = {s.name for s in CATALOGUE}
    for p in SAMPLES.glob("*.truth.json"):
        assert p.name.removesuffix(".truth.json") in names, p.name


def test_twins_share_the_plaintext_sessions() -> None:
    for spec in CATALOGUE:
        if spec.twin_of:
            twin = json.loads((SAMPLES / f"{spec.name}.truth.json").read_text())
            plain = json.loads((SAMPLES / f"{spec.twin_of}.truth.json").read_text())
            assert twin["sessions"] == plain["sessions"]
            assert twin["findings"] == plain["findings"]
