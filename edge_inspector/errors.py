"""Errors that the CLI turns into one clear line and an exit code."""


class UserError(Exception):
    """A problem the user can fix (bad input, missing file); printed as one line."""

    exit_code = 1


class ConfigError(UserError):
    """The station configuration is invalid; exit code 2 as for any usage error."""

    exit_code = 2

