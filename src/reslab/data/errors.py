"""Errors a user can cause with their data; the CLI prints them without a traceback."""


class DataError(RuntimeError):
    """Bad or missing input data; the message names the path at fault and what would be accepted."""
