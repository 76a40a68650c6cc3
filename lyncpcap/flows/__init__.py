"""From packets to flows: the per-packet loop, TCP reassembly and the UDP hand-off."""

from lyncpcap.flows.dispatch import Connection, Dispatcher, StreamSink, TcpSelector, UdpHandler

__all__ = ["Connection", "Dispatcher", "StreamSink", "TcpSelector", "UdpHandler"]
