"""Entry point of the ``klingflow`` console script.

Every error klingflow raises on purpose carries its exit code (see :mod:`pipeline.errors`);
``main`` prints its message, never a traceback, and exits with that code. What reaches it
wrapped (an ExceptionGroup, a Prefect exception around ours) is unwrapped first; a full disk
that no writer translated still ends in 73; anything else is a bug: its traceback and 70.
"""

from __future__ import annotations

import errno
import sys
import traceback

import typer
from rich.console import Console

from pipeline.cli import (
    approve_cmds,
    archive_cmds,
    deploy_cmds,
    library_cmds,
    provider_cmds,
    run_cmds,
    script_cmds,
    status_cmds,
    stitch_cmds,
    take_cmds,
)
from pipeline.cli.app import app
from pipeline.errors import (
    EXIT_CANTCREAT,
    EXIT_INTERRUPTED,
    EXIT_SOFTWARE,
    EXIT_USAGE,
    KlingflowError,
)

try:  # typer >= 0.20 vendors its own copy of click; older ones use click itself
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

for _module in (
    script_cmds,
    run_cmds,
    status_cmds,
    approve_cmds,
    deploy_cmds,
    provider_cmds,
    archive_cmds,
    take_cmds,
    library_cmds,
    stitch_cmds,
):
    _module.register(app)

_stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    try:
        result = app(args=argv, prog_name="klingflow", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except click_exceptions.UsageError as exc:
        exc.show(file=sys.stderr)
        return EXIT_USAGE
    except typer.Abort:
        _stderr.print("interrupted")
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        _stderr.print("interrupted")
        return EXIT_INTERRUPTED
    except KlingflowError as exc:
        _stderr.print(f"error: {exc}", markup=False)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the last net: a bug gets its traceback and 70
        return _unexpected(exc)
    return result if isinstance(result, int) else 0


def _ours(exc: BaseException) -> KlingflowError | None:
    """Our error inside a wrapper: an exception group's first, or the cause of a Prefect error."""
    if isinstance(exc, KlingflowError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _ours(inner)
            if found is not None:
                return found
        return None
    if type(exc).__module__.startswith("prefect") and exc.__cause__ is not None:
        return _ours(exc.__cause__)
    return None


def _no_space(exc: BaseException) -> OSError | None:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        return next((e for e in map(_no_space, exc.exceptions) if e is not None), None)
    return None


def _unexpected(exc: Exception) -> int:
    """The exit code (and message) for an exception that is not one of ours."""
    ours = _ours(exc)
    if ours is not None:
        _stderr.print(f"error: {ours}", markup=False)
        return ours.exit_code
    full = _no_space(exc)
    if full is not None:  # a safety net: writers translate this into DiskFull, naming the place
        where = f" writing {full.filename}" if full.filename else ""
        _stderr.print(f"error: no space left on the device{where}", markup=False)
        return EXIT_CANTCREAT
    traceback.print_exception(exc, file=sys.stderr)
    _stderr.print(
        "internal error: this is a bug in klingflow, please report it with the traceback above",
        markup=False,
    )
    return EXIT_SOFTWARE


def run() -> None:  # pragma: no cover - console-script shim
    sys.exit(main())
