"""The benchmark: lyncpcap's whole analysis against tshark and pyshark on one generated capture.

Each contender runs in a fresh process; its wall time, CPU time (user + system, its children
included) and peak resident memory (the kernel's figure for the largest process of the run, and
a 20 ms sample of the whole process tree) are taken from the operating system.  Then the same for
a sweep over 1/8, 1/4, 1/2 and all of the capture, and `lyncpcap batch` with one and two jobs.

    python -m bench.run                      # 5,000 sign-ins, seed 1: generated once, then reused
    python -m bench.run --signins 500 --no-batch --pyshark-fraction 0.2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.pyshark_iterate import DISPLAY_FILTER

OUT = Path(__file__).resolve().parent / "out"
ROOT = Path(__file__).resolve().parent.parent
TSHARK_FIELDS = (
    "frame.time_epoch",
    "ip.src",
    "ip.dst",
    "http.request.method",
    "http.request.uri",
    "http.response.code",
    "ntlmssp.messagetype",
    "ntlmssp.auth.username",
    "dns.qry.name",
)
SWEEP = ((1, 8), (1, 4), (1, 2), (1, 1))
#: `lyncpcap batch` runs on this leading part of the capture, cut in four captures.
BATCH_FRACTION = 16
MB = 1_000_000


@dataclass(slots=True)
class Run:
    """One measured process."""

    label: str
    command: list[str]
    wall_s: float
    cpu_s: float  # user + system, of the process and the children it waited for
    peak_rss_mb: float  # the kernel's maximum resident set of the largest process in the run
    peak_tree_mb: float  # sampled every 20 ms: the whole process tree at once
    exit_code: int
    note: str = ""
    scale: float = 1.0  # time figures are multiplied by this to stand for the whole capture
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def wall(self) -> float:
        return self.wall_s * self.scale

    @property
    def cpu(self) -> float:
        return self.cpu_s * self.scale


def _tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and its descendants, from /proc (0 once it is gone)."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return total


def contender_env() -> dict[str, str]:
    """The environment the contenders run in: Python's bytecode cached, as an installed package has
    it (pip compiles it at install time).  A machine that sets PYTHONDONTWRITEBYTECODE, as this
    one's sandbox does, would otherwise recompile every module at every start: 0.15 s of
    lyncpcap's start-up, measured as if it were analysis."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def measure(label: str, command: Sequence[str], *, stdout: Path | None = None, note: str = "") -> Run:
    """Run `command` to completion in a fresh process and take its times and memory."""
    peak_tree = 0
    done = threading.Event()
    with tempfile.TemporaryFile() as err, open(stdout or os.devnull, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(list(command), stdout=out, stderr=err, cwd=ROOT, env=contender_env())

        def sample() -> None:
            nonlocal peak_tree
            while not done.wait(0.02):
                peak_tree = max(peak_tree, _tree_rss_kb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-2000:]
            raise SystemExit(f"{label} failed (exit {proc.returncode}): {' '.join(command)}\n{tail}")
    return Run(
        label=label,
        command=list(command),
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss * 1024 / MB,
        peak_tree_mb=max(peak_tree, usage.ru_maxrss) * 1024 / MB,
        exit_code=proc.returncode,
        note=note,
    )


def best_of(repeat: int, label: str, command: Sequence[str], **kw: object) -> Run:
    runs = [measure(label, command, **kw) for _ in range(repeat)]  # type: ignore[arg-type]
    best = min(runs, key=lambda r: r.wall_s)
    if repeat > 1:
        best.note = (best.note + " " if best.note else "") + f"best of {repeat} (walls {', '.join(f'{r.wall_s:.1f}' for r in runs)} s)"
    return best


# -- contenders -------------------------------------------------------------------------------------


def lyncpcap_command(capture: Path, *extra: str) -> list[str]:
    """The whole job, as a user runs it (on a large capture: one worker per CPU)."""
    return [sys.executable, "-m", "lyncpcap", "analyze", str(capture), "--format", "json", *extra]


def tshark_command(capture: Path) -> list[str]:
    fields = [arg for f in TSHARK_FIELDS for arg in ("-e", f)]
    return [_tool("tshark"), "-r", str(capture), "-Y", DISPLAY_FILTER, "-T", "fields", *fields]


def pyshark_command(capture: Path) -> list[str]:
    return [sys.executable, "-m", "bench.pyshark_iterate", str(capture)]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} is not installed (apt-get install tshark)")
    return path


