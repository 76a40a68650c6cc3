"""The Wireshark post-dissector (dissectors/lync.lua) agrees with lyncpcap's classifier, frame by frame.

tshark runs the plugin over every sample capture (TLS twins decrypted with their key log or the
keys the pcapng embeds) and over a synthetic capture that reaches every table entry and branch;
lyncpcap analyses the same files.
Each request frame the analysis makes a sign-in step must carry the same `lync.step` and
`lync.auth`; answers carry the same `lync.result`; identities and client kinds agree once the
plugin has seen the whole capture (two passes).  tshark is required (scripts/test.sh installs it).
"""

from __future__ import annotations

import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import wireshark_corpus
from wireshark_run import PLUGIN, REPO, Frame, run_plugin, tshark_path

import lyncpcap
from lyncpcap import wireshark
from lyncpcap.analysis import Analysis
from lyncpcap.cli import main
from lyncpcap.model import Step
from lyncpcap.read import open_capture

SAMPLES = REPO / "sample_captures"
CAPTURES = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".pcap", ".pcapng"))
SYNTHETIC = "synthetic"
NAMES = [p.name for p in CAPTURES] + [SYNTHETIC]


def keylog_of(capture: Path) -> Path | None:
    key = capture.with_suffix(".keylog")
    return key if key.exists() else None


def embeds_secrets(capture: Path) -> bool:
    """Whether the file carries TLS keys itself (a pcapng Decryption Secrets Block)."""
    with open_capture(capture) as cap:
        for _ in cap:
            pass
        return bool(cap.secrets)


@dataclass
class Run:
    capture: Path
    keylog: Path | None
    analysis: Analysis
    one_pass: dict[int, Frame]
    two_pass: dict[int, Frame]
    #: tshark decrypts TLS here (key log or embedded secrets) while the analysis does not, so the
    #: plugin sees steps the analysis cannot: only agreement on the analysis's own steps is checked
    decrypts: bool


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    tshark_path()  # one clear error when tshark is missing
    synthetic = wireshark_corpus.build(tmp_path_factory.mktemp("wireshark") / "synthetic.pcap")
    captures = {p.name: p for p in CAPTURES} | {SYNTHETIC: synthetic}
    jobs = [(name, two) for name in captures for two in (False, True)]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
        futures = {
            job: pool.submit(
                run_plugin, captures[job[0]], keylog=keylog_of(captures[job[0]]), two_pass=job[1]
            )
            for job in jobs
        }
        results = {job: f.result() for job, f in futures.items()}
    return {
        name: Run(
            path,
            keylog_of(path),
            lyncpcap.analyze(path),
            results[(name, False)],
            results[(name, True)],
            keylog_of(path) is not None or embeds_secrets(path),
        )
        for name, path in captures.items()
    }


def sign_in(step: Step) -> bool:
    """The steps the plugin marks: Lync (and AD FS) web requests, REGISTERs, Lync DNS names, KDC."""
    return bool(step.facts.get("lync")) or step.step == "kerberos"


def first_identity(step: Step) -> str:
    return (step.evidence_of("account") or step.evidence_of("sip_uri") or [""])[0]


def answers(frames: dict[int, Frame]) -> dict[int, Frame]:
    """Response frames with a result, by the request frame they answer."""
    return {
        int(f.one("lync.request_in")): f
        for f in frames.values()
        if f.one("lync.request_in") and f.one("lync.result")
    }


def step_mismatches(
    analysis: Analysis, frames: dict[int, Frame], *, two_pass: bool, sees_all: bool
) -> list[str]:
    """Every disagreement on step, auth (and the URL rule's kind) between the analysis and the plugin.

    A request that only its answer marks as Lync (X-MS-Server-Fqdn on an unlisted URL) can be
    labelled on the second pass only; `sees_all` says the plugin saw exactly what the analysis saw
    (no key log), so frames it labels beyond the analysis's steps are over-labelling."""
    problems = []
    python_frames = set()
    for s in analysis.step_list:
        f = frames[s.frame]
        if not sign_in(s):
            if f.one("lync.step") and not f.one("lync.request_in"):
                problems.append(
                    f"frame {s.frame}: plugin says {f.one('lync.step')!r}, analysis: not a sign-in step"
                )
            continue
        python_frames.add(s.frame)
        if s.facts.get("kind") == "web" and not two_pass:
            continue
        got = (f.one("lync.step"), f.one("lync.auth") or None)
        want = (s.step, s.auth)
        if got != want:
            problems.append(f"frame {s.frame} {s.method} {s.url}: plugin (step, auth) {got}, analysis {want}")
        if s.facts.get("kind") and f.one("lync.kind") != s.facts["kind"]:
            problems.append(
                f"frame {s.frame}: plugin kind {f.one('lync.kind')!r}, analysis {s.facts['kind']!r}"
            )
    if sees_all:
        for f in frames.values():
            labelled_request = (
                f.one("lync.step") and not f.one("lync.request_in") and not f.one("lync.retransmission_of")
            )
            if labelled_request and f.number not in python_frames:
                problems.append(
                    f"frame {f.number}: plugin says {f.one('lync.step')!r}, the analysis has no step there"
                )
    return problems


