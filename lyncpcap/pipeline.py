"""The whole job as a stream: inputs → engine → session builder → a consumer.

A single capture streams end to end: each step goes to the session builder as soon as the engine
completes it, and each session reaches the consumer as soon as it is closed, so memory follows the
sign-ins in progress rather than the capture.  Several inputs (or archives) are read one after the
other and their steps grouped together by time, since one sign-in may span them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

from lyncpcap import engine, inputs, parallel
from lyncpcap.errors import CaptureError
from lyncpcap.model import AuthExchange, CaptureInfo, Session, Step
from lyncpcap.read.tshark import RsaKey
from lyncpcap.sessions import LAG, SessionBuilder


class Consumer(Protocol):
    """Receives the results; sessions and unattached steps may come in any order."""

    def session(self, session: Session) -> None: ...
    def unattached_step(self, step: Step) -> None: ...
    def orphan(self, exchange: AuthExchange) -> None: ...  # an authentication message no step carried
    def capture(self, info: CaptureInfo, tls: list[engine.TlsConnection]) -> None: ...


def rsa_key_list(rsa_keys: Iterable[str | RsaKey] | None) -> list[RsaKey]:
    """RSA key specifications (`FILE`, `FILE@ADDRESS`, `FILE@ADDRESS:PORT`) checked for existence."""
    keys: list[RsaKey] = []
    for k in rsa_keys or ():
        if isinstance(k, RsaKey):
            keys.append(k)
            continue
        try:
            keys.append(RsaKey.parse(k))
        except ValueError as exc:
            raise CaptureError(k, f"not an RSA key specification: {exc}") from None
    for key in keys:
        if not key.path.is_file():
            raise CaptureError(key.path, "RSA key file not found")
    return keys


def run(
    paths: Sequence[str | Path],
    consumer: Consumer,
    *,
    keylog: str | Path | None = None,
    rsa_keys: Sequence[RsaKey] = (),
    progress: Callable[[int], None] | None = None,
    full: bool = False,
    jobs: int | None = None,
) -> None:
    """Analyse `paths` and hand every result to `consumer`.

    `jobs`: processes for a single large capture without decryption (`lyncpcap.parallel`); None
    chooses (one per CPU for a capture of parallel.MIN_BYTES or more), 1 keeps to this process.
    The results are the same either way."""
    builder = SessionBuilder(consumer.session, consumer.unattached_step)
    stream = len(paths) == 1 and inputs.sniff(paths[0]) is inputs.InputKind.CAPTURE
    workers = 1
    if stream and not full and keylog is None and not rsa_keys:
        workers = parallel.auto_jobs(paths[0]) if jobs is None else jobs
        if workers > 1 and not parallel.can_split(paths[0]):
            workers = 1
    kept: list[Step] = []
    for index, p in enumerate(paths):
        result = None
        if workers > 1:
            try:
                result = parallel.analyse_parallel(p, workers, builder.add, progress)
            except parallel.WorkersUnavailable:
                pass  # nothing was analysed yet: one process does it all
        if result is None:
            result = inputs.analyse(
                p, keylog=keylog, rsa_keys=rsa_keys, progress=progress, full=full, on_step=builder.add if stream else None
            )
        if len(paths) > 1:
            for s in result.steps:
                s.facts["capture"] = index
        kept.extend(result.steps)
        info = CaptureInfo(
            path=result.path,
            format=result.format,
            packets=result.packets,
            decrypted=result.decrypted,
            warnings=result.warnings,
            compressed=result.compressed,
            stats=dict(result.stats),
            keylog=str(keylog) if keylog is not None else None,
            rsa_keys=[str(k) for k in rsa_keys],
        )
        for exchange in result.auth:
            consumer.orphan(exchange)
        if stream:
            builder.finish()
            _note_late(builder, info)
        consumer.capture(info, result.tls)
    if not stream:
        for step in sorted(kept, key=lambda s: (s.time, s.frame)):
            builder.add(step)
        builder.finish()


def _note_late(builder: SessionBuilder, info: CaptureInfo) -> None:
    if builder.late:
        info.warnings.append(
            f"{builder.late} step(s) completed more than {LAG:.0f} s after later ones had started "
            "(grouped into sessions out of time order)"
        )
