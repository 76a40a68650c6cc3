"""One worker's share of a capture when several processes analyse it together (`lyncpcap.parallel`).

Traffic is shared out by the address of its client: every TCP connection and UDP datagram goes
to the worker that owns the client side's address, so all of one client's connections, DNS
lookups and Kerberos exchanges — what the classifiers pair up with each other — are decoded by
the same worker.  Every worker still reads every frame (frame numbers, connection numbers and the
reader's counts stay those of the whole capture); a connection of another worker becomes an
ignored entry of the connection table at its first packet, which the reader's prefilter then
drops like any uninteresting connection.

`position` is where the worker is in the capture, for ordering what the workers emit: the frame
being processed, a housekeeping pass just before frame F is F - 0.5, the end of the capture inf.
"""

from __future__ import annotations

import math
import zlib

__all__ = ["Partition"]


class Partition:
    """Worker `index` of `count`: owns the client addresses whose CRC-32 is `index` modulo `count`."""

    __slots__ = ("count", "index", "position")

    def __init__(self, index: int, count: int) -> None:
        if not 0 <= index < count:
            raise ValueError(f"worker {index} of {count}")
        self.index = index
        self.count = count
        self.position = -math.inf

    def owns(self, client: bytes) -> bool:
        """`client`: the raw (4- or 16-byte) address of a connection's or datagram's client side."""
        return zlib.crc32(client) % self.count == self.index

    def __repr__(self) -> str:
        return f"Partition({self.index}, {self.count})"
