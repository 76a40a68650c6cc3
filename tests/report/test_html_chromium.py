"""The HTML report in a real browser (Debian's headless Chromium): no console errors, the summary
table and a timeline picture on screen, the session filter working without a server.

The report and a screenshot stay in artifacts/chromium/ for a person to look at.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from reportkit import ROOT, SAMPLES, run_cli

ARTIFACTS = ROOT / "artifacts" / "chromium"
WINDOW = (1400, 2200)

#: Added to a copy of the report: measures the page once it has loaded and writes the answers into
#: an attribute that --dump-dom shows.  It also drives the filter like a user would.
PROBE = """
<script>
window.addEventListener('load', function () {
  function onScreen(el) {
    if (!el) { return false; }
    var r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && r.top < window.innerHeight && r.bottom > 0;
  }
  var pictures = Array.prototype.slice.call(document.querySelectorAll('figure.timeline img'));
  var result = {
    summary: onScreen(document.getElementById('client-summary')),
    summaryRows: document.querySelectorAll('#client-summary tbody tr').length,
    timeline: pictures.some(function (img) { return img.complete && img.naturalWidth > 200 && onScreen(img); }),
    pictures: pictures.length
  };
  var rows = Array.prototype.slice.call(document.querySelectorAll('#sessions-table tbody tr'));
  function shown() { return rows.filter(function (r) { return !r.hidden; }).length; }
  var input = document.getElementById('session-filter');
  var success = document.querySelector('input[name="outcome"][value="success"]');
  result.rows = shown();
  success.checked = false; success.dispatchEvent(new Event('change'));
  result.withoutSuccess = shown();
  success.checked = true; success.dispatchEvent(new Event('change'));
  input.value = 'NXDOMAIN'; input.dispatchEvent(new Event('input'));
  result.filtered = shown();
  input.value = ''; input.dispatchEvent(new Event('input'));
  document.documentElement.setAttribute('data-probe', JSON.stringify(result));
});
</script>
"""


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_report_renders_in_chromium(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed (scripts/test.sh installs it: apt-get install chromium)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    report = ARTIFACTS / "report.html"
    capture = SAMPLES / "09c-lyncdiscover-nxdomain.pcap"  # one success, one failure
    code, _, err = run_cli(capsys, "analyze", str(capture), "--format", "html", "--output", str(report))
    assert code == 0, err
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    screenshot = ARTIFACTS / "report.png"
    screenshot.unlink(missing_ok=True)
    run = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         f"--screenshot={screenshot}", "--dump-dom", f"--window-size={WINDOW[0]},{WINDOW[1]}",
         probed.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], "\n".join(console)
    dom = run.stdout
    assert 'id="client-summary"' in dom
    assert re.search(r'<img [^>]*src="data:image/png;base64,', dom)
    match = re.search(r"data-probe=\"([^\"]*)\"", dom)
    assert match, "the probe did not run (the page never finished loading?)"
    probe = json.loads(match.group(1).replace("&quot;", '"'))
    assert probe["summary"] and probe["summaryRows"] == 2, probe
    assert probe["timeline"], probe
    assert probe["pictures"] == 1 + 2  # the overview and one timeline per session
    assert (probe["rows"], probe["withoutSuccess"], probe["filtered"]) == (2, 1, 1), probe
    assert png_size(screenshot) == WINDOW
    assert screenshot.stat().st_size > 50_000  # a rendered page, not a blank one


def test_console_errors_would_be_seen(tmp_path: Path) -> None:
    """The check above is only worth something if Chromium reports script errors this way."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed (scripts/test.sh installs it: apt-get install chromium)")
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>notDefined();</script></body></html>", encoding="utf-8")
    run = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert any(":CONSOLE" in line and "notDefined" in line for line in run.stderr.splitlines())
