"""`Analysis.session(ID).packets()`: the session's frames as pyshark packets, decrypted with the
analysis' keys, also from inside a running asyncio loop (Jupyter)."""

from __future__ import annotations

import asyncio
import subprocess
from functools import cache
from pathlib import Path

import pytest
from conftest import SAMPLES

import lyncpcap
from lyncpcap.analysis import Analysis
from lyncpcap.report.drilldown import DrilldownError, session_filters

EXTERNAL_TLS = SAMPLES / "02-desktop-external-ntlm-tls.pcapng"
EXTERNAL_KEYLOG = SAMPLES / "02-desktop-external-ntlm-tls.keylog"
INTERNAL = SAMPLES / "01-desktop-internal-kerberos.pcapng"


@cache
def tls_analysis() -> Analysis:
    return lyncpcap.analyze(EXTERNAL_TLS, keylog=EXTERNAL_KEYLOG)


def layer_names(packet: object) -> set[str]:
    return {layer.layer_name for layer in packet.layers}  # type: ignore[attr-defined]


def test_packets_are_the_sessions_connections_decrypted(tshark: str) -> None:
    a = tls_analysis()
    session = a.session("s1")
    packets = session.packets()
    numbers = [int(p.number) for p in packets]
    assert numbers == sorted(numbers)
    steps = {s.frame for s in session.record.steps}
    assert steps <= set(numbers)
    # every frame of the session's connections: the whole capture here (four TLS connections)
    total = int(subprocess.run([tshark, "-n", "-r", str(EXTERNAL_TLS), "-T", "fields", "-e", "frame.number"],
                               capture_output=True, text=True, check=True).stdout.split()[-1])
    assert numbers == list(range(1, total + 1))
    by_number = {int(p.number): p for p in packets}
    for step in session.record.steps:
        names = layer_names(by_number[step.frame])
        assert ("http" if step.url and step.url.startswith("https:") else "sip") in names, (step.frame, names)


def test_packets_inside_a_running_event_loop(tshark: str) -> None:
    """Jupyter runs cells inside an asyncio loop, where pyshark's FileCapture cannot run its own."""
    a = tls_analysis()

    async def cell() -> list[int]:
        assert asyncio.get_running_loop().is_running()
        return [int(p.number) for p in a.session("s1").packets(connections=False)]

    frames = asyncio.run(cell())
    assert frames == sorted(s.frame for s in a.session("s1").record.steps)


def test_udp_steps_bring_their_answers(tshark: str) -> None:
    """DNS and Kerberos over UDP: the whole conversation (query and answer), and nothing of the
    other session's traffic."""
    a = lyncpcap.analyze(INTERNAL)
    first, second = a.session_list
    filters = session_filters(a, first)
    assert set(filters) == {0} and "udp.stream in" in filters[0] and "tcp.stream in" in filters[0]
    numbers = {int(p.number) for p in a.session(first.id).packets()}
    dns = [s for s in first.steps if s.step == "dns"]
    assert dns and all(s.frame in numbers and s.frame + 1 in numbers for s in dns)
    other = {s.frame for s in second.steps}
    assert not numbers & other


def test_archives_have_no_packets() -> None:
    a = lyncpcap.analyze(SAMPLES / "08-ucwa-mobile-oauth-har.har")
    with pytest.raises(DrilldownError, match="HAR archive: it holds HTTP exchanges, not packets"):
        a.session("s1").packets()


def test_missing_tshark_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    a = lyncpcap.analyze(SAMPLES / "09d-mex-404.pcapng")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DrilldownError, match="apt-get install tshark"):
        a.session("s1").packets()
