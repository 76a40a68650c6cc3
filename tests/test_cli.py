"""The command line: analyze, timeline, plot and batch — options, outputs, exit codes, progress."""

from __future__ import annotations

import io
import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent / "report"))
from reportkit import ROOT, SAMPLES, run_cli, sample_captures

import lyncpcap.analysis
from lyncpcap.commands import common

EXTERNAL = SAMPLES / "02-desktop-external-ntlm.pcapng"
WRONG_PASSWORD = SAMPLES / "09a-wrong-password.pcapng"  # three failed sessions
NXDOMAIN = SAMPLES / "09c-lyncdiscover-nxdomain.pcap"  # one success, one failure
TLS_ONLY = SAMPLES / "02-desktop-external-ntlm-tls.pcapng"  # no sessions without its key log


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "damaged.pcapng"
    path.write_bytes(b"this is not a capture at all, just text pretending to be one\n" * 4)
    return path


# -- help and exit codes ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["analyze", "timeline", "plot", "batch"])
def test_every_command_explains_itself_with_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0
    assert "Examples" in out and f"lyncpcap {command} " in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["analyze", "no-such-file.pcapng"], "no-such-file.pcapng: no such file"),
        (["analyze", str(EXTERNAL), "--keylog", "no-such.keylog"], "--keylog no-such.keylog: no such file"),
        (["analyze", str(EXTERNAL), "--format", "xml"], "--format xml: choose one of"),
        (["timeline", str(WRONG_PASSWORD), "--session", "s9"], "--session s9: no such session (sessions: s1, s2, s3)"),
        (["timeline", str(TLS_ONLY), "--format", "mermaid"], "no sign-in sessions in the capture to draw a Mermaid diagram"),
        (["plot", str(EXTERNAL), "--output", "picture.gif"], "the name must end in .png, .svg, .pdf"),
        (["plot", str(EXTERNAL), "--output", "p.png", "--align", "sideways"], "--align sideways: choose one of"),
        (["batch", "no-such-folder", "--output", "out"], "could be read"),
    ],
)
def test_usage_and_input_problems_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert out == ""
    assert err.count("\n") <= 2 and message in err  # batch adds its warning line
    assert "Traceback" not in err


def test_a_corrupt_capture_is_one_line_and_exit_2_end_to_end(corrupt: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "lyncpcap", "analyze", str(corrupt)], capture_output=True, text=True,
                         cwd=ROOT, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.count("\n") == 1 and str(corrupt) in run.stderr and "Traceback" not in run.stderr


def test_an_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "analyze", str(EXTERNAL), "--no-such-option")
    assert code == 2 and "internal error" not in err


def test_failed_sign_ins_are_still_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "analyze", str(WRONG_PASSWORD))
    assert code == 0
    assert out.count("failure") >= 3


# -- analyze ----------------------------------------------------------------------------------------


def test_default_table_view(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "analyze", str(EXTERNAL))
    assert code == 0 and err == ""  # no progress bar when stderr is not a terminal
    assert "\x1b[" not in out  # plain text when stdout is not a terminal
    lines = out.splitlines()
    assert lines[0] == "Read" and any("02-desktop-external-ntlm.pcapng" in line and "84" in line for line in lines)
    client = next(line for line in lines if line.startswith("Lync 2013 desktop (external network)"))
    assert [cell.strip() for cell in client.split("│")] == ["Lync 2013 desktop (external network)", "NTLM", "1", "1", "0",
                                                           "727 ms"]
    assert any(line.startswith("s1 ") and "CONTOSO\\carol" in line and "success" in line for line in lines)
    assert "external-domain-credentials" in out and "Advice:" in out


