"""Every output format for every sample capture, through the command line: present, well formed,
complete, and free of the truth file's secrets."""

from __future__ import annotations

import dataclasses
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
from reportkit import analysis_of, run_cli, sample_captures, truth_of

from lyncpcap.model import Session
from lyncpcap.report import exports, html, markdown, mermaid, notebook, table

MERMAID_LINE = re.compile(
    r"^(sequenceDiagram"
    r"|    title [^#;%\n]+"
    r"|    participant P\d+ as [^#;%\n]+"
    r"|    Note over P\d+(,P\d+)?: [^#;%\n]+"
    r"|    P\d+(->>|-->>|--x)P\d+: [^#;%\n]+)$"
)


class Page(HTMLParser):
    """Collects what the HTML checks need: ids, image sources, links, open/close balance."""

    VOID: ClassVar[frozenset[str]] = frozenset({"meta", "img", "br", "input", "link", "hr"})

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.rows: dict[str, int] = {}
        self._table: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "img":
            self.srcs.append(str(a.get("src")))
        if tag in ("a", "link") and "href" in a:
            self.hrefs.append(str(a["href"]))
        if tag == "table":
            self._table.append(str(a.get("id") or ""))
        if tag == "tr" and self._table:
            self.rows[self._table[-1]] = self.rows.get(self._table[-1], 0) + 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._table:
            self._table.pop()
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()


def check_mermaid(text: str) -> None:
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == "sequenceDiagram"
    declared = set()
    for line in lines:
        plain = re.sub(r"#\d+;", "", line)  # entity codes are how #, ; and % are written
        assert MERMAID_LINE.match(plain), line
        if line.startswith("    participant "):
            declared.add(line.split()[1])
    used = set(re.findall(r"\bP\d+\b", "\n".join(lines[1:])))
    assert used <= declared


