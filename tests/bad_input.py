"""The one assertion every bad-input case makes: a clean one-line failure that leaves the folder as it was."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from typer.testing import CliRunner

from ghostcli.cli.app import app
from ghostcli.schema import SCHEMA_VERSION


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (hidden ones too) -> sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_bad(args: list[str], folder: Path, *, code: int, match: str | list[str]) -> str:
    """Run ``ghostcli ARGS`` in-process and assert a clean failure.

    Asserts: exit ``code``; stderr holds exactly one line, ``Error: ...`` containing each
    ``match`` (case-insensitive); no traceback; no file below ``folder`` appeared, vanished or
    changed (so no partial or temp output, and existing files untouched). Returns the line.
    """
    before = snapshot(folder)
    result = CliRunner().invoke(app, args, catch_exceptions=True)
    stderr = result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{args}: raised {result.exception!r}")
    assert result.exit_code == code, (args, result.exit_code, stderr, result.stdout)
    assert "Traceback" not in stderr + result.stdout, (args, stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, (args, stderr)
    line = errors[0]
    for m in [match] if isinstance(match, str) else match:
        assert m.lower() in line.lower(), (args, m, line)
    assert snapshot(folder) == before, (args, "files changed", sorted(set(snapshot(folder)) ^ set(before)))
    if "--json" in args:  # docs/output.md: the same error as a JSON object on stdout
        assert json.loads(result.stdout) == {"schema_version": SCHEMA_VERSION, "kind": "ghostcli.error",
                                             "message": line.removeprefix("Error: "), "exit_code": code}, args
    return line
