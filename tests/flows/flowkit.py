"""Helpers for the flow tests: a sink that records everything, a runner, tshark's view of streams,
and rewriting real TCP segments (sequence numbers, payload slices) to build reassembly cases."""

from __future__ import annotations

import re
import struct
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "read"))  # readkit, shared with tests/read
from readkit import run

from lyncpcap.flows import Connection, Dispatcher
from lyncpcap.read import open_capture


class Recorder:
    """A StreamSink keeping both directions (gaps filled with zero bytes) and every callback."""

    def __init__(self, conn: Connection, direction: int, first: bytes) -> None:
        self.conn = conn
        self.first = (direction, first)
        self.streams = (bytearray(), bytearray())
        self.data_frames: tuple[list[int], list[int]] = ([], [])
        self.gaps: list[tuple[int, int, int]] = []  # (direction, size, frame)
        self.gap_offsets: tuple[list[int], list[int]] = ([], [])  # where in each stream a gap starts
        self.closed: tuple[int, str] | None = None
        self.calls_after_close = 0

    def on_data(self, direction: int, data: bytes, ts: float, frame: int) -> None:
        self.calls_after_close += self.closed is not None
        assert data
        self.streams[direction].extend(data)
        self.data_frames[direction].append(frame)

    def on_gap(self, direction: int, size: int, ts: float, frame: int) -> None:
        self.calls_after_close += self.closed is not None
        assert size > 0
        self.gap_offsets[direction].append(len(self.streams[direction]))
        self.streams[direction].extend(bytes(size))
        self.gaps.append((direction, size, frame))

    def on_close(self, ts: float, frame: int, how: str) -> None:
        self.calls_after_close += self.closed is not None
        self.closed = (frame, how)

    def endpoints(self) -> tuple[str, int, str, int]:
        c = self.conn
        return c.client, c.client_port, c.server, c.server_port


@dataclass
class FlowRun:
    sinks: dict[int, Recorder] = field(default_factory=dict)  # by connection index
    udp: list[tuple[float, int, str, int, str, int, bytes]] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)

    def gap_frames(self) -> list[int]:
        return sorted({g[2] for s in self.sinks.values() for g in s.gaps})

    def by_endpoints(
        self,
    ) -> dict[tuple[str, int, str, int], tuple[bytes, bytes, list[tuple[int, int, int]]]]:
        return {
            s.endpoints(): (bytes(s.streams[0]), bytes(s.streams[1]), s.gaps) for s in self.sinks.values()
        }

    def owner_of_frame(self, frame: int) -> Recorder:
        """The connection whose data was carried by `frame`."""
        owners = [s for s in self.sinks.values() if frame in s.data_frames[0] or frame in s.data_frames[1]]
        assert len(owners) == 1, f"frame {frame} delivered by {len(owners)} connections"
        return owners[0]


def run_flows(path: str | Path, **options: object) -> FlowRun:
    result = FlowRun()

    def select(conn: Connection, direction: int, first: bytes) -> Recorder:
        assert conn.index not in result.sinks
        sink = Recorder(conn, direction, first)
        result.sinks[conn.index] = sink
        return sink

    dispatcher = Dispatcher(select, lambda *datagram: result.udp.append(datagram), **options)  # type: ignore[arg-type]
    with open_capture(path) as cap:
        dispatcher.run(cap)
    result.stats = dispatcher.stats
    result.warnings = dispatcher.warnings
    for sink in result.sinks.values():
        assert sink.calls_after_close == 0
    return result


def tshark_streams(path: str | Path, count: int) -> dict[int, tuple[str, tuple[bytes, bytes]]]:
    """tcp.stream -> (node 0 "addr:port", (node 0's bytes, node 1's bytes)); missing bytes as zeros."""
    if count == 0:
        return {}
    args: list[str | Path] = ["tshark", "-n", "-r", path, "-q"]
    for index in range(count):
        args += ["-z", f"follow,tcp,raw,{index}"]
    out = run(*args)
    streams = {}
    for block in out.split("Follow: tcp,raw")[1:]:
        index = int(re.search(r"Filter: tcp.stream eq (\d+)", block).group(1))  # type: ignore[union-attr]
        node0 = re.search(r"Node 0: (.*)", block).group(1).replace("[", "").replace("]", "")  # type: ignore[union-attr]
        data = (bytearray(), bytearray())
        for line in block.split("Node 1: ", 1)[1].splitlines()[1:]:
            if line.startswith("="):
                break
            chunk = bytes.fromhex(line.strip())
            missing = re.fullmatch(rb"\[(\d+) bytes missing in capture file\]\x00", chunk)
            data[line.startswith("\t")].extend(bytes(int(missing.group(1))) if missing else chunk)
        streams[index] = (node0, (bytes(data[0]), bytes(data[1])))
    return streams


# -- rewriting real TCP segments -------------------------------------------------------------


def tcp_fields(frame: bytes) -> tuple[int, int, int, int]:
    """(IP header offset, TCP header offset, payload offset, seq) of an Ethernet/IPv4/TCP frame."""
    ip = 14
    tcp = ip + (frame[ip] & 15) * 4
    payload = tcp + (frame[tcp + 12] >> 4) * 4
    return ip, tcp, payload, struct.unpack_from("!I", frame, tcp + 4)[0]


def with_seq(frame: bytes, seq: int | None = None, ack: int | None = None) -> bytes:
    _, tcp, _, _ = tcp_fields(frame)
    copy = bytearray(frame)
    if seq is not None:
        struct.pack_into("!I", copy, tcp + 4, seq & 0xFFFFFFFF)
    if ack is not None:
        struct.pack_into("!I", copy, tcp + 8, ack & 0xFFFFFFFF)
    return bytes(copy)


def payload_slice(frame: bytes, start: int, stop: int) -> bytes:
    """The segment carrying only payload bytes [start:stop] (sequence number adjusted)."""
    ip, tcp, payload, seq = tcp_fields(frame)
    data = frame[payload:][start:stop]
    head = bytearray(frame[:payload])
    struct.pack_into("!H", head, ip + 2, payload - ip + len(data))
    struct.pack_into("!I", head, tcp + 4, (seq + start) & 0xFFFFFFFF)
    return bytes(head) + data


def payload_length(frame: bytes) -> int:
    ip, _, payload, _ = tcp_fields(frame)
    return struct.unpack_from("!H", frame, ip + 2)[0] - (payload - ip)
