"""The base of every section model (unknown keys are refused), and how a secret is read."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from edge_inspector.errors import ConfigError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def read_secret(key: str, env: str | None, file: Path | None, credential: str | None) -> str | None:
    """A secret named by <key>_env (an environment variable), <key>_credential (a systemd
    LoadCredential= name under $CREDENTIALS_DIRECTORY) or <key>_file; None where none is named."""
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"{key}_env: environment variable {env} is not set")
        return value
    if credential:
        folder = os.environ.get("CREDENTIALS_DIRECTORY")
        if not folder:
            raise ConfigError(f"{key}_credential: {credential}: $CREDENTIALS_DIRECTORY is not set (only systemd's "
                              "LoadCredential= provides it)")
        path = Path(folder) / credential
        if not path.is_file():
            raise ConfigError(f"{key}_credential: no credential {credential} in {folder}")
        return path.read_text().strip()
    if file:
        if not file.is_file():
            raise ConfigError(f"{key}_file: file not found: {file}")
        return file.read_text().strip()
    return None
