"""The lyncpcap Wireshark plugin (`dissectors/lync.lua`): its generated tables and its installation.

The plugin classifies frames the way `lyncpcap.steps` does. The tables it needs (URL rules, Lync
DNS names, user-agent → client kind, Kerberos error names) are rendered here from the Python
classifier's own data into a marked block of the Lua file, so the two can never drift apart.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

PLUGIN_NAME = "lync.lua"
BEGIN_MARK = "-- BEGIN GENERATED TABLES"
END_MARK = "-- END GENERATED TABLES"
#: how many Lua patterns one regular expression may expand to (alternations multiply)
MAX_ALTERNATIVES = 64


class PatternError(ValueError):
    """A regular expression uses syntax the Lua-pattern translation does not support."""


class InstallError(Exception):
    """Installing the plugin is impossible in this environment (exit status 2)."""


# ------------------------------------------------------------------------------------------------
# Python regular expression → Lua patterns
# ------------------------------------------------------------------------------------------------
# Lua patterns have no alternation and no group quantifiers, so a regex is expanded into a list of
# patterns of which any may match.  Only the subset the lyncpcap tables use is accepted; anything
# else raises PatternError so a new table entry cannot be silently mistranslated.

_LUA_MAGIC = set("^$()%.[]*+-?")
_ESCAPE_CLASSES = {"d": "%d", "s": "%s", "w": "[%w_]"}
_START, _END = "\x00^", "\x00$"  # anchors, placed by _finish


@dataclass(frozen=True, slots=True)
class LuaMatcher:
    """A regex as Lua sees it: match when any pattern finds the (lower-cased if `ci`) subject."""

    ci: bool
    patterns: tuple[str, ...]


class _RegexParser:
    def __init__(self, text: str, ci: bool) -> None:
        self.text = text
        self.pos = 0
        self.ci = ci

    def fail(self, what: str) -> PatternError:
        return PatternError(f"{what} at offset {self.pos} of {self.text!r}")

    def peek(self) -> str | None:
        return self.text[self.pos] if self.pos < len(self.text) else None

    def take(self) -> str:
        ch = self.text[self.pos]
        self.pos += 1
        return ch

    def literal(self, ch: str) -> str:
        if self.ci:
            ch = ch.lower()
        if ch in _LUA_MAGIC:
            return "%" + ch
        if not ch.isprintable() or ord(ch) > 126:
            raise self.fail(f"non-ASCII literal {ch!r}")
        return ch

    # alternatives: list of sequences, each a list of pieces (strings)
    def alternation(self) -> list[list[str]]:
        alts = self.sequence()
        while self.peek() == "|":
            self.take()
            alts = alts + self.sequence()
            if len(alts) > MAX_ALTERNATIVES:
                raise self.fail("too many alternatives")
        return alts

    def sequence(self) -> list[list[str]]:
        seqs: list[list[str]] = [[]]
        while self.peek() not in (None, "|", ")"):
            atom, single = self.atom()
            quant = self.quantifier()
            if quant:
                if single:
                    atom = [[atom[0][0] + quant]]
                elif quant == "?":
                    atom = [*atom, []]
                else:
                    raise self.fail(f"quantifier {quant!r} on a group")
            seqs = [s + a for s in seqs for a in atom]
            if len(seqs) > MAX_ALTERNATIVES:
                raise self.fail("too many alternatives")
        return seqs

    def quantifier(self) -> str:
        ch = self.peek()
        if ch not in ("*", "+", "?"):
            return ""
        self.take()
        if self.peek() == "?":  # lazy
            self.take()
            if ch != "*":
                raise self.fail(f"lazy quantifier {ch}?")
            return "-"
        if self.peek() in ("*", "+", "{") or ch == "{":
            raise self.fail("unsupported quantifier")
        return ch

    def atom(self) -> tuple[list[list[str]], bool]:
        ch = self.take()
        if ch == "(":
            if self.text.startswith("?:", self.pos):
                self.pos += 2
            elif self.peek() == "?":
                raise self.fail("unsupported group")
            inner = self.alternation()
            if self.peek() != ")":
                raise self.fail("unclosed group")
            self.take()
            return inner, False
        if ch == "[":
            return [[self.char_class()]], True
        if ch == "\\":
            return [[self.escape(in_class=False)]], True
        if ch == ".":
            return [["."]], True
        if ch == "^":
            return [[_START]], False
        if ch == "$":
            return [[_END]], False
        if ch in "{}*+?":
            raise self.fail(f"unexpected {ch!r}")
        return [[self.literal(ch)]], True

    def escape(self, *, in_class: bool) -> str:
        if self.peek() is None:
            raise self.fail("trailing backslash")
        ch = self.take()
        if ch in _ESCAPE_CLASSES:
            cls = _ESCAPE_CLASSES[ch]
            if in_class and cls.startswith("["):
                return cls[1:-1]
            return cls
        if ch.isalnum():
            raise self.fail(f"unsupported escape \\{ch}")
        return self.literal(ch)

    def char_class(self) -> str:
        out = ["["]
        if self.peek() == "^":
            self.take()
            out.append("^")
        items = 0
        while True:
            ch = self.peek()
            if ch is None:
                raise self.fail("unclosed character class")
            self.take()
            if ch == "]" and items:
                out.append("]")
                return "".join(out)
            if ch == "\\":
                out.append(self.escape(in_class=True))
            elif ch == "-" and items and self.peek() not in ("]", None):
                out.append("-")  # a range: both ends are plain characters in the tables we translate
            elif ch == "[":
                raise self.fail("nested character class")
            else:
                out.append(self.literal(ch) if not ch.isalnum() else (ch.lower() if self.ci else ch))
            items += 1


def _finish(pieces: list[str], source: str) -> str:
    out = []
    for i, piece in enumerate(pieces):
        if piece == _START:
            if i != 0:
                raise PatternError(f"'^' not at the start of an alternative in {source!r}")
            out.append("^")
        elif piece == _END:
            if i != len(pieces) - 1:
                raise PatternError(f"'$' not at the end of an alternative in {source!r}")
            out.append("$")
        else:
            out.append(piece)
    return "".join(out)


def lua_matcher(pattern: str | re.Pattern[str]) -> LuaMatcher:
    """Translate a Python regular expression (a `search`) into Lua patterns; raises PatternError."""
    if isinstance(pattern, re.Pattern):
        text, ci = pattern.pattern, bool(pattern.flags & re.IGNORECASE)
    else:
        text, ci = pattern, False
    if text.startswith("(?i)"):
        text, ci = text[4:], True
    parser = _RegexParser(text, ci)
    alts = parser.alternation()
    if parser.peek() is not None:
        raise parser.fail("unbalanced ')'")
    patterns: list[str] = []
    for alt in alts:
        p = _finish(alt, text)
        if p not in patterns:
            patterns.append(p)
    return LuaMatcher(ci, tuple(patterns))


# ------------------------------------------------------------------------------------------------
# the generated Lua block
# ------------------------------------------------------------------------------------------------
def _lua_string(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif 32 <= ord(ch) < 127:
            out.append(ch)
        else:
            out.extend(f"\\{b:03d}" for b in ch.encode("utf-8"))
    out.append('"')
    return "".join(out)


def _matcher_fields(m: LuaMatcher) -> str:
    pats = ", ".join(_lua_string(p) for p in m.patterns)
    return f"ci = {'true' if m.ci else 'false'}, patterns = {{{pats}}}"


def _load_clients() -> dict[str, object]:
    text = resources.files("lyncpcap.data").joinpath("clients.json").read_text(encoding="utf-8")
    data: dict[str, object] = json.loads(text)
    return data


def render_tables() -> str:
    """The Lua source of the generated block, from the Python tables it must agree with."""
    from lyncpcap.protocols import adfs, oauth
    from lyncpcap.protocols.kerberos import ERROR_NAMES
    from lyncpcap.steps import dns, kdc, rules

    lines = [
        BEGIN_MARK,
        "-- Rendered by lyncpcap.wireshark.render_tables() from lyncpcap/steps/{rules,dns,kdc}.py,",
        "-- lyncpcap/protocols/{kerberos,adfs,oauth}.py and lyncpcap/data/clients.json. Do not edit by hand:",
        "-- run `python -m lyncpcap.wireshark` after changing those (tests/test_wireshark_plugin.py checks).",
        "local URL_RULES = {",
    ]
    for r in rules.RULES:
        m = lua_matcher(r.path)
        lines.append(
            f"  {{step = {_lua_string(r.step)}, kind = {_lua_string(r.kind)}, lync = {'true' if r.lync else 'false'}, "
            f"{_matcher_fields(m)}}},"
        )
    lines.append("}")
    root = rules.ROOT_ON_DISCOVER_HOST
    lines.append(f"local DISCOVER_HOST = {{{_matcher_fields(lua_matcher(rules.DISCOVER_HOST))}}}")
    lines.append(
        f"local ROOT_ON_DISCOVER_HOST = {{step = {_lua_string(root.step)}, kind = {_lua_string(root.kind)}, "
        f"lync = {'true' if root.lync else 'false'}}}"
    )
    lines.append("local SIMPLE_URL_HOSTS = {")
    for host_rx, rule in rules.SIMPLE_URL_HOSTS:
        lines.append(
            f"  {{host = {{{_matcher_fields(lua_matcher(host_rx))}}}, rule = {{step = {_lua_string(rule.step)}, "
            f"kind = {_lua_string(rule.kind)}, lync = {'true' if rule.lync else 'false'}, {_matcher_fields(lua_matcher(rule.path))}}}}},"
        )
    lines.append("}")
    lines.append(f"local LYNC_DNS_NAME = {{{_matcher_fields(lua_matcher(dns.LYNC_NAME))}}}")
    data = _load_clients()
    lines.append("local CLIENTS = {")
    patterns = data["patterns"]
    assert isinstance(patterns, list)
    for p in patterns:
        m = lua_matcher(str(p["regex"]))
        lines.append(
            f"  {{kind = {_lua_string(str(p['kind']))}, family = {_lua_string(str(p['family']))}, {_matcher_fields(m)}}},"
        )
    lines.append("}")
    browser = lua_matcher(str(data["browser_regex"]))
    lines.append(
        f'local BROWSER = {{kind = {_lua_string(str(data["browser_kind"]))}, family = "browser", {_matcher_fields(browser)}}}'
    )
    lines.append(f"local LWA_KIND = {_lua_string(str(data['lwa_kind']))}")
    lines.append("local KERBEROS_ERRORS = {")
    for code, name in sorted(ERROR_NAMES.items()):
        lines.append(f"  [{code}] = {_lua_string(name)},")
    lines.append("}")
    challenge = ", ".join(f"[{c}] = true" for c in sorted(kdc.CHALLENGE_ERRORS))
    lines.append(f"local KDC_CHALLENGE_ERRORS = {{{challenge}}}")
    primary = ", ".join(f"[{_lua_string(m)}] = true" for m in sorted(adfs.PRIMARY_METHODS))
    lines.append(f"local ADFS_PRIMARY_METHODS = {{{primary}}}")
    markers = ", ".join(_lua_string(m.decode("ascii")) for m in adfs._MFA_MARKERS)
    lines.append(f"local ADFS_MFA_MARKERS = {{{markers}}}")
    for name in ("GRANT_PASSWORD", "GRANT_WINDOWS", "GRANT_ANONMEETING", "GRANT_PASSIVE"):
        lines.append(f"local {name} = {_lua_string(getattr(oauth, name))}")
    lines.append(END_MARK)
    return "\n".join(lines) + "\n"


def generated_block(source: str) -> str:
    """The generated block of a plugin source, markers included; raises ValueError when absent."""
    start = source.find(BEGIN_MARK)
    end = source.find(END_MARK)
    if start < 0 or end < start:
        raise ValueError(f"the plugin has no {BEGIN_MARK!r} … {END_MARK!r} block")
    stop = source.index("\n", end) + 1 if "\n" in source[end:] else len(source)
    return source[start:stop]


def render_plugin(source: str) -> str:
    """`source` with its generated block replaced by tables rendered from the current Python data."""
    block = generated_block(source)
    return source.replace(block, render_tables(), 1)


# ------------------------------------------------------------------------------------------------
# where the plugin lives
# ------------------------------------------------------------------------------------------------
def packaged_source() -> str:
    """The plugin as shipped inside the lyncpcap package (dissectors/lync.lua links to this file)."""
    return resources.files("lyncpcap.data").joinpath(PLUGIN_NAME).read_text(encoding="utf-8")


def checkout_plugin() -> Path | None:
    """dissectors/lync.lua when lyncpcap runs from a source checkout, else None."""
    candidate = Path(__file__).resolve().parent.parent / "dissectors" / PLUGIN_NAME
    return candidate if candidate.is_file() else None


def plugin_source() -> str:
    """The plugin to install: the checkout's canonical file when present, else the packaged copy,
    with its tables rendered from the data of this lyncpcap installation."""
    path = checkout_plugin()
    text = path.read_text(encoding="utf-8") if path else packaged_source()
    return render_plugin(text)


_FOLDER_LINE = re.compile(r"^\s*Personal Lua Plugins:\s*(.+?)\s*$", re.MULTILINE)


def personal_lua_plugins_dir(programs: Iterable[str] = ("tshark", "wireshark")) -> Path:
    """Ask tshark (or wireshark) for its "Personal Lua Plugins" folder (`-G folders`)."""
    tried = []
    for program in programs:
        exe = shutil.which(program)
        if exe is None:
            tried.append(program)
            continue
        try:
            out = subprocess.run(
                [exe, "-G", "folders"], capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise InstallError(f"could not run {program} -G folders: {exc}") from exc
        m = _FOLDER_LINE.search(out.stdout)
        if m:
            return Path(m.group(1))
        raise InstallError(f"{program} -G folders did not name a 'Personal Lua Plugins' folder")
    raise InstallError(
        f"{' and '.join(tried)} not found: install Wireshark's command-line tools "
        "(apt-get install tshark) or pass --dest DIR"
    )


def install(dest: Path | None = None) -> Path:
    """Write the plugin into `dest` (default: Wireshark's personal Lua plugins folder); returns the file."""
    folder = dest if dest is not None else personal_lua_plugins_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / PLUGIN_NAME
        target.write_text(plugin_source(), encoding="utf-8")
    except OSError as exc:
        raise InstallError(f"cannot write {folder / PLUGIN_NAME}: {exc.strerror or exc}") from exc
    return target


def sync_checkout() -> list[Path]:
    """Refresh the generated block of the plugin (dissectors/lync.lua → lyncpcap/data/lync.lua)."""
    path = checkout_plugin()
    if path is None:
        raise InstallError("not a lyncpcap source checkout (dissectors/lync.lua is missing)")
    text = render_plugin(path.read_text(encoding="utf-8"))
    packaged = Path(__file__).resolve().parent / "data" / PLUGIN_NAME
    written = []
    for target in (path, packaged):
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            written.append(target)
    return written


if __name__ == "__main__":
    for p in sync_checkout():
        print(f"updated {p}")
