"""TCP reassembly on real connections rearranged in copies: reordering, retransmission, overlap,
sequence wrap-around, mid-stream starts, lost segments, closes, port reuse and damaged headers."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from flowkit import FlowRun, Recorder, payload_length, payload_slice, run_flows, tcp_fields, with_seq
from readkit import CORPUS, ipv4_fragments, read_frames, run, write_frames

from lyncpcap.flows import Connection, Dispatcher, dispatch

TLS = "zeek/tls-1.2-stream-keylog.pcap"  # one connection, 237 frames, SYN to FIN, nothing lost
TLS_CLIENT_PORT = 60679


def _frames(name: str) -> list[tuple[float, bytes]]:
    return [(f[1], f[3]) for f in read_frames(CORPUS / name)]


def _direction(frame: bytes) -> int:
    _, tcp, _, _ = tcp_fields(frame)
    return 0 if struct.unpack_from("!H", frame, tcp)[0] == TLS_CLIENT_PORT else 1


def _write(tmp_path: Path, frames: list[bytes], name: str = "case.pcap", start: float = 1000.0) -> Path:
    """Frames in the given order, time increasing with position."""
    return write_frames(tmp_path / name, [(start + i / 100, f) for i, f in enumerate(frames)], 1)


@pytest.fixture(scope="module")
def tls_run() -> FlowRun:
    result = run_flows(CORPUS / TLS)
    assert list(result.sinks) == [0] and result.sinks[0].gaps == []
    return result


def _only_stream(result: FlowRun) -> tuple[bytes, bytes]:
    assert list(result.sinks) == [0]
    sink = result.sinks[0]
    return bytes(sink.streams[0]), bytes(sink.streams[1])


def _original(tls_run: FlowRun) -> tuple[bytes, bytes]:
    return _only_stream(tls_run)


def test_out_of_order_segments_are_put_back_in_order(tmp_path: Path, tls_run: FlowRun) -> None:
    frames = [f for _, f in _frames(TLS)]
    swapped = 0
    i = 0
    while i < len(frames) - 1:  # swap neighbours of one direction that no ACK of the other separates
        a, b = frames[i], frames[i + 1]
        if _direction(a) == _direction(b) and payload_length(a) and payload_length(b):
            frames[i], frames[i + 1] = b, a
            swapped += 1
            i += 2
        else:
            i += 1
    assert swapped > 40
    result = run_flows(_write(tmp_path, frames))
    assert _only_stream(result) == _original(tls_run)
    assert result.sinks[0].gaps == [] and result.sinks[0].closed is not None
    assert result.sinks[0].closed[1] == "fin"


def test_retransmitted_segments_are_dropped(tmp_path: Path, tls_run: FlowRun) -> None:
    frames = [f for _, f in _frames(TLS)]
    data = [i for i, f in enumerate(frames) if payload_length(f)]
    copies = data[::7]
    out = []
    for i, f in enumerate(frames):
        out.append(f)
        if i - 3 in copies:  # the copy of an earlier segment comes three frames later
            out.append(frames[i - 3])
    result = run_flows(_write(tmp_path, out))
    assert _only_stream(result) == _original(tls_run)
    assert result.stats["tcp.retransmissions"] == len(copies)


def test_overlapping_segments_are_trimmed(tmp_path: Path, tls_run: FlowRun) -> None:
    frames = [f for _, f in _frames(TLS)]
    out = []
    split = 0
    for i, f in enumerate(frames):
        n = payload_length(f)
        if n >= 300 and i % 5 == 0:
            head, tail = payload_slice(f, 0, 2 * n // 3), payload_slice(f, n // 3, n)
            out += [tail, head] if split % 2 else [head, tail]  # every other time, the tail first
            split += 1
        else:
            out.append(f)
    assert split > 10
    result = run_flows(_write(tmp_path, out))
    assert _only_stream(result) == _original(tls_run)
    assert result.stats["tcp.overlaps"] == split


def test_sequence_numbers_wrap_around(tmp_path: Path, tls_run: FlowRun) -> None:
    frames = [f for _, f in _frames(TLS)]
    isn = [tcp_fields(frames[0])[3], tcp_fields(frames[1])[3]]
    shift = [(1 << 32) - 300 - isn[0], (1 << 32) - 5000 - isn[1]]  # both directions cross 2**32 early
    out = []
    for f in frames:
        d = _direction(f)
        _, tcp, _, seq = tcp_fields(f)
        ack = struct.unpack_from("!I", f, tcp + 8)[0]
        out.append(with_seq(f, seq + shift[d], ack + shift[1 - d]))
    path = _write(tmp_path, out)
    result = run_flows(path)
    assert _only_stream(result) == _original(tls_run)

    def analysis(capture: Path) -> str:
        return run(
            "tshark", "-n", "-r", capture, "-Y", "tcp.analysis.flags", "-T", "fields", "-e", "frame.number"
        )

    assert analysis(path) == analysis(
        _write(tmp_path, frames, "unshifted.pcap")
    )  # tshark agrees: nothing odd


def test_capture_starting_mid_stream(tmp_path: Path, tls_run: FlowRun) -> None:
    frames = [f for _, f in _frames(TLS)]
    isn = [tcp_fields(frames[0])[3], tcp_fields(frames[1])[3]]
    rest = frames[20:]
    first_seq = [next(tcp_fields(f)[3] for f in rest if _direction(f) == d) for d in (0, 1)]
    start = [(first_seq[d] - isn[d] - 1) & 0xFFFFFFFF for d in (0, 1)]
    result = run_flows(_write(tmp_path, rest))
    sink = result.sinks[0]
    assert (
        not sink.conn.syn_seen and sink.conn.client_port == TLS_CLIENT_PORT and sink.conn.server_port == 443
    )
    original = _original(tls_run)
    assert _only_stream(result) == (original[0][start[0] :], original[1][start[1] :])
    assert sink.gaps == []


def test_lost_segment_becomes_a_gap_when_the_receiver_acknowledges_past_it(
    tmp_path: Path, tls_run: FlowRun
) -> None:
    frames = [f for _, f in _frames(TLS)]
    assert _direction(frames[6]) == 1 and payload_length(frames[6]) == 1440  # frame 7
    out = frames[:6] + frames[7:]
    result = run_flows(_write(tmp_path, out))
    original = _original(tls_run)
    sink = result.sinks[0]
    assert sink.gaps == [(1, 1440, 7)]  # reported at the segment after the hole, as tshark flags it
    assert bytes(sink.streams[1]) == original[1][:1440] + bytes(1440) + original[1][2880:]
    assert bytes(sink.streams[0]) == original[0]
    assert result.stats["tcp.lost_segments"] == 1 and result.stats["tcp.lost_bytes"] == 1440


def test_hole_nobody_acknowledged_is_declared_at_end_of_capture(tmp_path: Path, tls_run: FlowRun) -> None:
    frames = [f for _, f in _frames(TLS)]
    out = frames[:6] + frames[7:8]  # frames 1-6 and 8: the client never acknowledges
    result = run_flows(_write(tmp_path, out))
    sink = result.sinks[0]
    assert sink.gaps == [(1, 1440, 7)]
    assert sink.closed == (7, "eof")
    assert (
        bytes(sink.streams[1])
        == _original(tls_run)[1][:1440] + bytes(1440) + frames[7][tcp_fields(frames[7])[2] :]
    )


def test_buffer_limit_declares_the_hole(
    tmp_path: Path, tls_run: FlowRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatch, "MAX_SEGMENTS", 3)
    frames = [f for _, f in _frames(TLS)]
    kinds = [(_direction(f), payload_length(f) > 0) for f in frames]
    best = max(
        range(len(frames)),
        key=lambda i: next((n for n in range(len(frames) - i) if kinds[i + n] != (1, True)), 0),
    )
    run_length = next(n for n in range(len(frames) - best) if kinds[best + n] != (1, True))
    assert run_length >= 6
    lost = frames[best]
    out = frames[:best] + frames[best + 1 :]
    result = run_flows(_write(tmp_path, out))
    sink = result.sinks[0]
    assert result.stats["tcp.buffer_overflows"] == 1
    assert sink.gaps == [(1, payload_length(lost), best + 1)]
    original = _original(tls_run)[1]
    assert len(sink.streams[1]) == len(original)
    offset = sink.gap_offsets[1][0]
    assert (
        bytes(sink.streams[1])
        == original[:offset] + bytes(payload_length(lost)) + original[offset + payload_length(lost) :]
    )


# -- connection life ------------------------------------------------------------------------------

KRB = "suricata-verify/kerberoast.pcap"  # SYN, one request and answer, FIN, then an RST


def _reseq(
    frames: list[bytes], client_shift: int, server_shift: int, client_port: int = 49216
) -> list[bytes]:
    out = []
    for f in frames:
        _, tcp, _, seq = tcp_fields(f)
        ack = struct.unpack_from("!I", f, tcp + 8)[0]
        from_client = struct.unpack_from("!H", f, tcp)[0] == client_port
        shifts = (client_shift, server_shift) if from_client else (server_shift, client_shift)
        out.append(with_seq(f, seq + shifts[0], ack + shifts[1]))
    return out


def _tshark_stream_count(path: Path) -> int:
    return len(set(run("tshark", "-n", "-r", path, "-T", "fields", "-e", "tcp.stream").split()))


def test_new_syn_after_close_starts_a_new_connection(tmp_path: Path) -> None:
    frames = [f for _, f in _frames(KRB)]
    path = _write(tmp_path, frames + _reseq(frames, 100_000, 200_000))
    result = run_flows(path)
    assert sorted(result.sinks) == [0, 1] and _tshark_stream_count(path) == 2
    first, second = result.sinks[0], result.sinks[1]
    assert first.streams == second.streams
    assert first.closed == (11, "rst") and second.closed == (22, "rst")
    assert second.conn.first_frame == 12 and second.conn.syn_seen


def test_reused_four_tuple_without_close_and_repeated_syn(tmp_path: Path) -> None:
    frames = [f for _, f in _frames(KRB)]
    again = _reseq(frames, 100_000, 200_000)
    path = _write(tmp_path, [frames[0], frames[0], *frames[1:8], again[0], again[0], *again[1:]])
    result = run_flows(path)
    assert _tshark_stream_count(path) == 2
    assert sorted(result.sinks) == [0, 1]
    assert result.sinks[0].closed == (9, "eof")  # ended by the new SYN, not by FIN or RST
    assert result.sinks[0].streams == result.sinks[1].streams
    assert result.stats["tcp.connections"] == 2


def test_same_syn_again_after_the_reset_is_a_retransmission_like_in_tshark(tmp_path: Path) -> None:
    frames = [f for _, f in _frames(KRB)]
    path = _write(tmp_path, frames + frames[:4])
    result = run_flows(path)
    assert _tshark_stream_count(path) == 1
    assert result.stats["tcp.connections"] == 1 and list(result.sinks) == [0]
    assert result.sinks[0].closed == (11, "rst")


def test_client_and_server_without_a_syn(tmp_path: Path) -> None:
    frames = [f for _, f in _frames(KRB)]
    # The server speaks first in the capture, but port 88 marks it as the server.
    sink = run_flows(_write(tmp_path, frames[5:], "a.pcap")).sinks[0]
    assert (sink.conn.client_port, sink.conn.server_port, sink.conn.syn_seen) == (49216, 88, False)
    assert sink.first == (1, frames[5][tcp_fields(frames[5])[2] :])
    # With two high ports, whoever sends first is taken as the client.
    moved = []
    for f in frames[5:]:
        copy = bytearray(f)
        _, tcp, _, _ = tcp_fields(f)
        for at in (tcp, tcp + 2):
            if struct.unpack_from("!H", copy, at)[0] == 88:
                struct.pack_into("!H", copy, at, 40000)
        moved.append(bytes(copy))
    sink = run_flows(_write(tmp_path, moved, "b.pcap")).sinks[0]
    assert (sink.conn.client_port, sink.conn.server_port) == (40000, 49216)
    assert sink.first[0] == 0


def test_syn_ack_first_makes_its_sender_the_server(tmp_path: Path) -> None:
    frames = [f for _, f in _frames(KRB)]
    moved = []
    for f in frames[1:]:
        copy = bytearray(f)
        _, tcp, _, _ = tcp_fields(f)
        for at in (tcp, tcp + 2):
            if struct.unpack_from("!H", copy, at)[0] == 88:
                struct.pack_into("!H", copy, at, 40000)
        moved.append(bytes(copy))
    sink = run_flows(_write(tmp_path, moved)).sinks[0]
    assert (sink.conn.client_port, sink.conn.server_port, sink.conn.syn_seen) == (49216, 40000, True)


# -- damage, link types, UDP fragments ---------------------------------------------------------------

GSS = "bruteshark/http-ntlm-gssapi.pcap"


def test_damaged_headers_mid_capture_are_counted_and_skipped(tmp_path: Path) -> None:
    frames = [f for _, f in _frames(GSS)]
    original = run_flows(CORPUS / GSS)
    acks = [i for i, f in enumerate(frames) if payload_length(f) == 0 and i > 3]
    damaged = list(frames)

    def patch(i: int, offset: int, value: int) -> None:
        copy = bytearray(damaged[i])
        copy[offset] = value
        damaged[i] = bytes(copy)

    patch(acks[0], 14, 0x65)  # IP version 6 in an IPv4 header
    patch(acks[1], 14, 0x44)  # header length 16 bytes
    patch(acks[2], 14 + 20 + 12, 0x30)  # TCP data offset 12 bytes
    result = run_flows(_write(tmp_path, damaged))
    assert result.stats["skipped.bad_ip_version"] == 1
    assert result.stats["skipped.bad_ip_header"] == 1
    assert result.stats["skipped.bad_tcp_header"] == 1
    assert result.stats["packets"] == 16
    assert result.sinks[0].streams == original.sinks[0].streams  # frames after the damage still count
    assert "1 packet skipped: invalid TCP header" in result.warnings


def test_damaged_data_segment_leaves_a_gap(tmp_path: Path) -> None:
    frames = [f for _, f in _frames(GSS)]
    data = [i for i, f in enumerate(frames) if payload_length(f) > 100 and i + 2 < len(frames)]
    victim = data[1]
    copy = bytearray(frames[victim])
    copy[14] = 0x35
    damaged = [*frames[:victim], bytes(copy), *frames[victim + 1 :]]
    result = run_flows(_write(tmp_path, damaged))
    sink = result.sinks[0]
    assert [g[1] for g in sink.gaps] == [payload_length(frames[victim])]
    assert result.stats["skipped.bad_ip_version"] == 1


def test_unknown_link_type_is_counted_once_per_type(tmp_path: Path) -> None:
    frames = _frames("suricata-verify/dns-srv.pcap")
    path = write_frames(tmp_path / "odd.pcap", frames + frames[:1], 147)
    result = run_flows(path)
    assert result.warnings == ["3 packets with an unknown link type 147 skipped"]
    assert result.stats["skipped.unknown_linktype"] == 3 and result.udp == []


def test_fragmented_kerberos_over_udp_reaches_the_handler(tmp_path: Path) -> None:
    name = "bruteshark/kerberos-v5-udp-3.pcap"
    frames = _frames(name)
    parts = ipv4_fragments(frames[14][1], 256)  # frame 15: the AS-REP
    assert len(parts) >= 4
    timed = [*frames[:14], *((frames[14][0], p) for p in parts), *frames[15:]]
    path = write_frames(tmp_path / "frag.pcap", timed, 1)
    original = run_flows(CORPUS / name)
    result = run_flows(path)
    shift = len(parts) - 1
    assert [d[1] for d in result.udp] == [11, 15 + shift, 16 + shift, 17 + shift]
    assert [d[2:] for d in result.udp] == [d[2:] for d in original.udp]
    kerberos = run(
        "tshark", "-n", "-r", path, "-Y", "kerberos.msg_type == 11", "-T", "fields", "-e", "frame.number"
    )
    assert kerberos.split() == [str(15 + shift)]
    assert result.stats["ip.reassembled"] == 1


# -- bounded memory ---------------------------------------------------------------------------------


def test_connection_table_stays_bounded_over_a_long_capture(monkeypatch: pytest.MonkeyPatch) -> None:
    """20,000 ignored connections over an hour and a half: closed, idle and SYN-only ones are all forgotten."""
    monkeypatch.setattr(dispatch, "HOUSEKEEPING_EVERY", 1024)  # look every 1024 packets, not 65536
    frames = [f for _, f in _frames(KRB)]
    offered = []
    dispatcher = Dispatcher(lambda conn, d, first: offered.append(conn.index), lambda *a: None)
    feed = dispatcher.feed
    frame_no = 0
    sizes = []
    for k in range(20000):
        kind = k % 3  # 0: full connection with FIN/RST, 1: no close (idle), 2: SYN only (a scan)
        chosen = frames if kind == 0 else frames[:8] if kind == 1 else frames[:1]
        port = struct.pack("!H", 1024 + k % 60000)
        host = bytes([10, 9, k >> 8 & 255, k & 255])
        for f in chosen:
            copy = bytearray(f)
            _, tcp, _, _ = tcp_fields(f)
            if struct.unpack_from("!H", f, tcp)[0] == 49216:
                copy[tcp : tcp + 2] = port
                copy[26:30] = host
            else:
                copy[tcp + 2 : tcp + 4] = port
                copy[30:34] = host
            frame_no += 1
            feed(frame_no, 1_600_000_000 + k * 0.27, 1, bytes(copy), len(copy))
        if k % 2000 == 1999:
            sizes.append(dispatcher.stats["tcp.table_entries"])
    dispatcher.finish()
    stats = dispatcher.stats
    assert stats["tcp.connections"] == 20000
    assert len(offered) == 2 * 20000 // 3 + 1  # every connection that carried payload
    assert stats["tcp.table_evictions"] > 30000
    assert max(sizes) < 6000, sizes  # without eviction it would reach 40,000
    assert sizes[-1] <= sizes[4] + 2000


def test_a_decoded_connection_whose_end_was_not_captured_is_closed_once_long_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    """3,000 connections carrying payload over four hours, a third without FIN or RST (a NAT that
    forgot them, a close lost to the capture): each such one is closed ("eof") once silent for
    ACTIVE_IDLE seconds, its sink told then, and the table holds only the live ones."""
    monkeypatch.setattr(dispatch, "HOUSEKEEPING_EVERY", 256)
    frames = [f for _, f in _frames(KRB)]
    sinks: dict[int, Recorder] = {}

    def select(conn: Connection, d: int, first: bytes) -> Recorder:
        sinks[conn.index] = Recorder(conn, d, first)
        return sinks[conn.index]

    dispatcher = Dispatcher(select, lambda *a: None)
    frame_no = 0
    sizes = []
    closed_before_end: set[int] = set()
    for k in range(3000):
        chosen = frames[:8] if k % 3 == 1 else frames
        port = struct.pack("!H", 1024 + k)
        for f in chosen:
            copy = bytearray(f)
            _, tcp, _, _ = tcp_fields(f)
            if struct.unpack_from("!H", f, tcp)[0] == 49216:
                copy[tcp : tcp + 2] = port
            else:
                copy[tcp + 2 : tcp + 4] = port
            frame_no += 1
            dispatcher.feed(frame_no, 1_600_000_000 + k * 4.8, 1, bytes(copy), len(copy))
        if k % 300 == 299:
            sizes.append(dispatcher.stats["tcp.table_entries"])
    closed_before_end = {i for i, s in sinks.items() if s.closed is not None}
    dispatcher.finish()
    unclosed = [i for i, s in sinks.items() if s.closed is not None and i not in closed_before_end]
    assert len(sinks) == 3000
    # the silent third, but for those of the last ACTIVE_IDLE seconds, were closed as "eof" on the way
    silent = [s for s in sinks.values() if s.conn.index % 3 == 1]
    assert sum(s.closed is not None and s.closed[1] == "eof" for s in silent) == len(silent)
    assert len(unclosed) < 1000 * (dispatch.ACTIVE_IDLE + 2 * dispatch.SWEEP_SECONDS) / (3000 * 4.8) + 5
    assert max(sizes) < 1200, sizes  # without it the silent connections' 2,000 keys would stay
    assert all(s.calls_after_close == 0 for s in sinks.values())


def test_run_and_feed_agree(tmp_path: Path) -> None:
    got: list[tuple[int, bytes]] = []
    direct = Dispatcher(lambda conn, d, first: None, lambda *a: got.append((a[1], a[6])))
    for frame, ts, linktype, data, wirelen in read_frames(CORPUS / "zeek/erspan.pcap"):
        direct.feed(frame, ts, linktype, data, wirelen)
    direct.finish()
    via_run = run_flows(CORPUS / "zeek/erspan.pcap")
    assert got == [(d[1], d[6]) for d in via_run.udp]
    assert direct.stats["packets"] == via_run.stats["packets"] == 287
    assert direct.stats["ipv4"] == via_run.stats["ipv4"]
