"""Reading capture files: containers (pcap, pcapng, gzip) and the link/network layers inside them."""

from lyncpcap.read.capture import Capture, Record, open_capture
from lyncpcap.read.layers import Decoder, address_text

__all__ = ["Capture", "Decoder", "Record", "address_text", "open_capture"]
