"""The pyshark contender: iterate a capture with the tshark extraction's display filter and touch
the same fields, the way a script built on pyshark would.  Prints how many packets matched.

    python -m bench.pyshark_iterate CAPTURE
"""

from __future__ import annotations

import sys

#: The display filter of the tshark extraction (bench/run.py), and the fields it prints.
DISPLAY_FILTER = "http || ntlmssp || dns || kerberos || sip"
FIELDS = (
    ("http", "request_method"),
    ("http", "request_uri"),
    ("http", "response_code"),
    ("ntlmssp", "messagetype"),
    ("ntlmssp", "auth_username"),
    ("dns", "qry_name"),
)


def iterate(path: str) -> int:
    import pyshark

    capture = pyshark.FileCapture(path, display_filter=DISPLAY_FILTER, keep_packets=False)
    matched = 0
    try:
        for packet in capture:
            facts = [packet.sniff_timestamp]
            ip = getattr(packet, "ip", None) or getattr(packet, "ipv6", None)
            if ip is not None:
                facts += [ip.src, ip.dst]
            for layer, name in FIELDS:
                if hasattr(packet, layer):
                    facts.append(getattr(getattr(packet, layer), name, None))
            matched += 1
    finally:
        capture.close()
    return matched


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print(iterate(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