def prefix(capture: Path, packets: int, total: int, into: Path) -> Path:
    """The first `packets` packets of the capture (editcap), made once."""
    if packets >= total:
        return capture
    out = into / f"{capture.stem}-first{packets}{capture.suffix}"
    if not out.exists():
        subprocess.run([_tool("editcap"), "-r", str(capture), str(out), f"1-{packets}"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out


def split(capture: Path, parts: int, total: int, into: Path) -> Path:
    """A folder holding the capture cut in `parts` consecutive pieces (editcap -c), made once."""
    folder = into / f"{capture.stem}-in-{parts}"
    if not folder.exists():
        folder.mkdir(parents=True)
        per = -(-total // parts)
        subprocess.run([_tool("editcap"), "-c", str(per), str(capture), str(folder / f"part{capture.suffix}")],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return folder


_FOUND = """
import json, sys
doc = json.load(open(sys.argv[1], encoding="utf-8"))
outcomes = {}
for s in doc["sessions"]:
    outcomes[s["outcome"]] = outcomes.get(s["outcome"], 0) + 1
print(json.dumps({"sessions": len(doc["sessions"]), "outcomes": dict(sorted(outcomes.items())),
                  "packets": doc["captures"][0]["packets"], "findings": len(doc["findings"])}))
"""


#: the largest TLS sample capture with a key log (issue: lyncpcap's cost on top of tshark's decryption)
TLS_SAMPLE = ROOT / "sample_captures" / "02-desktop-external-ntlm-tls.pcapng"


def tls_overhead(repeat: int) -> list[Run]:
    """lyncpcap on a TLS capture with its key log against tshark's own decryption pass."""
    keylog = TLS_SAMPLE.with_suffix(".keylog")
    mine = best_of(repeat, "lyncpcap analyze --keylog --format json",
                   [*lyncpcap_command(TLS_SAMPLE), "--keylog", str(keylog)], stdout=OUT / "tls.lyncpcap.json")
    theirs = best_of(repeat, "tshark -o tls.keylog_file -Y http -T fields",
                     [_tool("tshark"), "-r", str(TLS_SAMPLE), "-o", f"tls.keylog_file:{keylog}", "-Y", "http",
                      "-T", "fields", "-e", "http.request.uri"], stdout=OUT / "tls.tshark.tsv")
    return [mine, theirs]


def found_sessions(path: Path) -> dict[str, object]:
    """What lyncpcap's JSON document says, read in another process: this one stays small, because
    a child's peak RSS as the kernel reports it starts from its parent's size at the fork."""
    out = subprocess.run([sys.executable, "-c", _FOUND, str(path)], capture_output=True, text=True, check=True)
    found: dict[str, object] = json.loads(out.stdout)
    return found


# -- report -------------------------------------------------------------------------------------------


def machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        with open("/proc/meminfo") as f:
            mem_gib = int(f.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        mem_gib = 0.0
    tshark = subprocess.run([_tool("tshark"), "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                                cwd=ROOT).stdout.strip())
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "tshark": tshark,
        "lyncpcap_commit": commit + ("+changes" if dirty else ""),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--signins", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--capture", type=Path, help="an existing capture instead of a generated one")
    parser.add_argument("--repeat", type=int, default=1, help="runs of lyncpcap and tshark; the fastest counts")
    parser.add_argument("--pyshark-fraction", type=float, default=0.1,
                        help="pyshark reads this leading part of the capture; its times are scaled up")
    parser.add_argument("--no-pyshark", action="store_true")
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--no-batch", action="store_true")
    parser.add_argument("--no-tls", action="store_true")
    parser.add_argument("--results", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)

    OUT.mkdir(parents=True, exist_ok=True)
    # the bytecode the contenders' first runs would otherwise write while being timed
    subprocess.run([sys.executable, "-m", "compileall", "-q", "lyncpcap", "bench"], check=True, cwd=ROOT,
                   env=contender_env(), stdout=subprocess.DEVNULL)
    if args.capture is not None:
        capture = args.capture.resolve()
        summary: dict[str, object] = {}
        summary_path = capture.with_name(capture.name + ".summary.json")
        if summary_path.exists():
            summary = json.loads(summary_path.read_text())
    else:
        capture = OUT / f"bench-{args.signins}-s{args.seed}.pcapng"
        summary_path = capture.with_name(capture.name + ".summary.json")
        if capture.exists() and summary_path.exists():
            summary = json.loads(summary_path.read_text())
        else:
            print(f"generating {capture.name} ({args.signins} sign-ins, seed {args.seed}) ...", flush=True)
            subprocess.run([sys.executable, "-m", "bench.generate", "--signins", str(args.signins), "--seed",
                            str(args.seed), "--output", str(capture)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            summary = json.loads(summary_path.read_text())
    info = machine()
    size = capture.stat().st_size
    packets = int(str(summary.get("packets") or 0))
    if not packets:
        out = subprocess.run([_tool("capinfos"), "-M", "-c", str(capture)], capture_output=True, text=True).stdout
        packets = int(out.strip().splitlines()[-1].split(":")[-1])
    print(f"capture   {capture.name}: {packets:,} packets, {size / MB:,.0f} MB, "
          f"{summary.get('signins', '?')} sign-ins (seed {summary.get('seed', '?')})")
    print(f"machine   {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; Python {info['python']}; "
          f"{info['tshark']}; lyncpcap {info['lyncpcap_commit']}; load average {info['load_average']}", flush=True)

    runs: list[Run] = []
    json_out = OUT / f"{capture.stem}.lyncpcap.json"
    lync = best_of(args.repeat, "lyncpcap analyze --format json", lyncpcap_command(capture), stdout=json_out)
    lync.extra = found_sessions(json_out)
    runs.append(lync)
    print(f"  lyncpcap  {lync.wall_s:7.1f} s", flush=True)
    single_out = OUT / f"{capture.stem}.lyncpcap-jobs1.json"
    single = best_of(args.repeat, "lyncpcap analyze --jobs 1 (one process)", lyncpcap_command(capture, "--jobs", "1"),
                     stdout=single_out)
    single.note = (single.note + "; " if single.note else "") + (
        "same document" if single_out.read_bytes() == json_out.read_bytes() else "DIFFERENT DOCUMENT")
    runs.append(single)
    print(f"  lyncpcap --jobs 1 {single.wall_s:7.1f} s", flush=True)
    tshark = best_of(args.repeat, "tshark -Y ... -T fields", tshark_command(capture), stdout=OUT / f"{capture.stem}.tshark.tsv")
    runs.append(tshark)
    print(f"  tshark    {tshark.wall_s:7.1f} s", flush=True)
    if not args.no_pyshark:
        part = max(1, round(packets * args.pyshark_fraction))
        subset = prefix(capture, part, packets, OUT)
        py = measure("pyshark FileCapture(display_filter=...)", pyshark_command(subset))
        py.scale = packets / part
        py.note = f"read the first {part:,} packets ({part / packets:.0%}); times scaled x{py.scale:.2f}"
        runs.append(py)
        print(f"  pyshark   {py.wall_s:7.1f} s on {part:,} packets", flush=True)

    sweep: list[tuple[int, Run]] = []
    if not args.no_sweep:
        for num, den in SWEEP:
            n = packets * num // den
            if (num, den) == (1, 1):
                sweep.append((n, lync))
                continue
            r = measure(f"lyncpcap {num}/{den}", lyncpcap_command(prefix(capture, n, packets, OUT)))
            sweep.append((n, r))
            print(f"  sweep {num}/{den} {r.wall_s:7.1f} s", flush=True)

    batch: list[Run] = []
    batch_packets = packets // BATCH_FRACTION
    if not args.no_batch:
        # batch writes an HTML report with a plot per session for every capture: four small pieces
        # keep that to minutes, and the comparison is between one and two jobs on the same work
        head = prefix(capture, batch_packets, packets, OUT)
        folder = split(head, 4, batch_packets, OUT)
        for jobs in (1, 2):
            dest = OUT / f"batch-jobs{jobs}"
            shutil.rmtree(dest, ignore_errors=True)
            r = measure(f"lyncpcap batch --jobs {jobs}", [sys.executable, "-m", "lyncpcap", "batch", str(folder),
                                                         "--output", str(dest), "--jobs", str(jobs), "--quiet"])
            batch.append(r)
            print(f"  batch --jobs {jobs} {r.wall_s:7.1f} s", flush=True)

    tls: list[Run] = []
    if not args.no_tls:
        tls = tls_overhead(max(args.repeat, 5))
        print(f"  TLS       {tls[0].wall_s:7.2f} s vs tshark {tls[1].wall_s:.2f} s", flush=True)

    # -- the report ---------------------------------------------------------------------------
    print()
    print(f"lyncpcap vs tshark vs pyshark on {capture.name}: {packets:,} packets, {size / MB:,.0f} MB, "
          f"{summary.get('signins', '?')} sign-ins")
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB RAM, {info['os']}; "
          f"load average at the end {[round(x, 2) for x in os.getloadavg()]}")
    print()
    rows = []
    for r in runs:
        rows.append([r.label, f"{r.wall:.1f}", f"{r.cpu:.1f}", f"{r.peak_rss_mb:.0f}", f"{r.peak_tree_mb:.0f}", r.note])
    print(table(rows, ["", "wall s", "cpu s", "peak RSS MB", "tree MB", ""]))
    print()
    print(f"lyncpcap: {packets / lync.wall_s:,.0f} packets/s, {size / MB / lync.wall_s:,.1f} MB/s "
          f"(cpu: {packets / lync.cpu_s:,.0f} packets/s, {size / MB / lync.cpu_s:,.1f} MB/s)")
    found = lync.extra
    print(f"lyncpcap found {found['sessions']} sessions {found['outcomes']} and {found['findings']} findings; "
          f"the generator made {summary.get('signins', '?')} sign-ins {summary.get('outcomes', '')}")
    for r in runs[1:]:
        name = "lyncpcap --jobs 1" if r is single else r.label.split()[0]
        print(f"{name} / lyncpcap: wall x{r.wall / lync.wall:.1f}, cpu x{r.cpu / lync.cpu:.1f}; "
              f"peak RSS {r.peak_rss_mb:.0f} MB vs {lync.peak_rss_mb:.0f} MB "
              f"(whole tree {r.peak_tree_mb:.0f} MB vs {lync.peak_tree_mb:.0f} MB)")
    if sweep:
        print()
        base_n = sweep[-1][0]
        rows = []
        for n, r in sweep:
            per = r.wall_s / n * 1e6
            rows.append([f"{n / base_n:.3g} of the capture", f"{n:,}", f"{r.wall_s:.1f}", f"{r.cpu_s:.1f}",
                         f"{r.peak_rss_mb:.0f}", f"{per:.1f}", f"{n / r.wall_s:,.0f}"])
        print(table(rows, ["size sweep", "packets", "wall s", "cpu s", "peak RSS MB", "us/packet", "packets/s"]))
    if batch:
        print()
        one, two = batch
        print(f"lyncpcap batch on 4 captures of {batch_packets // 4:,} packets (the first 1/{BATCH_FRACTION} of the capture "
              f"cut in 4): --jobs 1 {one.wall_s:.1f} s, "
              f"--jobs 2 {two.wall_s:.1f} s: x{one.wall_s / two.wall_s:.2f} "
              f"(peak RSS {one.peak_tree_mb:.0f} MB vs {two.peak_tree_mb:.0f} MB, whole tree)")
    if tls:
        mine, theirs = tls
        print()
        print(f"decryption, {TLS_SAMPLE.name} with its key log (best of {max(args.repeat, 5)}): lyncpcap "
              f"{mine.wall_s:.2f} s (tshark's decryption pass included), tshark alone {theirs.wall_s:.2f} s: "
              f"x{mine.wall_s / theirs.wall_s:.2f}; lyncpcap adds {mine.wall_s - theirs.wall_s:.2f} s")
    results = {
        "capture": {"file": str(capture), "packets": packets, "bytes": size, **{k: summary.get(k) for k in ("signins", "seed")}},
        "machine": info,
        "runs": [asdict(r) | {"wall_total_s": r.wall, "cpu_total_s": r.cpu} for r in runs],
        "sweep": [{"packets": n, **asdict(r)} for n, r in sweep],
        "batch": [asdict(r) for r in batch],
        "tls": [asdict(r) for r in tls],
    }
    target = args.results or OUT / f"results-{capture.stem}.json"
    target.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nfigures written to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
