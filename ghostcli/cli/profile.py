"""`ghostcli profile` (not implemented yet)."""

import typer


def register(app: typer.Typer) -> None:
    """Register the command (placeholder until the command lands)."""
