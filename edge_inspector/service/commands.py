"""Commands from the PLC gateway (JSON on <prefix>/<station>/command):

    {"command": "trigger", "part_id": "A123", "request_id": "r1"}
    {"command": "reload", "request_id": "r2"}
    {"command": "status", "request_id": "r3"}

A malformed command changes nothing and gets {"ok": false, "error": ...} on the reply topic.
Payloads come from the plant network, so nothing in them is trusted: the size is capped before
parsing, every parse error (deep nesting included) is a BadCommand, and what reaches a log line
passes through printable() first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

COMMANDS = ("trigger", "reload", "status")
MAX_BYTES = 4096  # a real command is under 300 bytes; the cap bounds the parser's work
LOG_CHARS = 120  # what of a network string a log line shows


class BadCommand(ValueError):
    pass


@dataclass
class Command:
    name: str
    part_id: str | None = None
    request_id: str | None = None


def printable(text: object, limit: int = LOG_CHARS) -> str:
    """A network string made safe for one log line: control characters (newlines, ANSI escapes)
    shown escaped, and at most limit characters."""
    text = str(text)
    safe = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text[: limit + 1])
    return safe[:limit] + ("..." if len(safe) > limit or len(text) > limit else "")


def _load(payload: bytes) -> object:
    if len(payload) > MAX_BYTES:
        raise BadCommand(f"command of {len(payload)} bytes; at most {MAX_BYTES}")
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError covers JSONDecodeError
        raise BadCommand(f"not JSON: {type(exc).__name__}") from None


def parse(payload: bytes) -> Command:
    data = _load(payload)
    if not isinstance(data, dict):
        raise BadCommand("expected a JSON object")
    name = data.get("command")
    if name not in COMMANDS:
        raise BadCommand(f"command {printable(repr(name), 40)} unknown; expected one of {', '.join(COMMANDS)}")
    unknown = set(data) - {"command", "part_id", "request_id"}
    if unknown:
        raise BadCommand(f"unknown field(s) {printable(', '.join(sorted(unknown)), 60)}")
    part_id, request_id = data.get("part_id"), data.get("request_id")
    for key, value in (("part_id", part_id), ("request_id", request_id)):
        if value is not None and not (isinstance(value, str) and 0 < len(value) <= 128 and value.isprintable()):
            raise BadCommand(f"{key} must be a string of 1 to 128 printable characters")
    return Command(name, part_id, request_id)


def request_id_of(payload: bytes) -> str | None:
    """Best effort, for the reply to a malformed command."""
    try:
        value = _load(payload).get("request_id")
    except (BadCommand, AttributeError):
        return None
    return value if isinstance(value, str) and 0 < len(value) <= 128 and value.isprintable() else None
