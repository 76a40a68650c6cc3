"""Several processes give one process's results: every sample, every corpus file, a generated
benchmark capture, a damaged capture, and through the command line.

`lyncpcap.parallel` shares a capture's clients out between workers and merges their steps back
in capture order; everything a user sees (the JSON document, warnings, statistics) must be
byte for byte what `--jobs 1` gives.  Timings are the benchmark's business (bench/).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, analysis_document, capture_id, every_capture

import lyncpcap
from lyncpcap import parallel
from lyncpcap.flows import dispatch
from lyncpcap.flows.partition import Partition

sys.path.insert(0, str(ROOT))

from bench.generate import generate

CAPTURES = every_capture()
_ids = capture_id
_document = analysis_document


@pytest.fixture
def split_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the analyses that really went through the workers."""
    runs: list[int] = []
    real = parallel.analyse_parallel

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        runs.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(parallel, "analyse_parallel", spy)
    return runs


def _same(capture: Path, jobs: int) -> None:
    one = lyncpcap.analyze(capture, jobs=1)
    several = lyncpcap.analyze(capture, jobs=jobs)
    assert _document(several) == _document(one)
    assert several.captures[0].stats == one.captures[0].stats
    assert several.captures[0].warnings == one.captures[0].warnings
    # a decoder's exception would be contained and named in a warning: none on any real capture
    assert not any("internal error" in w for w in one.captures[0].warnings)


@pytest.mark.parametrize("capture", CAPTURES, ids=_ids)
def test_two_workers_give_one_process_results(capture: Path, split_runs: list[int]) -> None:
    _same(capture, 2)
    # captures with TLS secrets in front of the packets stay in one process (tshark decrypts)
    assert split_runs == ([2] if parallel.can_split(capture) else [])


def test_most_captures_are_split() -> None:
    assert sum(parallel.can_split(c) for c in CAPTURES) >= len(CAPTURES) - 6


@pytest.mark.parametrize(
    "name", ["10-password-spray.pcapng", "11-background-noise.pcapng", "09i-connect-failures.pcapng"]
)
def test_workers_sweep_the_connection_table_like_one_process(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # housekeeping every 16 packets, a sweep each second: the workers' positions at the sweeps,
    # and the connections they forget, must not change anything
    capture = ROOT / "sample_captures" / name
    monkeypatch.setattr(dispatch, "HOUSEKEEPING_EVERY", 16)
    monkeypatch.setattr(dispatch, "SWEEP_SECONDS", 1.0)
    _same(capture, 2)


def test_three_workers_on_a_generated_benchmark_capture(tmp_path: Path, split_runs: list[int]) -> None:
    capture = tmp_path / "bench.pcapng"
    generate(capture, signins=60, seed=11)
    summary = json.loads(capture.with_name(capture.name + ".summary.json").read_text())
    one = lyncpcap.analyze(capture, jobs=1)
    three = lyncpcap.analyze(capture, jobs=3)
    assert split_runs == [3]
    assert _document(three) == _document(one)
    assert len(three.sessions) == summary["signins"]


def test_a_damaged_capture_gives_the_same_warnings(tmp_path: Path) -> None:
    source = ROOT / "sample_captures" / "02-desktop-external-ntlm.pcapng"
    cut = tmp_path / "cut.pcapng"
    data = source.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3 + 5])
    one = lyncpcap.analyze(cut, jobs=1)
    two = lyncpcap.analyze(cut, jobs=2)
    assert any("truncated" in w for w in two.captures[0].warnings)
    assert _document(two) == _document(one)


def test_small_captures_stay_in_one_process(monkeypatch: pytest.MonkeyPatch, split_runs: list[int]) -> None:
    capture = ROOT / "sample_captures" / "02-desktop-external-ntlm.pcapng"
    monkeypatch.setattr(parallel, "available_cpus", lambda: 8)
    assert parallel.auto_jobs(capture) == 1
    lyncpcap.analyze(capture)
    assert split_runs == []
    monkeypatch.setattr(parallel, "MIN_BYTES", 1)
    assert parallel.auto_jobs(capture) == parallel.MAX_AUTO_JOBS
    monkeypatch.setattr(parallel, "available_cpus", lambda: 1)
    assert parallel.auto_jobs(capture) == 1


