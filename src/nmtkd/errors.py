"""Errors that the CLI reports as one clear line instead of a traceback."""


class NmtkdError(Exception):
    """A user-facing error: bad input, bad config, missing file."""
