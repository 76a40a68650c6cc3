"""The same packets in other containers, link layers and tunnels give the same streams."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pytest
from flowkit import FlowRun, run_flows
from readkit import (
    CORPUS,
    big_endian_pcap,
    erspan2,
    erspan3,
    ipv4_with_options,
    read_frames,
    run,
    sll,
    sll2,
    vlan,
    write_frames,
)

SOURCES = [
    "zeek/erspan.pcap",  # already in GRE, with IP fragments and lost segments
    "bruteshark/http-ntlm.pcap",  # no SYNs, many lost segments
    "ndpi/webdav.pcap",  # pcapng
    "arkime/ntlm_synthetic.pcap",  # IPv4 and IPv6
    "bruteshark/kerberos-v5-udp-3.pcap",  # UDP Kerberos
    "ndpi/teams.pcap",  # retransmissions, RSTs, DNS
]


@pytest.fixture(scope="module")
def originals() -> dict[str, FlowRun]:
    return {name: run_flows(CORPUS / name) for name in SOURCES}


def _same(a: FlowRun, b: FlowRun) -> None:
    assert set(a.sinks) == set(b.sinks)
    for index, sink in a.sinks.items():
        other = b.sinks[index]
        assert sink.conn == other.conn
        assert sink.streams == other.streams
        assert sink.gaps == other.gaps
        assert sink.closed == other.closed
    assert [d[1:] for d in a.udp] == [d[1:] for d in b.udp]
    assert a.stats["tcp.connections"] == b.stats["tcp.connections"]


def _rewrapped(name: str, tmp_path: Path, wrap: Callable[[bytes], bytes], linktype: int) -> Path:
    frames = read_frames(CORPUS / name)
    return write_frames(tmp_path / "wrapped.pcap", [(f[1], wrap(f[3])) for f in frames], linktype)


@pytest.mark.parametrize("name", SOURCES)
@pytest.mark.parametrize("filetype", ["pcap", "nsecpcap", "pcapng"])
def test_container_formats(name: str, filetype: str, tmp_path: Path, originals: dict[str, FlowRun]) -> None:
    out = tmp_path / "variant"
    run("editcap", "-F", filetype, CORPUS / name, out)
    _same(run_flows(out), originals[name])


@pytest.mark.parametrize("name", SOURCES)
def test_gzip_and_big_endian(name: str, tmp_path: Path, originals: dict[str, FlowRun]) -> None:
    packed = tmp_path / "c.gz"
    packed.write_bytes(gzip.compress((CORPUS / name).read_bytes()))
    _same(run_flows(packed), originals[name])
    if name != "ndpi/webdav.pcap":
        swapped = tmp_path / "be.pcap"
        big_endian_pcap(CORPUS / name, swapped)
        _same(run_flows(swapped), originals[name])


WRAPPINGS: dict[str, tuple[Callable[[bytes], bytes], int]] = {
    "sll": (sll, 113),
    "sll2": (sll2, 276),
    "ip-options": (ipv4_with_options, 1),
    "802.1q": (lambda f: vlan(f, 0x8100), 1),
    "qinq": (lambda f: vlan(f, 0x88A8, 0x8100), 1),
    "erspan2": (lambda f: erspan2(f, 7), 1),
    "erspan3": (lambda f: erspan3(f, 7, subheader=True), 1),
}


@pytest.mark.parametrize("name", SOURCES)
@pytest.mark.parametrize("wrapping", sorted(WRAPPINGS))
def test_link_layers_and_tunnels(
    name: str, wrapping: str, tmp_path: Path, originals: dict[str, FlowRun]
) -> None:
    wrap, linktype = WRAPPINGS[wrapping]
    _same(run_flows(_rewrapped(name, tmp_path, wrap, linktype)), originals[name])


def test_two_sections_in_one_file(tmp_path: Path, originals: dict[str, FlowRun]) -> None:
    a = tmp_path / "a.pcapng"
    b = tmp_path / "b.pcapng"
    run("editcap", "-F", "pcapng", CORPUS / "zeek/erspan.pcap", a)
    run("editcap", "-F", "pcapng", CORPUS / "bruteshark/kerberos-v5-udp-3.pcap", b)
    joined = tmp_path / "joined.pcapng"
    joined.write_bytes(a.read_bytes() + b.read_bytes())
    both = run_flows(joined)
    first = originals["zeek/erspan.pcap"]
    second = originals["bruteshark/kerberos-v5-udp-3.pcap"]
    offset = first.stats["tcp.connections"]
    assert both.stats["tcp.connections"] == offset + second.stats["tcp.connections"]
    for index, sink in first.sinks.items():
        assert both.sinks[index].streams == sink.streams
    for index, sink in second.sinks.items():
        assert both.sinks[index + offset].streams == sink.streams
        assert [f + 287 for f in sink.data_frames[0]] == both.sinks[index + offset].data_frames[0]
    assert [d[1] for d in both.udp] == [d[1] for d in first.udp] + [d[1] + 287 for d in second.udp]


@pytest.mark.parametrize(
    "name", ["bruteshark/http-ntlm.pcap", "arkime/ntlm_synthetic.pcap", "ndpi/teams.pcap"]
)
def test_snaplen_cut_payload_becomes_gaps(name: str, tmp_path: Path, originals: dict[str, FlowRun]) -> None:
    cut = tmp_path / "s80.pcap"
    run("editcap", "-F", "pcap", "-s", "80", CORPUS / name, cut)
    short = run_flows(cut)
    full = originals[name]
    assert set(short.sinks) == set(full.sinks)
    assert short.stats["tcp.truncated_bytes"] > 0
    for index, sink in full.sinks.items():
        got = short.sinks[index]
        assert got.conn == sink.conn
        for direction in (0, 1):
            mine, whole = bytes(got.streams[direction]), bytes(sink.streams[direction])
            assert len(mine) == len(whole)  # every byte is there, or accounted for by a gap
            known = [i for i, b in enumerate(mine) if b]
            assert all(mine[i] == whole[i] for i in known)
    assert any("cut by the snapshot length" in w for w in short.warnings)
