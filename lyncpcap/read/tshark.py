"""TLS decryption through tshark: find it, check its version, and run it over a capture.

Wireshark's TLS implementation (1.0–1.3, key logs, embedded Decryption Secrets Blocks, RSA keys) is
the reference, so lyncpcap does not decrypt anything itself.  One tshark pass exports the plaintext
of every decrypted TLS record as Wireshark "exported PDUs" (`-U "OSI layer 7"`) into a temporary
pcapng, with addresses, ports and the original frame number in each PDU's tags (`read/pdu.py`); it
runs beside lyncpcap's own read of the capture, and its output is decoded while it is written.
Application-data desegmentation is switched off so each record is exported exactly once, and every
TLS port is decoded as plain data so no HTTP/SIP dissection of the plaintext is paid for.
Plaintext analysis never runs tshark.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import struct
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from lyncpcap.errors import LyncpcapError
from lyncpcap.protocols import tls

__all__ = [
    "INSTALL_HINT",
    "MIN_VERSION",
    "SPEED_OPTIONS",
    "TLS13_CLIENT",
    "TLS13_SERVER",
    "TLS_KEY_LOG_SECRETS",
    "ExportRun",
    "KeyLog",
    "RsaKey",
    "ServerHello",
    "Tshark",
    "TsharkCheck",
    "TsharkUnavailable",
    "find_tshark",
    "key_options",
    "server_hellos",
    "suite_text",
    "undecrypted_reason",
]

#: tshark 3.0 renamed the ssl.* preferences to tls.* and reads Decryption Secrets Blocks.
MIN_VERSION = (3, 0, 0)
INSTALL_HINT = "install it with: apt-get install tshark"
#: pcapng Decryption Secrets Block type of an NSS key log
TLS_KEY_LOG_SECRETS = 0x544C534B
EXPORT_TAP = "OSI layer 7"
_VERSION = re.compile(r"TShark \(Wireshark\) (\d+)\.(\d+)\.(\d+)")
#: NSS key-log labels that let tshark decrypt application data (TLS ≤ 1.2, TLS 1.3 per direction)
TLS12_SECRET = "CLIENT_RANDOM"
TLS13_CLIENT = "CLIENT_TRAFFIC_SECRET_0"
TLS13_SERVER = "SERVER_TRAFFIC_SECRET_0"


class TsharkUnavailable(LyncpcapError):
    """tshark is needed (keys were given or embedded) but is missing, too old or unusable."""


@dataclass(frozen=True, slots=True)
class Tshark:
    path: str
    version: tuple[int, int, int]

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


def find_tshark() -> Tshark:
    """The tshark on PATH, checked to be recent enough; `TsharkUnavailable` (one line, with the
    install command) otherwise."""
    return TsharkCheck().result()


class TsharkCheck:
    """Finds tshark and starts `tshark -v` at once, judging the answer only when `result()` is
    asked for: tshark needs a fifth of a second just to start, so the caller starts its real run
    meanwhile (on another core) instead of waiting for the version first.  A tshark already
    checked (same path, same modification time) is not run again."""

    def __init__(self) -> None:
        path = shutil.which("tshark")
        if path is None:
            raise TsharkUnavailable(f"TLS decryption needs tshark, which is not on PATH; {INSTALL_HINT}")
        try:
            stat = os.stat(path)
        except OSError as exc:
            raise TsharkUnavailable(f"cannot run tshark ({path}: {exc.strerror}); {INSTALL_HINT}") from None
        self.path = path
        self._key = (path, stat.st_mtime_ns)
        self._proc: subprocess.Popen[str] | None = None
        if self._key not in _CHECKED:
            try:
                self._proc = subprocess.Popen(
                    [path, "-v"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
            except OSError as exc:
                raise TsharkUnavailable(f"cannot run tshark ({path}: {exc}); {INSTALL_HINT}") from None

    def result(self) -> Tshark:
        known = _CHECKED.get(self._key)
        if known is not None:
            return known
        assert self._proc is not None
        try:
            out, _ = self._proc.communicate(timeout=60)
        except subprocess.TimeoutExpired as exc:
            self._proc.kill()
            self._proc.wait()
            raise TsharkUnavailable(f"cannot run tshark ({self.path}: {exc}); {INSTALL_HINT}") from None
        m = _VERSION.search(out or "")
        if m is None:
            raise TsharkUnavailable(f"{self.path} does not say which tshark version it is; {INSTALL_HINT}")
        version = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
        if version < MIN_VERSION:
            need = ".".join(map(str, MIN_VERSION))
            have = ".".join(map(str, version))
            raise TsharkUnavailable(f"tshark {have} is too old to decrypt TLS (lyncpcap needs {need} or later); {INSTALL_HINT}")
        _CHECKED[self._key] = found = Tshark(self.path, version)
        return found


#: tshark binaries checked in this process: (path, mtime) → what they are
_CHECKED: dict[tuple[str, int], Tshark] = {}


# ------------------------------------------------------------------------------------------------
# key material
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RsaKey:
    """A server's RSA private key (PEM or PKCS#8, unencrypted), optionally for one server address
    and port.  Command-line form: `FILE`, `FILE@ADDRESS`, `FILE@ADDRESS:PORT`, `FILE@[IPv6]:PORT`."""

    path: Path
    address: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, spec: str) -> RsaKey:
        """Raises ValueError with a one-line reason for a malformed spec."""
        if "@" not in spec or Path(spec).exists():
            return cls(Path(spec))
        file, _, where = spec.rpartition("@")
        if not file:
            raise ValueError(f"{spec!r}: no key file before '@'")
        port: int | None = None
        if where.startswith("["):
            host, sep, rest = where[1:].partition("]")
            if not sep:
                raise ValueError(f"{spec!r}: unclosed '[' in the address")
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"{spec!r}: expected ':PORT' after ']'")
                port = _port(rest[1:], spec)
        elif where.count(":") == 1:
            host, _, p = where.partition(":")
            port = _port(p, spec)
        else:
            host = where
        try:
            address = str(ipaddress.ip_address(host))
        except ValueError:
            raise ValueError(f"{spec!r}: {host!r} is not an IP address") from None
        return cls(Path(file), address, port)

    def __str__(self) -> str:
        if self.address is None:
            return str(self.path)
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.path}@{host}" + (f":{self.port}" if self.port is not None else "")


def _port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{spec!r}: {text!r} is not a port number")
    return int(text)


@dataclass(slots=True)
class KeyLog:
    """Which client randoms an NSS key log (files and embedded secrets together) holds secrets for."""

    labels: dict[str, set[str]] = field(default_factory=dict)  # client random (hex) → labels
    rsa_lines: int = 0  # "RSA <encrypted pre-master> <pre-master>" lines: keyed otherwise

    def add_text(self, text: str) -> None:
        for line in text.splitlines():
            parts = line.split()
            if len(parts) != 3 or parts[0].startswith("#"):
                continue
            label, ident = parts[0], parts[1].lower()
            if label == "RSA":
                self.rsa_lines += 1
            elif len(ident) == 64:
                self.labels.setdefault(ident, set()).add(label)

    @classmethod
    def load(cls, keylog: Path | None, secrets: Iterable[tuple[int, bytes]] = ()) -> KeyLog:
        out = cls()
        if keylog is not None:
            out.add_text(keylog.read_text(encoding="ascii", errors="replace"))
        for stype, blob in secrets:
            if stype == TLS_KEY_LOG_SECRETS:
                out.add_text(bytes(blob).decode("ascii", "replace"))
        return out

    def __bool__(self) -> bool:
        return bool(self.labels) or bool(self.rsa_lines)

    def missing(self, client_random: str, tls13: bool) -> list[str]:
        """The labels a connection with this client random would need but the key log lacks."""
        have = self.labels.get(client_random.lower(), set())
        need = (TLS13_CLIENT, TLS13_SERVER) if tls13 else (TLS12_SECRET,)
        return [n for n in need if n not in have]


# ------------------------------------------------------------------------------------------------
# running tshark
# ------------------------------------------------------------------------------------------------


def _uat_field(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def key_options(keylog: Path | None, rsa_keys: Sequence[RsaKey]) -> list[str]:
    """tshark `-o` options for a key log file and RSA keys (embedded secrets need none)."""
    opts: list[str] = []
    if keylog is not None:
        opts += ["-o", f"tls.keylog_file:{keylog}"]
    for key in rsa_keys:
        if key.address is None:
            opts += ["-o", f"uat:rsa_keys:{_uat_field(str(key.path))},{_uat_field('')}"]
        else:
            port = "0" if key.port is None else str(key.port)
            fields = [key.address, port, "data", str(key.path), ""]
            opts += ["-o", "uat:ssl_keys:" + ",".join(_uat_field(f) for f in fields)]
    return opts


#: The heuristic HTTP (and HTTP/2) dissectors would still look at every decrypted record; their
#: names are those of tshark 4.0, and a tshark that does not know them is run without (ExportRun).
SPEED_OPTIONS = ("--disable-heuristic", "http_tls", "--disable-heuristic", "http2_tls")


def export_command(
    tshark: Tshark | TsharkCheck, capture: Path, output: Path, keylog: Path | None, rsa_keys: Sequence[RsaKey], *, fast: bool = True
) -> list[str]:
    return [
        tshark.path,
        "-n",
        "-Q",
        "-r",
        str(capture),
        *key_options(keylog, rsa_keys),
        # one exported PDU per decrypted record, never a record again inside a reassembled PDU
        "-o",
        "tls.desegment_ssl_application_data:FALSE",
        # every TLS port to plain data: PDUs are exported for any port and no HTTP/SIP parsing of the
        # plaintext is paid; HTTP itself stays on for TLS inside proxy CONNECT tunnels
        "-d",
        "tls.port==1-65535,data",
        "--disable-protocol",
        "sip",
        *(SPEED_OPTIONS if fast else ()),
        "-U",
        EXPORT_TAP,
        "-w",
        str(output),
    ]


def _stderr_problem(text: str) -> str | None:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Running as user")]
    return lines[-1] if lines else None


class ExportRun:
    """One tshark export pass, started at once and running beside lyncpcap's own read.

    `frames()` yields the exported-PDU frames while tshark is still writing them (so decoding
    overlaps the end of its pass); `wait()` gives its complaint, if any, once it has exited;
    `cancel()` stops it when no TLS turned out to need it."""

    POLL = 0.005  # seconds between looks at a file tshark has not finished

    def __init__(self, tshark: Tshark | TsharkCheck, capture: Path, workdir: Path, keylog: Path | None, rsa_keys: Sequence[RsaKey]) -> None:
        self.output = workdir / "decrypted-pdus.pcapng"
        self._stderr_path = workdir / "tshark.stderr"
        self._args = (tshark, capture, self.output, keylog, tuple(rsa_keys))
        self.damaged: str | None = None  # set when the output ended inside a block
        self._launch(fast=True)

    def _launch(self, *, fast: bool) -> None:
        self.fast = fast
        self.command = export_command(*self._args[:4], self._args[4], fast=fast)
        with open(self._stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )

    def running(self) -> bool:
        return self.proc.poll() is None

    def frames(self) -> Iterator[tuple[int, float, int, bytes]]:
        """(frame number, timestamp, link type, bytes) of every packet block tshark writes."""
        while not self.output.exists():
            if not self.running():
                if self.fast and self.proc.returncode and "can't disable" in self._stderr():
                    self._launch(fast=False)  # a tshark that names its heuristics otherwise
                    continue
                return
            time.sleep(self.POLL)
        with open(self.output, "rb") as f:
            yield from _follow_pcapng(f, self.running, self.POLL, self)

    def wait(self) -> str | None:
        """tshark's complaint (exit status and last stderr line), or None when it ended well."""
        code = self.proc.wait()
        if code == 0:
            return self.damaged
        return f"tshark exited with status {code}: {_stderr_problem(self._stderr()) or 'no message'}"

    def _stderr(self) -> str:
        return self._stderr_path.read_text(errors="replace") if self._stderr_path.exists() else ""

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


