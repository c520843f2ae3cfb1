"""User-facing errors: the CLI turns these into one red line and exit code 2, never a traceback."""


class CxrError(Exception):
    """Something the user can fix (bad path, bad config, bad data). The message says what and how."""
