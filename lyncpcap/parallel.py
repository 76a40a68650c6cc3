"""One large capture analysed by several processes at once, with the results of one.

Each worker reads the whole capture but decodes only the traffic of the clients its `Partition`
owns (`flows/partition.py`): its share of the connections, reassembled and classified, while the
reader's prefilter drops the rest as cheaply as media.  The steps it completes go to the parent
through a pipe, tagged with the worker's position in the capture (the frame it was processing);
the parent merges the workers' streams in capture order — the order one process would have
completed them in — and hands them to the session builder as they come.  Sessions, findings and
reports are then built once, in the parent, exactly as for a single process.

At the end each worker reports what it counted (its own connections' TCP statistics, decode
errors, the TLS connections and authentication messages it saw); the parent adds them up into one
`CaptureResult`.  Counts that every worker sees whole (packets, bytes, the reader's warnings) are
taken from the first.

Only plain captures without decryption are split: TLS decryption and exported PDUs need the
whole capture in one engine.  Memory: each worker holds its share of the open connections; the
parent holds steps a faster worker sent ahead of a slower one, at most `BUFFERED` per worker
(a worker that far ahead waits on its pipe).
"""

from __future__ import annotations

import gc
import heapq
import math
import multiprocessing
import os
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from lyncpcap import engine
from lyncpcap.errors import CaptureError
from lyncpcap.flows.dispatch import flow_warnings
from lyncpcap.flows.partition import Partition
from lyncpcap.model import AuthExchange, Step
from lyncpcap.read import open_capture
from lyncpcap.read.pdu import LINKTYPE_WIRESHARK_UPPER_PDU

__all__ = ["BUFFERED", "MIN_BYTES", "WorkersUnavailable", "analyse_parallel", "auto_jobs", "can_split"]

#: Captures smaller than this are analysed in one process (starting workers would cost more).
MIN_BYTES = 48 << 20
#: Most workers `auto_jobs` starts (each one reads the whole capture).
MAX_AUTO_JOBS = 4
#: Steps a worker sends per message.
BATCH = 256
#: Steps the parent buffers from one worker before it stops reading that worker's pipe.
BUFFERED = 20_000
#: The parent's young-generation collection threshold while it merges (Python's default is 700).
#: Unpickling the workers' steps allocates millions of objects, short-lived or in no cycle;
#: collecting them every 700 allocations took about 12% of the parent's time on the benchmark
#: capture (3.5 -> 3.1 s CPU with 10,000).  Cycles are still collected, a little later.
MERGE_GC_THRESHOLD = 10_000

#: Statistics each worker counts for its own connections only: the parent adds them up.  Every
#: other count is of the whole capture, the same in every worker.
PER_WORKER_STATS = frozenset(
    {
        "tcp.retransmissions",
        "tcp.overlaps",
        "tcp.buffer_overflows",
        "tcp.truncated_bytes",
        "tcp.lost_segments",
        "tcp.lost_bytes",
    }
)


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def auto_jobs(path: str | Path) -> int:
    """Workers for `path` when the user did not say: one per CPU (up to MAX_AUTO_JOBS) for a plain
    capture of at least MIN_BYTES, else 1."""
    cpus = min(available_cpus(), MAX_AUTO_JOBS)
    if cpus < 2:
        return 1
    try:
        size = Path(path).stat().st_size
    except OSError:
        return 1
    return cpus if size >= MIN_BYTES else 1


def can_split(path: str | Path) -> bool:
    """True if `path` is a capture the workers can share: readable, no exported PDUs and no TLS
    secrets in front of its first packet (those need one engine and tshark)."""
    try:
        with open_capture(path) as cap:
            cap.read_head()
            return not cap.secrets and LINKTYPE_WIRESHARK_UPPER_PDU not in cap.linktypes
    except CaptureError:
        return False  # the single-process path words the error


# -- the worker ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Summary:
    """What a worker reports once it has read the whole capture."""

    format: str
    compressed: bool
    reader_warnings: list[str]
    unknown_linktypes: dict[int, int]
    stats: Counter[str]
    notes: list[str]
    kdc_errors: int
    dns_errors: int
    internal: engine.InternalErrors
    tls: list[engine.TlsConnection]
    tls_unlisted: Counter[str]
    auth: list[AuthExchange]
    secrets_blocks: int