_BT_SHB, _BT_IDB, _BT_EPB = 0x0A0D0D0A, 0x00000001, 0x00000006


def _follow_pcapng(
    f: BinaryIO, running: Callable[[], bool], poll: float, run: ExportRun
) -> Iterator[tuple[int, float, int, bytes]]:
    """Blocks of a pcapng file another process is still appending to: a block is taken once all of
    it is there; at the end of the file we wait while the writer runs.  Only what tshark's export
    writes is needed: section headers, interfaces (link type, if_tsresol) and enhanced packets."""
    buf = bytearray()
    order = "<"
    interfaces: list[tuple[int, float]] = []  # (link type, seconds per timestamp unit)
    frame = 0
    finished = False
    while True:
        chunk = f.read(1 << 20)
        if chunk:
            buf += chunk
        elif finished:
            break
        else:
            # read once more after the writer is gone: its last write may have landed meanwhile
            finished = not running()
            if not finished:
                time.sleep(poll)
            continue
        pos = 0
        while len(buf) - pos >= 12:
            if buf[pos : pos + 4] == b"\x0a\x0d\x0d\x0a":
                order = "<" if buf[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            btype, blen = struct.unpack_from(order + "II", buf, pos)
            if blen < 12 or blen % 4:
                run.damaged = f"tshark's decrypted output is damaged (block of {blen} bytes)"
                return
            if len(buf) - pos < blen:
                break
            if btype == _BT_SHB:
                interfaces = []
            elif btype == _BT_IDB:
                interfaces.append(_interface(buf, pos, blen, order))
            elif btype == _BT_EPB and blen >= 32:
                ifid, high, low, caplen = struct.unpack_from(order + "IIII", buf, pos + 8)
                if ifid < len(interfaces) and caplen <= blen - 32:
                    linktype, unit = interfaces[ifid]
                    frame += 1
                    yield frame, ((high << 32) | low) * unit, linktype, bytes(buf[pos + 28 : pos + 28 + caplen])
            pos += blen
        del buf[:pos]
    if buf:
        run.damaged = "tshark's decrypted output ends inside a block"


def _interface(buf: bytearray, pos: int, blen: int, order: str) -> tuple[int, float]:
    linktype = struct.unpack_from(order + "H", buf, pos + 8)[0]
    unit = 1e-6
    p, end = pos + 16, pos + blen - 4
    while p + 4 <= end:
        code, length = struct.unpack_from(order + "HH", buf, p)
        if code == 0:
            break
        if code == 9 and length >= 1:  # if_tsresol
            v = buf[p + 4]
            unit = 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
        p += 4 + ((length + 3) & ~3)
    return linktype, unit


@dataclass(frozen=True, slots=True)
class ServerHello:
    frame: int
    cipher_suite: int
    suite_name: str | None = None  # tshark's name for it (a custom column resolves the value)


def server_hellos(tshark: Tshark, capture: Path) -> dict[tuple[str, int, str, int], list[ServerHello]]:
    """Cipher suites the servers chose, by (client, client port, server, server port), from a
    field pass over the ServerHellos (clear text in every TLS version, so no keys needed)."""
    cmd = [
        tshark.path, "-n", "-r", str(capture), "-Y", "tls.handshake.type == 2",
        "-o", 'gui.column.format:"Suite","%Cus:tls.handshake.ciphersuite"',
        "-T", "fields", "-E", "occurrence=l",
        "-e", "frame.number", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport",
        "-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport", "-e", "tls.handshake.ciphersuite",
        "-e", "_ws.col.Suite",
    ]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out: dict[tuple[str, int, str, int], list[ServerHello]] = {}
    for line in done.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) != 9:
            continue
        frame, ip4s, ip6s, sport, ip4d, ip6d, dport, suite, name = parts
        try:
            server = ip6s or ip4s
            client = ip6d or ip4d
            key = (_norm(client), int(dport), _norm(server), int(sport))
            hello = ServerHello(int(frame), int(suite, 16), name if name.startswith("TLS_") else None)
            out.setdefault(key, []).append(hello)
        except ValueError:
            continue
    return out