def test_table_shows_why_sessions_failed(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_cli(capsys, "analyze", str(WRONG_PASSWORD))
    assert "Why sessions failed" in out
    assert "NTLM credentials refused" in out
    assert "401 - Unauthorized: Access is denied due to invalid credentials." in out  # the server's words


def test_json_on_stdout_is_only_data(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "analyze", str(EXTERNAL), str(NXDOMAIN), "-f", "json")
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert [c["path"] for c in doc["captures"]] == [str(EXTERNAL), str(NXDOMAIN)]
    assert len(doc["sessions"]) == 3


@pytest.mark.parametrize(
    ("name", "check"),
    [
        ("r.md", lambda text: text.startswith("# Lync / Skype for Business sign-in report")),
        ("r.html", lambda text: text.startswith("<!DOCTYPE html>")),
        ("r.json", lambda text: json.loads(text)["schema"] == 1),
        ("r.jsonl", lambda text: {json.loads(line)["type"] for line in text.splitlines()} >= {"capture", "session", "finding"}),
        ("r.txt", lambda text: text.startswith("Read\n")),
        ("r.csv", lambda text: text.startswith("id,client_address,")),
    ],
)
def test_the_output_suffix_chooses_the_format(name: str, check: Any, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "analyze", str(EXTERNAL), "--output", str(tmp_path / name))
    assert code == 0 and out == ""
    assert check((tmp_path / name).read_text(encoding="utf-8"))


def test_csv_into_a_folder_and_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "analyze", str(WRONG_PASSWORD), "-f", "csv", "-o", str(tmp_path / "tables"))
    assert code == 0 and "sessions.csv" in err
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == [
        "auth.csv", "clients.csv", "findings.csv", "sessions.csv", "steps.csv"
    ]
    sessions = pd.read_csv(tmp_path / "tables" / "sessions.csv")
    assert list(sessions["outcome"]) == ["failure"] * 3
    assert sessions["start"][0].endswith("Z") and "T" in sessions["start"][0]
    _, out, _ = run_cli(capsys, "analyze", str(WRONG_PASSWORD), "-f", "csv")
    assert out.splitlines()[0].startswith("id,client_address,") and len(out.splitlines()) == 4


