"""``klingflow archive``: deliver a finished run's masters to the archive, verified.

boto3 is imported inside the command, so other commands start without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from pipeline.archive.location import DEFAULT_ARCHIVE


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"  # pragma: no cover - the loop always returns


def register(app: typer.Typer) -> None:
    """Add the archive command to ``app``."""

    @app.command()
    def archive(
        run_dir: Annotated[Path, typer.Argument(help="A finished run directory (holds run.json).")],
        to: Annotated[
            str,
            typer.Option("--to", help="s3://bucket/prefix or a local directory.", show_default=True),
        ] = DEFAULT_ARCHIVE,
        remove_local: Annotated[
            bool,
            typer.Option("--remove-local", help="Delete each local master.mp4 once its master is verified."),
        ] = False,
    ) -> None:
        """Archive a finished run: masters, subtitles, contact sheets, manifests (last).

        S3 settings come from KLINGFLOW_S3_* variables, credentials from the AWS chain.
        Already archived identical files are not uploaded again; different ones are refused.

        Example: klingflow archive runs/summer-launch-0001 --to s3://my-bucket/campaigns
        """
        from pipeline.archive.archiver import FileReport, Outcome, archive_run

        out = Console(highlight=False, soft_wrap=True)
        styles = {Outcome.UPLOADED: "green", Outcome.PRESENT: "dim", Outcome.REFUSED: "red"}

        def show(entry: FileReport) -> None:
            # Text, not markup: paths and keys may contain brackets.
            line = Text(f"{entry.outcome.value:<16} ", style=styles[entry.outcome])
            if entry.outcome is Outcome.REFUSED:
                line.append(f"{entry.path}: {entry.error}")
            else:
                line.append(f"{entry.uri} ({_human(entry.size)})")
            out.print(line)

        report = archive_run(run_dir, to, remove_local_masters=remove_local, progress=show)
        out.print(
            f"{report.count(Outcome.UPLOADED)} uploaded, {report.count(Outcome.PRESENT)} already "
            f"archived, {report.count(Outcome.REFUSED)} refused; "
            f"{len(report.masters_complete)} master(s) complete in {report.destination}",
            markup=False,
        )
        report.raise_if_refused()