def _norm(address: str) -> str:
    return str(ipaddress.ip_address(address))


# ------------------------------------------------------------------------------------------------
# why a connection was not decrypted
# ------------------------------------------------------------------------------------------------

#: Bulk ciphers tshark 4.0 has no decryption for, by the word in the suite name, and the code
#: ranges they occupy in the IANA TLS Cipher Suites registry (for names tshark does not give).
UNSUPPORTED_FAMILIES = ("ARIA", "GOST", "KUZNYECHIK", "MAGMA", "SM4", "AEGIS")
UNSUPPORTED_SUITES: tuple[tuple[int, int, str], ...] = (
    (0xC03C, 0xC071, "ARIA"),
    (0x0080, 0x0083, "GOST"),
    (0xC100, 0xC106, "GOST"),
    (0x00C6, 0x00C7, "SM4"),
    (0x1306, 0x1307, "AEGIS"),
)
_FORWARD_SECRET = ("_DHE_", "_ECDHE_", "_DH_", "_ECDH_")


def _suite_name(hello: ServerHello) -> str | None:
    return hello.suite_name or tls.CIPHER_SUITE_NAMES.get(hello.cipher_suite)


def suite_text(hello: ServerHello) -> str:
    name = _suite_name(hello)
    if name:
        return f"{name} (0x{hello.cipher_suite:04X})"
    family = unsupported_family(hello)
    return f"0x{hello.cipher_suite:04X}" + (f" ({family})" if family else "")