def test_a_worker_error_is_one_line_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lyncpcap.errors import CaptureError

    capture = ROOT / "sample_captures" / "02-desktop-external-ntlm.pcapng"

    def broken(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(dispatch.Dispatcher, "run", broken)
    with pytest.raises(CaptureError) as caught:
        lyncpcap.analyze(capture, jobs=2)
    message = str(caught.value)
    assert message.startswith(str(capture)) and "decoder exploded" in message and "\n" not in message


def test_the_callers_garbage_collector_settings_are_left_as_they_were(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent collects less often while it merges; a notebook's own settings come back, after
    an analysis and after a failed one."""
    import gc

    capture = ROOT / "sample_captures" / "02-desktop-external-ntlm.pcapng"
    seen: list[tuple[int, ...]] = []
    real = parallel._merge

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(gc.get_threshold())
        return real(*args, **kwargs)

    monkeypatch.setattr(parallel, "_merge", spy)
    before = gc.get_threshold()
    try:
        gc.set_threshold(1234, 7, 5)
        lyncpcap.analyze(capture, jobs=2)
        assert seen == [(parallel.MERGE_GC_THRESHOLD, 7, 5)] and gc.get_threshold() == (1234, 7, 5)
        monkeypatch.setattr(dispatch.Dispatcher, "run", lambda *a, **k: 1 / 0)
        with pytest.raises(Exception, match="ZeroDivisionError"):
            lyncpcap.analyze(capture, jobs=2)
        assert gc.get_threshold() == (1234, 7, 5)
    finally:
        gc.set_threshold(*before)


def test_partitions_share_every_address_out_once() -> None:
    parts = [Partition(i, 3) for i in range(3)]
    addresses = [ipaddress.ip_address(f"10.0.{n // 256}.{n % 256}").packed for n in range(3000)]
    addresses += [ipaddress.ip_address(f"2001:db8::{n:x}").packed for n in range(3000)]
    owners = [[p.index for p in parts if p.owns(a)] for a in addresses]
    assert all(len(o) == 1 for o in owners)
    shares = [sum(o == [i] for o in owners) for i in range(3)]
    assert min(shares) > len(addresses) / 3 * 0.9  # evenly enough for the work to split
    with pytest.raises(ValueError):
        Partition(3, 3)


def test_cli_jobs_gives_the_same_document(tmp_path: Path) -> None:
    capture = ROOT / "sample_captures" / "10-password-spray.pcapng"
    out = {}
    for jobs in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-m", "lyncpcap", "analyze", str(capture), "--format", "json", "--jobs", jobs, "-q"],
            capture_output=True, text=True, check=True,
        )
        out[jobs] = done.stdout
    assert json.loads(out["1"])["sessions"] and out["1"] == out["2"]
    bad = subprocess.run(
        [sys.executable, "-m", "lyncpcap", "analyze", str(capture), "--jobs", "0"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "--jobs" in bad.stderr


def test_a_reader_that_goes_away_stops_the_workers_quietly(tmp_path: Path) -> None:
    capture = tmp_path / "bench.pcapng"
    generate(capture, signins=40, seed=5)
    done = subprocess.run(
        f"{sys.executable} -m lyncpcap analyze {capture} --format jsonl --jobs 2 -q | head -c 300 >/dev/null",
        shell=True, capture_output=True, text=True, timeout=120,
    )
    assert "Traceback" not in done.stderr, done.stderr
    leftover = subprocess.run(["pgrep", "-f", str(capture)], capture_output=True, text=True).stdout  # forked workers keep the command line
    assert not leftover.strip()


def test_workers_that_number_connections_apart_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # forget idle connections after one sweep, sweep every 2 packets: a worker forgets the other
    # worker's quiet connections while their owner keeps them, so the counts part
    capture = ROOT / "sample_captures" / "10-password-spray.pcapng"
    monkeypatch.setattr(dispatch, "HOUSEKEEPING_EVERY", 2)
    monkeypatch.setattr(dispatch, "SWEEP_SECONDS", 0.0)
    monkeypatch.setattr(dispatch, "IDLE_SWEEPS", 1)
    one = lyncpcap.analyze(capture, jobs=1)
    two = lyncpcap.analyze(capture, jobs=2)
    parted = [w for w in two.captures[0].warnings if "numbered TCP connections differently" in w]
    if _document(two) != _document(one):
        assert parted  # whatever differs, the user is told
    assert parted, "this setting parts the counts: the check must see it"


def test_the_connection_count_check_compares_workers_not_reports() -> None:
    import math

    agree = parallel._Agreement(2)
    agree.count(65535.5, 0, 10)
    agree.count(math.inf, 0, 12)  # worker 0 reports the end twice (its last pass, its summary)
    agree.count(math.inf, 0, 12)
    agree.count(65535.5, 1, 10)
    assert agree.parted_at is None
    agree.count(math.inf, 1, 13)
    assert agree.parted_at == math.inf


def test_no_workers_to_be_had_means_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    import multiprocessing.process

    capture = ROOT / "sample_captures" / "10-password-spray.pcapng"
    one = lyncpcap.analyze(capture, jobs=1)

    def refuse(self):  # type: ignore[no-untyped-def]
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", refuse)
    assert _document(lyncpcap.analyze(capture, jobs=2)) == _document(one)
