"""Commands from the PLC gateway (JSON on <prefix>/<station>/command):

    {"command": "trigger", "part_id": "A123", "request_id": "r1"}
    {"command": "reload", "request_id": "r2"}
    {"command": "status", "request_id": "r3"}

A malformed command changes nothing and gets {"ok": false, "error": ...} on the reply topic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

COMMANDS = ("trigger", "reload", "status")


class BadCommand(ValueError):
    pass


@dataclass
class Command:
    name: str
    part_id: str | None = None
    request_id: str | None = None


def parse(payload: bytes) -> Command:
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadCommand(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadCommand("expected a JSON object")
    name = data.get("command")
    if name not in COMMANDS:
        raise BadCommand(f"command {name!r} unknown; expected one of {', '.join(COMMANDS)}")
    unknown = set(data) - {"command", "part_id", "request_id"}
    if unknown:
        raise BadCommand(f"unknown field(s) {', '.join(sorted(unknown))}")
    part_id, request_id = data.get("part_id"), data.get("request_id")
    for key, value in (("part_id", part_id), ("request_id", request_id)):
        if value is not None and not (isinstance(value, str) and 0 < len(value) <= 128):
            raise BadCommand(f"{key} must be a string of 1 to 128 characters")
    return Command(name, part_id, request_id)


def request_id_of(payload: bytes) -> str | None:
    """Best effort, for the reply to a malformed command."""
    try:
        value = json.loads(payload).get("request_id")
        return value if isinstance(value, str) else None
    except Exception:
        return None