def test_keylog_and_reveal_are_passed_through(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []
    real = lyncpcap.analysis.analyze

    def spy(captures: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return real(captures, **kwargs)

    monkeypatch.setattr(lyncpcap.analysis, "analyze", spy)
    keylog = SAMPLES / "02-desktop-external-ntlm-tls.keylog"
    for command in (["analyze"], ["timeline"], ["plot", "--output", str(tmp_path / "p.png")]):
        code, _, err = run_cli(capsys, *command, str(TLS_ONLY), "--keylog", str(keylog))
        assert code == 0, err
    code, _, err = run_cli(capsys, "batch", str(TLS_ONLY), "--output", str(tmp_path / "b"), "--keylog", str(keylog),
                           "--jobs", "1")
    assert code == 0, err
    assert [kw["keylog"] for kw in seen] == [keylog] * 4
    # without --keylog, batch takes the key log lying next to the capture
    seen.clear()
    run_cli(capsys, "batch", str(TLS_ONLY), "--output", str(tmp_path / "b2"), "--jobs", "1")
    assert [kw["keylog"] for kw in seen] == [keylog]


# -- progress -----------------------------------------------------------------------------------------


def test_byte_progress_adds_up_over_files() -> None:
    seen: list[int] = []
    tracker = common.ByteProgress([100, 50, 30], seen.append)
    for position in (40, 100, 20, 50, 30):  # file 1 in two reports, then files 2 and 3
        tracker(position)
    assert seen == [40, 100, 120, 150, 180]
    seen.clear()
    tracker = common.ByteProgress([100, 50], seen.append)
    for position in (60, 10, 50):  # file 1 ended short of its size; the fall-back starts file 2
        tracker(position)
    assert seen == [60, 110, 150]


def test_progress_bar_only_on_a_terminal_and_not_when_quiet() -> None:
    def console(terminal: bool) -> tuple[Console, io.StringIO]:
        buffer = io.StringIO()
        return Console(file=buffer, force_terminal=terminal, width=100), buffer

    screen, drawn = console(True)
    with common.byte_progress([EXTERNAL], quiet=False, console=screen) as callback:
        assert callback is not None
        callback(EXTERNAL.stat().st_size)
    assert "reading" in drawn.getvalue()
    for terminal, quiet in ((True, True), (False, False)):
        other, text = console(terminal)
        with common.byte_progress([EXTERNAL], quiet=quiet, console=other) as callback:
            assert callback is None
        assert text.getvalue() == ""
    counter, counted = console(True)
    with common.count_progress(3, "captures", quiet=False, console=counter) as advance:
        advance()
    assert "captures" in counted.getvalue()


def _run_with_terminal_stderr(args: list[str]) -> tuple[int, bytes, bytes]:
    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "lyncpcap", *args], stdout=subprocess.PIPE, stderr=terminal,
                               cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"})
    os.close(terminal)
    assert process.stdout is not None
    out = process.stdout.read()
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    return process.wait(), out, b"".join(chunks)


def test_progress_goes_to_a_terminal_stderr_and_never_into_stdout() -> None:
    code, out, err = _run_with_terminal_stderr(["analyze", str(EXTERNAL), "-f", "json"])
    assert code == 0
    json.loads(out)  # stdout is only the document
    assert b"reading" in err and b"kB" in err
    code, out, err = _run_with_terminal_stderr(["analyze", str(EXTERNAL), "-f", "json", "--quiet"])
    assert code == 0 and b"reading" not in err
    json.loads(out)


# -- timeline ---------------------------------------------------------------------------------------


def test_timeline_table_marks_the_failure(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "timeline", str(WRONG_PASSWORD), "--session", "s2")
    assert code == 0
    assert "s2 CONTOSO\\judy" in out and "s1 " not in out
    assert "+0.000 s" in out and " ms" in out
    assert "✖ failed at webticket: NTLM credentials refused" in out
    assert 'evidence: HTTP 401 after complete NTLM credentials ("401 - Unauthorized' in out
    code, out, _ = run_cli(capsys, "timeline", str(WRONG_PASSWORD))
    assert all(f"s{i} CONTOSO\\judy" in out for i in (1, 2, 3))


def test_timeline_shows_the_path_whatever_the_case_of_the_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Host names are case-insensitive: a client writing `Host: LyncDiscover.Contoso.com` gets the
    same table (the path, its server below), not an internal error."""
    raw = EXTERNAL.read_bytes()
    assert raw.count(b"Host: lyncdiscover.contoso.com") == 1
    mixed = tmp_path / "mixed-case-host.pcapng"
    mixed.write_bytes(raw.replace(b"Host: lyncdiscover.contoso.com", b"Host: LyncDiscover.Contoso.com"))
    code, out, err = run_cli(capsys, "timeline", str(mixed))
    assert code == 0, err
    assert "GET /?sipuri=carol@contoso.com" in out and "lyncdiscover.contoso.com · frame 4" in out


def test_url_target_keeps_the_port_and_path_after_the_host() -> None:
    from lyncpcap.report.view import url_target

    assert url_target("http://LyncDiscover.Contoso.com/?sipuri=a@b") == "/?sipuri=a@b"
    assert url_target("https://lyncweb.contoso.com:4443/WebTicket/WebTicketService.svc") == ":4443/WebTicket/WebTicketService.svc"
    assert url_target("https://[2001:db8::5]:443/x") == ":443/x"
    assert url_target("https://user@host") == "/"
    assert url_target("https://host?q=1") == "?q=1"
    assert url_target("/relative/path") == "/relative/path"


def test_timeline_formats(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_cli(capsys, "timeline", str(NXDOMAIN), "--session", "s2", "--format", "mermaid")
    assert out.startswith("sequenceDiagram\n") and "--x" in out and "NXDOMAIN" in out
    _, out, err = run_cli(capsys, "timeline", str(EXTERNAL), "--format", "mermaid")  # the only session
    assert out.startswith("sequenceDiagram\n") and "participant P2 as Reverse proxy" in out and err == ""
    code, out, err = run_cli(capsys, "timeline", str(NXDOMAIN), "--format", "mermaid")  # two: the failed one
    assert code == 0 and out.startswith("sequenceDiagram\n    title s2 ")
    assert err == "Mermaid diagram of s2, the first that failed of the sessions; for s1 use --session\n"
    _, out, _ = run_cli(capsys, "timeline", str(NXDOMAIN), "--format", "markdown")
    assert out.count("```mermaid") == 2 and out.startswith("## s1 — ")
    _, out, _ = run_cli(capsys, "timeline", str(NXDOMAIN), "--format", "json", "--session", "s1")
    assert [s["id"] for s in json.loads(out)] == ["s1"]
    _, out, _ = run_cli(capsys, "timeline", str(NXDOMAIN), "--format", "csv", "--session", "s2")
    assert len(out.splitlines()) == 1 + 2


# -- plot -----------------------------------------------------------------------------------------


def test_plot_writes_pictures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "all.png"
    code, out, err = run_cli(capsys, "plot", str(WRONG_PASSWORD), "--output", str(png))
    assert code == 0 and out == "" and str(png) in err
    assert png.read_bytes().startswith(b"\x89PNG")
    svg = tmp_path / "s1.svg"
    code, _, _ = run_cli(capsys, "plot", str(WRONG_PASSWORD), "--session", "s1", "--output", str(svg), "-q")
    assert code == 0 and b"<svg" in svg.read_bytes()[:2000]
    ladder = tmp_path / "ladder.png"
    code, _, err = run_cli(capsys, "plot", str(EXTERNAL), "--kind", "ladder", "--output", str(ladder))
    assert code == 0 and ladder.stat().st_size > 10_000, err
    empty = tmp_path / "empty.png"
    code, _, err = run_cli(capsys, "plot", str(TLS_ONLY), "--output", str(empty))
    assert code == 0 and empty.exists() and "no sign-in sessions" in err


# -- batch ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batch_run(tmp_path_factory: pytest.TempPathFactory, corrupt: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("batch") / "reports"
    run = subprocess.run(
        [sys.executable, "-m", "lyncpcap", "batch", str(SAMPLES), str(corrupt), "--output", str(out), "--jobs", "2"],
        capture_output=True, text=True, cwd=ROOT, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return out, run


def test_batch_writes_every_report_and_lists_the_corrupt_capture(
    batch_run: tuple[Path, subprocess.CompletedProcess[str]], corrupt: Path
) -> None:
    out, run = batch_run
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    captures = sample_captures()
    for capture in captures:
        stem = capture.name.split(".")[0]
        assert (out / f"{stem}.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
        assert json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))["schema"] == 1
    assert not list(out.glob("damaged*"))
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "Could not be read" in index and f"{corrupt}: not a pcap, pcapng or Network Monitor file" in index
    assert all(f"href='{c.name.split('.')[0]}.html'" in index for c in captures)
    assert f"warning: {corrupt}: not a pcap, pcapng or Network Monitor file" in run.stderr
    assert f"analysed {len(captures)} of {len(captures) + 1} capture(s)" in run.stderr


def test_batch_combined_tables(batch_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = batch_run
    expected_sessions = 0
    for capture in sample_captures():
        expected_sessions += len(json.loads((out / f"{capture.name.split('.')[0]}.json").read_text())["sessions"])
    for name in ("sessions", "steps", "clients", "findings"):
        frame = pd.read_csv(out / f"{name}.csv")
        assert frame.columns[0] == "capture"
        parquet = pd.read_parquet(out / f"{name}.parquet")
        assert len(parquet) == len(frame) and list(parquet.columns) == list(frame.columns)
    sessions = pd.read_csv(out / "sessions.csv")
    assert len(sessions) == expected_sessions
    assert set(sessions["capture"]) == {str(c) for c in sample_captures()
                                        if json.loads((out / f"{c.name.split('.')[0]}.json").read_text())["sessions"]}
    parquet = pd.read_parquet(out / "sessions.parquet")
    assert str(parquet["start"].dtype) == "datetime64[ns, UTC]" and str(parquet["outcome"].dtype) == "category"
    clients = pd.read_csv(out / "clients.csv")
    assert clients["sessions"].sum() == expected_sessions


def test_batch_recurses_names_uniquely_and_skips_other_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = SAMPLES / "09d-mex-404.pcapng"
    for folder in ("site-a", "site-b/deeper"):
        (tmp_path / "in" / folder).mkdir(parents=True)
        shutil.copy(source, tmp_path / "in" / folder / source.name)
    (tmp_path / "in" / "notes.txt").write_text("not a capture")
    shutil.copy(SAMPLES / "09f-oauth-invalid-grant.pcap", tmp_path / "in" / "renamed.bin")  # pcap by content
    code, _, err = run_cli(capsys, "batch", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "-j", "2", "-q")
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "out").glob("*.html"))
    assert names == ["index.html", "renamed.html", "site-a__09d-mex-404.html", "site-b__deeper__09d-mex-404.html"]
    index = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "notes.txt" in index and "1 file(s) skipped" in index


def test_batch_with_nothing_readable_is_exit_2(corrupt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "batch", str(corrupt), "--output", str(tmp_path / "out"))
    assert code == 2
    assert "none of the 1 capture(s) could be read" in err
    assert "Could not be read" in (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