@pytest.mark.parametrize("capture", sample_captures(), ids=lambda p: p.stem)
def test_every_format(capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    analysis = analysis_of(capture.name)
    sessions = analysis.session_list
    outputs: dict[str, str] = {}
    for fmt, name in (("table", "report.txt"), ("json", "report.json"), ("jsonl", "report.jsonl"),
                      ("markdown", "report.md"), ("html", "report.html"), ("csv", "sessions-only.csv")):
        code, out, err = run_cli(capsys, "analyze", str(capture), "--format", fmt, "--output", str(tmp_path / name))
        assert code == 0, err
        assert out == ""  # data went to the file, nothing to stdout
        outputs[fmt] = (tmp_path / name).read_text(encoding="utf-8")
    code, _, err = run_cli(capsys, "analyze", str(capture), "--format", "csv", "--output", str(tmp_path / "tables"))
    assert code == 0, err
    for name in exports.CSV_TABLES:
        outputs[f"csv:{name}"] = (tmp_path / "tables" / f"{name}.csv").read_text(encoding="utf-8")
    outputs["mermaid"] = "".join(mermaid.sequence_diagram(s) for s in sessions)
    outputs["timeline"] = "".join(table.render_text(table.timeline_table(s)) for s in sessions)
    outputs["notebook"] = json.dumps(notebook.analysis_bundle(analysis))

    # table: the four parts of the terminal view
    for heading in ("Read", "Clients and authentication protocols", "Sessions", "Findings"):
        assert heading in outputs["table"]
    assert all(f.id in outputs["table"] for f in analysis.finding_list)
    # json / jsonl / csv: complete
    assert len(json.loads(outputs["json"])["sessions"]) == len(sessions)
    assert sum(1 for line in outputs["jsonl"].splitlines() if json.loads(line)["type"] == "session") == len(sessions)
    frame = pd.read_csv(tmp_path / "tables" / "sessions.csv")
    assert list(frame["id"]) == [s.id for s in sessions]
    assert outputs["csv"] == outputs["csv:sessions"]
    steps = pd.read_csv(tmp_path / "tables" / "steps.csv")
    assert len(steps) == len(analysis.step_list)
    # markdown: the seed-shaped table and, per unsuccessful session, its steps and diagram
    if sessions:
        assert "| Client | Authentication protocol | Sessions | Succeeded | Failed | Median time |" in outputs["markdown"]
    for s in sessions:
        if s.outcome != "success":
            assert f"### {s.id} — " in outputs["markdown"]
            if s.failure:
                assert markdown.text(s.failure["reason"]) in outputs["markdown"]
    assert outputs["markdown"].count("```mermaid") == sum(1 for s in sessions if s.outcome != "success" and s.steps)
    # mermaid: every line in the grammar, for every session
    for s in sessions:
        check_mermaid(mermaid.sequence_diagram(s))
    # html: balanced, self-contained, with a summary, the sessions and two pictures per session
    page = Page()
    page.feed(outputs["html"])
    assert page.errors == [] and page.stack == []
    assert all(src.startswith("data:image/png;base64,") for src in page.srcs)
    assert all(href.startswith("#") for href in page.hrefs)
    assert "Content-Security-Policy" in outputs["html"]
    assert len(page.srcs) == 1 + 2 * sum(1 for s in sessions if s.steps)
    if sessions:
        assert {"client-summary", "sessions-table"} <= page.ids
        assert page.rows["sessions-table"] == len(sessions) + 1
        assert {f"session-{s.id}" for s in sessions} <= page.ids
    # secrets: none, anywhere
    for secret in truth_of(capture)["secrets"]:
        for fmt, text in outputs.items():
            assert secret not in text, f"a secret leaks into {fmt}"


def test_reveal_secrets_reaches_the_json(capsys: pytest.CaptureFixture[str]) -> None:
    capture = next(p for p in sample_captures() if p.name.startswith("09f-"))
    secrets = truth_of(capture)["secrets"]
    _, hidden, _ = run_cli(capsys, "analyze", str(capture), "--format", "json")
    _, shown, _ = run_cli(capsys, "analyze", str(capture), "--format", "json", "--reveal-secrets")
    assert not any(s in hidden for s in secrets)
    assert any(s in shown for s in secrets)


def _hostile(session: Session) -> Session:
    """A failed session whose capture text is full of HTML, rich, Markdown and Mermaid syntax."""
    evidence = 'ms-diagnostics: 4004;reason="x";source="fe#1" %% <b>'
    steps = list(session.steps)
    steps[2] = dataclasses.replace(steps[2], detail="[bold]not markup[/bold] <i>x</i>",
                                   url="https://h/p?password=hunter2&wa=wsignin1.0")
    steps[-1] = dataclasses.replace(steps[-1], failure_reason="a | pipe `tick` *star*", failure_evidence=evidence)
    return dataclasses.replace(
        session, user="<script>alert(1)</script>", steps=steps, outcome="failure",
        failure={"step": steps[-1].step, "reason": "a | pipe `tick` *star*", "evidence": evidence},
    )


def test_capture_text_cannot_inject_markup() -> None:
    s = _hostile(analysis_of("09a-wrong-password.pcapng").session_list[0])
    page = html.session_section(s, figures=False)
    assert "<script>" not in page and "&lt;script&gt;" in page and "<i>x</i>" not in page
    assert "hunter2" not in page
    text = table.render_text(table.timeline_table(s))
    assert "[bold]not markup[/bold]" in text and "hunter2" not in text
    md = markdown.session_markdown(s)
    assert "a \\| pipe \\`tick\\` \\*star\\*" in md and "hunter2" not in md
    diagram = mermaid.sequence_diagram(s)
    check_mermaid(diagram)
    assert "fe#35;1" in diagram and "4004#59;" in diagram and "#37;#37;" in diagram and "hunter2" not in diagram
    assert "hunter2" in html.session_section(s, reveal=True, figures=False)


def test_markdown_helpers() -> None:
    assert markdown.text("a|b *c* <d>") == "a\\|b \\*c\\* \\<d\\>"
    assert markdown.code("x`y|z") == "``x`y\\|z``"
    assert markdown.block("```inside```").startswith("````\n")
    assert markdown.table(["A", "B"], [["1", "2"]], "lr") == "| A | B |\n| --- | ---: |\n| 1 | 2 |"


def test_notebook_bundles() -> None:
    analysis = analysis_of("09b-locked-account.pcapng")
    bundle = analysis._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}
    assert "Clients and authentication protocols" in bundle["text/plain"]
    assert "<table" in bundle["text/html"] and "Lync 2013 Android (external network)" in bundle["text/html"]
    session = analysis.session(analysis.session_list[0].id)
    sb = session._repr_mimebundle_()
    assert "data:image/png;base64," in sb["text/html"] and "failed at" in sb["text/html"]
    assert "+0.000 s" in sb["text/plain"]
