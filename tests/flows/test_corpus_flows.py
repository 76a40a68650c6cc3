"""The dispatcher on the corpus: streams, connection indices, gaps and UDP datagrams against tshark."""

from __future__ import annotations

from pathlib import Path

import pytest
from flowkit import FlowRun, Recorder, run_flows, tshark_streams
from readkit import CORPUS, corpus_names, expected, run

from lyncpcap.flows import Connection, Dispatcher
from lyncpcap.read import open_capture

TCP_FILES = [n for n in corpus_names() if expected()[n]["protocol_frame_counts"].get("tcp")]


@pytest.fixture(scope="module")
def runs() -> dict[str, FlowRun]:
    return {name: run_flows(CORPUS / name) for name in corpus_names()}


def _streams_by_direction(sink: Recorder, node0: str, streams: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    """tshark's (node 0, node 1) streams as (client->server, server->client) of our connection."""
    client = f"{sink.conn.client}:{sink.conn.client_port}"
    return streams if node0 == client else (streams[1], streams[0])


@pytest.mark.parametrize("name", TCP_FILES)
def test_streams_equal_tshark_follow(name: str, runs: dict[str, FlowRun]) -> None:
    """Every reassembled stream, gaps included, is what `tshark -z follow,tcp,raw` shows for the
    same tcp.stream index, except where we deliberately do more or less than tshark:
    - at the end of the capture a hole nobody acknowledged is declared and the data behind it
      delivered (tshark's follow drops that data);
    - data that arrives after an RST is not delivered (the connection is over)."""
    result = runs[name]
    theirs = tshark_streams(CORPUS / name, result.stats["tcp.connections"])
    assert len(theirs) == result.stats["tcp.connections"]
    for index, (node0, streams) in theirs.items():
        sink = result.sinks.get(index)
        if sink is None:  # never carried payload, so never offered to the selector
            assert streams == (b"", b"")
            continue
        want = _streams_by_direction(sink, node0, streams)
        for direction in (0, 1):
            mine = bytes(sink.streams[direction])
            if mine == want[direction]:
                continue
            if len(mine) > len(want[direction]):
                assert mine.startswith(want[direction])
                assert len(want[direction]) in sink.gap_offsets[direction]
                assert sink.closed is not None and sink.closed[1] == "eof"
            else:
                assert want[direction].startswith(mine)
                assert sink.closed is not None and sink.closed[1] == "rst"


@pytest.mark.parametrize("name", TCP_FILES)
def test_connection_index_is_tsharks_tcp_stream(name: str, runs: dict[str, FlowRun]) -> None:
    facts = expected()[name]
    pairs = [(r["frame"], r["tcp_stream"]) for r in facts["http_requests"] + facts["tls_client_hellos"]]
    for frame, stream in pairs:
        if stream is not None:
            assert runs[name].owner_of_frame(frame).conn.index == stream, frame


@pytest.mark.parametrize("name", TCP_FILES)
def test_gaps_are_where_tshark_saw_lost_segments(name: str, runs: dict[str, FlowRun]) -> None:
    result = runs[name]
    lost = expected()[name]["tcp_lost_segment_frames"]
    if name == "ndpi/teams.pcap":
        # tshark flags each hole when it appears; here every hole is filled by a retransmission
        # a few frames later, so the streams are complete and no gap is declared.
        assert lost and result.gap_frames() == []
        assert result.stats["tcp.retransmissions"] > 0
    else:
        assert result.gap_frames() == lost
        assert result.stats["tcp.lost_segments"] >= len(lost)


def test_gap_warning_counts_the_missing_bytes(runs: dict[str, FlowRun]) -> None:
    assert "18 gaps in TCP streams (556355 bytes not captured)" in runs["bruteshark/http-ntlm.pcap"].warnings
    assert runs["ndpi/teams.pcap"].warnings == []


@pytest.mark.parametrize("name", [n for n in TCP_FILES if expected()[n]["http_requests"]])
def test_http_requests_appear_in_order_in_client_streams(name: str, runs: dict[str, FlowRun]) -> None:
    requests: dict[int, list[bytes]] = {}
    for r in expected()[name]["http_requests"]:
        requests.setdefault(r["tcp_stream"], []).append(f"{r['method']} {r['uri']} HTTP/1.".encode())
    for stream, lines in requests.items():
        client = bytes(runs[name].sinks[stream].streams[0])
        position = 0
        for line in lines:
            found = client.find(line, position)
            assert found >= 0, (stream, line)
            position = found + len(line)
        assert client.count(b" HTTP/1.1\r\n") == len(lines)


def test_erspan_requests_reach_the_sink(runs: dict[str, FlowRun]) -> None:
    sink = runs["zeek/erspan.pcap"].sinks[0]
    assert (sink.conn.client, sink.conn.server, sink.conn.server_port) == (
        "192.168.69.10",
        "192.168.69.2",
        80,
    )
    assert sink.conn.syn_seen and sink.conn.first_frame == 97
    wanted = [
        r for r in expected()["zeek/erspan.pcap"]["http_requests"] if r["tcp_stream"] == 0 and r["uri"] == "/"
    ]
    assert bytes(sink.streams[0]).count(b"GET / HTTP/1.1\r\n") == len(wanted) == 2
    assert 100 in sink.data_frames[0] and 102 in sink.data_frames[0]
    assert sink.closed is not None


def _udp_frames_expected(name: str) -> list[int]:
    facts = expected()[name]
    frames = {d["frame"] for d in facts["dns"]}
    frames |= {k["frame"] for k in facts["kerberos"] if k["transport"] == "udp"}
    frames |= {s["frame"] for s in facts["sip"]} if name != "suricata-verify/sip-tcp.pcap" else set()
    return sorted(frames)


@pytest.mark.parametrize("name", corpus_names())
def test_udp_handler_gets_dns_kerberos_and_sip_datagrams(name: str, runs: dict[str, FlowRun]) -> None:
    got = runs[name].udp
    assert [d[1] for d in got] == _udp_frames_expected(name)
    if got:
        rows = run(
            "tshark",
            "-n",
            "-r",
            CORPUS / name,
            "-Y",
            "udp.port in {53, 88, 5060}",
            "-T",
            "fields",
            "-E",
            "occurrence=l",
            "-e",
            "frame.number",
            "-e",
            "udp.srcport",
            "-e",
            "udp.dstport",
            "-e",
            "udp.payload",
        ).split("\n")
        theirs = {
            int(f): (int(s), int(d), bytes.fromhex(p)) for f, s, d, p in (r.split("\t") for r in rows if r)
        }
        assert {d[1]: (d[3], d[5], d[6]) for d in got} == theirs


@pytest.mark.parametrize("name", ["zeek/erspan.pcap", "ndpi/teams.pcap", "arkime/ntlm_synthetic.pcap"])
def test_every_udp_datagram_when_no_port_filter(name: str) -> None:
    result = run_flows(CORPUS / name, udp_ports=None)
    rows = run(
        "tshark",
        "-n",
        "-r",
        CORPUS / name,
        "-Y",
        "udp and not icmp and not icmpv6",
        "-T",
        "fields",
        "-e",
        "frame.number",
    ).split()
    assert [d[1] for d in result.udp] == [int(r) for r in rows]


def test_port_prefilter_offers_only_matching_connections_with_the_same_indices(
    runs: dict[str, FlowRun],
) -> None:
    full = runs["arkime/ntlm_synthetic.pcap"]
    web = run_flows(CORPUS / "arkime/ntlm_synthetic.pcap", tcp_ports=frozenset({80}))
    assert web.sinks
    assert {i for i, s in full.sinks.items() if 80 in (s.conn.server_port, s.conn.client_port)} == set(
        web.sinks
    )
    for index, sink in web.sinks.items():
        assert sink.conn == full.sinks[index].conn
        assert sink.streams == full.sinks[index].streams
    assert web.stats["tcp.connections"] == full.stats["tcp.connections"] == 14


class _OneShot:
    """Takes the first bytes of a connection, then says it is done."""

    def __init__(self) -> None:
        self.calls = 0
        self.done = False

    def on_data(self, direction: int, data: bytes, ts: float, frame: int) -> None:
        self.calls += 1
        self.done = True

    def on_gap(self, direction: int, size: int, ts: float, frame: int) -> None:
        self.calls += 1

    def on_close(self, ts: float, frame: int, how: str) -> None:
        self.calls += 1


def test_a_done_sink_hears_nothing_more() -> None:
    sinks: list[_OneShot] = []

    def select(conn: Connection, direction: int, first: bytes) -> _OneShot:
        sinks.append(_OneShot())
        return sinks[-1]

    dispatcher = Dispatcher(select, lambda *a: None)
    with open_capture(CORPUS / "zeek/tls-1.2-stream-keylog.pcap") as cap:
        dispatcher.run(cap)
    assert len(sinks) == 1 and sinks[0].calls == 1
    assert dispatcher.stats["tcp"] == 237


def test_progress_reports_file_positions(tmp_path: Path) -> None:
    big = tmp_path / "big.pcap"
    data = (CORPUS / "ndpi/teams.pcap").read_bytes()
    big.write_bytes(data + data[24:] * 50)  # 78540 frames: one report mid-way, one at the end
    seen: list[int] = []
    dispatcher = Dispatcher(lambda c, d, f: None, lambda *a: None)
    with open_capture(big) as cap:
        dispatcher.run(cap, seen.append)
    assert len(seen) == 2 and 0 < seen[0] < seen[1] == big.stat().st_size
    assert dispatcher.stats["packets"] == 51 * 1540
