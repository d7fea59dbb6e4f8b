"""``klingflow validate`` and ``klingflow plan``: pure commands that never start Prefect."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the script commands to ``app``."""

    @app.command()
    def validate(script: str) -> None:
        """Check a render script (placeholder)."""
        raise NotImplementedError