# ------------------------------------------------------------------------------------------------
# the generated tables and the shipped copy
# ------------------------------------------------------------------------------------------------
def test_generated_tables_match_the_python_classifier() -> None:
    source = PLUGIN.read_text(encoding="utf-8")
    assert wireshark.generated_block(source) == wireshark.render_tables(), (
        "dissectors/lync.lua's tables are stale: run `python -m lyncpcap.wireshark`"
    )


def test_packaged_copy_is_the_canonical_plugin() -> None:
    packaged = REPO / "lyncpcap" / "data" / wireshark.PLUGIN_NAME
    assert packaged.read_text(encoding="utf-8") == PLUGIN.read_text(encoding="utf-8"), (
        "lyncpcap/data/lync.lua differs from dissectors/lync.lua: run `python -m lyncpcap.wireshark`"
    )
    assert wireshark.packaged_source() == PLUGIN.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("regex", "ci", "patterns"),
    [
        (
            r"^/webticket/webticketservice\.svc/mex(?:[/?]|$)",
            False,
            ("^/webticket/webticketservice%.svc/mex[/%?]", "^/webticket/webticketservice%.svc/mex$"),
        ),
        (
            r"(?i)(iPhoneLync|Lync/[\d.]+ .*(CFNetwork|Darwin))",
            True,
            ("iphonelync", "lync/[%d%.]+ .*cfnetwork", "lync/[%d%.]+ .*darwin"),
        ),
        (
            r"^/ucwa/(?:oauth/|anonymous/)?v1/x",
            False,
            ("^/ucwa/oauth/v1/x", "^/ucwa/anonymous/v1/x", "^/ucwa/v1/x"),
        ),
        (r"OC/15\.[^ ]* \(Skype", False, ("OC/15%.[^ ]* %(Skype",)),
        (r"a*?b-c", False, ("a-b%-c",)),
    ],
)
def test_regex_to_lua_translation(regex: str, ci: bool, patterns: tuple[str, ...]) -> None:
    assert wireshark.lua_matcher(regex) == wireshark.LuaMatcher(ci, patterns)


@pytest.mark.parametrize(
    "regex", [r"(ab)+", r"a{2}", r"\bword", r"(?=x)y", r"a^b", r"a$b", r"(?P<n>x)", r"[[:alpha:]]", "é"]
)
def test_regex_translation_refuses_what_lua_cannot_express(regex: str) -> None:
    with pytest.raises(wireshark.PatternError):
        wireshark.lua_matcher(regex)


def test_render_plugin_refreshes_a_stale_block() -> None:
    stale = (
        "-- head\n" + wireshark.BEGIN_MARK + "\nlocal URL_RULES = {}\n" + wireshark.END_MARK + "\n-- tail\n"
    )
    fresh = wireshark.render_plugin(stale)
    assert fresh.startswith("-- head\n") and fresh.endswith("-- tail\n")
    assert wireshark.generated_block(fresh) == wireshark.render_tables()
    with pytest.raises(ValueError):
        wireshark.render_plugin("-- no markers\n")


# ------------------------------------------------------------------------------------------------
# agreement with the analysis
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_no_frame_trips_the_plugin(name: str, runs: dict[str, Run]) -> None:
    for frames in (runs[name].one_pass, runs[name].two_pass):
        errors = {f.number: f.one("lync.error") for f in frames.values() if f.one("lync.error")}
        assert not errors


@pytest.mark.parametrize("name", NAMES)
def test_step_and_auth_agree_frame_by_frame(name: str, runs: dict[str, Run]) -> None:
    """`tshark -X lua_script:dissectors/lync.lua -r CAPTURE -T fields -e lync.step -e lync.auth`."""
    run = runs[name]
    problems = step_mismatches(run.analysis, run.one_pass, two_pass=False, sees_all=not run.decrypts)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", NAMES)