def _work(path: str, index: int, count: int, out: Connection) -> None:
    """Worker `index` of `count`: analyse its share of `path`, sending ("steps", watermark, bytes
    read, [(key, step), ...], connections counted or None) messages, then ("end", _Summary) — or
    ("error", problem)."""
    part = Partition(index, count)
    batch: list[tuple[float, Step]] = []
    cap = None

    def flush(connections: int | None = None) -> None:
        out.send(("steps", part.position, cap.position if cap is not None else 0, batch[:], connections))
        batch.clear()

    def emit(step: Step) -> None:
        batch.append((part.position, step))
        if len(batch) >= BATCH:
            flush()

    try:
        eng = engine.Engine(emit)
        eng.encrypted_steps = True  # a capture whose TLS is decrypted is not split
        with open_capture(path) as cap:
            dispatcher = eng.dispatcher(partition=part)
            cap.read_head()
            # every 65536 packets: the others can move on, and the parent checks that every worker
            # has numbered the same connections so far
            dispatcher.run(cap, lambda _position: flush(dispatcher.stats["tcp.connections"]))
            stats = dispatcher.stats
            eng.finish(error_notes=False)
            flush()
            summary = _Summary(
                format=cap.format,
                compressed=cap.compressed,
                reader_warnings=list(cap.warnings),
                unknown_linktypes=dict(dispatcher.decoder.unknown_linktypes),
                stats=Counter(stats),
                notes=list(eng.notes),
                kdc_errors=eng.kdc.errors,
                dns_errors=eng.dns.errors,
                internal=eng.internal,
                tls=eng.tls,
                tls_unlisted=eng.tls_unlisted,
                auth=eng.auth,
                secrets_blocks=len(cap.secrets),
            )
        out.send(("end", summary))
    except KeyboardInterrupt:
        pass  # the parent was interrupted too, and says so
    except CaptureError as exc:
        _tell(out, ("error", exc.problem))
    except Exception as exc:  # reported by the parent as a one-line error
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" ({Path(last.filename).name}:{last.lineno})" if last else ""
        _tell(out, ("error", f"internal error in worker {index}: {type(exc).__name__}: {exc}{where}"))
    finally:
        out.close()


def _tell(out: Connection, message: tuple[str, str]) -> None:
    """Send a last word, unless the parent is gone (it stopped reading: nothing to tell)."""
    try:
        out.send(message)
    except OSError:
        pass


# -- the parent ------------------------------------------------------------------------------------


class WorkersUnavailable(Exception):
    """The workers could not be started; nothing has been analysed yet (the caller can go on in
    one process)."""


class _Worker:
    __slots__ = ("buffered", "conn", "index", "process", "summary", "watermark")

    def __init__(self, index: int, conn: Connection, process: Any) -> None:
        self.index = index
        self.conn = conn
        self.process = process
        self.buffered = 0  # its steps waiting in the parent
        self.watermark = -math.inf  # every step still to come has a key at least this
        self.summary: _Summary | None = None


def analyse_parallel(
    path: str | Path,
    jobs: int,
    on_step: Callable[[Step], None],
    progress: Callable[[int], None] | None = None,
) -> engine.CaptureResult:
    """Analyse the capture `path` with `jobs` worker processes, handing `on_step` every step in
    the order a single process would (see the module's doc).  Raises CaptureError like
    `engine.analyse_file`."""
    methods = multiprocessing.get_all_start_methods()
    ctx: Any = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    workers: list[_Worker] = []
    agreement = _Agreement(jobs)
    # A forked worker shares the parent's memory until it writes to it, and the garbage collector
    # writes to every object it visits: frozen, the parent's objects (a notebook's DataFrames, an
    # earlier analysis) stay out of the workers' collections and are not copied into them.
    gc.freeze()
    try:
        try:
            for i in range(jobs):
                receive, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_work, args=(str(path), i, jobs, send), daemon=True, name=f"lyncpcap-worker-{i}")
                try:
                    proc.start()
                except OSError as exc:  # no processes to be had (a container's limit, memory)
                    receive.close()
                    raise WorkersUnavailable(f"cannot start worker {i}: {exc.strerror or exc}") from None
                finally:
                    send.close()
                workers.append(_Worker(i, receive, proc))
        finally:
            gc.unfreeze()
        threshold = gc.get_threshold()
        gc.set_threshold(MERGE_GC_THRESHOLD, *threshold[1:])
        try:
            _merge(path, workers, on_step, progress, agreement)
        finally:
            gc.set_threshold(*threshold)
    finally:
        for w in workers:
            w.conn.close()
            w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
    result = _result(path, [w.summary for w in workers if w.summary is not None])
    if agreement.parted_at is not None:
        where = "by the end" if math.isinf(agreement.parted_at) else f"by frame {math.ceil(agreement.parted_at)}"
        result.warnings.append(
            f"the parallel analysis numbered TCP connections differently in its workers {where} (a connection "
            "idle for minutes was used again): connection numbers (conn) after it may differ from --jobs 1"
        )
    return result


