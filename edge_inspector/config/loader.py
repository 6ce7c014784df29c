"""Reading a station file: YAML parsed, validated into StationConfig, every error one line naming
the file, YAML line, key path and what was expected; relative paths taken from the file's folder."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from edge_inspector.config.station import StationConfig
from edge_inspector.errors import ConfigError

# tags pydantic inserts into error locations of discriminated unions: not keys of the file
_UNION_TAGS = {"memory-bank", "kmdgan", "folder", "opencv", "pylon"}


def _locate(node: yaml.Node | None, loc: tuple) -> tuple[str, int | None]:
    """The dotted key path of an error location and the line of the deepest YAML node it reaches."""
    keys: list[str] = []
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            values = {k.value: (k, v) for k, v in node.value}
            if str(part) in values:
                key, node = values[str(part)]
                line = key.start_mark.line + 1
            elif part in _UNION_TAGS:
                continue
            else:
                node = None  # a missing key: named, but has no line of its own
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        keys.append(str(part))
    return ".".join(keys) or "(top)", line


def _relative_to(base: Path, config: StationConfig) -> StationConfig:
    """Resolve relative paths in the config against the config file's folder."""
    def fix(model: BaseModel) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, Path) and not value.is_absolute():
                object.__setattr__(model, name, base / value)
            elif isinstance(value, BaseModel):
                fix(value)

    fix(config)
    return config


def load_config(path: str | Path) -> StationConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text()
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    try:
        config = StationConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            if err["type"] == "union_tag_invalid":  # point at the `type:` / `kind:` key itself
                loc += (str(err["ctx"]["discriminator"]).strip("'"),)
            keys, line = _locate(node, loc)
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{path}:{line or '?'}: {keys}: {msg}")
        raise ConfigError("\n".join(lines)) from None
    return _relative_to(path.parent, config)