def test_two_pass_agrees_on_step_auth_user_and_client(name: str, runs: dict[str, Run]) -> None:
    """With the whole capture seen first (`tshark -2 -R frame`, or Wireshark's GUI), identities learnt
    later in a handshake reach its earlier steps, as in the analysis, and the client kind is the
    session's."""
    run = runs[name]
    problems = step_mismatches(run.analysis, run.two_pass, two_pass=True, sees_all=not run.decrypts)
    session_kind = {id(st): s.client_kind for s in run.analysis.session_list for st in s.steps}
    for s in run.analysis.step_list:
        if not sign_in(s):
            continue
        f = run.two_pass[s.frame]
        if f.one("lync.user") != first_identity(s):
            problems.append(
                f"frame {s.frame} {s.step}: plugin user {f.one('lync.user')!r}, analysis {first_identity(s)!r}"
            )
        kind = session_kind.get(id(s))
        if not run.decrypts and kind is not None and f.one("lync.client_kind") != kind:
            problems.append(
                f"frame {s.frame} {s.step}: plugin client {f.one('lync.client_kind')!r}, analysis {kind!r}"
            )
    assert not problems, "\n".join(problems)


def test_two_pass_without_a_read_filter_classifies_on_the_second_pass(runs: dict[str, Run]) -> None:
    """Plain `tshark -2` builds no tree on its first pass; the plugin then classifies on the second,
    in frame order, so it says what a single pass says."""
    run = runs["02-desktop-external-ntlm.pcapng"]
    frames = run_plugin(run.capture, extra=("-2",))
    assert step_mismatches(run.analysis, frames, two_pass=False, sees_all=True) == []
    fields = ("lync.step", "lync.auth", "lync.result", "lync.user", "lync.request_in")
    assert [[f.one(x) for x in fields] for f in frames.values()] == [
        [f.one(x) for x in fields] for f in run.one_pass.values()
    ]


@pytest.mark.parametrize("name", NAMES)
def test_results_and_diagnostics_agree_on_the_answers(name: str, runs: dict[str, Run]) -> None:
    run = runs[name]
    frames = run.one_pass
    answered = answers(frames)
    steps = {s.frame: s for s in run.analysis.step_list if sign_in(s)}
    problems = []
    for request, answer in answered.items():
        if request not in steps and not run.decrypts:
            problems.append(
                f"frame {answer.number} answers frame {request}, which the analysis has no step for"
            )
    for s in steps.values():
        if s.status == "timeout":
            continue  # a DNS query nobody answered: no answer frame to carry the result
        f = answered.get(s.frame)
        got = f.one("lync.result") if f else "none"
        if got != s.result:
            problems.append(f"frame {s.frame} {s.step} {s.url}: plugin result {got!r}, analysis {s.result!r}")
        diag = f.one("lync.diagnostic") if f else ""
        header = s.facts.get("diagnostic")
        if header and diag != header:
            problems.append(f"frame {s.frame}: plugin diagnostic {diag!r}, server said {header!r}")
        if diag and diag != header and diag not in (s.failure_evidence or ""):
            problems.append(f"frame {s.frame}: plugin diagnostic {diag!r} is not in {s.failure_evidence!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", ["02-desktop-external-ntlm", "08-ucwa-mobile-oauth"])
def test_tls_twins_read_with_their_keys_match_the_plaintext_analysis(name: str, runs: dict[str, Run]) -> None:
    """The analysis does not decrypt, so the twin's steps come from its plaintext sibling: same
    sign-in, same order, once tshark decrypts with the key log."""
    twin = runs[f"{name}-tls.pcapng"]
    plain = runs[f"{name}.pcapng"]
    assert twin.decrypts
    results = answers(twin.two_pass)
    got = [
        (
            f.one("lync.step"),
            f.one("lync.auth") or None,
            results[f.number].one("lync.result") if f.number in results else "none",
            f.one("lync.user"),
        )
        for f in sorted(twin.two_pass.values(), key=lambda x: x.number)
        if f.one("lync.step") and not f.one("lync.request_in") and not f.one("lync.retransmission_of")
    ]
    want = [(s.step, s.auth, s.result, first_identity(s)) for s in plain.analysis.step_list if sign_in(s)]
    assert got == want


# ------------------------------------------------------------------------------------------------
# MS-SIPAE gssapi-data handed to Wireshark's own dissectors
# ------------------------------------------------------------------------------------------------
def _register_frames(run: Run) -> list[Frame]:
    return [f for f in run.one_pass.values() if f.one("lync.step") == "sip-register"]


