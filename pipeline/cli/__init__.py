"""Entry point of the ``klingflow`` console script.

Every error klingflow raises on purpose carries its exit code (see :mod:`pipeline.errors`);
``main`` prints its message, never a traceback, and exits with that code.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from pipeline.cli import archive_cmds, deploy_cmds, provider_cmds, run_cmds, script_cmds
from pipeline.cli.app import app
from pipeline.errors import EXIT_INTERRUPTED, EXIT_USAGE, KlingflowError

try:  # typer >= 0.20 vendors its own copy of click; older ones use click itself
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

for _module in (script_cmds, run_cmds, deploy_cmds, provider_cmds, archive_cmds):
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
    return result if isinstance(result, int) else 0


def run() -> None:  # pragma: no cover - console-script shim
    sys.exit(main())
