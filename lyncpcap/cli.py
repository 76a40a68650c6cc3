"""Entry point of the `lyncpcap` console script and `python -m lyncpcap`.

Commands live in `lyncpcap.commands.*`; this module imports them (which registers them) and turns
every failure into one line on stderr and the CONTRACT exit status — never a traceback.
"""

from __future__ import annotations

import importlib
import sys

from lyncpcap.commands import UsageProblem, app

# Importing the command modules registers their commands on `app`.
from lyncpcap.commands import analyze as _analyze  # noqa: F401
from lyncpcap.commands import audit as _audit  # noqa: F401
from lyncpcap.commands import batch as _batch  # noqa: F401
from lyncpcap.commands import plot as _plot  # noqa: F401
from lyncpcap.commands import timeline as _timeline  # noqa: F401
from lyncpcap.commands import wireshark as _wireshark  # noqa: F401
from lyncpcap.errors import CaptureError

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2


def _classes(name: str) -> tuple[type[Exception], ...]:
    """click's exception classes: typer's bundled copy (typer >= 0.20 no longer installs click) and
    click itself when it is installed."""
    found: list[type[Exception]] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


USAGE_ERRORS = _classes("ClickException")
EXITS = _classes("Exit")
ABORTS = _classes("Abort")


def fail(message: str) -> None:
    """One line on stderr, never wrapped or styled."""
    sys.stderr.write(" ".join(message.split()) + "\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> None:
    try:
        # without standalone mode click returns an Exit's code instead of raising it
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except CaptureError as exc:
        fail(f"lyncpcap: error: {exc}")
        sys.exit(EXIT_INPUT)
    except UsageProblem as exc:
        fail(f"lyncpcap: error: {exc}")
        sys.exit(EXIT_INPUT)
    except ABORTS:
        fail("lyncpcap: interrupted")
        sys.exit(130)
    except USAGE_ERRORS as exc:
        if type(exc).__name__ != "NoArgsIsHelpError":  # the help was printed already
            exc.show()  # type: ignore[attr-defined]
        sys.exit(EXIT_INPUT)
    except EXITS as exc:
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    except BrokenPipeError:
        sys.exit(EXIT_OK)
    except OSError as exc:
        name = getattr(exc, "filename", None)
        fail(f"lyncpcap: error: {name + ': ' if name else ''}{exc.strerror or exc}")
        sys.exit(EXIT_INPUT)
    except Exception as exc:
        fail(f"lyncpcap: internal error: {type(exc).__name__}: {exc} (please report this with the capture)")
        sys.exit(EXIT_INTERNAL)
    sys.exit(EXIT_OK)


if __name__ == "__main__":
    main()