def test_sip_ntlm_user_shows_as_ntlmssp_field(runs: dict[str, Run]) -> None:
    frames = _register_frames(runs["09g-sip-register-4004.pcapng"])
    users = [u for f in frames for u in f.all("ntlmssp.auth.username")]
    assert "quentin" in users
    authenticate = next(f for f in frames if "quentin" in f.all("ntlmssp.auth.username"))
    assert authenticate.one("lync.auth") == "ntlm" and authenticate.one("lync.user") == "CONTOSO\\quentin"
    assert authenticate.one("lync.gssapi.mechanism") == "ntlm"


def test_sip_kerberos_spn_shows_as_kerberos_field(runs: dict[str, Run]) -> None:
    frames = _register_frames(runs["09c-lyncdiscover-nxdomain.pcap"])
    with_spn = [f for f in frames if f.all("kerberos.SNameString")]
    assert with_spn, "no SIP REGISTER frame carries kerberos.SNameString"
    names = with_spn[0].all("kerberos.SNameString")
    assert names[:2] == ["sip", "fe01.contoso.com"]
    assert with_spn[0].one("lync.auth") == "kerberos"


def test_tls_dsk_flights_are_labelled(runs: dict[str, Run]) -> None:
    flights = [
        f.one("lync.tls_dsk.flight") for f in _register_frames(runs["02-desktop-external-ntlm.pcapng"])
    ]
    assert [x for x in flights if x] == ["hello", "server", "final", "final"]


def test_web_ticket_tree_in_verbose_output() -> None:
    out = subprocess.run(
        [
            tshark_path(),
            "-n",
            "-X",
            f"lua_script:{PLUGIN}",
            "-r",
            str(SAMPLES / "02-desktop-external-ntlm.pcapng"),
            "-Y",
            'lync.step == "webticket" && lync.result == "success"',
            "-V",
            "-O",
            "lync",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    tree = out[out.index("Lync sign-in: webticket, ntlm, success") :].split("\n\n")[0]
    for line in (
        "[Step: webticket]",
        "[Authentication: ntlm]",
        "[Result: success]",
        "[User: CONTOSO\\carol]",
        "[Client kind: Lync 2013 desktop]",
        "[Request in frame: 30]",
    ):
        assert line in tree


# ------------------------------------------------------------------------------------------------
# the test itself fails when the plugin is wrong
# ------------------------------------------------------------------------------------------------
def test_agreement_check_catches_a_wrong_plugin(tmp_path: Path, runs: dict[str, Run]) -> None:
    broken = tmp_path / "lync.lua"
    source = PLUGIN.read_text(encoding="utf-8")
    assert source.count('rec.auth = "soap"') == 1
    broken.write_text(source.replace('rec.auth = "soap"', 'rec.auth = "password"'), encoding="utf-8")
    run = runs["04-android-ntlm-and-soap.pcapng"]
    frames = run_plugin(run.capture, plugin=broken)
    problems = step_mismatches(run.analysis, frames, two_pass=False, sees_all=True)
    assert problems and all("'password'" in p and "'soap'" in p for p in problems)


# ------------------------------------------------------------------------------------------------
# lyncpcap wireshark install
# ------------------------------------------------------------------------------------------------
def test_install_into_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "plugins" / "lua"
    with pytest.raises(SystemExit) as exit_info:
        main(["wireshark", "install", "--dest", str(dest)])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == str(dest / "lync.lua")
    assert (dest / "lync.lua").read_text(encoding="utf-8") == PLUGIN.read_text(encoding="utf-8")


def test_installed_plugin_loads_in_tshark(tmp_path: Path) -> None:
    path = wireshark.install(tmp_path)
    frames = run_plugin(SAMPLES / "09d-mex-404.pcapng", plugin=path)
    assert [f.one("lync.step") for f in frames.values() if f.one("lync.step")][:2] == ["dns", "dns"]


def test_personal_lua_folder_is_what_tshark_says() -> None:
    folders = subprocess.run(
        [tshark_path(), "-G", "folders"], capture_output=True, text=True, check=True
    ).stdout
    m = re.search(r"^Personal Lua Plugins:\s*(.+?)\s*$", folders, re.MULTILINE)
    assert m is not None
    assert wireshark.personal_lua_plugins_dir() == Path(m.group(1))


def test_install_without_tshark_is_a_one_line_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(wireshark.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit) as exit_info:
        main(["wireshark", "install"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "apt-get install tshark" in err and err.startswith("lyncpcap: error:")


def test_install_into_an_unwritable_place_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        main(["wireshark", "install", "--dest", str(blocker / "sub")])
    assert exit_info.value.code == 2
    assert "cannot write" in capsys.readouterr().err


def test_install_help_shows_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["wireshark", "install", "--help"])
    assert exit_info.value.code == 0
    assert "Example:" in capsys.readouterr().out