class _Agreement:
    """Connection numbers are the whole capture's only if every worker counted the same connections.
    A worker forgets another worker's connections when they idle (as one process forgets ignored
    ones), their owner may keep them: a connection idle for minutes, then used again, can make
    the counts part.  The parent compares them at every housekeeping pass and at the end."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.seen: dict[float, dict[int, int]] = {}  # position -> worker -> connections counted
        self.parted_at: float | None = None  # the first position where the counts differed

    def count(self, position: float, worker: int, connections: int) -> None:
        counts = self.seen.setdefault(position, {})
        counts[worker] = connections
        if len(counts) == self.workers:
            del self.seen[position]
            if len(set(counts.values())) > 1 and (self.parted_at is None or position < self.parted_at):
                self.parted_at = position


def _merge(
    path: str | Path,
    workers: list[_Worker],
    on_step: Callable[[Step], None],
    progress: Callable[[int], None] | None,
    agreement: _Agreement,
) -> None:
    seq = 0
    live = list(workers)
    heads: list[tuple[float, int, int, Step]] = []  # the merged heap of every buffered step
    while live:
        listening = [w.conn for w in live if w.buffered < BUFFERED] or [w.conn for w in live]
        for ready in wait(listening):
            w = next(x for x in live if x.conn is ready)
            try:
                message: tuple[Any, ...] = w.conn.recv()
            except (EOFError, OSError):
                raise CaptureError(path, f"worker {w.index} stopped without finishing (exit code {w.process.exitcode})") from None
            kind = message[0]
            if kind == "steps":
                _, watermark, position, items, connections = message
                if connections is not None:
                    agreement.count(watermark, w.index, connections)
                for key, step in items:
                    heapq.heappush(heads, (key, w.index, seq, step))
                    seq += 1
                w.buffered += len(items)
                w.watermark = watermark
                if progress is not None and w.index == 0:
                    progress(position)
            elif kind == "end":
                w.summary = message[1]
                agreement.count(math.inf, w.index, w.summary.stats.get("tcp.connections", 0))
                w.watermark = math.inf
                live.remove(w)
            else:
                raise CaptureError(path, message[1])
        _release(heads, workers, on_step)
    _release(heads, workers, on_step)


def _release(heads: list[tuple[float, int, int, Step]], workers: list[_Worker], on_step: Callable[[Step], None]) -> None:
    """Hand over, in (position, worker) order, every buffered step no worker can still precede."""
    while heads:
        key, index, _, step = heads[0]
        for w in workers:
            if w.index == index or w.summary is not None or w.buffered:
                continue  # what a worker with buffered steps still sends comes after heads[0]
            if (w.watermark, w.index) < (key, index):
                return  # w may still send a step that comes first
        heapq.heappop(heads)
        workers[index].buffered -= 1
        on_step(step)


def _result(path: str | Path, summaries: list[_Summary]) -> engine.CaptureResult:
    """One capture's result from its workers' summaries."""
    first = summaries[0]
    stats = Counter(first.stats)
    for key in PER_WORKER_STATS:
        stats[key] = sum(s.stats.get(key, 0) for s in summaries)
        if not stats[key]:
            del stats[key]
    notes: list[str] = []
    for s in summaries:
        notes += [n for n in s.notes if n not in notes]
    internal = engine.InternalErrors()
    for s in summaries:
        internal.merge(s.internal)
    kdc_errors, dns_errors = sum(s.kdc_errors for s in summaries), sum(s.dns_errors for s in summaries)
    notes += [n for n in engine.decode_error_notes(kdc_errors, dns_errors, internal) if n not in notes]
    tls = sorted((t for s in summaries for t in s.tls), key=lambda t: t.conn)
    # each worker listed its first TLS_LISTED: the capture's first TLS_LISTED are among them
    unlisted: Counter[str] = sum((s.tls_unlisted for s in summaries), Counter())
    for t in tls[engine.TLS_LISTED :]:
        unlisted[engine.tls_server(t)] += 1
    del tls[engine.TLS_LISTED :]
    if unlisted:
        stats["tls.unlisted"] = sum(unlisted.values())
    engine.explain_without_keys(tls)
    auth = sorted((a for s in summaries for a in s.auth), key=lambda a: a.frame)
    warnings = list(first.reader_warnings) + flow_warnings(stats, first.unknown_linktypes) + notes
    if first.secrets_blocks:
        warnings.append(
            f"{first.secrets_blocks} decryption secrets block(s) after the first packet were not used by the "
            "parallel analysis: analyse with --jobs 1 to decrypt with them"
        )
    warnings += engine.undecrypted_warning(tls) + engine.unlisted_warning(unlisted)
    return engine.CaptureResult(
        path=str(path),
        format=first.format,
        compressed=first.compressed,
        packets=stats.get("packets", 0),
        decrypted=False,
        warnings=warnings,
        stats=stats,
        steps=[],
        auth=auth,
        tls=tls,
        secrets_blocks=first.secrets_blocks,
        tls_unlisted=unlisted,
    )