def unsupported_family(hello: ServerHello) -> str | None:
    name = _suite_name(hello)
    if name:
        words = name.upper().split("_")
        return next((f for f in UNSUPPORTED_FAMILIES if f in words), None)
    for lo, hi, family in UNSUPPORTED_SUITES:
        if lo <= hello.cipher_suite <= hi:
            return family
    return None


def rsa_key_exchange(hello: ServerHello) -> bool | None:
    """True for RSA key transport, False for (EC)DH(E), None when the suite's name is unknown."""
    name = _suite_name(hello)
    if name is None:
        return None
    if name.startswith("TLS_RSA_"):
        return True
    if any(k in name for k in _FORWARD_SECRET):
        return False
    return None


def undecrypted_reason(
    *,
    client_random: str | None,
    version: str | None,
    keylog: KeyLog,
    rsa_keys: Sequence[RsaKey],
    hello: ServerHello | None,
    tshark_problem: str | None = None,
) -> str:
    """One line saying why tshark produced no plaintext for a TLS connection that carried data."""
    if tshark_problem:
        return f"not decrypted: {tshark_problem}"
    if client_random is None:
        return "its TLS handshake is not in the capture (the connection started before it), so no key can be matched"
    tls13 = bool(version and version.startswith("TLS 1.3"))
    short = client_random[:16] + "…"
    family = unsupported_family(hello) if hello is not None else None
    missing = keylog.missing(client_random, tls13)
    if family is not None and hello is not None and not missing:
        return f"unsupported cipher: the server chose {suite_text(hello)}, which tshark cannot decrypt"
    if missing:
        if tls13:
            if len(missing) == 1:
                return f"the key log has only part of the TLS 1.3 secrets for client random {short} (no {missing[0]})"
            return f"no key for client random {short}: TLS 1.3 needs its {TLS13_CLIENT} and {TLS13_SERVER} in the key log"
        if rsa_keys:
            kx = rsa_key_exchange(hello) if hello is not None else None
            if kx is False and hello is not None:
                return (
                    f"no key for client random {short}, and the RSA key cannot help: {suite_text(hello)} uses a "
                    "forward-secret (EC)DHE key exchange, so only a key log decrypts it"
                )
            if family is not None and hello is not None:
                return f"unsupported cipher: the server chose {suite_text(hello)}, which tshark cannot decrypt"
            return f"no key for client random {short}, and none of the RSA keys given matches this server's certificate"
        if keylog.rsa_lines:
            return f"no CLIENT_RANDOM secret for client random {short}, and no RSA pre-master line of the key log fits it"
        return f"no key for client random {short} in the key log or the capture's embedded secrets"
    if hello is not None:
        return (
            f"the key log has a secret for client random {short} but tshark decrypted nothing with it "
            f"({suite_text(hello)}); the secret may belong to another session"
        )
    return f"the key log has a secret for client random {short} but tshark decrypted nothing with it"
