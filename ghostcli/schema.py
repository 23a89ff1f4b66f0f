"""The JSON contract every ``--json`` output shares (documented in docs/output.md).

Every object printed under ``--json`` starts with ``schema_version`` and ``kind``
(``ghostcli.<command>``). Add keys freely (a minor change); rename or remove one only with a
major version bump.
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = "1.0"
ERROR_KIND = "ghostcli.error"


def kind_of(name: str) -> str:
    """``"profile"`` -> ``"ghostcli.profile"`` (a name already prefixed is kept)."""
    return name if name.startswith("ghostcli.") else f"ghostcli.{name}"


def envelope(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with ``schema_version`` and ``kind`` first (a payload's own pair wins)."""
    head = {"schema_version": payload.get("schema_version", SCHEMA_VERSION), "kind": payload.get("kind", kind_of(kind))}
    return {**head, **{k: v for k, v in payload.items() if k not in head}}


def error_envelope(message: str, exit_code: int) -> dict[str, Any]:
    """What ``--json`` prints on stdout when a command fails."""
    return envelope(ERROR_KIND, {"message": message, "exit_code": exit_code})
